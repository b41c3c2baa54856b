"""`--executor ray` on a real local Ray (2 CPUs): the store holds what a local run stores; a killed
worker's spec is retried and stored once; a task that keeps failing is retried a bounded number of
times and stored as one failed record. One Ray start per module (it takes 10-30 s on a loaded machine)."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
import ray
from typer.testing import CliRunner

from genbench.cli import app
from genbench.executors.ray import run_remote, run_specs_ray
from genbench.pipeline import run_suite
from genbench.runner import RunContext
from genbench.store import ResultsStore
from genbench.suite import load_suite, plan_suite

# points and images, a trained sampler and a diffusion sampler: every record kind the smoke suite has,
# at sizes a test affords (the smoke suite itself takes minutes on 2 cores)
SUITE = """
name: raytiny
settings: {n_samples: 80, n_reference: 80, train: {steps: 20}, metrics: [fid, kid, precision, recall]}
runs:
  - datasets: [toy2d:8gaussians]
    models: [tiny, diffusion]
    samplers: [euler]
    steps: [2]
  - datasets: [digits]
    models: [tiny]
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def suite_path(tmp_path):
    p = tmp_path / "raytiny.yaml"
    p.write_text(textwrap.dedent(SUITE))
    return p


def test_ray_run_stores_what_a_local_run_stores(local_ray, suite_path, tmp_path, one_torch_thread):
    # separate caches: the Ray workers train their own checkpoints rather than load the local run's
    local = run_suite(str(suite_path), out=tmp_path / "local", cache_dir=tmp_path / "c-local", progress=False)
    res = CliRunner().invoke(app, ["run", "--suite", str(suite_path), "--out", str(tmp_path / "ray"), "--cache",
                                   str(tmp_path / "c-ray"), "--executor", "ray", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "3 ok, 0 failed, 0 skipped (0 reused, 3 run)" in res.stderr
    a, b = ResultsStore(tmp_path / "local"), ResultsStore(tmp_path / "ray")
    mine = {r.key: r for r in a.records()}
    theirs = {r.key: r for r in b.records()}
    assert len(mine) == 3 and set(mine) == set(theirs) == {r.key for r in local.records}
    for key, r in mine.items():
        t = theirs[key]
        assert t.status == r.status == "ok" and set(t.metrics) == set(r.metrics)
        for m, v in r.metrics.items():
            if m.endswith("_s") or m.endswith("_per_1k"):  # wall-clock times differ
                continue
            # same code, seeds and one thread on both sides; 1e-6 leaves room for another CPU's kernels
            assert t.metrics[m] == pytest.approx(v, rel=1e-6, abs=1e-9), (key, m)
        assert t.ci.keys() == r.ci.keys()
        assert len(b.attempts(key)) == 1  # the driver stored each spec once
    # the sample previews travel back from the workers
    pa, pb = a.previews(), b.previews()
    assert set(pa) == set(pb) == set(mine)
    for key in pa:
        assert np.allclose(pa[key], pb[key], rtol=1e-6, atol=1e-6)

    again = CliRunner().invoke(app, ["run", "--suite", str(suite_path), "--out", str(tmp_path / "ray"), "--cache",
                                     str(tmp_path / "c-ray"), "--executor", "ray", "--no-progress"])
    assert "(3 reused, 0 run)" in again.stderr  # a finished sweep resumes like a local one


def test_killed_worker_is_retried_and_a_failing_task_is_bounded(local_ray, tmp_path, one_torch_thread):
    specs = [s for s in plan_suite(load_suite(_tiny_suite(tmp_path))).specs]
    crash, fail = specs[0].key, specs[1].key
    marks = tmp_path / "attempts"
    marks.mkdir()

    def flaky(spec_dicts, *args):  # one task per cell; these cells hold one spec each
        from genbench.spec import RunSpec

        key = RunSpec.from_dict(spec_dicts[0]).key
        with open(marks / key, "a") as f:
            f.write("x")
        tries = (marks / key).stat().st_size
        if key == crash and tries == 1:
            os._exit(1)  # the worker process dies mid-task, as under a kill or the OOM killer
        if key == fail:
            raise RuntimeError("disk on fire")
        return run_remote(spec_dicts, *args)

    store = ResultsStore(tmp_path / "run")
    from genbench import cache

    cache.set_cache_dir(tmp_path / "c")
    records = run_specs_ray(specs, store, RunContext(), max_retries=1, task=flaky)
    assert len(records) == 2
    assert (marks / crash).stat().st_size == 2 and (marks / fail).stat().st_size == 2  # 1 + max_retries
    by_key = {r.key: r for r in store.records()}
    assert by_key[crash].status == "ok" and len(store.attempts(crash)) == 1
    assert by_key[fail].status == "failed" and len(store.attempts(fail)) == 1
    assert by_key[fail].error.startswith("Ray task failed 2 times") and "disk on fire" in by_key[fail].error


def test_a_cell_in_several_feature_spaces_is_one_task(local_ray, tmp_path, one_torch_thread):
    """features: [auto, raw] on digits: one task per (seed) cell samples once and returns a record per space."""
    path = tmp_path / "spaces.yaml"
    path.write_text("name: spaces\nsettings: {n_samples: 30, n_reference: 30, train: {steps: 5}, metrics: [fid]}\n"
                    "runs:\n  - datasets: [digits]\n    models: [tiny]\n    seeds: [0, 1]\n    features: [auto, raw]\n")
    specs = plan_suite(load_suite(str(path))).specs
    marks = tmp_path / "tasks"
    marks.mkdir()

    def counted(spec_dicts, *args):
        (marks / f"{len(os.listdir(marks))}-{len(spec_dicts)}").touch()
        return run_remote(spec_dicts, *args)

    from genbench import cache

    cache.set_cache_dir(tmp_path / "c")
    records = run_specs_ray(specs, ResultsStore(tmp_path / "run"), RunContext(), task=counted)
    assert sorted(p.split("-")[1] for p in os.listdir(marks)) == ["2", "2"]  # two cells of two spaces each
    assert len(records) == 4 and all(r.status == "ok" for r in records)
    for seed in (0, 1):
        cell = [r for r in records if r.spec.seed == seed]
        assert {r.spec.features for r in cell} == {"domain:digits", "raw"}
        assert cell[0].metrics["sample_s_per_1k"] == cell[1].metrics["sample_s_per_1k"]  # one sampling pass


def test_address_needs_the_ray_executor(tmp_path):
    res = CliRunner().invoke(app, ["run", "--suite", "smoke", "--out", str(tmp_path / "o"), "--address", "h:6379"])
    assert res.exit_code == 2 and "needs --executor ray" in res.output
    assert not (tmp_path / "o").exists()


def _tiny_suite(tmp_path) -> str:
    p = tmp_path / "two.yaml"
    p.write_text("name: two\nsettings: {n_samples: 60, n_reference: 60, train: {steps: 10}, metrics: [fid]}\n"
                 "runs:\n  - datasets: [toy2d:8gaussians, toy2d:moons]\n    models: [tiny]\n")
    return str(p)
