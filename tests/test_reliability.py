"""Reliability through the CLI: bad input, faults, concurrent writers and SIGKILL never lose data.

Bad input answers with one line on stderr (``genbench: error: ...`` naming the problem and the
fix), exit code 2, no traceback, and leaves an existing results store and cache byte for byte
as they were (``World`` snapshots both). Faults (a model that produces NaN, a full disk, a
read-only directory, two processes on one store, SIGKILL at random points) are checked for
what they leave behind: finished records and cache entries stay intact and loadable.

How "not writable" is simulated (tests run as root, so chmod does not stop writes): an output
path below a regular file (ENOTDIR), always; and a read-only / size-limited tmpfs mounted for
the test where ``mount`` is permitted (skipped elsewhere). A full disk is simulated with
``os.fsync`` raising ENOSPC inside genbench's atomic writer, always, and for real on a 2 MB
tmpfs where mounting works.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genbench.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

TINY_SUITE = """\
name: {name}
settings: {{n_samples: 100, n_reference: 100}}
runs:
  - datasets: [{datasets}]
    models: [{models}]
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def suite_file(folder: Path, name: str = "rel", datasets: str = "toy2d:8gaussians", models: str = "tiny",
               extra: str = "", filename: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or f"{name}.yaml")
    path.write_text(TINY_SUITE.format(name=name, datasets=datasets, models=models) + extra)
    return path


def one_line_error(res, exit_code: int = 2, *fragments: str) -> str:
    """The single stderr line of a refused command (no traceback, nothing on stdout)."""
    assert res.exit_code == exit_code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("genbench: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert res.stdout == ""
    return lines[0]


def last_error_line(res) -> str:
    """A run that failed after it started: log lines, then exactly one error line, last."""
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("genbench: error")]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output
    return errors[0]


def store_rows(out: Path) -> list[tuple]:
    con = sqlite3.connect(out / "results.sqlite")
    try:
        return con.execute("SELECT key, status, error, metrics_json, created_at FROM records ORDER BY key").fetchall()
    finally:
        con.close()


