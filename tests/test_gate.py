"""genbench compare / baseline / check: the pure functions of genbench.gate, the CLI's exit codes,
and the GitHub Actions workflow in docs/ci, whose exact genbench lines run here on a tiny suite."""

from __future__ import annotations

import json
import os
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from genbench import gate
from genbench.cli import app
from genbench.errors import UsageError
from genbench.spec import FAILED, OK, Record, RunSpec
from genbench.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "genbench-gate.yml"


def spec(seed=0, model="tiny", n=100, sampler="native", steps=None):
    return RunSpec(suite="s", dataset="toy2d:moons", model=model, family="tiny", recipe_hash="r", sampler=sampler,
                   steps=steps, seed=seed, n_samples=n, n_reference=n, metrics=(), features="raw")


def rec(seed=0, status=OK, ci=None, **metrics):
    return Record(spec(seed), status, metrics, ci or {}, error=None if status == OK else "RuntimeError: diverged")


def row(table, metric):
    (r,) = table[table["metric"] == metric].to_dict(orient="records")
    return r


# --- compare ----------------------------------------------------------------------------------

def test_compare_by_intervals_and_direction():
    a = [rec(fid=1.0, precision=0.8, ci={"fid": (0.9, 1.1), "precision": (0.75, 0.85)})]
    b = [rec(fid=2.0, precision=0.82, ci={"fid": (1.8, 2.2), "precision": (0.78, 0.86)})]
    t = gate.compare(a, b)
    fid = row(t, "fid")
    assert (fid["a"], fid["b"], fid["diff"]) == (1.0, 2.0, 1.0)
    assert fid["better"] == "a" and fid["significant"] is True and fid["basis"] == "intervals"
    prec = row(t, "precision")
    assert prec["better"] == "b" and prec["significant"] is False  # intervals overlap
    assert prec["diff"] == pytest.approx(0.02) and prec["rel_diff"] == pytest.approx(0.025)


def test_compare_without_intervals_has_unknown_significance():
    t = gate.compare([rec(fid=1.0)], [rec(fid=1.5)])
    assert row(t, "fid")["significant"] is None and row(t, "fid")["basis"] == "none"


def test_compare_aggregates_seeds_with_welch_test():
    a = [rec(seed=s, fid=v) for s, v in enumerate([1.00, 1.02, 0.98])]
    b_far = [rec(seed=s, fid=v) for s, v in enumerate([1.50, 1.52, 1.48])]
    b_near = [rec(seed=s, fid=v) for s, v in enumerate([1.01, 0.97, 1.04])]
    far = row(gate.compare(a, b_far), "fid")
    assert far["a"] == pytest.approx(1.0) and far["b"] == pytest.approx(1.5)
    assert far["n_seeds_a"] == 3 and far["significant"] is True and far["basis"] == "seeds"
    assert row(gate.compare(a, b_near), "fid")["significant"] is False


def test_summarise_gives_the_t_interval_of_the_mean_across_seeds():
    s = gate.summarise(gate.records_to_long([rec(seed=i, fid=v) for i, v in enumerate([1.0, 2.0, 3.0])]))
    r = s.iloc[0]
    assert r["value"] == 2.0 and r["std"] == 1.0 and r["n_seeds"] == 3
    # t_{0.975, 2} = 4.302653; half-width t * s / sqrt(3)
    assert r["ci_high"] - r["value"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)


def test_compare_of_stores_without_common_spec_is_usage_error():
    other = [Record(spec(n=200), OK, {"fid": 1.0})]
    with pytest.raises(UsageError, match="no successful spec in common"):
        gate.compare([rec(fid=1.0)], other)


def test_compare_leaves_out_spreads():
    t = gate.compare([rec(kid_mean=0.1, kid_std=0.01)], [rec(kid_mean=0.1, kid_std=0.02)])
    assert set(t["metric"]) == {"kid_mean"}


# --- check ------------------------------------------------------------------------------------

def test_check_flags_a_significant_worsening_beyond_tolerance():
    base = [rec(fid=1.0, recall=0.9, ci={"fid": (0.9, 1.1), "recall": (0.85, 0.95)})]
    worse = [rec(fid=1.5, recall=0.7, ci={"fid": (1.4, 1.6), "recall": (0.65, 0.75)})]
    reg = gate.check(base, worse)
    assert sorted(reg["metric"]) == ["fid", "recall"]
    assert row(reg, "recall")["worse_by"] == pytest.approx(0.2)  # higher is better: a drop is worse
    # a tolerance above the change passes; a relative one is a fraction of the baseline
    assert gate.check(base, worse, gate.parse_tolerances(["fid=0.6", "recall=0.25"])).empty
    assert list(gate.check(base, worse, gate.parse_tolerances(["fid=40%", "recall=0.25"]))["metric"]) == ["fid"]
    assert gate.check(base, worse, gate.parse_tolerances(["fid=60%", "recall=0.25"])).empty


