"""Suite YAML loading and expansion into RunSpecs."""

from __future__ import annotations

import textwrap

import pytest

from genbench.errors import UsageError
from genbench.suite import builtin_suite_names, expand_suite, load_suite


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_builtin_suites_load_and_expand():
    for name in builtin_suite_names():
        suite = load_suite(name)
        specs = expand_suite(suite)
        assert specs, name
        assert len({s.key for s in specs}) == len(specs)


def test_grid_expansion_counts_and_sampler_filtering(tmp_path):
    p = write(tmp_path, "g.yaml", """
        name: g
        settings: {n_samples: 10, n_reference: 10}
        runs:
          - datasets: [toy2d:8gaussians, toy2d:moons]
            models: [tiny]
            seeds: [0, 1, 2]
        """)
    specs = expand_suite(load_suite(str(p)))
    assert len(specs) == 2 * 3
    assert {s.sampler for s in specs} == {"native"} and {s.steps for s in specs} == {None}
    assert {s.seed for s in specs} == {0, 1, 2}
    # --seed overrides every grid's seeds
    assert {s.seed for s in expand_suite(load_suite(str(p)), seed=7)} == {7}


def test_sampler_no_model_can_use_is_an_error(tmp_path):
    p = write(tmp_path, "s.yaml", """
        runs:
          - datasets: [toy2d:moons]
            models: [tiny]
            samplers: [heun]
        """)
    with pytest.raises(UsageError, match="no model of this grid can use sampler 'heun'"):
        expand_suite(load_suite(str(p)))


def test_include_merges_settings_and_appends_runs(tmp_path):
    write(tmp_path, "base.yaml", """
        primary_metric: precision
        settings: {n_samples: 100, n_reference: 50}
        runs:
          - {datasets: [toy2d:moons], models: [tiny]}
        """)
    p = write(tmp_path, "child.yaml", """
        include: base.yaml
        settings: {n_samples: 20}
        runs:
          - {datasets: [toy2d:8gaussians], models: [tiny], settings: {n_reference: 30}}
        """)
    suite = load_suite(str(p))
    assert suite.primary_metric == "precision"
    specs = expand_suite(suite)
    assert [(s.dataset, s.n_samples, s.n_reference) for s in specs] == [("toy2d:moons", 20, 50), ("toy2d:8gaussians", 20, 30)]


@pytest.mark.parametrize("text, message", [
    ("runs: []\nbogus: 1\n", "unknown key 'bogus'"),
    ("settings: {n_sample: 3}\n", "unknown setting 'n_sample'"),
    ("runs:\n  - {datasets: [toy2d:moons], models: [tiny], sampler: [x]}\n", "unknown key 'sampler'"),
    ("runs: [\n", "not valid YAML"),
    ("include: missing.yaml\n", "missing.yaml"),
    ("runs:\n  - {datasets: [toy2d:mons], models: [tiny]}\n", "Did you mean 'toy2d:moons'"),
    ("runs:\n  - {datasets: [toy2d:moons], models: [tinyy]}\n", "Did you mean 'tiny'"),
    ("name: ../escape\n", "may only use letters"),
])
def test_bad_suites_are_one_line_usage_errors(tmp_path, text, message):
    p = write(tmp_path, "bad.yaml", text)
    with pytest.raises(UsageError, match=message) as e:
        expand_suite(load_suite(str(p)))
    assert "\n" not in str(e.value)


