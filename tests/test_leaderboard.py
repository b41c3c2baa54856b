"""Leaderboards from the store: tables per dataset and feature space, footnoted warnings, best in
bold, seeds aggregated, figures and Pareto tables, LaTeX and Parquet, regeneration without a run."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from genbench.report.leaderboard import (
    collect_warnings,
    render_markdown,
    table_groups,
    write_leaderboard_from_store,
)
from genbench.spec import FAILED, OK, Record, RunSpec
from genbench.store import ResultsStore, load_results, records_to_frame

SHA_A, SHA_B = "a" * 64, "b" * 64


def spec(dataset="digits", model="diffusion-mlp", family="diffusion", sampler="euler", steps=8, seed=0, **kw):
    base = dict(suite="unit", dataset=dataset, model=model, family=family, recipe_hash="r", sampler=sampler, steps=steps,
                seed=seed, n_samples=100, n_reference=100, metrics=(), features="domain:digits")
    base.update(kw)
    return RunSpec(**base)


def rec(sp, metrics, ci=None, info=None, features="domain:digits", sha=SHA_A, n_fake=100, n_real=100, **prov):
    info = {"kid_subset_size": 50, **(info or {})}
    provenance = {"features": features, "weights_sha256": sha, "n_fake": n_fake, "n_real": n_real, **prov}
    return Record(sp, OK, metrics, ci or {}, info, provenance)


def board_records():
    """Digits in two feature spaces, diffusion samplers at two step counts, a toy dataset, a failure."""
    rs = []
    for sampler, base in (("euler", 10.0), ("heun", 8.0)):
        for steps in (4, 16):
            nfe = steps * (2 if sampler == "heun" else 1)
            rs.append(rec(spec(sampler=sampler, steps=steps),
                          {"fid": base / steps * 4, "kid_mean": 0.01, "kid_std": 0.002, "precision": 0.5 + steps / 100,
                           "recall": 0.4, "nfe": float(nfe), "sample_s_per_1k": nfe * 0.1, "bpd": 3.5},
                          info={"likelihood_kind": "ODE"}))
    rs.append(rec(spec(model="gan-mlp", family="gan", sampler="native", steps=None),
                  {"fid": 12.0, "kid_mean": 0.02, "kid_std": 0.0, "precision": 0.9, "recall": 0.1, "nfe": 1.0,
                   "sample_s_per_1k": 0.05},
                  ci={"fid": (12.5, 14.0)}, info={"kid_subset_size": 100, "warnings": ["rank-deficient covariance (n1=100)"]}))
    # the same digits specs in another feature space (other classifier weights): their own table
    rs.append(rec(spec(sampler="euler", steps=4, features="inception"), {"fid": 99.0, "nfe": 4.0},
                  features="inception", sha=SHA_B))
    for seed, nll in ((0, 1.2), (1, 1.4), (2, 1.3)):
        rs.append(rec(spec(dataset="toy2d:8gaussians", model="flow-mlp", family="flow", sampler="native", steps=None,
                           seed=seed, features="raw"),
                      {"fid": 0.01 * (seed + 1), "nll": nll, "coverage": 0.9, "nfe": 1.0},
                      info={"likelihood_kind": "exact", "nll_true_density": 1.1}, features="raw", sha=None))
    rs.append(rec(spec(dataset="toy2d:8gaussians", model="gan-mlp", family="gan", sampler="native", steps=None,
                       features="raw"), {"fid": 0.001, "coverage": 0.5, "nfe": 1.0}, features="raw", sha=None))
    rs.append(Record(spec(model="ebm", family="ebm", sampler="langevin"), FAILED, error="RunFailure: boom"))
    return rs


@pytest.fixture
def store_dir(tmp_path):
    store = ResultsStore(tmp_path / "run")
    for r in board_records():
        store.put(r)
    return tmp_path / "run"


def section(md: str, heading: str) -> str:
    start = md.index(heading)
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]


def test_tables_are_per_dataset_and_feature_space():
    groups = table_groups(board_records())
    assert sorted(groups) == [("digits", "domain:digits (weights aaaaaaaaaaaa)"), ("digits", "inception (weights bbbbbbbbbbbb)"),
                              ("toy2d:8gaussians", "raw")]
    md = render_markdown(board_records(), "unit", "fid")
    assert md.count("## digits — features") == 2
    inception = section(md, "## digits — features inception")
    assert "99" in inception and "12" not in inception.split("|---")[1].split("\n\n")[0]


def test_best_value_per_column_is_bold_and_rows_sorted_by_fid_on_images():
    md = render_markdown(board_records(), "unit", "fid")
    rows = table_rows(section(md, "## digits — features domain:digits").split("\n\n", 3)[2])
    fids = [float(re.sub(r"[*⁰¹²³⁴⁵⁶⁷⁸⁹˒]", "", r[5]).split()[0]) for r in rows]
    assert fids == sorted(fids)  # FID ascending
    assert rows[0][5].startswith("**2**")  # heun@16: the lowest FID in bold
    prec = {r[2] + r[3]: r[7] for r in rows}
    assert prec["native–"].startswith("**0.9")  # the highest precision in bold, in another row
    assert sum(c.startswith("**") for r in rows for c in [r[5]]) == 1


def test_toy_tables_sort_by_a_metric_that_sees_the_modes_and_aggregate_seeds():
    md = render_markdown(board_records(), "unit", "fid")
    toy = section(md, "## toy2d:8gaussians")
    assert "Sorted by `coverage` ↑" in toy  # the GAN has no NLL: coverage ranks every row
    rows = table_rows(toy.split("<details>")[0])
    assert [r[0] for r in rows][:2] == ["flow-mlp", "gan-mlp"]  # the GAN has the lowest FID but covers fewer modes
    only_nll = [r for r in board_records() if r.spec.model == "flow-mlp"]
    assert "Sorted by `nll` ↓" in render_markdown(only_nll, "unit", "fid")
    flow = rows[0]
    assert flow[4] == "3 (0, 1, 2)"  # seeds column
    assert "1.3 ± 0.1" in " ".join(flow)  # mean ± std (ddof 1) across seeds
    assert "0.02 ± 0.01" in flow  # FID 0.01, 0.02, 0.03 over seeds
    assert "exact" in flow  # likelihood kind beside the NLL
    assert "<details><summary>Each seed</summary>" in toy and "1.1 nats" in toy


def test_every_warning_is_a_footnote_and_kid_whole_set_shows_no_plus_minus():
    md = render_markdown(board_records(), "unit", "fid")
    digits = section(md, "## digits — features domain:digits")
    gan = next(r for r in table_rows(digits.split("\n\n", 3)[2]) if r[0].startswith("gan-mlp"))
    assert re.search(r"gan-mlp[¹²³]", gan[0])  # the record's own warning
    kid = gan[6]
    assert "±" not in kid and re.search(r"0\.02[¹²³]", kid)  # no fake ± 0; a mark says why
    assert re.search(r"12 \[12\.5, 14\][¹²³]", gan[5])  # the interval that excludes its estimate is flagged
    notes = [line for line in digits.splitlines() if line and line[0] in "¹²³"]
    assert len(notes) == 3
    assert any("rank-deficient" in n for n in notes) and any("whole sets" in n for n in notes)
    assert any("outside its own 95% bootstrap interval" in n for n in notes)
    # a bias-corrected (half-sampling) interval excludes a biased estimate for another reason, and says so
    corrected = rec(spec(), {"fid": 1.0}, ci={"fid": (0.2, 0.8)}, info={"ci_method": "half-sampling"})
    md2 = render_markdown([corrected], "unit", "fid")
    assert "outside its own 95% half-sampling interval" in md2 and "population value" in md2
    assert "(half-sampling)" in md2.split("\n## ")[0]  # the header names the interval method
    diffusion = next(r for r in table_rows(digits.split("\n\n", 3)[2]) if r[2] == "euler")
    assert diffusion[6] == "**0.01 ± 2.00e-03**"  # a real subset spread is still shown (and 0.01 < 0.02 is best)


def test_collect_warnings_from_records_and_from_a_frame_agree(store_dir):
    from_records = collect_warnings(board_records())
    from_frame = collect_warnings(load_results(store_dir))
    assert sorted(from_records) == sorted(from_frame)
    gan = " (digits | gan-mlp | native | seed 0)"
    assert any(w.startswith("rank-deficient") and w.endswith(gan) for w in from_records)
    assert any(w.startswith("KID has no ±") and w.endswith(gan) for w in from_records)
    assert any(w.startswith("fid: the estimate lies outside") and w.endswith(gan) for w in from_records)
    assert any(w.startswith("digits (domain:digits (weights aaaaaaaaaaaa)): results compared at different numbers of KID")
               for w in from_records)
    assert len(from_records) == 4
    mixed = board_records() + [rec(spec(sampler="heun", steps=32), {"fid": 1.0}, n_fake=500)]
    assert any("different numbers of generated samples" in w for w in collect_warnings(mixed))
    # one line per distinct warning, naming the records that carry it
    many = [rec(spec(sampler="euler", steps=k), {"fid": 1.0}, info={"warnings": ["same note"]}) for k in range(1, 6)]
    assert collect_warnings(many) == ["same note (digits | diffusion-mlp | euler@1 | seed 0; digits | diffusion-mlp | "
                                      "euler@2 | seed 0; digits | diffusion-mlp | euler@3 | seed 0; and 2 more)"]


def test_pareto_front_in_quality_and_nfe():
    rows = table_groups(board_records())[("digits", "domain:digits (weights aaaaaaaaaaaa)")]
    from genbench.report.figures import pareto_front

    front = {(r.sampler, r.steps) for r in pareto_front(rows, "fid", "nfe")}
    # (fid, nfe): gan (12, 1), euler@4 (10, 4), heun@4 (8, 8), euler@16 (2.5, 16), heun@16 (2, 32): none dominated
    assert front == {("native", None), ("euler", 4), ("heun", 4), ("euler", 16), ("heun", 16)}
    rows = rows + [table_groups([rec(spec(sampler="dpm", steps=4), {"fid": 9.0, "nfe": 4.0})])[("digits", "domain:digits (weights aaaaaaaaaaaa)")][0]]
    front = {(r.sampler, r.steps) for r in pareto_front(rows, "fid", "nfe")}
    assert ("euler", 4) not in front and ("dpm", 4) in front  # same NFE, worse FID: dominated


def test_leaderboard_regenerated_from_a_read_only_store_with_figures(store_dir, tmp_path):
    import os

    before = (store_dir / "results.sqlite").read_bytes()
    paths = write_leaderboard_from_store(store_dir, publish_dir=tmp_path / "pub")
    assert paths == [store_dir / "leaderboard.md", tmp_path / "pub" / "unit.md"]
    assert (store_dir / "results.sqlite").read_bytes() == before  # nothing rerun, nothing stored
    md = paths[0].read_text()
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        png = store_dir / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 2000
    links = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert any("quality-nfe" in x for x in links) and any("precision-recall" in x for x in links)
    assert "Pareto front" in md and (tmp_path / "pub" / "unit.csv").is_file()
    assert (tmp_path / "pub" / "unit_figures").is_dir()
    csv = pd.read_csv(store_dir / "leaderboard.csv")
    assert {"n_fake", "n_real"} <= set(csv.columns) and "n_reference" not in csv.columns


def test_a_failed_rerun_leaves_the_ok_row_on_the_leaderboard(store_dir):
    store = ResultsStore(store_dir)
    store.put(Record(spec(model="gan-mlp", family="gan", sampler="native", steps=None), FAILED, error="RunFailure: later"))
    md = write_leaderboard_from_store(store_dir)[0].read_text()
    assert "later" not in md and "| gan-mlp" in md


def test_aggregate_seeds_mean_and_std_across_seeds(store_dir):
    from genbench.report.tables import aggregate_seeds

    agg = aggregate_seeds(load_results(store_dir))
    flow = agg[agg["model"] == "flow-mlp"].iloc[0]
    assert flow["n_seeds"] == 3 and flow["seeds"] == "0,1,2"
    assert flow["nll"] == pytest.approx(1.3) and flow["nll_seed_std"] == pytest.approx(0.1)
    one = agg[(agg["model"] == "gan-mlp") & (agg["dataset"] == "digits")].iloc[0]
    assert one["n_seeds"] == 1 and pd.isna(one["fid_seed_std"])
    assert len(agg) == 8  # 4 diffusion + gan + inception row on digits, flow + gan on toy (failed rows left out)


def test_results_to_latex_booktabs_bold_and_plus_minus(store_dir):
    from genbench.report.latex import results_to_latex

    tex = results_to_latex(load_results(store_dir))
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\toprule") == 3 and r"\bottomrule" in tex
    assert r"$\mathbf{2}$" in tex  # the best FID of the domain:digits table
    assert r"$12\,[12.5, 14]^\dagger$" in tex and "outside its own interval" in tex  # flagged
    assert r"^{+" not in tex  # no interval here contains its estimate
    assert r"$1.3 \pm 0.1$" in tex  # seeds: mean \pm std (the only NLL: nothing to be best against)
    assert r"diffusion\_mlp" not in tex and "diffusion-mlp" in tex and "fid $\\downarrow$" in tex


def test_parquet_round_trip_or_one_line_error(store_dir, tmp_path, monkeypatch):
    from genbench.errors import UsageError
    from genbench.report.tables import frame_to_parquet

    df = load_results(store_dir)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="pip install 'genbench\\[parquet\\]'"):
            frame_to_parquet(df, tmp_path / "r.parquet")
        return
    back = pd.read_parquet(frame_to_parquet(df, tmp_path / "r.parquet"))
    assert list(back.columns) == list(df.columns) and back["fid"].equals(df["fid"])
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "pyarrow" else real_import(name, *a, **k))
    with pytest.raises(UsageError, match="pip install 'genbench\\[parquet\\]'"):
        frame_to_parquet(df, tmp_path / "s.parquet")


def test_frame_has_the_used_sizes_and_warnings(store_dir):
    df = records_to_frame(ResultsStore(store_dir, create=False).records())
    gan = df[(df["model"] == "gan-mlp") & (df["dataset"] == "digits") & (df["status"] == OK)].iloc[0]
    assert (gan["n_fake"], gan["n_real"], gan["kid_subset_size"]) == (100, 100, 100)
    assert "rank-deficient" in gan["warnings"]


def test_sample_figures_come_from_the_previews_the_store_keeps(store_dir):
    import numpy as np

    recs = board_records()
    store = ResultsStore(store_dir)
    rng = np.random.default_rng(0)
    digits = next(r for r in recs if r.spec.sampler == "heun" and r.spec.steps == 16)
    toy = next(r for r in recs if r.spec.dataset.startswith("toy2d") and r.spec.seed == 0 and r.spec.model == "flow-mlp")
    store.put_preview(digits.key, rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8))
    store.put_preview(toy.key, rng.standard_normal((2000, 2)).astype(np.float32))
    kept = ResultsStore(store_dir, create=False).previews()
    assert kept[digits.key].dtype == np.uint8 and kept[digits.key].shape == (64, 1, 8, 8)
    md = write_leaderboard_from_store(store_dir)[0].read_text()
    grids = re.findall(r"\]\(([^)]+-samples-[^)]+\.png)\)", md)
    assert len(grids) == 2 and any("heun-16" in g for g in grids) and any("flow-mlp-native" in g for g in grids)
    assert all((store_dir / g).read_bytes()[:4] == b"\x89PNG" for g in grids)


def test_a_run_keeps_64_uint8_samples_per_spec(tmp_path):
    import numpy as np

    from genbench.api import run_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nruns:\n  - {datasets: [digits, toy2d:moons], models: [tiny]}\n"
                     "settings: {n_samples: 80, n_reference: 80, metrics: [fid]}\n")
    summary = run_suite(str(suite), out=tmp_path / "run", device="cpu", progress=False)
    store = ResultsStore(tmp_path / "run", create=False)
    kept = store.previews()
    by_ds = {r.spec.dataset: kept[r.key] for r in store.records() if r.status == OK}
    assert by_ds["digits"].dtype == np.uint8 and by_ds["digits"].shape == (64, 1, 8, 8)
    assert by_ds["toy2d:moons"].shape == (80, 2)
    md = summary.leaderboard.read_text()
    assert len(re.findall(r"-samples-[^)]+\.png\)", md)) == 2


def test_a_figure_that_cannot_be_drawn_costs_nothing_but_itself(store_dir, monkeypatch):
    def broken(*a, **k):
        raise ValueError("no backend")

    monkeypatch.setattr("genbench.report.figures.quality_nfe_figure", broken)
    md = write_leaderboard_from_store(store_dir)[0].read_text()
    assert "figures of this table could not be drawn (ValueError: no backend)" in md
    assert "| diffusion-mlp" in md and "## Provenance" in md


def test_provenance_names_each_command_that_computed_the_numbers():
    from genbench.report.leaderboard import provenance_footer

    a = rec(spec(), {"fid": 1.0}, argv=["/usr/bin/genbench", "run", "--suite", "digits", "--publish"])
    b = rec(spec(seed=1), {"fid": 2.0}, argv=["/x/genbench/__main__.py", "run", "--suite", "w2.yaml"])
    c = rec(spec(seed=2), {"fid": 3.0})  # a record made by hand has no command
    lines = provenance_footer([a, b, c])
    command = [line for line in lines if line.startswith("- command:")]
    assert command == ["- command: `genbench run --suite digits --publish`; `genbench run --suite w2.yaml`"]


def test_records_of_an_edited_recipe_supersede_the_old_ones_and_are_never_averaged_with_them():
    """A store that holds a cell under two recipe hashes (the recipe was edited between runs) shows the
    newest hash's records only, every seed of it, and says how many it left out."""
    old = [Record(spec(dataset="toy2d:8gaussians", model="flow-mlp", family="flow", sampler="native", steps=None,
                       seed=seed, features="raw", recipe_hash="old"), OK, {"fid": 100.0 + seed, "nfe": 1.0},
                  created_at="2026-01-01T00:00:00+00:00") for seed in (0, 1, 2)]
    new = [Record(spec(dataset="toy2d:8gaussians", model="flow-mlp", family="flow", sampler="native", steps=None,
                       seed=seed, features="raw", recipe_hash="new"), OK, {"fid": 1.0 + seed, "nfe": 1.0},
                  created_at="2026-02-01T00:00:00+00:00") for seed in (0, 1)]
    other = Record(spec(dataset="toy2d:8gaussians", model="gan-mlp", family="gan", sampler="native", steps=None,
                        features="raw", recipe_hash="old"), OK, {"fid": 50.0, "nfe": 1.0}, created_at="2026-01-01T00:00:00+00:00")
    md = render_markdown(old + new + [other], "unit", "fid")
    row = next(line for line in md.splitlines() if line.startswith("| flow-mlp"))
    # mean of the new hash's two seeds (1.0, 2.0), not of all five records (which would be 40.8)
    assert "| 2 (0, 1) | **1.5 ± 0.71** |" in row
    assert "Left out: 3 records of an earlier version of a recipe" in md and "toy2d:8gaussians | flow-mlp" in md
    assert any(line.startswith("| gan-mlp") for line in md.splitlines())  # one hash only: kept, whatever its age
    assert "Left out" not in render_markdown(new + [other], "unit", "fid")
