"""Suites are data: one YAML file, optionally including others, expanded into RunSpecs.

Schema (unknown keys are an error naming the key)::

    name: default                       # [A-Za-z0-9_.-]+, used in output file names
    description: ...
    include: smoke.yaml                 # or a list; relative to this file, else a built-in suite name
    primary_metric: fid                 # leaderboard sort key
    cited:                              # published numbers shown beside the measured ones, in a table of their own
      - {model: CharRNN, dataset: moses, source: "MOSES README (...)", metrics: {validity: 0.9598, fcd: 0.3233}}
    settings:                           # apply to every run of this suite and the suites it includes
      n_samples: 2000
      n_reference: 2000
      metrics: [fid, precision, recall]
      features: auto                    # or raw, inception, domain:digits, ...; a list names several
                                        # feature spaces: [auto, dinov2:vits14, clip] (one sampling pass)
      train: {steps: 500}               # overrides of the recipes' training budgets
    seeds: [0, 1, 2]                    # seeds of the grids here and in included suites that list none
    runs:                               # grids: datasets x models x samplers x steps x seeds
      - datasets: [toy2d:8gaussians]
        models: [diffusion-mlp]         # recipes, or diffusers:PATH / python:MODULE:FUNCTION models
        samplers: [euler, heun]         # default: each model's first sampler
        steps: [4, 8, 16]               # default: each sampler's default steps
        options: {guidance: [0, 1, 2]}  # sampling options swept like steps (the models' sampling_options)
        seeds: [0]                      # default: the suite's seeds, else [0]
        features: [auto, dinov2]        # this grid's feature spaces (as settings.features)
        settings: {n_samples: 1000}     # per-grid overrides

Runs of included suites come first. A grid's settings are those of its own file, over those of
the files it includes (the including file winning), over the defaults; the including file's
settings apply to the included grids too, and a grid's own settings win over all. Suites
included side by side do not share settings: ``all`` runs each included grid as its own suite does. A suite's ``seeds`` apply to its grids and to the grids of the
suites it includes that list no ``seeds`` of their own (the including file's win over an included
file's); ``--seeds`` replaces them all. Each seed trains and samples on its own. A model that cannot use a listed sampler
skips it; a model that can use none of them runs with its own ``native`` sampler, and the
expansion says so (``plan_suite(...).notes``); a sampler that no model of its grid can use is
an error. Every value is checked here, at expansion (exit 2), not when a spec runs.

Several feature spaces (``features: [auto, dinov2, clip]``) give one spec per space for each cell;
the specs of a cell differ only in ``features`` (and the metrics each space can give: with several
spaces a named metric goes to the spaces that have the features it needs, and one that none has is
an error), so they share ``RunSpec.sampling_key`` and the runner samples the cell once for all of
them. A single space gives exactly the spec it always gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genbench.spec import RunSpec

import yaml

from genbench.errors import UsageError
from genbench.registry import check_choice

SUITE_KEYS = {"name", "description", "include", "primary_metric", "settings", "seeds", "runs", "cited"}
CITED_KEYS = {"model", "dataset", "source", "metrics"}
GRID_KEYS = {"datasets", "models", "samplers", "steps", "seeds", "settings", "options", "features"}
SUITE_SEEDS = "_suite_seeds"  # (internal grid key) the seeds a suite file gave a grid that lists none
SUITE_SETTINGS = "_suite_settings"  # (internal grid key) the settings of the files above a grid, merged
SETTING_DEFAULTS: dict[str, Any] = {
    "n_samples": 1000,
    "n_reference": 1000,
    "metrics": None,  # None: every metric the features allow, plus likelihood and cost
    "features": "auto",
    "train": {},
    "train_split": "train",
    "reference_split": "test",
    "bootstrap": 0,
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # no leading dot: "." and ".." would leave the output dirs


@dataclass
class Suite:
    name: str
    description: str
    primary_metric: str
    settings: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    seeds: list[int] | None = None  # this file's own ``seeds:`` (already applied to its grids)
    cited: list[dict[str, Any]] = field(default_factory=list)  # published rows (model, dataset, source, metrics), never measured


@dataclass
class Plan:
    """A suite's expansion: its specs, and notes a user should read before they run."""

    specs: list["RunSpec"]
    notes: list[str] = field(default_factory=list)


