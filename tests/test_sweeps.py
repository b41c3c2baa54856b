"""Metrics against a swept numeric sampling option (genbench.report.sweeps): which rows make a sweep, the
table under a leaderboard table, and the figure, for any option name."""

from __future__ import annotations

import pytest

from genbench.report.leaderboard import render_markdown, table_groups, write_leaderboard_from_store
from genbench.report.sweeps import sweep_tables, sweeps
from genbench.spec import OK, Record, RunSpec
from genbench.store import ResultsStore


def rec(model="ddpm_cfg", sampler="ddim", steps=50, seed=0, options=None, **metrics):
    sp = RunSpec(suite="unit", dataset="digits", model=model, family=model, recipe_hash="r", sampler=sampler, steps=steps,
                 seed=seed, n_samples=100, n_reference=100, metrics=(), features="domain:digits", options=options or {})
    return Record(sp, OK, {"nfe": 2.0 * (steps or 1), "train_s": 5.0, **metrics}, {}, {},
                  {"features": "domain:digits", "n_fake": 100, "n_real": 100})


def records():
    rs = []
    for w, fid, cc in ((5, 40.0, 0.99), (0, 30.0, 0.1), (1, 20.0, 0.8), (2, 25.0, 0.95)):
        for seed in (0, 1):
            rs.append(rec(options={"guidance": w}, seed=seed, fid=fid + seed, class_consistency=cc, precision=0.5 + w / 20))
    # another sweep of the same option (other sampler), a one-value "sweep" (no sweep), a non-numeric option, none
    rs += [rec(sampler="heun", steps=18, options={"guidance": w}, fid=50.0 - w) for w in (0, 3)]
    rs += [rec(sampler="ddpm", steps=10, options={"guidance": 2}, fid=10.0)]
    rs += [rec(model="ddpm", family="ddpm", options={"timestep_spacing": s}, fid=9.0) for s in ("linspace", "trailing")]
    rs += [rec(model="ddpm", sampler="ddim", steps=10, options={"eta": e, "timestep_spacing": "linspace"}, fid=8.0 + e)
           for e in (0, 0.5, 1)]
    rs += [rec(model="tiny", sampler="native", steps=None, fid=60.0)]
    return rs


def test_rows_differing_in_one_numeric_option_make_a_sweep_in_order_of_its_value():
    (rows,) = table_groups(records()).values()
    found = sweeps(rows)
    assert sorted(found) == ["eta", "guidance"]  # timestep_spacing is not numeric
    guidance = found["guidance"]
    assert [(s[0].sampler, [r.options["guidance"] for r in s]) for s in guidance] == [("ddim", [0, 1, 2, 5]), ("heun", [0, 3])]
    assert [r.seeds for r in guidance[0]] == [[0, 1]] * 4  # seeds aggregated, as in the table
    (eta,) = found["eta"]
    assert [r.options["eta"] for r in eta] == [0, 0.5, 1]


def test_sweep_table_lists_every_metric_against_the_option():
    (rows,) = table_groups(records()).values()
    lines = sweep_tables(rows)
    text = "\n".join(lines)
    assert "**Metrics against the sampling option `guidance`**" in text and "(mean ± std across seeds)" in text
    assert "train_s" not in text  # the same model at every value
    start = next(i for i, line in enumerate(lines) if line.startswith("| model") and "guidance" in line)
    head = lines[start].split("|")
    assert head[4].strip() == "guidance" and "fid ↓" in lines[start] and "class_consistency ↑" in lines[start]
    assert "other options" not in lines[start]  # nothing else is held fixed in these sweeps
    body = [line.split("|") for line in lines[start + 2:start + 8]]
    assert [(c[2].strip(), c[4].strip()) for c in body] == [("ddim", "0"), ("ddim", "1"), ("ddim", "2"), ("ddim", "5"),
                                                            ("heun", "0"), ("heun", "3")]
    assert body[0][5].strip() == "30.5 ± 0.71"  # fid of w = 0 over seeds 0 and 1 (30, 31)
    # eta's table names the option held fixed
    assert "| ddpm | ddim | 10 | timestep_spacing=linspace | 0.5 |" in text


def test_no_sweep_no_table():
    assert sweep_tables(table_groups([rec(options={"guidance": 2}, fid=1.0), rec(fid=2.0)])[("digits", "domain:digits")]) == []


def test_leaderboard_shows_the_sweep_table_and_figure(tmp_path):
    store = ResultsStore(tmp_path / "run")
    for r in records():
        store.put(r)
    md_path = write_leaderboard_from_store(tmp_path / "run")[0]
    md = md_path.read_text()
    assert "Metrics against the sampling option `guidance`" in md and "Metrics against the sampling option `eta`" in md
    figures = md_path.parent / f"{md_path.stem}_figures"
    for option in ("guidance", "eta"):
        png = figures / f"digits-domain_digits-sweep-{option}.png"
        assert png.is_file() and png.stat().st_size > 1000 and png.name in md
    assert "sweep-timestep_spacing" not in md
    assert render_markdown(records(), "unit", "fid").count("Metrics against the sampling option") == 2
