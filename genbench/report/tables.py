"""``genbench results`` and ``genbench ls``: stored runs and registries as text."""

from __future__ import annotations

import json
from pathlib import Path

from genbench.store import ResultsStore, records_to_frame

SPEC_COLUMNS = ["dataset", "model", "sampler", "steps", "seed", "status"]


def render_results(run_dir: Path, fmt: str) -> str:
    """The records stored under ``run_dir`` as table, csv, json, markdown or latex."""
    records = ResultsStore(run_dir, create=False).records()
    if fmt == "json":
        return json.dumps([r.to_dict() for r in records], indent=1, sort_keys=True, default=str)
    if fmt == "markdown":
        from genbench.report.leaderboard import render_markdown, suite_of_records

        suite = suite_of_records(records)
        return render_markdown(records, suite.name, suite.primary_metric, suite.description)
    frame = records_to_frame(records)
    if fmt == "latex":
        from genbench.report.latex import results_to_latex

        return results_to_latex(frame)
    if fmt == "csv":
        return frame.to_csv(index=False)
    if frame.empty:
        return "(no records)"
    hide = {"key", "created_at", "suite", "family", "error", "weights_sha256", "warnings"} | {c for c in frame.columns if c.endswith(("_ci_low", "_ci_high"))}
    if frame["options"].isna().all():  # a column of sampling options only where some run has them
        hide.add("options")
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


# ----------------------------------------------------------------------------------------------
# Seeds, parquet


CONFIG_COLUMNS = ["dataset", "features", "weights_sha256", "model", "family", "sampler", "steps", "options"]  # the suite is not hashed
SEED_STD_SUFFIX = "_seed_std"


def aggregate_seeds(df):
    """One row per configuration (every column of ``CONFIG_COLUMNS`` present) over the ok rows of a
    ``records_to_frame`` DataFrame: each metric's mean across seeds, its std across seeds (ddof 1,
    ``<metric>_seed_std``; NaN for one seed), ``n_seeds`` and ``seeds`` (comma list)."""
    import pandas as pd

    from genbench.store import FRAME_INFO_COLUMNS

    if df.empty:
        return df.copy()
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    by = [c for c in CONFIG_COLUMNS if c in ok.columns]
    skip = set(FRAME_INFO_COLUMNS) | {c for c in ok.columns if c.endswith(("_ci_low", "_ci_high"))}
    from genbench.report.leaderboard import COLUMN_ORDER

    numeric = [c for c in ok.columns if c not in skip and pd.api.types.is_numeric_dtype(ok[c])]
    metrics = [c for c in COLUMN_ORDER if c in numeric] + sorted(set(numeric) - set(COLUMN_ORDER))
    grouped = ok.groupby(by, dropna=False, sort=True)
    mean = grouped[metrics].mean()
    std = grouped[metrics].std(ddof=1).add_suffix(SEED_STD_SUFFIX)
    seeds = grouped["seed"].agg(lambda s: ",".join(str(int(v)) for v in sorted(s))).rename("seeds")
    count = grouped["seed"].nunique().rename("n_seeds")
    cols = [c for m in metrics for c in (m, m + SEED_STD_SUFFIX)]
    out = pd.concat([mean, std], axis=1)[cols].join(count).join(seeds).reset_index()
    return out[by + ["n_seeds", "seeds"] + cols]


def frame_to_parquet(df, path: Path) -> Path:
    """Write a results DataFrame as Parquet (needs pyarrow: ``pip install 'genbench[parquet]'``)."""
    from genbench.cache import atomic_write_bytes
    from genbench.errors import UsageError

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow, which is not installed; pip install 'genbench[parquet]'") from None
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