def file_hashes(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots if root.exists() for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class World:
    """A results store and a cache made by a real run, and their snapshot."""

    root: Path
    out: Path
    cache: Path
    suite: Path
    files: dict[str, str] = field(default_factory=dict)
    rows: list[tuple] = field(default_factory=list)

    def snapshot(self) -> None:
        self.files, self.rows = file_hashes(self.out, self.cache), store_rows(self.out)

    def assert_unchanged(self) -> None:
        assert store_rows(self.out) == self.rows
        assert file_hashes(self.out, self.cache) == self.files


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    w = World(root, root / "run", root / "cache", suite_file(root, "world", "toy2d:8gaussians, toy2d:moons"))
    res = invoke("run", "--suite", w.suite, "--out", w.out, "--cache", w.cache, "--no-progress", "--device", "cpu")
    assert res.exit_code == 0, res.output
    w.snapshot()
    assert len(w.rows) == 2 and {r[1] for r in w.rows} == {"ok"}
    assert any(p.endswith(".safetensors") for p in w.files)
    return w


@pytest.fixture
def in_world(world, monkeypatch) -> World:
    """Commands in this test see the world's cache (GENBENCH_CACHE) and must leave it as it was."""
    monkeypatch.setenv("GENBENCH_CACHE", str(world.cache))
    return world


# ---------------------------------------------------------------------------------------------
# Input files


def pngs(folder: Path, n: int = 4, sizes: list[tuple[int, int]] | None = None, seed: int = 0) -> Path:
    rng, sizes = np.random.default_rng(seed), sizes or [(8, 8)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def points(path: Path, n: int = 300, d: int = 3, seed: int = 0, dtype=np.float32) -> Path:
    np.savez(path, x=np.random.default_rng(seed).normal(size=(n, d)).astype(dtype))
    return path


def corrupt_folder(t: Path) -> Path:
    d = pngs(t / "corrupt")
    (d / "004.png").write_bytes(b"\x89PNG not really")
    return d


def truncated_folder(t: Path) -> Path:
    d = pngs(t / "truncated")
    blob = (d / "001.png").read_bytes()
    (d / "001.png").write_bytes(blob[: len(blob) // 2])
    return d


def array_with(t: Path, name: str, value: float) -> Path:
    a = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    a[7, 1] = value
    np.savez(t / name, x=a)
    return t / name


def saved(t: Path, name: str, array: np.ndarray) -> Path:
    np.savez(t / name, x=array)
    return t / name


def wrong_weights(t: Path) -> Path:
    torch.save(torch.nn.Linear(3, 4).state_dict(), t / "linear.pth")
    return t / "linear.pth"


# (command args built in a temp dir, fragments the one error line must contain)
EVAL_CASES = {
    "path_does_not_exist": (lambda t: [t / "nope", points(t / "b.npz")], ["nope", "does not exist"]),
    "empty_folder": (lambda t: [(t / "empty").mkdir() or t / "empty", points(t / "b.npz")], ["no images", "empty"]),
    "corrupt_image": (lambda t: [corrupt_folder(t), points(t / "b.npz")], ["004.png", "corrupt"]),
    "truncated_image": (lambda t: [truncated_folder(t), points(t / "b.npz")], ["001.png", "truncated"]),
    "mixed_sizes": (lambda t: [pngs(t / "mixed", 4, [(8, 8), (8, 9)]), points(t / "b.npz")], ["different sizes", "resize"]),
    "nan_values": (lambda t: [array_with(t, "nan.npz", np.nan), points(t / "b.npz")], ["NaN or infinite", "nan.npz"]),
    "inf_values": (lambda t: [array_with(t, "inf.npz", np.inf), points(t / "b.npz")], ["NaN or infinite", "inf.npz"]),
    "wrong_dtype": (lambda t: [saved(t, "int.npz", np.ones((50, 3), np.int64)), points(t / "b.npz")], ["int64", "astype"]),
    "wrong_range": (lambda t: [saved(t, "big.npz", np.full((50, 8, 8, 3), 200.0, np.float32)), points(t / "b.npz")],
                    ["outside both [0, 1] and [-1, 1]", "x / 255"]),
    "wrong_rank": (lambda t: [saved(t, "r5.npz", np.zeros((5, 2, 2, 2, 3), np.float32)), points(t / "b.npz")], ["5-D", "expected"]),
    "rank_one": (lambda t: [saved(t, "r1.npz", np.zeros(50, np.float32)), points(t / "b.npz")], ["1-D"]),
    "one_sample": (lambda t: [saved(t, "one.npz", np.zeros((1, 3), np.float32)), points(t / "b.npz")], ["1 example", "at least 2"]),
    "fewer_than_k_plus_1_for_pr": (lambda t: [points(t / "three.npz", n=3), points(t / "b.npz"), "--metrics", "precision,recall"],
                                   ["precision/recall", "k=3", "generate more samples"]),
    "feature_dims_differ": (lambda t: [points(t / "d5.npz", d=5), points(t / "b.npz")], ["different dimensions", "(5,) vs (3,)"]),
    "unknown_dataset": (lambda t: ["dataset:toy2d:8gausians", points(t / "b.npz")], ["Did you mean 'toy2d:8gaussians'"]),
    "unknown_metric": (lambda t: [points(t / "a.npz"), points(t / "b.npz"), "--metrics", "fdi"], ["Did you mean 'fid'"]),
    "unknown_features": (lambda t: [points(t / "a.npz"), points(t / "b.npz"), "--features", "rawr"], ["Did you mean 'raw'"]),
    "weights_of_another_network": (lambda t: [pngs(t / "imgs", 6, [(16, 16)]), pngs(t / "imgs2", 6, [(16, 16)], seed=1),
                                              "--features", "inception", "--weights", wrong_weights(t)],
                                   ["linear.pth", "does not fit", "InceptionV3"]),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_eval_bad_input_is_one_line_exit_2_and_touches_nothing(case, in_world, tmp_path):
    build, fragments = EVAL_CASES[case]
    args = build(tmp_path)
    if "--features" not in args:
        args += ["--features", "raw"]
    res = invoke("eval", *args, "--json", "--device", "cpu")
    one_line_error(res, 2, *fragments)
    in_world.assert_unchanged()


SUITE_CASES = {
    "unknown_suite_name": (lambda t: "smok", ["unknown suite 'smok'", "Did you mean 'smoke'"]),
    "yaml_syntax_error": (lambda t: suite_file(t, extra="  - datasets: [oops\n"), ["not valid YAML", "line"]),
    "unknown_key": (lambda t: suite_file(t, extra="colour: red\n"), ["unknown key 'colour'", "allowed keys"]),
    "include_cycle": (lambda t: (suite_file(t, "b", extra="include: a.yaml\n"), suite_file(t, "a", extra="include: b.yaml\n"))[1],
                      ["include cycle", "a.yaml -> b.yaml -> a.yaml"]),
    "missing_include": (lambda t: suite_file(t, extra="include: gone.yaml\n"), ["gone.yaml", "not found"]),
    "unknown_dataset": (lambda t: suite_file(t, datasets="toy2d:mons"), ["Did you mean 'toy2d:moons'"]),
    "unknown_model": (lambda t: suite_file(t, models="tinny"), ["unknown model recipe 'tinny'", "Did you mean 'tiny'"]),
    "unknown_sampler": (lambda t: suite_file(t, extra="    samplers: [eulr]\n"), ["unknown sampler 'eulr'", "Did you mean 'euler'"]),
    "unknown_metric": (lambda t: suite_file(t, extra="    settings: {metrics: [fdi, recall]}\n"),
                       ["unknown metric 'fdi'", "Did you mean 'fid'"]),
    "unknown_features": (lambda t: suite_file(t, extra="    settings: {features: rawr}\n"), ["Did you mean 'raw'"]),
    "unknown_split": (lambda t: suite_file(t, extra="    settings: {reference_split: tset}\n"), ["no split 'tset'", "train, test"]),
    "metrics_not_a_list": (lambda t: suite_file(t, extra="    settings: {metrics: fid}\n"), ["'metrics' must be a list"]),
}


@pytest.mark.parametrize("case", list(SUITE_CASES))
def test_run_bad_suite_is_one_line_exit_2_and_touches_nothing(case, world, tmp_path):
    build, fragments = SUITE_CASES[case]
    res = invoke("run", "--suite", build(tmp_path), "--out", world.out, "--cache", world.cache, "--no-progress")
    one_line_error(res, 2, *fragments)
    world.assert_unchanged()


def test_run_bad_device_output_or_cache_is_one_line_exit_2(world, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    common = ["run", "--suite", world.suite, "--no-progress"]
    res = invoke(*common, "--out", world.out, "--cache", world.cache, "--device", "cdua")
    one_line_error(res, 2, "unknown device 'cdua'", "auto, cpu or cuda")
    # an output directory below a regular file cannot be created, even by root
    res = invoke(*common, "--out", a_file / "sub", "--cache", world.cache, "--device", "cpu")
    one_line_error(res, 2, "cannot create output directory", "choose a writable --out")
    # an unusable cache is refused before the existing store is opened
    res = invoke(*common, "--out", world.out, "--cache", a_file / "cache", "--device", "cpu")
    one_line_error(res, 2, "cannot create cache directory", "--cache DIR")
    world.assert_unchanged()
    assert a_file.read_text() == "not a directory"


def test_likelihood_only_suite_and_stale_temp_files(tmp_path):
    """``metrics: [nll]`` needs no feature metric; temp files older than an hour are swept, young ones kept."""
    cache = tmp_path / "cache"
    old, young = cache / "checkpoints" / "x.safetensors.ab12.tmp", cache / "reference" / "y.safetensors.cd34.tmp"
    for p in (old, young):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    os.utime(old, (os.path.getatime(old) - 7200, os.path.getmtime(old) - 7200))
    suite = suite_file(tmp_path, extra="    settings: {metrics: [nll]}\n")
    res = invoke("run", "--suite", suite, "--out", tmp_path / "run", "--cache", cache, "--no-progress", "--device", "cpu")
    assert res.exit_code == 0, res.output
    (row,) = store_rows(tmp_path / "run")
    metrics = json.loads(row[3])
    assert row[1] == "ok" and metrics["nll"] > 0 and "fid" not in metrics
    assert not old.exists() and young.exists()


# ---------------------------------------------------------------------------------------------
# Documented tolerances: skipped files, small sets


def test_non_image_file_is_skipped_with_a_warning(tmp_path, caplog):
    """A logged warning (on stderr in a real process, through logging's last-resort handler)."""
    folder = pngs(tmp_path / "imgs", 12, [(8, 8)])
    (folder / "notes.txt").write_text("not an image")
    with caplog.at_level("WARNING"):
        res = invoke("eval", folder, pngs(tmp_path / "ref", 10, [(8, 8)], seed=3), "--features", "raw", "--metrics", "fid", "--json")
    assert res.exit_code == 0, res.output
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("ignored 1 non-image file(s)" in m and "notes.txt" in m for m in notes), notes
    out = json.loads(res.stdout)
    assert out["n1"] == 12 and out["n2"] == 10


def test_fewer_samples_than_kid_subset_reduces_it_and_says_so(tmp_path):
    res = invoke("eval", points(tmp_path / "a.npz", n=50), points(tmp_path / "b.npz", n=300, seed=1),
                 "--features", "raw", "--metrics", "kid", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["info"]["kid_subset_size"] == 50
    assert any("KID subset size reduced from 1000 to 50" in w for w in out["warnings"])
    assert np.isfinite(out["kid_mean"]) and out["kid_std"] > 0


# ---------------------------------------------------------------------------------------------
# Checkpoints


def tiny_checkpoint(stem: Path):
    from genbench.data.base import DATASETS
    from genbench.models.base import TrainBudget, build_model, save_checkpoint

    ds = DATASETS.get("toy2d:8gaussians")
    model = build_model("tiny", ds.shape, ds.modality)
    model.fit(ds.load("train").take(200), TrainBudget(), torch.Generator().manual_seed(0))
    save_checkpoint(model, stem)
    return model


def test_truncated_or_foreign_checkpoints_are_one_line_usage_errors(tmp_path):
    from genbench.errors import UsageError
    from genbench.models.base import load_checkpoint

    stem = tmp_path / "ck"
    model = tiny_checkpoint(stem)
    assert torch.equal(load_checkpoint(stem, expect_family="tiny").mean, model.mean)

    def refused(*fragments, **kw):
        with pytest.raises(UsageError) as e:
            load_checkpoint(stem, **kw)
        assert "\n" not in str(e.value) and all(f in str(e.value) for f in fragments), str(e.value)

    refused("is a 'tiny' model, not 'diffusion'", "checkpoint of that family", expect_family="diffusion")
    meta = json.loads(stem.with_suffix(".json").read_text())
    stem.with_suffix(".json").write_text(json.dumps({**meta, "data_shape": [3]}))
    refused("does not fit a 'tiny' model", "architecture")
    stem.with_suffix(".json").write_text(json.dumps(meta)[:40])
    refused("metadata", "unreadable")
    stem.with_suffix(".json").write_text(json.dumps(meta))
    blob = stem.with_suffix(".safetensors").read_bytes()
    stem.with_suffix(".safetensors").write_bytes(blob[: len(blob) // 2])
    refused("corrupt or truncated", "ck.safetensors")


def test_run_replaces_a_truncated_cached_checkpoint(tmp_path):
    from genbench.models.base import load_checkpoint

    suite, out, cache = suite_file(tmp_path), tmp_path / "run", tmp_path / "cache"
    args = ["run", "--suite", suite, "--out", out, "--cache", cache, "--no-progress", "--device", "cpu"]
    assert invoke(*args).exit_code == 0
    before = store_rows(out)
    (weights,) = (cache / "checkpoints").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:30])
    res = invoke(*args, "--rerun")
    assert res.exit_code == 0, res.output
    assert "cached checkpoint unusable" in res.stderr and "retraining" in res.stderr
    after = store_rows(out)
    assert [(r[0], r[1], json.loads(r[3])["fid"]) for r in after] == [(r[0], r[1], json.loads(r[3])["fid"]) for r in before]
    load_checkpoint(weights.with_suffix(""), expect_family="tiny")  # rewritten whole


# ---------------------------------------------------------------------------------------------
# Faults during a run


@pytest.fixture
def nan_family(tmp_path, monkeypatch):
    """A test-only model family whose every other sample is NaN, with its recipe (and tiny's)."""
    import genbench.recipes as recipes
    from genbench.models.base import MODELS, NATIVE
    from genbench.models.tiny import TinyGaussian

    class NaNGaussian(TinyGaussian):
        family = "nan-test"

        def sample(self, noise, sampler=NATIVE, steps=None):
            x, nfe = super().sample(noise, sampler, steps)
            x[::2] = float("nan")
            return x, nfe

    MODELS.names()  # load the real families first
    MODELS.register("nan-test", NaNGaussian, description="test only: half of its samples are NaN")
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "tiny.yaml").write_text((REPO / "reference_models" / "tiny.yaml").read_text())
    (folder / "nan-test.yaml").write_text("family: nan-test\nconfig: {shrinkage: 1.0e-3}\ntrain: {steps: 1}\n")
    monkeypatch.setattr(recipes, "recipes_dir", lambda: folder)
    recipes._raw_recipe.cache_clear()
    yield "nan-test"
    MODELS._entries.pop("nan-test", None)
    recipes._raw_recipe.cache_clear()


def test_nan_samples_fail_that_spec_with_the_reason_and_the_suite_goes_on(nan_family, tmp_path):
    suite = suite_file(tmp_path, "nan", models="nan-test, tiny")
    out = tmp_path / "run"
    res = invoke("run", "--suite", suite, "--out", out, "--cache", tmp_path / "cache", "--no-progress", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "nan: 1 ok, 1 failed, 0 skipped" in res.stderr
    rows = {json.loads(r[3]).get("fid") is not None: r for r in store_rows(out)}
    failed, ok = rows[False], rows[True]
    assert failed[1] == "failed" and "model produced 50 of 100 samples with NaN or Inf" in failed[2]
    assert ok[1] == "ok" and ok[2] is None
    # every spec failing is a failed run: exit 1, one error line last
    res = invoke("run", "--suite", suite_file(tmp_path, "allnan", models="nan-test"), "--out", tmp_path / "run2",
                 "--cache", tmp_path / "cache", "--no-progress", "--device", "cpu")
    assert res.exit_code == 1
    assert "no run of the suite succeeded" in last_error_line(res)


def two_suites(tmp_path: Path) -> tuple[Path, Path]:
    first = suite_file(tmp_path, "first")
    both = suite_file(tmp_path, "both", datasets="toy2d:8gaussians, toy2d:moons")
    return first, both


def test_full_disk_stops_the_run_with_one_line_and_keeps_earlier_work(tmp_path, monkeypatch):
    first, both = two_suites(tmp_path)
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--out", out, "--cache", cache, "--no-progress", "--device", "cpu"]
    assert invoke("run", "--suite", first, *common).exit_code == 0
    rows, files = store_rows(out), file_hashes(out, cache)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)  # genbench's atomic writer fsyncs every artifact
    res = invoke("run", "--suite", both, *common)
    assert res.exit_code == 1
    line = last_error_line(res)
    assert "No space left on device" in line and "free disk space" in line
    assert store_rows(out) == rows
    assert file_hashes(out, cache) == files  # no partial entry, no temp file left
    monkeypatch.undo()
    res = invoke("run", "--suite", both, *common)
    assert res.exit_code == 0, res.output
    after = store_rows(out)
    assert len(after) == 2 and rows[0] in after


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a 2 MB tmpfs for the test (skipped where mount is not permitted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()[:80]}); the ENOSPC simulation covers it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_up(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_real_full_and_read_only_disks(tmpfs, tmp_path):
    first, both = two_suites(tmp_path)
    out, cache = tmpfs / "run", tmpfs / "cache"
    common = ["--out", out, "--cache", cache, "--no-progress", "--device", "cpu"]
    assert invoke("run", "--suite", first, *common).exit_code == 0
    rows = store_rows(out)
    filler = fill_up(tmpfs)
    res = invoke("run", "--suite", both, *common)
    assert res.exit_code == 1
    line = last_error_line(res)
    assert "full" in line or "No space" in line, line
    filler.unlink()  # (even reading a WAL store needs a little space for its -shm file)
    assert store_rows(out) == rows
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    res = invoke("run", "--suite", both, *common)
    one_line_error(res, 2, "not writable", "choose a writable --out")
    res = invoke("run", "--suite", first, "--out", tmpfs / "new", "--cache", tmp_path / "cache", "--no-progress")
    one_line_error(res, 2, "cannot create output directory", "Read-only file system")
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert store_rows(out) == rows  # (read after remounting: SQLite's WAL mode cannot open on a read-only fs)
    assert invoke("run", "--suite", both, *common).exit_code == 0
    assert len(store_rows(out)) == 2


# ---------------------------------------------------------------------------------------------
# Real processes: two writers, SIGKILL


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GENBENCH_CACHE", None)
    return env


def test_two_run_processes_write_one_store(tmp_path):
    from genbench.suite import expand_suite, load_suite

    one = suite_file(tmp_path, "one", "toy2d:8gaussians, toy2d:moons", extra="    seeds: [0, 1]\n")
    two = suite_file(tmp_path, "two", "toy2d:moons, toy2d:checkerboard", extra="    seeds: [1, 2]\n")
    out, cache = tmp_path / "run", tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "genbench", "run", "--suite", str(s), "--out", str(out), "--cache", str(cache),
                               "--no-progress", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
             for s in (one, two)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    expected = {s.key for f in (one, two) for s in expand_suite(load_suite(str(f)))}
    rows = store_rows(out)
    assert len(expected) == 7 and sorted(r[0] for r in rows) == sorted(expected)
    assert {r[1] for r in rows} == {"ok"}
    con = sqlite3.connect(out / "results.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def load_kill_trials():
    spec = importlib.util.spec_from_file_location("kill_trials", REPO / "benchmarks" / "kill_trials.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_trials", module)  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path):
    kill_trials = load_kill_trials()
    log: list[str] = []
    # 3 kills at random times, then one between the temp file and the rename of the first checkpoint's JSON
    results = kill_trials.run_trials(3, seed=7, root=tmp_path, log=log.append, in_process_rerun=True, window_s=6.0,
                                     write_kills=[2])
    assert len(results) == 4 and results[-1].killed and results[-1].temp_files == 1, "\n".join(log)
    assert all(t.passed for t in results), "\n".join(log)
