"""Max relative difference between genbench's vp samplers and diffusers' scheduler loops on one saved pipeline.

    PYTHONPATH=. python benchmarks/diffusers_parity.py [--gain 0.1] [--steps 10 50]

A tiny random UNet2DModel (8x8, 3 channels, output layer scaled by --gain) with a DDPMScheduler is saved
with save_pretrained; each diffusers loop builds its scheduler with from_config on the saved config and
starts from the same noise as genbench. Printed: max |genbench - diffusers| / max |diffusers|, and the
same measure between diffusers' own float32 and float64 loops (the rounding sensitivity of the chain).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

import diffusers
from genbench.external import load_external
from genbench.samplers.vp import sample_vp_model
from genbench.sampling_api import InitNoise
from genbench.seeding import SeededNoise

CASES = [("ddim", "DDIMScheduler", {}), ("pndm", "PNDMScheduler", {}),
         ("plms", "PNDMScheduler", {"skip_prk_steps": True}), ("dpmpp_2m_discrete", "DPMSolverMultistepScheduler", {})]


def loop(unet, config, cls, steps, z, **kw):
    scheduler = getattr(diffusers, cls).from_config(config, **kw)
    scheduler.set_timesteps(steps)
    x = z.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gain", type=float, default=0.1)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 50])
    args = ap.parse_args()
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    with torch.no_grad():
        unet.conv_out.weight.mul_(args.gain)
        unet.conv_out.bias.mul_(args.gain)
    path = Path(tempfile.mkdtemp()) / "pipe"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(path)
    model = load_external(f"diffusers:{path}")
    config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    unet64 = copy.deepcopy(model.unet).double()
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    print(f"| sampler | diffusers scheduler | steps | NFE | genbench vs diffusers | diffusers f32 vs f64 |  (gain {args.gain})")
    print("|---|---|---|---|---|---|")
    for name, cls, kw in CASES:
        for steps in args.steps:
            ref = loop(model.unet, config, cls, steps, z, **kw)
            ref64 = loop(unet64, config, cls, steps, z.double(), **kw)
            with torch.no_grad():
                ours, nfe = sample_vp_model(model, InitNoise(z, SeededNoise.for_run(0, 2)), name, steps, model.data_shape)
            scale = ref.abs().max()
            print(f"| {name} | {cls}{'(' + ', '.join(f'{k}={v}' for k, v in kw.items()) + ')' if kw else ''} | {steps} | "
                  f"{nfe:g} | {float((ours - ref).abs().max() / scale):.1e} | {float((ref.double() - ref64).abs().max() / scale):.1e} |")


if __name__ == "__main__":
    main()
