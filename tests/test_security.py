"""Untrusted files never run code, and nothing a suite says writes outside --out, the cache or leaderboards/.

* A ``.pth`` file is unpickled with ``torch.load(weights_only=True)``: a crafted pickle whose
  ``__reduce__`` would run ``os.system`` or open a marker file is refused (exit 2, one line)
  by every command that takes ``--weights``, and the marker never appears.
* Arrays are read with ``allow_pickle=False``: an object-dtype ``.npy``/``.npz`` is refused.
* Checkpoints are safetensors + JSON (no pickle at all).
* Suite names become file names, so they are validated (no ``/``, no leading dot: no ``..``);
  includes are only ever read; model names must be recipe names, splits must exist.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genbench.cli import app

runner = CliRunner()
TINY_GRID = "runs:\n  - {datasets: [toy2d:8gaussians], models: [tiny]}\nsettings: {n_samples: 60, n_reference: 60}\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, *fragments: str) -> str:
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genbench: error: "), res.stderr
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


class RunsShell:
    """Unpickling this calls os.system (would create the marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class WritesFile:
    """Unpickling this calls open(marker, 'w') (would create the marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted_weights(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A .pth whose unpickling would create ``marker``: plain pickle or torch.save's zip format."""
    marker = tmp_path / f"PWNED-{how}"
    payload = {"conv.weight": torch.zeros(2), "x": RunsShell(marker) if "shell" in how else WritesFile(marker)}
    path = tmp_path / f"evil-{how}.pth"
    if how.startswith("torch"):
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    return path, marker


def image_folder(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_the_crafted_pickle_really_runs_code_when_unpickled_unsafely(tmp_path):
    """Guard for the tests below: the payload is live, so its absence there means it was refused."""
    path, marker = crafted_weights(tmp_path, "pickle-file")
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("how", ["pickle-shell", "pickle-file", "torch-shell", "torch-file"])
@pytest.mark.parametrize("command", ["eval-inception", "eval-vgg16", "stats", "run"])
def test_weights_with_code_are_refused_and_never_run(command, how, tmp_path):
    weights, marker = crafted_weights(tmp_path, how)
    if command.startswith("eval"):
        imgs = image_folder(tmp_path / "imgs")
        args = ["eval", imgs, imgs, "--features", command.split("-")[1], "--json"]
    elif command == "stats":
        args = ["stats", "digits:test", "--features", "inception", "--cache", tmp_path / "cache"]
    else:
        suite = tmp_path / "s.yaml"
        suite.write_text("runs:\n  - {datasets: [digits], models: [tiny]}\nsettings: {features: inception, n_samples: 20, n_reference: 20}\n")
        args = ["run", "--suite", suite, "--out", tmp_path / "out", "--cache", tmp_path / "cache", "--no-progress"]
    res = invoke(*args, "--weights", weights, "--device", "cpu")
    one_line_error(res, weights.name, "not a plain PyTorch state dict")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()  # a run refuses before it opens a store


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_arrays_are_refused_and_never_unpickled(suffix, tmp_path):
    marker = tmp_path / "PWNED"
    arr = np.empty(3, dtype=object)
    arr[:] = [RunsShell(marker), 1.0, 2.0]
    path = tmp_path / f"obj{suffix}"
    if suffix == ".npy":
        np.save(path, arr, allow_pickle=True)
    else:
        np.savez(path, x=arr)
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32))
    res = invoke("eval", path, good, "--features", "raw", "--json")
    one_line_error(res, path.name, "pickled Python objects", "never loads")
    assert not marker.exists()


def test_checkpoints_hold_no_pickle(tmp_path):
    from genbench.data.base import DATASETS
    from genbench.models.base import build_model, save_checkpoint

    ds = DATASETS.get("toy2d:moons")
    save_checkpoint(build_model("tiny", ds.shape, ds.modality), tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors"]
    blob = (tmp_path / "ck.safetensors").read_bytes()
    assert b"\x80\x02" not in blob[:16] and not blob.startswith(b"PK")  # neither a pickle nor torch's zip


# ---------------------------------------------------------------------------------------------
# Paths from suite files


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["../../evil", "..", ".", "a/b", ".hidden", "x\\..\\y"])
def test_suite_names_that_would_leave_the_output_dirs_are_refused(name, tmp_path, monkeypatch):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # default --out is genbench-runs/<name>, --publish writes leaderboards/<name>.md
    suite = tmp_path / "evil.yaml"
    suite.write_text(f"name: {name!r}\n" + TINY_GRID)
    before = files_under(tmp_path)
    res = invoke("run", "--suite", suite, "--publish", "--cache", tmp_path / "cache", "--no-progress")
    one_line_error(res, "suite name", "may only use letters")
    assert files_under(tmp_path) == before


def test_suite_file_named_dot_dot_yaml_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "..yaml"  # no name: key, so the name would be its stem, "."
    suite.write_text(TINY_GRID)
    res = invoke("run", "--suite", str(suite), "--publish", "--cache", tmp_path / "cache", "--no-progress")
    one_line_error(res, "suite name '.'")
    assert not (tmp_path / "leaderboards").exists() and not (tmp_path / "genbench-runs").exists()


@pytest.mark.parametrize("text, fragment", [
    ("runs:\n  - {datasets: [toy2d:8gaussians], models: [../../../tmp/evil]}\n", "is not a recipe name"),
    ("runs:\n  - {datasets: [toy2d:8gaussians], models: [tiny]}\nsettings: {reference_split: ../../x}\n", "no split '../../x'"),
    ("runs:\n  - {datasets: [../../x], models: [tiny]}\n", "unknown dataset '../../x'"),
])
def test_path_like_suite_values_are_refused(text, fragment, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    res = invoke("run", "--suite", suite, "--out", tmp_path / "out", "--cache", tmp_path / "cache", "--no-progress")
    one_line_error(res, fragment)
    assert not (tmp_path / "out").exists()


def test_outputs_stay_inside_out_cache_and_leaderboards_whatever_the_includes(tmp_path, monkeypatch):
    """A suite including files by relative paths that climb out of its folder writes only where it should."""
    shared = tmp_path / "elsewhere" / "shared"
    shared.mkdir(parents=True)
    (shared / "base.yaml").write_text("name: base\n" + TINY_GRID)
    suites = tmp_path / "project" / "suites"
    suites.mkdir(parents=True)
    (suites / "top.yaml").write_text("name: top\ninclude: ../../elsewhere/shared/base.yaml\n"
                                     "runs:\n  - {datasets: [toy2d:moons], models: [tiny]}\n")
    cwd = tmp_path / "project" / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = files_under(tmp_path)
    res = invoke("run", "--suite", suites / "top.yaml", "--cache", tmp_path / "cache", "--publish", "--no-progress")
    assert res.exit_code == 0, res.output
    allowed = (cwd / "genbench-runs" / "top", cwd / "leaderboards", tmp_path / "cache")
    new = files_under(tmp_path) - before
    assert new and all(any(p.is_relative_to(a) for a in allowed) for p in new), sorted(map(str, new))
    assert (cwd / "leaderboards" / "top.md").is_file() and (cwd / "genbench-runs" / "top" / "results.sqlite").is_file()
    assert {p.name for p in (cwd / "leaderboards").iterdir()} == {"top.md", "top.csv", "top_figures"}