def test_check_passes_a_worsening_inside_the_interval_and_any_improvement():
    base = [rec(fid=1.0, ci={"fid": (0.8, 1.2)})]
    assert gate.check(base, [rec(fid=1.1, ci={"fid": (0.9, 1.3)})]).empty  # intervals overlap
    assert gate.check(base, [rec(fid=0.5, ci={"fid": (0.45, 0.55)})]).empty  # better
    # without intervals the tolerance alone decides
    assert list(gate.check([rec(fid=1.0)], [rec(fid=1.1)])["metric"]) == ["fid"]
    assert gate.check([rec(fid=1.0)], [rec(fid=1.0 + 1e-9)]).empty  # float noise is never a regression


def test_check_ignores_wall_clock_unless_a_tolerance_names_it():
    base, slow = [rec(fid=1.0, sample_s_per_1k=1.0)], [rec(fid=1.0, sample_s_per_1k=3.0)]
    assert gate.check(base, slow).empty
    reg = gate.check(base, slow, gate.parse_tolerances(["sample_s_per_1k=50%"]))
    assert list(reg["metric"]) == ["sample_s_per_1k"]


def test_check_reports_a_spec_that_now_fails():
    reg = gate.check([rec(fid=1.0)], [rec(status=FAILED)])
    assert list(reg["metric"]) == ["status"] and reg.iloc[0]["current"] == FAILED


@pytest.mark.parametrize("items, message", [
    (["fdi=1"], "Did you mean 'fid'"),
    (["fid=-1"], "METRIC=VALUE"),
    (["fid"], "METRIC=VALUE"),
    (["fid=nan"], "METRIC=VALUE"),
])
def test_bad_tolerances_are_usage_errors(items, message):
    with pytest.raises(UsageError, match=message):
        gate.parse_tolerances(items)


def test_tolerance_for_a_metric_no_spec_reports_is_usage_error():
    with pytest.raises(UsageError, match="'is_mean'"):
        gate.check([rec(fid=1.0)], [rec(fid=1.0)], gate.parse_tolerances(["is_mean=1"]))


def test_baseline_round_trip_and_bad_files(tmp_path):
    records = [rec(fid=1.0, ci={"fid": (0.9, 1.1)}), Record(spec(seed=1), FAILED, error="x")]
    path = gate.write_baseline(gate.make_baseline(records, "runs/x"), tmp_path / "b.json")
    (back,) = gate.read_baseline(path)  # only ok records are kept
    assert back.metrics == {"fid": 1.0} and back.ci == {"fid": (0.9, 1.1)} and back.key == records[0].key
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"records": []}))
    for p, msg in [(tmp_path / "none.json", "does not exist"), (tmp_path, "is a directory"),
                   (tmp_path / "bad.json", "cannot be read"), (tmp_path / "other.json", "not a genbench baseline")]:
        with pytest.raises(UsageError, match=msg):
            gate.read_baseline(p)
    with pytest.raises(UsageError, match="no successful run"):
        gate.make_baseline([Record(spec(), FAILED, error="x")])


# --- CLI --------------------------------------------------------------------------------------