def builtin_suites_dir() -> Path:
    return Path(str(resources.files("genbench") / "suites"))


def builtin_suite_names() -> list[str]:
    return sorted(p.stem for p in builtin_suites_dir().glob("*.yaml"))


def resolve_suite_path(ref: str, base: Path | None = None) -> Path:
    """A suite name (built-in) or a path to a YAML file."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        candidates = [base / ref] if base is not None else []
        candidates += [Path(ref), builtin_suites_dir() / Path(ref).name]
        for c in candidates:
            if c.is_file():
                return c.resolve()
        raise UsageError(f"suite file {ref!r} not found; give an existing YAML path or a built-in suite name ({', '.join(builtin_suite_names())})")
    check_choice(ref, builtin_suite_names(), "suite")
    return (builtin_suites_dir() / f"{ref}.yaml").resolve()


def load_suite(ref: str) -> Suite:
    return _load(resolve_suite_path(ref), stack=())


def _load(path: Path, stack: tuple[Path, ...]) -> Suite:
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise UsageError(f"suite include cycle: {chain}; remove one of these includes")
    raw = _read_yaml(path)
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in suite {path.name}; allowed keys: {', '.join(sorted(SUITE_KEYS))}")
    includes = raw.get("include") or []
    includes = [includes] if isinstance(includes, str) else list(includes)
    settings: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    primary = None
    cited: list[dict[str, Any]] = []
    for inc in includes:
        try:
            child = _load(resolve_suite_path(str(inc), base=path.parent), (*stack, path))
        except UsageError as e:
            if "cycle" in str(e):
                raise
            raise UsageError(f"suite {path.name} includes {inc!r}, which cannot be loaded: {e}") from None
        settings = _merge(settings, child.settings)
        runs += child.runs
        cited += child.cited
        primary = primary or child.primary_metric
    own = raw.get("settings") or {}
    _check_settings(own, f"suite {path.name}")
    settings = _merge(settings, own)
    runs = [{**g, SUITE_SETTINGS: _merge(g.get(SUITE_SETTINGS) or {}, own)} for g in runs]  # included grids
    for i, grid in enumerate(raw.get("runs") or []):
        runs.append({**_check_grid(grid, f"suite {path.name}, runs[{i}]"), SUITE_SETTINGS: settings})
    seeds = None
    if raw.get("seeds") is not None:  # this file's seeds, over those its included files gave their grids
        seeds = check_seeds(raw["seeds"], f"suite {path.name}")
        runs = [g if "seeds" in g else {**g, SUITE_SEEDS: seeds} for g in runs]
    name = str(raw.get("name") or path.stem)
    if not _NAME_RE.match(name):
        raise UsageError(f"suite name {name!r} in {path.name} may only use letters, digits, '_', '-' and '.' (not first); rename it")
    cited += check_cited(raw.get("cited"), f"suite {path.name}")
    return Suite(name, str(raw.get("description", "")), str(raw.get("primary_metric") or primary or "fid"), settings, runs, path,
                 seeds, cited)


def check_cited(rows: Any, where: str) -> list[dict[str, Any]]:
    """A suite's ``cited:`` rows: published numbers with their source, shown apart from measured rows.
    Each row has a model and a source (strings), an optional dataset, and metrics mapping metric keys to numbers."""
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise UsageError(f"cited in {where} must be a list of rows {{model, dataset, source, metrics}}; got {rows!r}")
    out = []
    for i, row in enumerate(rows):
        at = f"{where}, cited[{i}]"
        if not isinstance(row, dict):
            raise UsageError(f"{at} must be a mapping with keys: {', '.join(sorted(CITED_KEYS))}")
        unknown = sorted(set(row) - CITED_KEYS)
        if unknown:
            raise UsageError(f"unknown key {unknown[0]!r} in {at}; allowed keys: {', '.join(sorted(CITED_KEYS))}")
        for key in ("model", "source"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise UsageError(f"{at} needs a '{key}' (text): a cited number without its {key} cannot be shown")
        metrics = row.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise UsageError(f"{at} needs 'metrics': a mapping of metric keys to numbers, e.g. {{fcd: 0.3233}}")
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{at}: metric {key!r} must be a number; got {value!r}")
        out.append({"model": row["model"], "dataset": str(row.get("dataset") or ""), "source": row["source"].strip(),
                    "metrics": {str(k): float(v) for k, v in metrics.items()}})
    return out


def check_cited_metrics(cited: list[dict[str, Any]], suite: str) -> None:
    """Each cited row's metric keys are known ones (checked at expansion, like the primary metric: the
    metrics import torch, which loading a suite for `genbench ls suites` does not)."""
    from genbench.metrics.base import KEYS, METRICS, metric_key

    if not cited:
        return
    METRICS.names()  # registers every metric's keys
    for i, row in enumerate(cited):
        for key in row["metrics"]:
            if metric_key(key) is None:
                check_choice(key, sorted(KEYS), f"metric key of suite {suite}, cited[{i}]")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UsageError(f"suite {path.name} is not valid YAML{at} ({getattr(e, 'problem', None) or 'syntax error'}); fix the file") from None
    except OSError as e:
        raise UsageError(f"cannot read suite {path} ({e.strerror})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"suite {path.name} must be a YAML mapping with keys: {', '.join(sorted(SUITE_KEYS))}")
    return raw


def _check_settings(settings: Any, where: str) -> None:
    if not isinstance(settings, dict):
        raise UsageError(f"settings in {where} must be a mapping")
    unknown = sorted(set(settings) - set(SETTING_DEFAULTS))
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r} in {where}; known settings: {', '.join(sorted(SETTING_DEFAULTS))}")


def _check_grid(grid: Any, where: str) -> dict[str, Any]:
    if not isinstance(grid, dict):
        raise UsageError(f"{where} must be a mapping with keys: {', '.join(sorted(GRID_KEYS))}")
    unknown = sorted(set(grid) - GRID_KEYS)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {where}; allowed keys: {', '.join(sorted(GRID_KEYS))}")
    for req in ("datasets", "models"):
        if not grid.get(req):
            raise UsageError(f"{where} lists no {req}; add a '{req}:' list")
    _check_settings(grid.get("settings") or {}, where)
    out = dict(grid)
    if "options" in out:
        out["options"] = check_options(out["options"], where)
    for key in ("datasets", "models", "samplers", "steps", "seeds"):
        if key in out and not isinstance(out[key], list):
            out[key] = [out[key]]
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def expand_suite(suite: Suite, seed: int | None = None, seeds: list[int] | None = None) -> list["RunSpec"]:
    """Every RunSpec of the suite's grids, in order, without duplicates (``plan_suite`` adds its notes)."""
    return plan_suite(suite, seed=seed, seeds=seeds).specs


