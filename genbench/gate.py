"""Comparisons between runs and the CI gate: pure functions over records and DataFrames.

``genbench compare A B`` and ``genbench check --baseline FILE --results DIR`` are thin wrappers
over this module. Records are matched by *cell*: the spec's hash without its seed (and suite
name), so the seeds of one cell are aggregated; metric directions come from each metric key's own
``higher_is_better`` flag.

A difference is *significant* (``basis``):

* ``seeds``: both sides have at least two seeds; Welch's t-test (unequal variances) at ``alpha``;
* ``intervals``: both sides have a confidence interval (bootstrap) and the two do not overlap;
  with an interval on one side only, the other value lies outside it;
* ``none``: no interval on either side; significance is unknown (``None``).

``check`` reports a regression when a metric got worse than the baseline by more than its
tolerance AND the difference is significant (or, without any interval, by the tolerance alone);
a spec of the baseline whose current run failed is a regression too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from genbench.cache import content_key
from genbench.errors import UsageError
from genbench.spec import OK, Record, RunSpec, options_label, record_from_dict

BASELINE_FORMAT = "genbench-baseline"
BASELINE_VERSION = 1
ALPHA = 0.05
SPREAD_KEYS = frozenset({"kid_std", "is_std"})  # spreads of other keys, not quantities to compare
TIMING_KEYS = frozenset({"sample_s_per_1k", "train_s"})  # wall-clock: checked only with an explicit tolerance
LABELS = ("dataset", "model", "sampler", "steps", "options", "features")
NOISE_RTOL = 1e-6  # differences below this (relative) are float noise across CPUs and batch sizes, never a regression


# --- cells: a spec without its seed ---------------------------------------------------------

def cell_key(spec: RunSpec) -> str:
    """The hash of every field of ``spec`` that can change a number, except the seed."""
    return content_key({k: v for k, v in spec.to_dict().items() if k not in ("suite", "seed")})


def cell_labels(spec: RunSpec) -> dict[str, Any]:
    return {"dataset": spec.dataset, "model": spec.model, "sampler": spec.sampler,
            "steps": spec.steps if spec.steps is not None else pd.NA,
            "options": options_label(spec.options).strip(" []") or pd.NA, "features": spec.features}


def records_to_long(records: Iterable[Record]) -> pd.DataFrame:
    """One row per (ok record, metric): cell, labels, seed, metric, value, ci_low, ci_high."""
    rows = []
    for r in records:
        if r.status != OK:
            continue
        base = {"cell": cell_key(r.spec), **cell_labels(r.spec), "seed": r.spec.seed}
        for k, v in r.metrics.items():
            if k in SPREAD_KEYS or not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                continue
            lo, hi = r.ci.get(k, (math.nan, math.nan))
            rows.append({**base, "metric": k, "value": float(v), "ci_low": float(lo), "ci_high": float(hi)})
    cols = ["cell", *LABELS, "seed", "metric", "value", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, metric): mean over seeds, std (ddof 1), n_seeds, the seeds' values, and an interval:
    the record's own (bootstrap) interval for one seed, a t interval of the mean for several."""
    from scipy import stats

    rows = []
    for (cell, metric), g in long.groupby(["cell", "metric"], sort=False):
        vals = g["value"].to_numpy()
        k = len(vals)
        mean = float(vals.mean())
        std = float(vals.std(ddof=1)) if k > 1 else math.nan
        if k > 1:
            half = float(stats.t.ppf(1 - ALPHA / 2, k - 1)) * std / math.sqrt(k)
            lo, hi = mean - half, mean + half
        else:
            lo, hi = float(g["ci_low"].iloc[0]), float(g["ci_high"].iloc[0])
        first = g.iloc[0]
        rows.append({"cell": cell, **{c: first[c] for c in LABELS}, "metric": metric, "value": mean, "std": std,
                     "n_seeds": k, "ci_low": lo, "ci_high": hi, "values": tuple(float(v) for v in vals)})
    cols = ["cell", *LABELS, "metric", "value", "std", "n_seeds", "ci_low", "ci_high", "values"]
    return pd.DataFrame(rows, columns=cols)


# --- significance and comparison --------------------------------------------------------------

