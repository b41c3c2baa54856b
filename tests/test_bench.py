"""``genbench bench`` (genbench/bench/): memory measurement, the table and its published form, the sampler
loop against diffusers, the images task against each installed peer, and the fast path's provenance.
Timings are measured here but never asserted (speed targets live in the benchmark itself)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from genbench import bench
from genbench.bench.measure import Case, PeakMemory, measure

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_peak_memory_sees_torch_tensors_and_child_processes():
    with PeakMemory("cpu") as m:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB through torch's allocator (tracemalloc would miss it)
        del x
    assert m.peak_mb >= 56
    with PeakMemory("cpu") as m:  # a child holding 96 MiB for a second: its PSS counts
        subprocess.run([sys.executable, "-c", "import time; b = bytearray(96 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1)"],
                       check=True)
    assert m.peak_mb >= 80


def test_rows_compare_values_and_mark_targets():
    met = Case("t", "peer", "n=1", lambda: {"v": 1.0}, lambda: {"v": 1.0}, target=1e-9)
    missed = Case("t2", "peer", "n=1", lambda: {"v": 1.1}, lambda: {"v": 1.0}, target=1e9, note="a note")
    table = bench.run_cases([met, missed], repeats=2, device="cpu", profile=True)
    assert list(table["met"]) == [True, False]
    assert table["max_rel_diff"].tolist() == pytest.approx([0.0, 0.1])
    assert (table["speedup"] == table["peer_s"] / table["genbench_s"]).all()
    assert "t2" in table.attrs["profiles"] and "t" not in table.attrs["profiles"]  # only missed rows are profiled
    lines = bench.missed_targets(table)
    assert len(lines) == 1 and lines[0].startswith("- t2 vs peer: speed-up") and "own time by function" in lines[0]
    md = bench.performance_markdown(table, "genbench bench metrics --n 1", bench.environment())
    assert "`genbench bench metrics --n 1`" in md and "torch-fidelity" in md and "| t2 | peer | n=1 |" in md
    assert "**missed**" in md and "Missed targets:" in md
    if not torch.cuda.is_available():
        assert "GPU figures are missing" in md


def test_sampler_loop_equals_diffusers_scheduler_loop(tmp_path):
    pytest.importorskip("diffusers")
    from genbench.bench.sampling import sampler_cases

    cases, skipped = sampler_cases(tmp_path, batch=1, steps=3, device="cpu")
    assert not skipped and [c.peer for c in cases] == ["diffusers DDIMScheduler loop", "bare UNet forward x NFE"]
    table = bench.run_cases(cases, repeats=1, device="cpu")
    assert float(table["max_rel_diff"].iloc[0]) < 1e-4  # the same DDIM chain from the same noise
    assert pd.isna(table["max_rel_diff"].iloc[1])  # the bare forwards have no values to compare
    assert (table["genbench_s"] > 0).all() and (table["peer_s"] > 0).all()


def test_fast_path_is_recorded_and_close_to_the_exact_features(inception_weights):
    from genbench.features.base import build_features

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    exact = build_features("inception", weights=inception_weights)
    fast = build_features("inception", weights=inception_weights)
    recipe = fast.use_fast_path()
    assert "fast_path" not in exact.identity()  # the exact path's identity (and cache keys) are unchanged
    assert fast.identity()["fast_path"] == recipe and "channels_last" in recipe
    a, b = exact.extract(x)["pool"], fast.extract(x)["pool"]
    assert not torch.equal(a, b) or recipe == "channels_last float32"
    tolerance = 0.05 if "bfloat16" in recipe else 1e-3  # relative to the largest feature
    assert float((a - b).abs().max() / a.abs().max()) < tolerance


def test_features_without_a_fast_path_refuse_it():
    from genbench.errors import UsageError
    from genbench.features.base import build_features

    with pytest.raises(UsageError, match="no fast path"):
        build_features("raw").use_fast_path()


@pytest.mark.slow
def test_images_task_agrees_with_every_installed_peer(tmp_path):
    """Each peer on the same 10 + 10 PNGs and random weights: torch-fidelity, torchmetrics (FID, KID) and clean-fid
    agree to float round-off; pytorch-fid differs by its own resize (5.6% at 10 images, 26% at 20); the fast path stays close."""
    from genbench.bench.images import image_cases

    cases, skipped = image_cases(tmp_path, 10, "cpu")
    table = bench.run_cases(cases, repeats=1, device="cpu").set_index("peer")
    bounds = {"torch-fidelity": 1e-5, "torch-fidelity (input2 cached)": 1e-5, "torchmetrics": 1e-4,
              "clean-fid": 1e-4, "pytorch-fid": 0.5, "genbench exact path": 1e-3}
    for peer, bound in bounds.items():
        assert peer in table.index or any(peer in s for s in skipped), peer
        if peer in table.index:
            assert float(table.loc[peer, "max_rel_diff"]) < bound, (peer, table.loc[peer, "max_rel_diff"])


def test_cli_bench_prints_the_table_and_publishes_it(tmp_path):
    pytest.importorskip("diffusers")
    from typer.testing import CliRunner

    from genbench.cli import app

    out = tmp_path / "performance.md"
    res = CliRunner().invoke(app, ["bench", "sampler", "--batch", "1", "--steps", "2", "--device", "cpu",
                                   "--threads", "1", "--publish", str(out)])
    assert res.exit_code == 0, res.output
    assert "| sampler loop: ddim | diffusers DDIMScheduler loop |" in res.stdout
    md = out.read_text()
    assert "genbench bench sampler --n 5000" in md and "--publish" in md  # the command that regenerates it
    assert "versions: genbench" in md and "diffusers" in md