def plan_suite(suite: Suite, seed: int | None = None, seeds: list[int] | None = None) -> Plan:
    """Expand and check every grid; ``seed``/``seeds`` (``--seed``/``--seeds``) replace every grid's seeds."""
    override = check_seeds(seeds, "--seeds") if seeds is not None else None
    if seed is not None:
        override = check_seeds([seed], "--seed")
    check_primary_metric(suite.primary_metric, suite.name)
    check_cited_metrics(suite.cited, suite.name)
    plan = Plan([])
    seen: set[str] = set()
    for i, grid in enumerate(suite.runs):
        where = f"suite {suite.name}, runs[{i}]"
        grid_seeds = override or check_seeds(grid.get("seeds") or grid.get(SUITE_SEEDS) or [0], where)
        for spec in _expand_grid(suite, grid, grid_seeds, where, plan.notes):
            if spec.key not in seen:
                seen.add(spec.key)
                plan.specs.append(spec)
    return plan


def _expand_grid(suite: Suite, grid: dict[str, Any], seeds: list[int], where: str, notes: list[str]) -> list["RunSpec"]:
    from genbench.data.base import DATASETS
    from genbench.samplers.base import SAMPLERS

    above = grid[SUITE_SETTINGS] if SUITE_SETTINGS in grid else suite.settings  # (a Suite built in Python has none)
    s = _merge(_merge(SETTING_DEFAULTS, above), grid.get("settings") or {})
    if "features" in grid:  # a grid's own feature spaces, over the settings'
        s["features"] = grid["features"]
    check_setting_values(s, where)
    grid_steps = check_steps(grid.get("steps"), where)
    combos = option_combinations(grid.get("options") or {})
    wanted = grid.get("samplers")
    for name in wanted or []:
        SAMPLERS.get(name)  # "did you mean" for unknown sampler names
    used: set[str] = set()
    specs = []
    for ds_name in grid["datasets"]:
        ds = DATASETS.get(ds_name)
        ds.check_split(s["train_split"])
        ds.check_split(s["reference_split"])
        spaces = metrics_per_space(s["metrics"], [resolve_features(f, ds) for f in feature_names(s["features"])],
                                   ds.modality, where)
        for model in grid["models"]:
            family_name, model_hash, family, config = _model_identity(str(model), ds, ds_name, s, where)
            if ds.modality not in family.modalities:
                raise UsageError(f"{where}: model {model!r} ({family_name}) cannot handle {ds.modality} data of {ds_name!r}; remove one of them")
            chosen, own_steps = _choose_samplers(family, family_name, config, wanted, grid_steps, f"{where}: {model}", notes)
            used.update(chosen)
            for sampler in chosen:
                for options in combos:
                    try:
                        family.check_sampling_options(sampler, options, config)
                    except UsageError as e:
                        raise UsageError(f"{where}: model {model!r}: {e}") from None
                default = _default_steps(family, sampler, config)
                for steps in [None] if default is None else (own_steps or [default]):
                    specs += [_spec(suite.name, {**s, "metrics": metrics}, ds_name, model, family_name, model_hash,
                                    features, sampler, steps, sd, options)
                              for options in combos for sd in seeds for features, metrics in spaces.items()]
    unused = [x for x in wanted or [] if x not in used]
    if unused:
        raise UsageError(f"{where}: no model of this grid can use sampler {unused[0]!r}; remove it or add a model that supports it")
    return specs


