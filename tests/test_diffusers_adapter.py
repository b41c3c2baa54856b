"""``diffusers:PATH``: a saved pipeline sampled by genbench equals diffusers' own scheduler loops.

Offline: a tiny randomly initialised UNet2DModel (8x8, 3 channels) with a DDPMScheduler is written by
``save_pretrained``; each reference loop builds its scheduler with ``from_config`` on the saved scheduler
config, so a key the config lacks takes that scheduler's default (set_alpha_to_one, skip_prk_steps, ...).

The UNet's output layer is scaled by 0.1. A random UNet has a gain above one per step, and with DDIM's
clip_sample the chain is then chaotic: diffusers' own DDIM loop in float32 and in float64 differs by 2e-2
(relative) after 50 steps, so no implementation can agree with it to 1e-4. With the smaller gain the same
float32/float64 difference is 7e-5, and parity is a meaningful test.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch

from genbench.errors import UsageError
from genbench.external import load_external
from genbench.sampling_api import InitNoise
from genbench.samplers.vp import sample_vp_model
from genbench.seeding import SeededNoise

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-4  # max |genbench - diffusers| / max |diffusers|
OUTPUT_GAIN = 0.1


def tiny_unet(seed: int = 0) -> "diffusers.UNet2DModel":
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    with torch.no_grad():
        unet.conv_out.weight.mul_(OUTPUT_GAIN)
        unet.conv_out.bias.mul_(OUTPUT_GAIN)
    return unet


def save_pipeline(path, **scheduler_kwargs):
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler(**scheduler_kwargs)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("ddpm-pipeline"))


@pytest.fixture(scope="module")
def v_trailing_dir(tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("v-pipeline"), prediction_type="v_prediction",
                         timestep_spacing="trailing", clip_sample=False)


@pytest.fixture(scope="module")
def ddim_settings_dir(tmp_path_factory):
    """A DDIMPipeline whose DDIMScheduler sets what DDPMScheduler's config lacks: set_alpha_to_one, steps_offset,
    dynamic thresholding, the cosine schedule."""
    path = tmp_path_factory.mktemp("ddim-pipeline")
    scheduler = diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", set_alpha_to_one=False, steps_offset=1,
                                        thresholding=True, sample_max_value=1.5)
    diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(path)
    return path


def init_noise(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def diffusers_loop(path, scheduler_cls: str, steps: int, z: torch.Tensor, **overrides) -> torch.Tensor:
    """The pipeline's denoising loop with ``scheduler_cls.from_config(saved config)``."""
    unet = saved_unet(str(path))
    config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, scheduler_cls).from_config(config, **overrides)
    scheduler.set_timesteps(steps)
    x = z.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    return x


@lru_cache(maxsize=4)
def saved_unet(path: str) -> "diffusers.UNet2DModel":
    return diffusers.UNet2DModel.from_pretrained(path + "/unet").eval()


@lru_cache(maxsize=4)
def loaded(path: str):
    return load_external(f"diffusers:{path}")


def genbench_run(path, sampler: str, steps: int, z: torch.Tensor) -> tuple[torch.Tensor, float]:
    model = loaded(str(path))
    with torch.no_grad():
        return sample_vp_model(model, InitNoise(z, SeededNoise.for_run(0, len(z))), sampler, steps, model.data_shape)


CASES = [("ddim", "DDIMScheduler", {}), ("pndm", "PNDMScheduler", {}),
         ("plms", "PNDMScheduler", {"skip_prk_steps": True}), ("dpmpp_2m_discrete", "DPMSolverMultistepScheduler", {})]


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("sampler,scheduler,overrides", CASES)
def test_samplers_equal_diffusers_scheduler_loops(pipeline_dir, sampler, scheduler, overrides, steps):
    z = init_noise()
    ref = diffusers_loop(pipeline_dir, scheduler, steps, z, **overrides)
    ours, _ = genbench_run(pipeline_dir, sampler, steps, z)
    rel = float((ours - ref).abs().max() / ref.abs().max())
    assert rel < TOLERANCE, f"{sampler} at {steps} steps: max relative difference {rel:.2e}"


# PNDMScheduler combines raw v outputs and converts the sum with the current sample (its Runge-Kutta stages
# even with the stage's start), while genbench converts each output to eps where it was evaluated: the two
# differ for v-prediction, so only DDIM and DPM-Solver++ are compared here.
@pytest.mark.parametrize("sampler,scheduler,overrides", [CASES[0], CASES[3]])
def test_v_prediction_and_trailing_spacing_equal_diffusers(v_trailing_dir, sampler, scheduler, overrides):
    z = init_noise()
    ref = diffusers_loop(v_trailing_dir, scheduler, 10, z, **overrides)
    ours, _ = genbench_run(v_trailing_dir, sampler, 10, z)
    assert float((ours - ref).abs().max() / ref.abs().max()) < TOLERANCE


@pytest.mark.parametrize("sampler,scheduler,overrides", CASES)
def test_ddim_pipeline_settings_equal_diffusers(ddim_settings_dir, sampler, scheduler, overrides):
    z = init_noise()
    ref = diffusers_loop(ddim_settings_dir, scheduler, 10, z, **overrides)
    ours, _ = genbench_run(ddim_settings_dir, sampler, 10, z)
    assert float((ours - ref).abs().max() / ref.abs().max()) < TOLERANCE


