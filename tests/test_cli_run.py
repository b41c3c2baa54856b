"""`genbench run` and the commands over its store: seeds, reuse, warnings, --quiet/--log-json,
results formats and --aggregate seeds, `genbench leaderboard`; and the CLI's help and usage errors."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from typer.testing import CliRunner

from genbench.cli import app

SUITE = """
name: clitiny
settings: {n_samples: 80, n_reference: 80, train: {steps: 20}, metrics: [fid, precision, recall]}
runs:
  - datasets: [toy2d:8gaussians]
    models: [diffusion, tiny]
    samplers: [euler]
    steps: [2]
"""


TINY_ONLY = """
name: clitiny
settings: {n_samples: 80, n_reference: 80, metrics: [fid, precision, recall]}
runs:
  - datasets: [toy2d:8gaussians, toy2d:moons]
    models: [tiny]
"""


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def suite(tmp_path):
    p = tmp_path / "clitiny.yaml"
    p.write_text(textwrap.dedent(SUITE))
    return p


def test_seeds_accumulate_on_the_leaderboard_and_reuse_is_reported(tmp_path):
    suite, out = tmp_path / "clitiny.yaml", tmp_path / "run"
    suite.write_text(textwrap.dedent(TINY_ONLY))
    first = invoke("run", "--suite", suite, "--out", out, "--seed", "0", "--no-progress")
    assert first.exit_code == 0, first.output
    assert "2 ok, 0 failed, 0 skipped (0 reused, 2 run)" in first.stderr
    second = invoke("run", "--suite", suite, "--out", out, "--seed", "1", "--no-progress")
    assert second.exit_code == 0, second.output
    md = (out / "leaderboard.md").read_text()
    # seed 0's rows stay on the leaderboard of the store that keeps them: 2 configurations x 2 seeds
    assert re.search(r"\b2 seeds\b|mean ± std|± ", md), md
    rows = json.loads(invoke("results", out, "--format", "json").stdout)
    assert sorted((r["spec"]["dataset"], r["spec"]["seed"]) for r in rows) == [
        ("toy2d:8gaussians", 0), ("toy2d:8gaussians", 1), ("toy2d:moons", 0), ("toy2d:moons", 1)]
    csv = (out / "leaderboard.csv").read_text().splitlines()
    assert len(csv) == 1 + 4

    again = invoke("run", "--suite", suite, "--out", out, "--seeds", "0,1", "--no-progress")
    assert again.exit_code == 0, again.output
    assert "4 ok, 0 failed, 0 skipped (4 reused, 0 run)" in again.stderr

    agg = invoke("results", out, "--aggregate", "seeds")
    assert agg.exit_code == 0, agg.output
    lines = [ln for ln in agg.stdout.splitlines() if "toy2d:" in ln]
    assert len(lines) == 2 and all(" ± " in ln and "0,1" in ln for ln in lines)
    agg_json = json.loads(invoke("results", out, "--aggregate", "seeds", "--format", "json").stdout)
    fids = {r["dataset"]: r for r in agg_json}
    per_seed = [r["metrics"]["fid"] for r in rows if r["spec"]["dataset"] == "toy2d:moons"]
    assert fids["toy2d:moons"]["fid"] == pytest.approx(sum(per_seed) / 2)
    assert fids["toy2d:moons"]["fid_seed_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)

    # the leaderboard is redrawn from the store alone
    (out / "leaderboard.md").unlink()
    lb = invoke("leaderboard", out, "--publish", "--publish-dir", tmp_path / "pub")
    assert lb.exit_code == 0, lb.output
    assert (out / "leaderboard.md").read_text() == md
    assert (tmp_path / "pub" / "clitiny.md").is_file()


def test_quiet_and_event_log(tmp_path, suite):
    out, log = tmp_path / "run", tmp_path / "logs" / "events.jsonl"
    res = invoke("run", "--suite", suite, "--out", out, "--quiet", "--log-json", log)
    assert res.exit_code == 0, res.output
    assert "run  " not in res.stderr and "leaderboard:" not in res.stderr and "2 ok, 0 failed, 0 skipped (0 reused, 2 run)" in res.stderr
    # the model no listed sampler fits runs with native, and the run says so, even with --quiet
    assert "note: " in res.stderr and "tiny (tiny) supports none of the samplers euler" in res.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    for key in {e["key"] for e in events}:
        assert [e["event"] for e in events if e["key"] == key] == ["spec_started", "trained", "sampled", "evaluated"]
    evaluated = [e for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == 2 and all("fid" in e["metrics"] for e in evaluated)
    invoke("run", "--suite", suite, "--out", out, "--quiet", "--log-json", log)
    assert [json.loads(line)["event"] for line in log.read_text().splitlines()][-2:] == ["reused", "reused"]


def test_run_prints_the_warnings_of_its_records(tmp_path):
    p = tmp_path / "mixed.yaml"
    p.write_text(textwrap.dedent("""
        name: mixed
        settings: {n_reference: 80, train: {steps: 20}, metrics: [fid]}
        runs:
          - {datasets: [toy2d:8gaussians], models: [tiny], settings: {n_samples: 60}}
          - {datasets: [toy2d:8gaussians], models: [tiny], settings: {n_samples: 90}}
        """))
    res = invoke("run", "--suite", p, "--out", tmp_path / "run", "--no-progress")
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert any("different numbers of generated samples" in w and "60" in w and "90" in w for w in warnings), res.stderr


def test_results_formats_and_their_mistakes(tmp_path, suite):
    out = tmp_path / "run"
    assert invoke("run", "--suite", suite, "--out", out, "--no-progress").exit_code == 0
    latex = invoke("results", out, "--format", "latex")
    assert latex.exit_code == 0 and "\\toprule" in latex.stdout and "\\bottomrule" in latex.stdout
    no_out = invoke("results", out, "--format", "parquet")
    assert no_out.exit_code == 2 and "--out" in no_out.stderr
    pytest.importorskip("pyarrow")
    import pandas as pd

    res = invoke("results", out, "--format", "parquet", "--out", tmp_path / "r.parquet")
    assert res.exit_code == 0, res.output
    frame = pd.read_parquet(tmp_path / "r.parquet")
    assert sorted(frame["model"]) == ["diffusion", "tiny"] and "fid" in frame.columns
    written = invoke("results", out, "--format", "csv", "--out", tmp_path / "r.csv")
    assert written.exit_code == 0 and (tmp_path / "r.csv").read_text().startswith("suite,")


# --- help and usage errors --------------------------------------------------------------------

def test_help_keeps_text_in_square_brackets():
    res = invoke("run", "--help", env={"COLUMNS": "250"})
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    assert "[default: genbench-runs/SUITE]" in text
    assert "genbench[ray]" in text
    assert "local|ray" in text  # --executor is an Enum: help lists its values
    assert "[default: $GENBENCH_CACHE or ~/.cache/genbench]" in text
    assert "dataset:NAME[:SPLIT]" in " ".join(invoke("eval", "--help", env={"COLUMNS": "250"}).stdout.split())


def test_version():
    from genbench import __version__

    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"genbench {__version__}"


@pytest.mark.parametrize("args, message", [
    (["run", "--executor", "dask"], "--executor"),
    (["run", "--seeds", "0,x"], "--seeds"),
    (["run", "--seed", "1", "--seeds", "0,1"], "not both"),
    (["eval", "a", "b", "--bootstrap", "-1"], "--bootstrap"),
    (["ls", "sampler"], "Did you mean 'samplers'"),
])
def test_usage_errors_name_the_flag(args, message, capsys):
    from genbench.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("genbench: error: ") and message in err
    assert "Error" not in err and "Traceback" not in err  # no internal class name (ValidationError, ...)


def test_unknown_executor_from_python_is_a_usage_error(suite, tmp_path):
    from genbench.errors import UsageError
    from genbench.pipeline import run_suite

    with pytest.raises(UsageError, match="unknown executor 'dask'.*local, ray"):
        run_suite(str(suite), out=tmp_path / "x", executor="dask", progress=False)
    assert not (tmp_path / "x").exists()