def test_include_cycle_is_named(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\n")
    write(tmp_path, "b.yaml", "include: a.yaml\n")
    with pytest.raises(UsageError, match="cycle: a.yaml -> b.yaml -> a.yaml"):
        load_suite(str(tmp_path / "a.yaml"))


def test_spec_hash_ignores_suite_name_but_not_numbers(tmp_path):
    p = write(tmp_path, "h.yaml", "runs:\n  - {datasets: [toy2d:moons], models: [tiny]}\n")
    (spec,) = expand_suite(load_suite(str(p)))
    from dataclasses import replace

    assert replace(spec, suite="other").key == spec.key
    assert replace(spec, n_samples=spec.n_samples + 1).key != spec.key
    assert replace(spec, seed=spec.seed + 1).key != spec.key


def test_model_that_fits_no_listed_sampler_runs_native_and_is_noted(tmp_path):
    from genbench.suite import plan_suite

    p = write(tmp_path, "n.yaml", """
        runs:
          - datasets: [toy2d:moons]
            models: [diffusion, tiny]
            samplers: [euler]
            steps: [4, 8]
        """)
    plan = plan_suite(load_suite(str(p)))
    assert sorted((s.model, s.sampler, s.steps) for s in plan.specs) == [
        ("diffusion", "euler", 4), ("diffusion", "euler", 8), ("tiny", "native", None)]
    (note,) = plan.notes
    assert "tiny" in note and "'native'" in note and "euler" in note
    # steps for a sampler that takes none are noted, not silently dropped
    p = write(tmp_path, "s.yaml", "runs:\n  - {datasets: [toy2d:moons], models: [tiny], steps: [4]}\n")
    plan = plan_suite(load_suite(str(p)))
    assert [s.steps for s in plan.specs] == [None] and "no steps; steps [4] do not apply" in plan.notes[0]


def test_seeds_from_the_suite_the_grid_and_the_command_line(tmp_path):
    write(tmp_path, "base.yaml", """
        seeds: [3, 4]
        runs:
          - {datasets: [toy2d:moons], models: [tiny]}
          - {datasets: [toy2d:8gaussians], models: [tiny], seeds: [9]}
        """)
    p = write(tmp_path, "child.yaml", "include: base.yaml\n")
    suite = load_suite(str(p))
    assert [(s.dataset, s.seed) for s in expand_suite(suite)] == [
        ("toy2d:moons", 3), ("toy2d:moons", 4), ("toy2d:8gaussians", 9)]
    assert {s.seed for s in expand_suite(suite, seeds=[0, 1, 2])} == {0, 1, 2}
    # an included suite's seeds stay with its grids; the including file's seeds win over them
    write(tmp_path, "other.yaml", "runs:\n  - {datasets: [toy2d:2spirals], models: [tiny]}\n")
    both = write(tmp_path, "both.yaml", "include: [base.yaml, other.yaml]\n")
    assert [(s.dataset, s.seed) for s in expand_suite(load_suite(str(both)))] == [
        ("toy2d:moons", 3), ("toy2d:moons", 4), ("toy2d:8gaussians", 9), ("toy2d:2spirals", 0)]
    over = write(tmp_path, "over.yaml", "include: [base.yaml, other.yaml]\nseeds: [5]\n")
    assert [(s.dataset, s.seed) for s in expand_suite(load_suite(str(over)))] == [
        ("toy2d:moons", 5), ("toy2d:8gaussians", 9), ("toy2d:2spirals", 5)]
    assert len(expand_suite(suite, seeds=[0, 1, 2])) == 6
    with pytest.raises(UsageError, match="distinct non-negative"):
        expand_suite(suite, seeds=[1, 1])


@pytest.mark.parametrize("grid, message", [
    ("steps: [0]", "steps .* must be positive integers"),
    ("steps: [2.5]", "steps .* must be positive integers"),
    ("seeds: [-1]", "seeds .* distinct non-negative integers"),
    ("seeds: [a]", "seeds .* distinct non-negative integers"),
    ("settings: {n_samples: 1}", "'n_samples' .* integer >= 2"),
    ("settings: {bootstrap: -1}", "'bootstrap' .* integer >= 0"),
    ("settings: {n_reference: '100'}", "'n_reference' .* integer >= 2"),
    ("settings: {metrics: [fid, is]}", "metric 'is' needs 'logits' features but 'raw' gives only pool"),
    ("settings: {metrics: [fid, bpd]}", "metric 'bpd' is not reported for points; use 'nll'"),
    ("settings: {features: 3}", "'features' .* must be a name"),
    ("settings: {train: 5}", "'train' .* must be a mapping"),
])
def test_suite_mistakes_are_caught_at_expansion(tmp_path, grid, message):
    p = write(tmp_path, "bad.yaml", f"runs:\n  - {{datasets: [toy2d:moons], models: [diffusion], {grid}}}\n")
    with pytest.raises(UsageError, match=message) as e:
        expand_suite(load_suite(str(p)))
    assert "\n" not in str(e.value)


def test_unknown_primary_metric_is_caught_at_expansion(tmp_path):
    p = write(tmp_path, "p.yaml", "primary_metric: fdi\nruns:\n  - {datasets: [toy2d:moons], models: [tiny]}\n")
    with pytest.raises(UsageError, match="Did you mean 'fid'"):
        expand_suite(load_suite(str(p)))


def test_metrics_that_the_features_allow_pass(tmp_path):
    p = write(tmp_path, "ok.yaml", """
        runs:
          - {datasets: [digits], models: [tiny], settings: {features: "domain:digits", metrics: [fid, is, bpd]}}
        """)
    (spec,) = expand_suite(load_suite(str(p)))
    assert spec.metrics == ("fid", "is", "bpd")


def test_layers_import_downward():
    """suite and runner never import each other; executors import the runner; only the pipeline
    (and above) imports executors and the suite loader together."""
    import ast
    from pathlib import Path

    import genbench

    root = Path(genbench.__file__).parent

    def imports(rel):
        tree = ast.parse((root / rel).read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return {n for n in names if n.startswith("genbench.")}

    assert not imports("suite.py") & {"genbench.runner", "genbench.pipeline", "genbench.executors", "genbench.executors.ray"}
    assert not imports("runner.py") & {"genbench.suite", "genbench.pipeline", "genbench.executors", "genbench.executors.ray"}
    for rel in ("executors/__init__.py", "executors/ray.py"):
        assert not imports(rel) & {"genbench.pipeline", "genbench.suite"}
    assert {"genbench.executors", "genbench.runner", "genbench.suite"} <= imports("pipeline.py")


def test_suites_included_side_by_side_keep_their_own_settings(tmp_path):
    write(tmp_path, "a.yaml", "settings: {n_samples: 100, n_reference: 40}\nruns:\n  - {datasets: [toy2d:moons], models: [tiny]}\n")
    write(tmp_path, "b.yaml", "settings: {n_samples: 300}\nruns:\n  - {datasets: [toy2d:2spirals], models: [tiny]}\n")
    both = write(tmp_path, "both.yaml", "include: [a.yaml, b.yaml]\n")
    assert [(s.dataset, s.n_samples, s.n_reference) for s in expand_suite(load_suite(str(both)))] == [
        ("toy2d:moons", 100, 40), ("toy2d:2spirals", 300, 1000)]
    over = write(tmp_path, "over.yaml", "include: [a.yaml, b.yaml]\nsettings: {n_reference: 70}\n"
                                        "runs:\n  - {datasets: [toy2d:8gaussians], models: [tiny]}\n")
    assert [(s.dataset, s.n_samples, s.n_reference) for s in expand_suite(load_suite(str(over)))] == [
        ("toy2d:moons", 100, 70), ("toy2d:2spirals", 300, 70), ("toy2d:8gaussians", 300, 70)]
    # the full benchmark runs the toy suite's cells as the toy suite does
    toy = {s.key for s in expand_suite(load_suite("toy2d"))}
    assert toy <= {s.key for s in expand_suite(load_suite("all"))}
