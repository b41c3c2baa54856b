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