def _model_identity(model: str, dataset: Any, ds_name: str, settings: dict[str, Any], where: str) -> tuple[str, str, type, dict]:
    """(family name, hash, family class, config) of a grid's model: a recipe, or an external ``diffusers:``/``python:`` model."""
    from genbench.external import describe_external, is_external
    from genbench.models.base import MODELS, check_model_fits
    from genbench.recipes import load_recipe

    if is_external(model):
        family, key, cls, shape = describe_external(model)
        if shape != tuple(dataset.shape):
            raise UsageError(f"{where}: model {model!r} draws samples of shape {shape}, but {dataset.name!r} holds "
                             f"{tuple(dataset.shape)}; pair it with a dataset of its shape")
        return family, key, cls, {}
    if not _NAME_RE.match(model):  # a recipe is a file in reference_models/: no paths
        raise UsageError(f"{where}: model {model!r} is not a recipe name; name a recipe from `genbench ls models`, "
                         "or diffusers:PATH or python:MODULE:FUNCTION")
    recipe = load_recipe(model, dataset.modality, settings.get("train"), ds_name)
    family = MODELS.get(recipe.family)
    if dataset.modality in family.modalities:  # (the caller refuses the other case with its own line)
        try:  # a configuration that cannot fit the data is refused before anything is trained
            check_model_fits(recipe.family, dataset.shape, dataset.modality, dataset.num_classes, **recipe.config)
        except UsageError as e:
            raise UsageError(f"{where}: recipe {model!r} cannot fit {ds_name!r}: {e}") from None
    return recipe.family, recipe.hash, family, recipe.config


def _choose_samplers(family: Any, family_name: str, config: dict[str, Any], wanted: list[str] | None,
                     grid_steps: list[int] | None, who: str, notes: list[str]) -> tuple[list[str], list[int] | None]:
    """The samplers of ``wanted`` a family supports (default: its first) and the steps they take. A
    family that supports none of them runs with its own ``native`` sampler, never dropped; both that
    and steps no chosen sampler takes are noted."""
    from genbench.models.base import NATIVE

    supported = family.supported_samplers()
    chosen = [x for x in (wanted or supported[:1]) if x in supported]
    steps = grid_steps  # the grid's steps belong to the samplers it names
    if not chosen:
        chosen, steps = [NATIVE if NATIVE in supported else supported[0]], None
        notes.append(f"{who} ({family_name}) supports none of the samplers {', '.join(wanted or [])}; "
                     f"it runs with its own {chosen[0]!r} sampler")
    if steps and all(_default_steps(family, x, config) is None for x in chosen):
        notes.append(f"{who} ({family_name}) samples with {', '.join(map(repr, chosen))}, "
                     f"which take(s) no steps; steps {steps} do not apply to it")
    return chosen, steps


