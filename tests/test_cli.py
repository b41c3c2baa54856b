"""The CLI through Typer's CliRunner: run, results, ls, eval, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg
from typer.testing import CliRunner

from genbench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("kind, expected", [
    ("datasets", ["toy2d:8gaussians", "digits"]),
    ("features", ["raw"]),
    ("metrics", ["fid", "kid", "precision", "recall"]),
    ("models", ["tiny", "family:tiny"]),
    ("samplers", ["native"]),
    ("suites", ["smoke", "default"]),
])
def test_ls_lists_registered_things_with_descriptions(kind, expected):
    res = invoke("ls", kind)
    assert res.exit_code == 0, res.output
    names = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    for name in expected:
        assert name in names
        assert len(names[name].split()) > 1, f"{name} has no description"


def test_ls_unknown_kind_is_usage_error():
    res = invoke("ls", "modelz")
    assert res.exit_code == 2


def fid_numpy(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_eval_points_json(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3)).astype(np.float32)
    b = (rng.normal(size=(300, 3)) + 0.5).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", b)
    res = invoke("eval", tmp_path / "a.npy", tmp_path / "b.npz", "--features", "raw", "--metrics", "fid,precision,recall", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n1"] == 400 and out["n2"] == 300 and out["features"] == "raw"
    assert out["fid"] == pytest.approx(fid_numpy(a.astype(np.float64), b.astype(np.float64)), rel=1e-6)
    assert 0.0 <= out["precision"] <= 1.0 and 0.0 <= out["recall"] <= 1.0
    assert "kid_mean" not in out


def test_eval_missing_input_is_one_line_exit_2(tmp_path):
    res = invoke("eval", tmp_path / "nope", tmp_path / "nope2", "--features", "raw", "--json")
    assert res.exit_code == 2
    assert res.stdout == ""
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "Traceback" not in res.stderr


def test_eval_unknown_metric_did_you_mean(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 2), np.float32))
    res = invoke("eval", tmp_path / "a.npy", tmp_path / "a.npy", "--metrics", "fdi")
    assert res.exit_code == 2
    assert "Did you mean 'fid'" in res.stderr


def test_smoke_suite_end_to_end_and_idempotent(tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--suite", "smoke", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    assert (out / "results.sqlite").is_file()
    md = (out / "leaderboard.md").read_text()
    assert "## toy2d:8gaussians" in md and "## digits" in md
    assert "fid ↓" in md and "precision ↑" in md and "## Provenance" in md

    first = json.loads(invoke("results", out, "--format", "json").stdout)
    assert first and all(r["status"] == "ok" for r in first)
    assert all(r["provenance"]["n_fake"] == r["spec"]["n_samples"] for r in first)
    for r in first:
        assert r["metrics"]["fid"] >= 0 and r["metrics"]["nfe"] >= 1

    # a second run finds every spec stored and changes nothing
    res = invoke("run", "--suite", "smoke", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    second = json.loads(invoke("results", out, "--format", "json").stdout)
    assert [(r["key"], r["created_at"], r["metrics"]) for r in second] == [(r["key"], r["created_at"], r["metrics"]) for r in first]

    csv = invoke("results", out, "--format", "csv").stdout
    assert csv.splitlines()[0].startswith("suite,dataset,model")
    assert len(csv.strip().splitlines()) == len(first) + 1
    table = invoke("results", out, "--format", "table")
    assert table.exit_code == 0 and "toy2d:8gaussians" in table.stdout
    assert "## digits" in invoke("results", out, "--format", "markdown").stdout


def test_publish_writes_leaderboards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "--suite", "smoke", "--out", tmp_path / "r", "--publish", "--no-progress")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "leaderboards" / "smoke.md").is_file()
    assert (tmp_path / "leaderboards" / "smoke.csv").read_text().startswith("suite,")


def test_results_of_missing_dir_is_usage_error(tmp_path):
    res = invoke("results", tmp_path / "none")
    assert res.exit_code == 2 and "genbench run" in res.stderr


def test_stats_file_is_accepted_as_the_reference(tmp_path):
    stats_file = tmp_path / "digits-test.safetensors"
    res = invoke("stats", "digits:test", "--features", "domain:digits", "--out", stats_file, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert stats_file.is_file() and "360 examples" in res.stdout
    common = ["--features", "domain:digits", "--metrics", "fid,precision,recall", "--json", "--device", "cpu"]
    from_stats = json.loads(invoke("eval", "dataset:digits:train", stats_file, *common).stdout)
    from_data = json.loads(invoke("eval", "dataset:digits:train", "dataset:digits:test", *common).stdout)
    assert from_stats["n2"] == from_data["n2"] == 360
    for key in ("fid", "precision", "recall"):
        assert from_stats[key] == pytest.approx(from_data[key], rel=1e-9)
    assert from_stats["fid"] > 0


def test_leaderboard_warns_when_rows_differ_in_n():
    from genbench.report.leaderboard import render_markdown
    from genbench.spec import OK, Record, RunSpec

    def rec(n):
        spec = RunSpec(suite="s", dataset="toy2d:moons", model="tiny", family="tiny", recipe_hash="r", sampler="native",
                       steps=None, seed=n, n_samples=n, n_reference=50, metrics=("fid",), features="raw")
        return Record(spec, OK, {"fid": 1.0 / n}, provenance={"n_fake": n, "n_real": 50})

    md = render_markdown([rec(100), rec(200)], "s", "fid")
    assert "> warning: results compared at different numbers of generated samples (n1): 100, 200" in md
    assert "> warning" not in render_markdown([rec(100)], "s", "fid")
