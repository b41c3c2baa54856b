"""A suite naming several feature spaces: one spec per space, one sampling pass per cell, a record
per space, one leaderboard row with a column group per space; single-space specs keep their keys."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from genbench import runner
from genbench.errors import UsageError
from genbench.spec import OK, Record, RunSpec
from genbench.suite import load_suite, plan_suite

CLIP_ARCH = "ViT-S-32"


def test_single_space_spec_keys_are_unchanged():
    # keys computed by genbench before RunSpec learned of sampling passes (commit 28d5c6d)
    a = RunSpec(suite="s", dataset="digits", model="gan-mlp", family="gan", recipe_hash="abc", sampler="native",
                steps=None, seed=0, n_samples=200, n_reference=300, metrics=("fid", "precision"), features="domain:digits")
    b = RunSpec(suite="s", dataset="toy2d:8gaussians", model="diffusion-mlp", family="diffusion", recipe_hash="r1",
                sampler="heun", steps=8, seed=1, n_samples=500, n_reference=500, metrics=(), features="raw",
                train={"steps": 100})
    assert a.key == "a053a94dbd605684dfbd895c304a20ab9f65ec2a675061bc6ad8c706fbaa0734"
    assert b.key == "4d676f4528a5931b86f5b709c8c5a03b8f8604807bf1eb0b94a83a82140b454c"


def suite_file(tmp_path, features, metrics="[fid, precision, recall, density, coverage, vendi]", seeds="[0, 1]",
               n=8):
    path = tmp_path / "spaces.yaml"
    path.write_text(f"""name: spaces
settings: {{n_samples: {n}, n_reference: {n}, metrics: {metrics}, train: {{steps: 5}}}}
runs:
  - datasets: [digits]
    models: [tiny]
    seeds: {seeds}
    features: {features}