def _spec(suite: str, s: dict[str, Any], dataset: str, model: str, family: str, model_hash: str, features: str,
          sampler: str, steps: int | None, seed: int, options: dict[str, Any] | None = None) -> "RunSpec":
    from genbench.spec import RunSpec

    return RunSpec(suite=suite, dataset=dataset, model=model, family=family, recipe_hash=model_hash,
                   sampler=sampler, steps=steps, seed=seed, n_samples=int(s["n_samples"]),
                   n_reference=int(s["n_reference"]), metrics=tuple(s["metrics"] or ()), features=features,
                   train_split=s["train_split"], reference_split=s["reference_split"],
                   bootstrap=int(s["bootstrap"]), train=dict(s.get("train") or {}), options=dict(options or {}))


def _default_steps(family: Any, sampler: str, config: dict[str, Any]) -> int | None:
    return family.default_steps(sampler, config)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_seeds(seeds: Any, where: str) -> list[int]:
    """Seeds are non-negative integers, at least one, no repeats."""
    values = seeds if isinstance(seeds, (list, tuple)) else [seeds]
    if not values or not all(_is_int(x) and x >= 0 for x in values) or len(set(values)) != len(values):
        raise UsageError(f"seeds in {where} must be distinct non-negative integers, e.g. [0, 1, 2]; got {seeds!r}")
    return [int(x) for x in values]


def check_options(options: Any, where: str) -> dict[str, list[Any]]:
    """A grid's sampling options: a mapping of option names to a value or a list of values (numbers or
    names), each list without repeats; returned as name -> list."""
    if not isinstance(options, dict) or not options:
        raise UsageError(f"options in {where} must be a mapping of sampling options to values, e.g. "
                         f"options: {{guidance: [0, 1, 2]}}; got {options!r}")
    out = {}
    for name, values in options.items():
        vals = values if isinstance(values, list) else [values]
        ok = vals and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in vals)
        if not _NAME_RE.match(str(name)) or not ok or len({repr(v) for v in vals}) != len(vals):
            raise UsageError(f"option {name!r} in {where} must be a name with a number or a name, or a list of distinct "
                             f"ones, e.g. {name}: [0, 1.5]; got {values!r}")
        out[str(name)] = [float(v) if isinstance(v, float) else v for v in vals]
    return out


