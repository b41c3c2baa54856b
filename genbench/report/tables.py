"""``genbench results`` and ``genbench ls``: stored runs and registries as text."""

from __future__ import annotations

import json
from pathlib import Path

from genbench.store import ResultsStore, records_to_frame

SPEC_COLUMNS = ["dataset", "model", "sampler", "steps", "seed", "status"]


def render_results(run_dir: Path, fmt: str) -> str:
    """The records stored under ``run_dir`` as table, csv, json or markdown."""
    records = ResultsStore(run_dir, create=False).records()
    if fmt == "json":
        return json.dumps([r.to_dict() for r in records], indent=1, sort_keys=True, default=str)
    if fmt == "markdown":
        from genbench.report.leaderboard import render_markdown

        suites = sorted({r.spec.suite for r in records})
        return render_markdown(records, ", ".join(suites) or "(empty)", "fid")
    frame = records_to_frame(records)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if frame.empty:
        return "(no records)"
    hide = {"key", "created_at", "suite", "family", "error"} | {c for c in frame.columns if c.endswith(("_ci_low", "_ci_high"))}
    shown = frame[[c for c in frame.columns if c not in hide]]
    return shown.to_markdown(index=False, floatfmt=".4g") if hasattr(shown, "to_markdown") else shown.to_string(index=False)


def listing(kind: str) -> list[tuple[str, str]]:
    """(name, one-line description) for everything of ``kind`` genbench knows."""
    if kind == "datasets":
        from genbench.data.base import DATASETS

        return [(e.name, e.description) for e in DATASETS.entries()]
    if kind == "features":
        from genbench.features.base import FEATURES

        return [(e.name, e.description) for e in FEATURES.entries()]
    if kind == "metrics":
        from genbench.metrics.base import METRICS, metric_key

        return [(e.name, f"{e.description} [{', '.join(f'{k} {_arrow(metric_key(k))}' for k in e.obj.keys)}]") for e in METRICS.entries()]
    if kind == "models":
        return _models()
    if kind == "samplers":
        from genbench.samplers.base import SAMPLERS

        return [(e.name, f"({e.obj.kind}{', stochastic' if e.obj.stochastic else ''}) {e.description}") for e in SAMPLERS.entries()]
    if kind == "suites":
        from genbench.suite import builtin_suite_names, load_suite

        out = []
        for name in builtin_suite_names():
            s = load_suite(name)
            out.append((name, s.description.strip().splitlines()[0] if s.description.strip() else ""))
        return out
    raise ValueError(kind)


def _models() -> list[tuple[str, str]]:
    from genbench.models.base import MODELS
    from genbench.recipes import _raw_recipe, recipe_names

    rows = [(name, f"recipe, family {_raw_recipe(name)['family']}: {_raw_recipe(name).get('description', '')}") for name in recipe_names()]
    rows += [(f"family:{e.name}", e.description) for e in MODELS.entries()]
    return rows


def _arrow(mk) -> str:
    return "" if mk is None else ("↑" if mk.higher_is_better else "↓")