""")
    return path


def test_expansion_gives_one_spec_per_space_sharing_the_sampling_key(tmp_path):
    specs = plan_suite(load_suite(str(suite_file(tmp_path, "[auto, dinov2:vits14]", "[fid, is, vendi]")))).specs
    assert [(s.seed, s.features) for s in specs] == [(0, "domain:digits"), (0, "dinov2:vits14"),
                                                     (1, "domain:digits"), (1, "dinov2:vits14")]
    assert specs[0].sampling_key == specs[1].sampling_key != specs[2].sampling_key
    assert specs[0].key != specs[1].key
    # IS needs logits: only the space that has them computes it
    assert specs[0].metrics == ("fid", "is", "vendi") and specs[1].metrics == ("fid", "vendi")
    # the single-space spec of a cell is the one a plain suite gives (same key)
    single = plan_suite(load_suite(str(suite_file(tmp_path, "auto", "[fid, is, vendi]")))).specs
    assert [s.key for s in single] == [specs[0].key, specs[2].key]
    # auto and the name it resolves to are one space
    same = plan_suite(load_suite(str(suite_file(tmp_path, "[auto, domain:digits]", "[fid]")))).specs
    assert [s.features for s in same] == ["domain:digits", "domain:digits"] and same[0].seed != same[1].seed


def test_bad_feature_lists_are_refused_at_expansion(tmp_path):
    with pytest.raises(UsageError, match="list of distinct names"):
        plan_suite(load_suite(str(suite_file(tmp_path, "[dinov2, dinov2]"))))
    with pytest.raises(UsageError, match="did you mean|unknown"):
        plan_suite(load_suite(str(suite_file(tmp_path, "[auto, dinov3]"))))
    with pytest.raises(UsageError, match="metric 'is' needs 'logits'"):  # no space of the list has logits
        plan_suite(load_suite(str(suite_file(tmp_path, "[raw, dinov2]", "[fid, is]"))))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import open_clip

    from genbench.features.dinov2 import make_random_dinov2_weights

    root = tmp_path_factory.mktemp("weights")
    dino = make_random_dinov2_weights(root / "dinov2_vits14_pretrain.pth", "vits14", seed=0)
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = open_clip.create_model(CLIP_ARCH, pretrained=None)
    clip = root / "clip.pth"
    torch.save({"visual." + k: v for k, v in model.visual.state_dict().items()}, clip)
    return dino, clip


def test_one_sampling_pass_feeds_every_space_and_the_leaderboard_groups_columns(tmp_path, monkeypatch, weights):
    from genbench.pipeline import run_suite

    monkeypatch.setenv("GENBENCH_DINOV2_WEIGHTS", str(weights[0]))
    monkeypatch.setenv("GENBENCH_CLIP_WEIGHTS", str(weights[1]))
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    passes = Counter()
    real_draw = runner.draw_samples

    def counting_draw(model, spec, ctx):
        passes[spec.sampling_key] += 1
        return real_draw(model, spec, ctx)

    monkeypatch.setattr(runner, "draw_samples", counting_draw)
    suite = suite_file(tmp_path, f"[auto, dinov2:vits14, 'clip:{CLIP_ARCH}']")
    summary = run_suite(str(suite), out=tmp_path / "run", cache_dir=tmp_path / "cache", device="cpu", progress=False,
                        quiet=True)
    recs = summary.records
    assert len(recs) == 6 and all(r.status == OK for r in recs), [r.error for r in recs]
    assert len(passes) == 2 and set(passes.values()) == {1}  # one pass per cell (2 seeds), not per space
    by_seed: dict[int, dict[str, Record]] = {}
    for r in recs:
        by_seed.setdefault(r.spec.seed, {})[r.spec.features] = r
    for cell in by_seed.values():
        assert set(cell) == {"domain:digits", "dinov2:vits14", f"clip:{CLIP_ARCH}"}
        assert {"fid", "precision", "coverage", "vendi"} <= set(cell["domain:digits"].metrics)
        assert {"fd_dinov2", "precision_dinov2", "coverage_dinov2", "vendi_dinov2"} <= set(cell["dinov2:vits14"].metrics)
        assert {"fd_clip", "recall_clip", "density_clip", "vendi_clip"} <= set(cell[f"clip:{CLIP_ARCH}"].metrics)
        # every space records the NFE and seconds of the one real pass
        assert len({(r.metrics["nfe"], r.metrics["sample_s_per_1k"]) for r in cell.values()}) == 1
        assert cell["dinov2:vits14"].provenance["standard_weights"] is False
    # a rerun finds every spec stored
    again = run_suite(str(suite), out=tmp_path / "run", cache_dir=tmp_path / "cache", device="cpu", progress=False,
                      quiet=True)
    assert again.ran == 0 and len(passes) == 2
    md = summary.leaderboard.read_text()
    section = md[md.index("## digits — features"):]
    assert md.count("## digits — features") == 1  # one table: a column group per space
    header = next(line for line in section.splitlines() if line.startswith("| model"))
    cols = [c.strip().split(" ")[0] for c in header.strip("|").split("|")]
    assert cols.index("fid") < cols.index("coverage") < cols.index("fd_dinov2") < cols.index("vendi_dinov2") \
        < cols.index("fd_clip") < cols.index("vendi_clip") < cols.index("nfe")
    assert cols.count("nfe") == 1
    body = [line for line in section.split("\n\n")[3].splitlines() if line.startswith("| tiny")]
    assert len(body) == 1 and "| 2 (0, 1) |" in body[0]  # one row: two seeds, three spaces
    assert "Column groups, one per feature space" in section
    assert "precision/recall with k = 3; density/coverage with k = 5 nearest neighbours" in section


def test_one_weights_file_for_several_spaces_is_refused(tmp_path, weights):
    from genbench.pipeline import run_suite

    suite = suite_file(tmp_path, "[auto, dinov2:vits14]", seeds="[0]")
    with pytest.raises(UsageError, match="GENBENCH_DINOV2_WEIGHTS"):
        run_suite(str(suite), out=tmp_path / "run", cache_dir=tmp_path / "cache", device="cpu", progress=False,
                  quiet=True, weights=weights[0])
    assert not (tmp_path / "run").exists()  # refused before the store was opened


def test_a_failing_space_fails_only_its_spec(tmp_path, monkeypatch):
    """No DINOv2 weights here: the dinov2 spec fails with the one-line reason, the cell's other space is stored ok."""
    from genbench import cache
    from genbench.store import ResultsStore

    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.delenv("GENBENCH_DINOV2_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cache.set_cache_dir(tmp_path / "cache")
    specs = plan_suite(load_suite(str(suite_file(tmp_path, "[auto, dinov2:vits14]", "[fid]", seeds="[0]")))).specs
    records = runner.run_specs(specs, ResultsStore(tmp_path / "run"), runner.RunContext())
    assert [r.status for r in records] == ["ok", "failed"]
    assert "GENBENCH_DINOV2_WEIGHTS" in records[1].error and "fid" in records[0].metrics


def test_a_training_failure_fails_every_space_of_its_cell(tmp_path, monkeypatch):
    from genbench import cache

    def broken(spec, ctx):
        raise RuntimeError("loss is NaN at step 3")

    monkeypatch.setattr(runner, "train_or_load", broken)
    cache.set_cache_dir(tmp_path / "cache")
    specs = plan_suite(load_suite(str(suite_file(tmp_path, "[auto, raw]", "[fid]", seeds="[0]")))).specs
    records = runner.run_cell(specs, runner.RunContext())
    assert [(r.spec.features, r.status, r.error) for r in records] == [
        ("domain:digits", "failed", "RuntimeError: loss is NaN at step 3"), ("raw", "failed", "RuntimeError: loss is NaN at step 3")]
    assert [r.provenance["spec"]["features"] for r in records] == ["domain:digits", "raw"]
    with pytest.raises(ValueError, match="share one sampling_key"):
        runner.run_cell([specs[0], RunSpec.from_dict({**specs[0].to_dict(), "seed": 5})], runner.RunContext())
