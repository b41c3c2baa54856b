"""The sampler loop: genbench's DDIM against diffusers' DDIMScheduler loop, and against the bare network.

One random ``UNet2DModel`` (32x32 RGB, two levels, seed 0) with a ``DDPMScheduler`` is saved with
``save_pretrained`` and loaded as ``diffusers:PATH``, as a user's pipeline would be. From the same
initial noise:

* genbench: ``sample_vp_model(model, noise, "ddim", steps)`` (the ``vp`` DDIM sampler, NFE counted);
* diffusers: ``DDIMScheduler.from_config`` on the saved config, ``set_timesteps(steps)``, then
  ``unet(x, t).sample`` and ``scheduler.step`` per timestep (the loop its pipelines run);
* the bare network: NFE calls of ``unet(x, t)`` alone, the floor any loop pays.

Targets (issue 11): genbench's loop at most 1.10 x the bare forwards (speed-up >= 1/1.1), and no
slower than diffusers' (speed-up >= 1). The difference column is max |x_genbench - x_peer| / max |x_peer|.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch

from genbench.bench.measure import Case, Values
from genbench.errors import RunFailure

OVERHEAD_TARGET = 1 / 1.10


def tiny_pipeline(workdir: Path, size: int = 32) -> Path:
    """Save (once) a random UNet2DModel + DDPMScheduler pipeline under ``workdir``; returns its directory."""
    diffusers = importlib.import_module("diffusers")
    path = workdir / f"unet{size}-pipeline"
    if (path / "model_index.json").is_file():
        return path
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    with torch.no_grad():  # a small output keeps the chain in range (random weights)
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(path)
    return path


def sampler_cases(workdir: Path, batch: int, steps: int, device: str) -> tuple[list[Case], dict[str, str]]:
    try:
        diffusers = importlib.import_module("diffusers")
    except ImportError as e:
        return [], {"diffusers": f"not installed ({e.name}); pip install 'genbench[bench]'"}
    from genbench.external import load_external
    from genbench.samplers.vp import sample_vp_model
    from genbench.sampling_api import InitNoise
    from genbench.seeding import SeededNoise

    path = tiny_pipeline(workdir)
    model = load_external(f"diffusers:{path}", device=device)
    unet = model.unet
    config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    z = torch.randn(batch, *model.data_shape, generator=torch.Generator().manual_seed(1)).to(device)

    def relative_to_peak(a: dict, b: dict) -> float:  # max |x_genbench - x_peer| / max |x_peer|
        return float((a["x"] - b["x"]).abs().max() / b["x"].abs().max())

    def ours() -> Values:
        with torch.no_grad():
            x, nfe = sample_vp_model(model, InitNoise(z.cpu(), SeededNoise.for_run(0, batch)), "ddim", steps,
                                     model.data_shape, device)
        if nfe != steps:  # the bare-forward floor below assumes one network call per step
            raise RunFailure(f"ddim at {steps} steps made {nfe:g} network calls per sample, expected {steps}")
        return {"x": x}

    def diffusers_loop() -> Values:
        scheduler = diffusers.DDIMScheduler.from_config(config)
        scheduler.set_timesteps(steps)
        x = z.clone()
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample
        return {"x": x}

    def bare_forwards() -> Values:
        t = torch.full((batch,), 500, device=device)
        with torch.no_grad():
            for _ in range(steps):
                unet(z, t)
        return {}

    size = f"batch {batch}, {steps} steps, UNet2DModel 32x32"
    return [
        Case("sampler loop: ddim", "diffusers DDIMScheduler loop", size, ours, diffusers_loop, target=1.0, warmup=True, min_repeats=3,
             note="difference: max |x - x_diffusers| / max |x_diffusers|", difference=relative_to_peak),
        Case("sampler loop: ddim", "bare UNet forward x NFE", size, ours, bare_forwards, target=OVERHEAD_TARGET, warmup=True, min_repeats=3,
             note=f"NFE = {steps}; speed-up >= 0.909: loop <= 1.10 x NFE x forward"),
    ], {}