def test_adapter_is_a_generative_model_sampled_by_every_sampler_kind(pipeline_dir):
    from genbench.models.base import GenerativeModel

    model = load_external(f"diffusers:{pipeline_dir}")
    assert isinstance(model, GenerativeModel) and model.data_shape == (3, 8, 8)
    assert {"ddim", "pndm", "plms", "dpmpp_2m_discrete", "heun", "euler"} <= set(model.supported_samplers())
    noise = SeededNoise.for_run(0, 3)
    x, nfe = model.sample(noise, "heun", 4)
    assert x.shape == (3, 3, 8, 8) and nfe == 7 and float(x.abs().max()) <= 1.0
    with pytest.raises(UsageError, match="does not train"):
        model.fit(None, None, None)


def test_cli_sample_writes_the_diffusers_ddim_result(pipeline_dir, tmp_path):
    from genbench.cli import main

    z = init_noise(3)
    np.save(tmp_path / "z.npy", z.numpy())
    out = tmp_path / "s.npz"
    with pytest.raises(SystemExit) as e:
        main(["sample", f"diffusers:{pipeline_dir}", "--sampler", "ddim", "--steps", "10", "--init-noise",
              str(tmp_path / "z.npy"), "--batch-size", "2", "--device", "cpu", "--out", str(out)])
    assert e.value.code == 0
    f = np.load(out)
    ref = diffusers_loop(pipeline_dir, "DDIMScheduler", 10, z).clamp(-1, 1)
    assert f["samples"].shape == (3, 3, 8, 8) and f["samples"].dtype == np.float32
    assert float(f["nfe"]) == 10 and float(f["seconds"]) > 0
    np.testing.assert_allclose(f["samples"], ref.numpy(), atol=TOLERANCE, rtol=0)


# -- bad input: one line, exit 2 ----------------------------------------------------------------------


def cli_error(args, capsys) -> str:
    from genbench.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_path_that_is_not_a_pipeline(tmp_path, capsys):
    err = cli_error(["sample", f"diffusers:{tmp_path}", "--out", str(tmp_path / "s.npz")], capsys)
    assert "not a diffusers pipeline" in err and not (tmp_path / "s.npz").exists()


def _edit_scheduler(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    path = dst / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return dst


def test_unsupported_scheduler(pipeline_dir, tmp_path, capsys):
    bad = _edit_scheduler(pipeline_dir, tmp_path / "ve", _class_name="ScoreSdeVeScheduler")
    assert "ScoreSdeVeScheduler" in cli_error(["sample", f"diffusers:{bad}", "--out", str(tmp_path / "s.npz")], capsys)


def test_unsupported_prediction_type(pipeline_dir, tmp_path, capsys):
    bad = _edit_scheduler(pipeline_dir, tmp_path / "flow", prediction_type="flow_prediction")
    assert "flow_prediction" in cli_error(["sample", f"diffusers:{bad}", "--out", str(tmp_path / "s.npz")], capsys)


def test_init_noise_of_the_wrong_shape(pipeline_dir, tmp_path, capsys):
    np.save(tmp_path / "z.npy", np.zeros((2, 3, 4, 4), np.float32))
    err = cli_error(["sample", f"diffusers:{pipeline_dir}", "--sampler", "ddim", "--steps", "2", "--init-noise",
                     str(tmp_path / "z.npy"), "--out", str(tmp_path / "s.npz")], capsys)
    assert "(2, 3, 8, 8)" in err and not (tmp_path / "s.npz").exists()


def test_a_suite_sweeps_a_diffusers_model_into_the_leaderboard(tmp_path):
    import genbench

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    suite = tmp_path / "mine.yaml"
    suite.write_text(f"name: mine\nsettings: {{n_samples: 32, n_reference: 32, features: raw, metrics: [fid]}}\n"
                     f"runs:\n  - datasets: [digits]\n    models: ['diffusers:{tmp_path / 'pipe'}']\n"
                     f"    samplers: [ddim, dpmpp_2m_discrete, heun]\n    steps: [2, 4]\n")
    summary = genbench.run_suite(str(suite), out=tmp_path / "run", device="cpu", progress=False)
    assert summary.count("ok") == 6, [r.error for r in summary.records]
    df = genbench.load_results(tmp_path / "run")
    assert set(df["nfe"]) == {2, 4, 3, 7}  # ddim and dpmpp_2m_discrete: steps; heun: 2 steps - 1
    assert f"diffusers:{tmp_path / 'pipe'}" in summary.leaderboard.read_text()


def test_learned_variance_head_keeps_the_mean_channels():
    from genbench.external import DiffusersVPModel

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=6, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    model = DiffusersVPModel(unet, {"variance_type": "learned_range"}, "test")
    x = torch.randn(2, 3, 8, 8)
    t = torch.full((2,), 500.0)
    torch.testing.assert_close(model.model_output(x, t), unet(x, t).sample[:, :3])
    assert model.sample(SeededNoise.for_run(0, 2), "ddim", 3)[0].shape == (2, 3, 8, 8)
