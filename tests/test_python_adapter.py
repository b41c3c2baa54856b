"""``python:MODULE:FUNCTION`` models: the README's example end to end, factories of both kinds, bad input."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.errors import UsageError
from genbench.external import DenoiserModel, load_external
from genbench.models.base import GenerativeModel
from genbench.seeding import SeededNoise

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def readme_block(first_line: str) -> str:
    """The fenced code block of README.md whose first line is ``first_line``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), flags=re.S):
        if block.splitlines()[0] == first_line:
            return block
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


def readme_commands() -> list[list[str]]:
    return [line.split()[1:] for line in README.read_text().splitlines() if line.startswith("    genbench ")
            and "python:my_models" in line or line.startswith("    genbench run --suite mine.yaml")]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding a user's modules; their imports are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def cli(args: list[str]) -> int:
    from genbench.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def test_readme_example_samples_and_sweeps_into_the_leaderboard(user_dir, capsys):
    (user_dir / "my_models.py").write_text(readme_block("# my_models.py"))
    (user_dir / "mine.yaml").write_text(readme_block("# mine.yaml: the user's model through a sampler x steps sweep, into the leaderboard"))
    commands = readme_commands()
    assert [c[0] for c in commands] == ["sample", "run"]
    for args in commands:
        assert cli(args + ["--device", "cpu"] + (["--no-progress"] if args[0] == "run" else [])) == 0, capsys.readouterr().err
    f = np.load(user_dir / "samples.npz")
    # heun on the exact denoiser of N(0, 0.25 I) samples that Gaussian
    assert f["samples"].shape == (1000, 2) and float(f["nfe"]) == 35
    assert abs(float(f["samples"].std()) - 0.5) < 0.05
    board = (user_dir / "runs" / "mine" / "leaderboard.md").read_text()
    assert "python:my_models:make_model" in board
    import genbench

    df = genbench.load_results(user_dir / "runs" / "mine")
    assert len(df) == 6 and set(df["status"]) == {"ok"} and set(df["sampler"]) == {"euler", "heun", "dpmpp_2m"}


def test_factory_returning_a_generative_model(user_dir):
    (user_dir / "gm.py").write_text(
        "from genbench.models.base import build_model\n"
        "def make():\n    return build_model('tiny', (2,), 'points')\n")
    model = load_external("python:gm:make")
    assert isinstance(model, GenerativeModel) and model.family == "tiny"
    x, nfe = model.sample(SeededNoise.for_run(0, 4))
    assert x.shape == (4, 2) and nfe == 1


def test_factory_by_file_path_returning_a_denoiser_module(user_dir):
    (user_dir / "net.py").write_text(
        "import torch\n"
        "class D(torch.nn.Module):\n"
        "    def forward(self, x, sigma):\n        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)\n"
        "def make():\n    return D(), (1, 4, 4)\n")
    model = load_external(f"python:{user_dir / 'net.py'}:make")
    assert isinstance(model, DenoiserModel) and model.modality == "images"
    x, nfe = model.sample(SeededNoise.for_run(0, 3), "euler", 5)
    assert x.shape == (3, 1, 4, 4) and nfe == 5 and float(x.abs().max()) <= 1.0


@pytest.mark.parametrize("source,ref,message", [
    ("raise ImportError('no torch_geometric')\n", "python:broken:make", "does not import"),
    ("def make(:\n", "python:broken:make", "does not import"),
    ("def other():\n    return 1\n", "python:broken:make", "no function 'make'"),
    ("def make():\n    return 42\n", "python:broken:make", "returned a int"),
    ("def make():\n    return (lambda x, s: x), 'shape'\n", "python:broken:make", "returned a tuple"),
    ("", "python:broken", "python:MODULE:FUNCTION"),
    ("", "python:no_such_module_xyz:make", "does not import"),
])
def test_bad_python_models_are_one_line_usage_errors(user_dir, capsys, source, ref, message):
    (user_dir / "broken.py").write_text(source)
    with pytest.raises(UsageError, match=re.escape(message)):
        load_external(ref)
    assert cli(["sample", ref, "--out", str(user_dir / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (user_dir / "s.npz").exists()


def test_init_noise_is_the_initial_state_of_an_edm_model(user_dir):
    # x_T = sigma_max * noise; with D(x; sigma) = x every Euler step keeps x, so the file's rows come out times 80
    (user_dir / "ident.py").write_text("def make():\n    return (lambda x, sigma: x), (3,)\n")
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    np.save(user_dir / "z.npy", z.numpy())
    assert cli(["sample", "python:ident:make", "--sampler", "euler", "--steps", "3", "--init-noise",
                str(user_dir / "z.npy"), "--out", str(user_dir / "s.npz"), "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(user_dir / "s.npz")["samples"], 80.0 * z.numpy(), rtol=1e-6)


def test_suite_refuses_a_user_model_of_another_shape(user_dir):
    from genbench.suite import expand_suite, load_suite

    (user_dir / "three.py").write_text("def make():\n    return (lambda x, sigma: x), (3,)\n")
    (user_dir / "s.yaml").write_text("name: s\nruns:\n  - datasets: [toy2d:8gaussians]\n    models: [python:three:make]\n")
    with pytest.raises(UsageError, match=r"shape \(3,\)"):
        expand_suite(load_suite(str(user_dir / "s.yaml")))


def test_factory_returning_a_discrete_vp_model_takes_the_vp_samplers(user_dir):
    # the exact eps model of N(1, 0.5^2) under the linear schedule: E[eps | x_t] (tests/convergence.py)
    (user_dir / "eps.py").write_text(
        "from genbench.samplers.vp import VPSchedule\n"
        "class Gaussian:\n"
        "    vp_schedule = VPSchedule()\n"
        "    prediction_type = 'epsilon'\n"
        "    scheduler_config = {'clip_sample': False, 'timestep_spacing': 'trailing'}\n"
        "    def model_output(self, x_t, t):\n"
        "        ab = self.vp_schedule.alphas_cumprod[t.long()].to(x_t).reshape(-1, 1)\n"
        "        return (1 - ab).sqrt() * (x_t - ab.sqrt()) / (ab * 0.25 + 1 - ab)\n"
        "def make():\n    return Gaussian(), (1,)\n")
    model = load_external("python:eps:make")
    assert model.family == "vp" and {"ddim", "pndm", "dpmpp_2m_discrete", "heun"} <= set(model.supported_samplers())
    x, nfe = model.sample(SeededNoise.for_run(0, 2000), "dpmpp_2m_discrete", 20)
    assert nfe == 20 and abs(float(x.mean()) - 1.0) < 0.05 and abs(float(x.std()) - 0.5) < 0.04