def significance(a: pd.Series, b: pd.Series, alpha: float = ALPHA) -> tuple[bool | None, str]:
    """Whether summary rows ``a`` and ``b`` (one metric of one cell) differ, and on what basis."""
    from scipy import stats

    if a["n_seeds"] >= 2 and b["n_seeds"] >= 2:
        noise = NOISE_RTOL * max(1.0, abs(a["value"]), abs(b["value"]))
        if a["std"] <= noise and b["std"] <= noise:  # seeds that agree: the test is undefined, the means decide
            return bool(abs(a["value"] - b["value"]) > noise), "seeds"
        p = stats.ttest_ind(a["values"], b["values"], equal_var=False).pvalue
        return bool(p < alpha), "seeds"
    has_a, has_b = _has_interval(a), _has_interval(b)
    if has_a and has_b:
        return bool(a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"]), "intervals"
    if has_a or has_b:
        inside, other = (a, b) if has_a else (b, a)
        return bool(not inside["ci_low"] <= other["value"] <= inside["ci_high"]), "intervals"
    return None, "none"


def _has_interval(row: pd.Series) -> bool:
    return math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"])


def higher_is_better(metric: str) -> bool | None:
    from genbench.metrics.base import metric_key

    mk = metric_key(metric)
    return None if mk is None else mk.higher_is_better


def compare(records_a: Iterable[Record], records_b: Iterable[Record], alpha: float = ALPHA) -> pd.DataFrame:
    """Every metric of every cell in both: a, b, diff (b - a), rel_diff, better ("a", "b" or ""),
    significant (True, False or None) and its basis. Raises UsageError when no cell is in both."""
    table = _compare(records_a, records_b, alpha)
    if table.empty:
        raise UsageError(NO_COMMON)
    return table


NO_COMMON = ("the two result sets have no successful spec in common (same dataset, model, sampler, steps, n, "
             "features and training); compare runs of the same suite")


def _compare(records_a: Iterable[Record], records_b: Iterable[Record], alpha: float) -> pd.DataFrame:
    sa, sb = summarise(records_to_long(records_a)), summarise(records_to_long(records_b))
    both = sa.merge(sb, on=["cell", "metric"], suffixes=("_a", "_b"))
    rows = []
    for _, r in both.iterrows():
        a, b = _side(r, "_a"), _side(r, "_b")
        sig, basis = significance(a, b, alpha)
        hib = higher_is_better(r["metric"])
        diff = b["value"] - a["value"]
        better = "" if hib is None or diff == 0 else ("b" if (diff > 0) == hib else "a")
        rows.append({**{c: r[f"{c}_a"] for c in LABELS}, "metric": r["metric"], "a": a["value"], "b": b["value"],
                     "diff": diff, "rel_diff": diff / abs(a["value"]) if a["value"] else math.nan, "better": better,
                     "significant": sig, "basis": basis, "n_seeds_a": int(a["n_seeds"]), "n_seeds_b": int(b["n_seeds"]),
                     "cell": r["cell"]})
    cols = [*LABELS, "metric", "a", "b", "diff", "rel_diff", "better", "significant", "basis", "n_seeds_a", "n_seeds_b", "cell"]
    return pd.DataFrame(rows, columns=cols)


def _side(row: pd.Series, suffix: str) -> pd.Series:
    names = ["value", "std", "n_seeds", "ci_low", "ci_high", "values"]
    return pd.Series({n: row[f"{n}{suffix}"] for n in names})


# --- baselines --------------------------------------------------------------------------------

def make_baseline(records: Iterable[Record], source: str = "") -> dict[str, Any]:
    """A baseline: the ok records of a run, serialised with their specs, metrics and intervals."""
    from genbench import __version__

    ok = [r.to_dict() for r in records if r.status == OK]
    if not ok:
        raise UsageError(f"the results in {source or 'this store'} hold no successful run to make a baseline from; "
                         "run the suite first")
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "genbench": __version__, "source": source,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "records": ok}


def write_baseline(baseline: dict[str, Any], path: Path | str) -> Path:
    from genbench.cache import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, (json.dumps(baseline, indent=1, sort_keys=True, default=str) + "\n").encode())
    return path


