"""Sampling options (guidance, eta, temperature): swept by suites like steps, part of the spec and its
hash only when present, passed to the family's ``sample``, shown in every table; ``genbench sample --option``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genbench.cli import app
from genbench.errors import UsageError
from genbench.spec import RunSpec, options_label
from genbench.suite import load_suite, plan_suite

SUITE = """
name: opts
settings: {n_samples: 200, n_reference: 200, metrics: [fid, precision, recall, nll]}
runs:
  - datasets: [toy2d:8gaussians]
    models: [tiny]
    options: {temperature: [0.5, 1.0, 2]}
  - datasets: [toy2d:8gaussians]
    models: [tiny]
"""


def _spec(**kw) -> RunSpec:
    base = dict(suite="x", dataset="toy2d:8gaussians", model="tiny", family="tiny", recipe_hash="abc", sampler="native",
                steps=None, seed=0, n_samples=100, n_reference=100, metrics=("fid",), features="raw")
    return RunSpec(**{**base, **kw})


def test_specs_without_options_keep_the_keys_they_had_before_options_existed():
    # the key of this spec as genbench computed it before RunSpec had an options field (commit 28d5c6d)
    assert _spec().key == "b4c1e8a8c7be4dfcfa8217f236cf421a686e8e7e0bf934ff4bc36899c8ab42a8"
    assert _spec(options={}).key == _spec().key


def test_options_enter_the_key_and_the_label():
    a, b = _spec(options={"temperature": 0.5}), _spec(options={"temperature": 2})
    assert len({a.key, b.key, _spec().key}) == 3
    assert RunSpec.from_dict(a.to_dict()) == a and RunSpec.from_dict(a.to_dict()).key == a.key
    assert a.label().endswith("native [temperature=0.5] | seed 0")
    assert options_label({"guidance": 1.5, "eta": 0}) == " [guidance=1.5, eta=0]"


def _write(tmp_path, text=SUITE):
    p = tmp_path / "opts.yaml"
    p.write_text(text)
    return p


def test_a_grid_sweeps_every_option_value(tmp_path):
    specs = plan_suite(load_suite(str(_write(tmp_path)))).specs
    assert [s.options for s in specs] == [{"temperature": 0.5}, {"temperature": 1.0}, {"temperature": 2}, {}]
    two = SUITE.replace("options: {temperature: [0.5, 1.0, 2]}", "options: {temperature: [0.5, 1.0]}\n    seeds: [0, 1]")
    specs = plan_suite(load_suite(str(_write(tmp_path, two)))).specs
    assert [(s.options.get("temperature"), s.seed) for s in specs[:4]] == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]


@pytest.mark.parametrize("options, message", [
    ("{guidance: [1, 2]}", "has no sampling option 'guidance'; it takes temperature"),
    ("{temperature: [0, 1]}", "must be a positive number"),
    ("{temperature: [1, 1]}", "list of distinct"),
    ("[1, 2]", "must be a mapping of sampling options"),
    ("{temperature: [true]}", "list of distinct"),
])
def test_bad_options_are_refused_at_expansion(tmp_path, options, message):
    text = SUITE.replace("{temperature: [0.5, 1.0, 2]}", options)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(")):
        plan_suite(load_suite(str(_write(tmp_path, text))))


def test_families_without_options_refuse_them(tmp_path):
    text = SUITE.replace("models: [tiny]\n    options", "models: [vae]\n    options")
    with pytest.raises(UsageError, match="'vae' with sampler 'native' has no sampling option 'temperature'; it takes no sampling"):
        plan_suite(load_suite(str(_write(tmp_path, text))))


def test_options_reach_the_model_and_every_table(tmp_path):
    from genbench.pipeline import run_suite
    from genbench.report.leaderboard import render_markdown
    from genbench.store import ResultsStore, load_results

    run_suite(str(_write(tmp_path)), out=tmp_path / "run", progress=False)
    recs = {json.dumps(r.spec.options): r for r in ResultsStore(tmp_path / "run").records()}
    assert set(recs) == {'{"temperature": 0.5}', '{"temperature": 1.0}', '{"temperature": 2}', "{}"}
    assert all(r.status == "ok" for r in recs.values())
    # the tiny Gaussian at T = 1 is the fitted model: closest to the data; T = 0.5 and 2 are worse, and
    # temperature 1 is the same experiment as no option (same samples, different key)
    fid = {k: r.metrics["fid"] for k, r in recs.items()}
    assert fid['{"temperature": 1.0}'] == pytest.approx(fid["{}"], rel=1e-9)
    assert fid['{"temperature": 0.5}'] > 2 * fid["{}"] and fid['{"temperature": 2}'] > 2 * fid["{}"]
    # recall falls at T = 0.5 (samples shrink to the centre), precision at T = 2 (they spread out)
    assert recs['{"temperature": 0.5}'].metrics["recall"] < recs["{}"].metrics["recall"]
    assert recs['{"temperature": 2}'].metrics["precision"] < recs["{}"].metrics["precision"]
    md = render_markdown(list(recs.values()), "opts", "fid", "")
    assert "native [temperature=0.5]" in md and "native [temperature=2]" in md
    df = load_results(tmp_path / "run")
    assert sorted(df["options"].fillna("").tolist()) == ["", '{"temperature": 0.5}', '{"temperature": 1.0}', '{"temperature": 2}']
    out = CliRunner().invoke(app, ["results", str(tmp_path / "run"), "--format", "table"])
    assert out.exit_code == 0 and '{"temperature": 2}' in out.output


def test_sample_command_passes_options(tmp_path):
    from genbench.models.tiny import TinyGaussian
    from genbench.sampling_api import draw

    m = TinyGaussian((2,), "points")
    m.scale_tril.copy_(torch.eye(2) * 3)
    one = draw(m, n=50, seed=3).samples
    half = draw(m, n=50, seed=3, options={"temperature": 0.5}).samples
    torch.testing.assert_close(half, one * 0.5)
    with pytest.raises(UsageError, match="no sampling option 'eta'"):
        draw(m, n=4, options={"eta": 1})
    # on the command line: a recipe model with --option, and the one-line errors
    run = CliRunner().invoke(app, ["sample", "tiny", "--dataset", "toy2d:8gaussians", "--n", "8", "--option", "temperature=0.25",
                                   "--out", str(tmp_path / "s.npz")])
    assert run.exit_code == 0, run.output
    z = np.load(tmp_path / "s.npz")
    assert json.loads(str(z["options"])) == {"temperature": 0.25}
    for bad, msg in ((["--option", "temperature"], "must be NAME=VALUE"), (["--option", "eta=1"], "no sampling option 'eta'"),
                     (["--option", "temperature=1", "--option", "temperature=2"], "given twice")):
        run = CliRunner().invoke(app, ["sample", "tiny", "--dataset", "toy2d:8gaussians", "--n", "8", *bad, "--out",
                                       str(tmp_path / "t.npz")])
        assert run.exit_code == 2 and msg in run.output and "Traceback" not in run.output
    assert not (tmp_path / "t.npz").exists()


def test_glow_temperature_option_scales_its_latents():
    from genbench.models.glow import Glow
    from genbench.seeding import SeededNoise

    torch.manual_seed(0)
    g = Glow((1, 8, 8), "images", n_levels=1, n_steps=1, hidden=8).eval()
    def noise():  # per-sample generators advance as they draw: fresh ones for each pass
        return SeededNoise.for_run(0, 4, "cpu")

    x1, _ = g.sample(noise(), temperature=1.0)
    x0, _ = g.sample(noise())  # the recipe's temperature (1.0 here)
    torch.testing.assert_close(x0, x1)
    x7, _ = g.sample(noise(), temperature=0.7)
    assert not torch.allclose(x7, x1)
    with pytest.raises(UsageError, match="positive number"):
        g.sample(noise(), temperature=-1.0)