def option_combinations(options: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's option values, in the order written ([{}] without options)."""
    import itertools

    names = list(options)
    return [dict(zip(names, combo)) for combo in itertools.product(*(options[n] for n in names))]


def check_steps(steps: Any, where: str) -> list[int] | None:
    """A grid's step counts: positive integers (a sampler needs at least one step)."""
    if steps is None:
        return None
    if not steps or not all(_is_int(x) and x >= 1 for x in steps):
        raise UsageError(f"steps in {where} must be positive integers, e.g. steps: [4, 8, 16]; got {steps!r}")
    return [int(x) for x in steps]


def check_setting_values(s: dict[str, Any], where: str) -> None:
    """Types and ranges of the merged settings of one grid."""
    for key, low in (("n_samples", 2), ("n_reference", 2), ("bootstrap", 0)):
        if not _is_int(s[key]) or s[key] < low:
            raise UsageError(f"setting {key!r} in {where} must be an integer >= {low}; got {s[key]!r}")
    if not isinstance(s.get("train") or {}, dict):
        raise UsageError(f"setting 'train' in {where} must be a mapping, e.g. train: {{steps: 500}}; got {s['train']!r}")
    names = s["features"] if isinstance(s["features"], list) else [s["features"]]
    if not names or not all(isinstance(f, str) and f for f in names) or len(set(names)) != len(names):
        raise UsageError(f"setting 'features' in {where} must be a name (auto, raw, domain:digits, ...) or a list of "
                         f"distinct names, e.g. [auto, dinov2:vits14, clip]; got {s['features']!r}")
    check_metric_names(s["metrics"])


def feature_names(features: str | list[str]) -> list[str]:
    """The feature spaces a ``features`` setting names, in order (a name or a list of names)."""
    return list(features) if isinstance(features, list) else [features]


def metrics_per_space(names: list[str] | None, spaces: list[str], modality: str, where: str) -> dict[str, list[str] | None]:
    """{feature space: the named metrics it computes} for a grid's distinct (resolved) spaces. One space
    takes every named metric (one it cannot give is an error); with several, each takes those it can
    give, and a metric no space can give is an error (naming why the first space cannot)."""
    spaces = list(dict.fromkeys(spaces))  # auto and the name it resolves to are one space
    if len(spaces) == 1 or names is None:
        for f in spaces:
            check_metrics_fit(names, f, modality, where)
        return {f: names for f in spaces}
    out: dict[str, list[str] | None] = {f: [] for f in spaces}
    for m in names:
        fits = [f for f in spaces if _fits(m, f, modality, where)]
        if not fits:
            check_metrics_fit([m], spaces[0], modality, where)  # raises, saying why
        for f in fits:
            out[f].append(m)
    return {f: m for f, m in out.items() if m}  # a space none of the named metrics fits has nothing to compute


def _fits(metric: str, features: str, modality: str, where: str) -> bool:
    try:
        check_metrics_fit([metric], features, modality, where)
    except UsageError:
        return False
    return True


def check_metric_names(names: Any) -> None:
    """Metric names of a suite: registered metrics or likelihood metrics, with "did you mean"."""
    from genbench.metrics.base import METRICS
    from genbench.spec import LIKELIHOOD_METRICS

    if names is not None and not isinstance(names, list):
        raise UsageError(f"setting 'metrics' must be a list, e.g. [fid, precision, recall]; got {names!r}")
    known = sorted({*METRICS.names(), *LIKELIHOOD_METRICS})
    for m in names or ():
        check_choice(str(m), known, "metric")


def check_metrics_fit(names: list[str] | None, features: str, modality: str, where: str) -> None:
    """Each named metric can be computed from ``features`` on data of ``modality`` (IS needs logits, ...)."""
    from genbench.data.base import IMAGES
    from genbench.metrics.base import METRICS
    from genbench.spec import BPD, LIKELIHOOD_METRICS, NLL

    keys = feature_keys_of(features)
    for m in names or ():
        if m in LIKELIHOOD_METRICS:
            right = BPD if modality == IMAGES else NLL
            if m != right:
                raise UsageError(f"{where}: metric {m!r} is not reported for {modality}; use {right!r}")
            continue
        needs = METRICS.get(m).needs
        if keys is not None and needs not in keys:
            raise UsageError(f"{where}: metric {m!r} needs {needs!r} features but {features!r} gives only "
                             f"{', '.join(keys)}; drop {m!r} or use features that have them (inception, domain:DATASET)")


def feature_keys_of(features: str) -> tuple[str, ...] | None:
    """The feature keys an extractor returns, read from its class (its factory's return annotation)
    without building it; None when the factory does not name its class."""
    import typing

    from genbench.features.base import FEATURES

    factory = FEATURES.get(features.partition(":")[0])
    try:
        cls = typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that cannot be resolved: checked when the spec runs
        return None
    keys = getattr(cls, "feature_keys", None)
    return tuple(keys) if keys else None


def check_primary_metric(key: str, suite: str) -> None:
    from genbench.metrics.base import KEYS, metric_key

    if metric_key(key) is None:
        check_choice(key, sorted(KEYS), f"primary_metric of suite {suite}")


def resolve_features(name: str, dataset: Any) -> str:
    """``auto`` -> the dataset's default extractor (recorded in the spec); others are kept."""
    if name != "auto":
        from genbench.features.base import FEATURES

        FEATURES.get(name.partition(":")[0])
        return name
    try:
        from genbench.reference import default_features
    except ImportError:
        return "raw"
    return default_features(dataset, None)