def read_baseline(path: Path | str) -> list[Record]:
    """The records of a baseline file; a missing, unreadable or foreign file is a UsageError."""
    path = Path(path)
    fix = "make one with `genbench baseline RUN_DIR --out FILE`"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"baseline {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise UsageError(f"baseline {path} is a directory, not a baseline file; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"baseline {path} cannot be read ({getattr(e, 'strerror', None) or e}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("format") != BASELINE_FORMAT:
        raise UsageError(f"{path} is not a genbench baseline (no \"format\": \"{BASELINE_FORMAT}\"); {fix}")
    if raw.get("version") != BASELINE_VERSION:
        raise UsageError(f"baseline {path} has version {raw.get('version')!r}, this genbench reads {BASELINE_VERSION}; {fix}")
    try:
        return [record_from_dict(d) for d in raw["records"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"baseline {path} is damaged ({type(e).__name__}: {e}); {fix}") from None


# --- the gate ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tolerance:
    """How much worse a metric may get: ``value`` absolute, or a fraction of |baseline| when ``relative``."""

    value: float
    relative: bool = False

    def allowed(self, baseline: float) -> float:
        return self.value * abs(baseline) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


_TOL_RE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([0-9.eE+-]+)\s*(%?)\s*$")


def parse_tolerances(items: Iterable[str]) -> dict[str, Tolerance]:
    """``["fid=0.5", "precision=2%"]`` -> {metric: Tolerance}; unknown metrics and bad values are UsageErrors."""
    from genbench.metrics.base import KEYS, metric_key
    from genbench.registry import check_choice

    out: dict[str, Tolerance] = {}
    for item in items:
        m = _TOL_RE.match(item)
        value = _float(m.group(2)) if m else None
        if m is None or value is None or value < 0:
            raise UsageError(f"--tolerance {item!r} must read METRIC=VALUE or METRIC=PERCENT%, with VALUE >= 0, "
                             "e.g. --tolerance fid=0.5 --tolerance precision=2%")
        name = m.group(1)
        if metric_key(name) is None:
            check_choice(name, sorted(set(KEYS) - SPREAD_KEYS), "metric in --tolerance")
        out[name] = Tolerance(value / 100 if m.group(3) else value, bool(m.group(3)))
    return out


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def check(baseline: Iterable[Record], current: Iterable[Record], tolerances: dict[str, Tolerance] | None = None,
          alpha: float = ALPHA) -> pd.DataFrame:
    """The regressions of ``current`` against ``baseline``: one row per (cell, metric) that got worse
    beyond its tolerance and significantly, and one per baseline cell whose current run failed.

    Wall-clock metrics are checked only when ``tolerances`` names them. Raises UsageError when the
    two share no cell, or when a tolerance names a metric that no shared cell reports.
    """
    baseline, current = list(baseline), list(current)
    tolerances = dict(tolerances or {})
    if common_cells(baseline, current) == 0:
        raise UsageError(NO_COMMON.replace("result sets", "baseline and the results"))
    table = _compare(baseline, current, alpha)
    unused = sorted(set(tolerances) - set(table["metric"]))
    if unused and not table.empty:
        raise UsageError(f"--tolerance names {unused[0]!r}, which no spec in both the baseline and the results reports; "
                         f"they report {', '.join(sorted(set(table['metric'])))}")
    rows = [row for _, r in table.iterrows() if (row := _regression(r, tolerances)) is not None]
    rows += _failed_cells(baseline, current)
    cols = [*LABELS, "metric", "baseline", "current", "worse_by", "tolerance", "significant", "basis"]
    return pd.DataFrame(rows, columns=cols)


def _regression(r: pd.Series, tolerances: dict[str, Tolerance]) -> dict[str, Any] | None:
    metric = r["metric"]
    hib = higher_is_better(metric)
    if hib is None or (metric in TIMING_KEYS and metric not in tolerances):
        return None
    tol = tolerances.get(metric, Tolerance(0.0))
    worse_by = (r["a"] - r["b"]) if hib else (r["b"] - r["a"])
    noise = NOISE_RTOL * max(1.0, abs(r["a"]))
    if worse_by <= tol.allowed(r["a"]) + noise or r["significant"] is False:
        return None  # within tolerance, or inside the interval (None: no interval, the tolerance decides)
    return {**{c: r[c] for c in LABELS}, "metric": metric, "baseline": r["a"], "current": r["b"], "worse_by": worse_by,
            "tolerance": str(tol), "significant": r["significant"], "basis": r["basis"]}


def _failed_cells(baseline: list[Record], current: list[Record]) -> list[dict[str, Any]]:
    """Baseline cells with an ok record whose current records are all failed."""
    ok_before = {cell_key(r.spec): r.spec for r in baseline if r.status == OK}
    now: dict[str, list[Record]] = {}
    for r in current:
        now.setdefault(cell_key(r.spec), []).append(r)
    rows = []
    for cell, spec in ok_before.items():
        recs = now.get(cell, [])
        if recs and all(r.status != OK for r in recs):
            rows.append({**cell_labels(spec), "metric": "status", "baseline": OK, "current": recs[0].status,
                         "worse_by": recs[0].error or "", "tolerance": "", "significant": None, "basis": "status"})
    return rows


def common_cells(baseline: Iterable[Record], current: Iterable[Record]) -> int:
    """How many cells the two sets share (0 makes a check meaningless)."""
    return len({cell_key(r.spec) for r in baseline} & {cell_key(r.spec) for r in current})


# --- output -----------------------------------------------------------------------------------

def json_rows(df: pd.DataFrame, drop: tuple[str, ...] = ("cell",)) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN and NA become null, numpy scalars plain numbers)."""
    out = []
    for row in df.drop(columns=[c for c in drop if c in df.columns]).to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def text_table(df: pd.DataFrame, drop: tuple[str, ...] = ("cell",)) -> str:
    """A fixed-width table for the terminal; ``significant`` reads yes / no / n/a."""
    shown = df.drop(columns=[c for c in drop if c in df.columns]).copy()
    if "significant" in shown.columns:
        shown["significant"] = [("n/a" if s is None or s is pd.NA else "yes" if s else "no") for s in shown["significant"]]
    if "steps" in shown.columns:
        shown["steps"] = [("–" if s is None or s is pd.NA else str(int(s))) for s in shown["steps"]]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.6g}", na_rep="–")