def store_of(path, records):
    store = ResultsStore(path)
    for r in records:
        store.put(r)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_compare_baseline_check_exit_codes(tmp_path):
    a = store_of(tmp_path / "a", [rec(seed=s, fid=1.0 + 0.01 * s, precision=0.8) for s in range(3)])
    b = store_of(tmp_path / "b", [rec(seed=s, fid=2.0 + 0.01 * s, precision=0.8) for s in range(3)])
    out = invoke("compare", a, b, "--json")
    assert out.exit_code == 0, out.output
    rows = {r["metric"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["fid"]["significant"] is True and rows["fid"]["diff"] == pytest.approx(1.0)
    assert rows["precision"]["significant"] is False and rows["precision"]["steps"] is None
    assert "fid" in invoke("compare", a, b).stdout

    assert invoke("baseline", a, "--out", tmp_path / "base.json").exit_code == 0
    same = invoke("check", "--baseline", tmp_path / "base.json", "--results", a)
    assert same.exit_code == 0 and "check passed" in same.stdout
    worse = invoke("check", "--baseline", tmp_path / "base.json", "--results", b, "--json")
    assert worse.exit_code == 1
    report = json.loads(worse.stdout)
    assert report["passed"] is False and [r["metric"] for r in report["regressions"]] == ["fid"]
    table = invoke("check", "--baseline", tmp_path / "base.json", "--results", b)
    assert table.exit_code == 1 and "fid" in table.stdout and "1 regression in 1 spec" in table.stderr
    assert invoke("check", "--baseline", tmp_path / "base.json", "--results", b, "--tolerance", "fid=150%").exit_code == 0

    other = store_of(tmp_path / "c", [Record(spec(n=7), OK, {"fid": 1.0})])
    for args in (["--baseline", tmp_path / "nope.json", "--results", a],
                 ["--baseline", tmp_path / "base.json", "--results", other],
                 ["--baseline", tmp_path / "base.json", "--results", a, "--tolerance", "fdi=1"],
                 ["--baseline", tmp_path / "base.json", "--results", tmp_path / "missing"]):
        res = invoke("check", *args)
        assert res.exit_code == 2, (args, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


# --- the GitHub Actions workflow --------------------------------------------------------------

TINY_SUITE = """
name: quality
settings: {n_samples: 200, n_reference: 200, train: {steps: 30}, bootstrap: 20, metrics: [fid, precision, recall]}
runs:
  - datasets: [toy2d:8gaussians]
    models: [tiny]
"""
LINE = re.compile(r"^genbench (?P<args>[^|&;<>`]*?)(?: >> (?P<append>\S+))?$")


def genbench_lines(step: dict) -> list[str]:
    """The lines of a step's `run:` block; each must be a plain genbench command (optionally `>> FILE`)."""
    lines = [ln.strip() for ln in step["run"].splitlines() if ln.strip()]
    for ln in lines:
        assert LINE.match(ln), f"workflow line is not a plain genbench command the test can run: {ln!r}"
    return lines


def run_line(line: str) -> int:
    """One workflow line as bash would run it: variables expanded, words split, stdout appended to a file."""
    m = LINE.match(line)
    res = CliRunner().invoke(app, shlex.split(os.path.expandvars(m["args"])))
    if m["append"]:
        with open(os.path.expandvars(m["append"]).strip('"'), "a") as f:
            f.write(res.stdout)
    return res.exit_code


def run_step(job: dict, name: str) -> int:
    """A step's lines in order, stopping at the first that fails (bash -e); returns the exit status."""
    (step,) = [st for st in job["steps"] if st.get("name") == name]
    for line in genbench_lines(step):
        code = run_line(line)
        if code:
            return code
    return 0


def test_workflow_gates_on_its_exact_commands(tmp_path, monkeypatch):
    wf = yaml.safe_load(WORKFLOW.read_text())
    jobs = wf["jobs"]
    steps = {j: [st["name"] for st in jobs[j]["steps"] if "genbench " in st.get("run", "")] for j in jobs}
    assert steps == {"gate": ["Run the suite", "Check against the baseline"],
                     "baseline": ["Run the suite and write the baseline"]}
    work = tmp_path / "repo"
    (work / "benchmarks").mkdir(parents=True)
    monkeypatch.chdir(work)
    for k, v in wf["env"].items():
        monkeypatch.setenv(k, str(v).replace("${{ github.workspace }}", str(work)))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (work / os.environ["GENBENCH_SUITE"]).write_text(textwrap.dedent(TINY_SUITE))

    assert run_step(jobs["baseline"], "Run the suite and write the baseline") == 0
    baseline_file = work / os.environ["GENBENCH_BASELINE"]
    baseline = json.loads(baseline_file.read_text())
    assert sorted(r["spec"]["seed"] for r in baseline["records"]) == [0, 1, 2]
    assert (work / ".genbench-cache" / "checkpoints").is_dir()  # the workflow's cache, the one actions/cache keeps

    assert run_step(jobs["gate"], "Run the suite") == 0
    assert run_step(jobs["gate"], "Check against the baseline") == 0
    text = summary.read_text()
    assert "toy2d:8gaussians" in text and "check passed: no regression in 1 spec" in text
    events = [json.loads(line)["event"] for line in (work / "genbench-runs" / "events.jsonl").read_text().splitlines()]
    assert events.count("evaluated") == 3 and events.count("spec_started") == 3

    # a baseline whose precision is 0.5 above what the code now produces, seed for seed, fails the gate
    for r in baseline["records"]:
        r["metrics"]["precision"] += 0.5
    baseline_file.write_text(json.dumps(baseline))
    assert run_step(jobs["gate"], "Check against the baseline") == 1
    table = summary.read_text().split("check passed")[-1]
    assert "worse_by" in table and "precision" in table and " fid " not in table and "recall" not in table
