"""Markdown leaderboards: one table per dataset, one column group per feature space, written from the store.

The records of one configuration evaluated in several feature spaces (a suite's ``features: [auto,
dinov2, clip]``: the same samples) are one row, with a column group per space (``fid``, ...,
``fd_dinov2``, ..., ``cmmd_clip``) and the model's own columns (likelihood, NFE, time) once. Spaces
whose keys would share a column (Inception and a domain classifier both report ``fid``) get tables
of their own: a column never mixes feature spaces.

Each table has a column per metric with the arrow from the metric's own higher-is-better flag,
the best value of each column in bold, and rows sorted by a metric that fits the data
(``sort_metric``: FID on images; on toy 2-D points one that sees the modes, NLL or coverage).
Rows that share everything but the seed are one row, ``mean ± std`` across seeds, with each
seed's own row (and interval) listed below the table. Every warning a row carries is a footnote
mark in the table with the footnote under it (``row_warnings``); ``collect_warnings`` returns the
same warnings as lines for a terminal. Figures and a Pareto table (``genbench.report.figures``)
are written beside the Markdown and linked from it.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from genbench.cache import UnwritableError, WriteFailure, atomic_write_bytes, content_key
from genbench.spec import OK, Record, frame_options, options_label, record_warnings

COLUMN_ORDER = ("fid", "fd_inf", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "cmmd", "vendi",
                "vendi_per_class", "authpct", "nn_ratio", "intra_fid", "class_consistency", "modes_captured", "high_quality",
                "mode_kl", "validity", "unique@1k", "unique@10k", "novelty", "filters", "intdiv1", "intdiv2", "fcd", "snn",
                "frag", "scaf", "bpd", "nll", "nfe", "sample_s_per_1k", "train_s")
PAIRED_STD = {"kid_mean": "kid_std", "is_mean": "is_std"}
HIDDEN = set(PAIRED_STD.values())
LIKELIHOOD_KEYS = ("bpd", "nll")
# what a row reports of the model and its one sampling pass, in no feature space (shown once per row)
MODEL_KEYS = frozenset({*LIKELIHOOD_KEYS, "nfe", "sample_s_per_1k", "train_s"})
SPEC_HEAD = ["model", "family", "sampler", "steps"]
SUPERSCRIPT = str.maketrans("0123456789,", "⁰¹²³⁴⁵⁶⁷⁸⁹˒")
# warnings the leaderboard states itself, in one wording per kind (so one footnote serves every row)
_RESTATED = ("outside its bootstrap interval", "outside its own bootstrap interval", "outside its bias-corrected interval")


def arrow(key: str) -> str:
    from genbench.metrics.base import metric_key

    mk = metric_key(key)
    return "" if mk is None else ("↑" if mk.higher_is_better else "↓")


def higher_is_better(key: str) -> bool | None:
    from genbench.metrics.base import metric_key

    mk = metric_key(key)
    return None if mk is None else mk.higher_is_better


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        a = abs(v)
        return f"{v:.3g}" if a >= 1000 else f"{v:.4g}" if a >= 0.01 or a == 0 else f"{v:.2e}"
    return str(v)


def fmt_spread(v: float) -> str:
    """A std across seeds to two significant digits (more would be noise)."""
    return "0" if v == 0 else f"{v:.2g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))


# ----------------------------------------------------------------------------------------------
# Rows: one per configuration (everything but the seed), from records or from a DataFrame


@dataclass
class Row:
    """One leaderboard row: a configuration over one or more seeds."""

    dataset: str
    space: str  # the feature space: extractor name (+ weights sha256 prefix when not the only one)
    model: str
    family: str
    sampler: str
    steps: int | None
    seeds: list[int]
    metrics: dict[str, float]  # the seed mean when several seeds
    seed_std: dict[str, float] = field(default_factory=dict)  # std across seeds (ddof 1), several seeds only
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # one seed only
    warnings: list[str] = field(default_factory=list)  # what the record carries (metric notes)
    n_fake: int | None = None
    n_real: int | None = None
    kid_subset_size: int | None = None
    likelihood_kind: str | None = None
    label: str = ""
    nll_true: float | None = None  # toy data: the reference points' NLL under the true density
    key: str = ""  # the record's key (the first seed's, for an aggregated row)
    ci_method: str | None = None  # how the intervals were made (None: the percentile bootstrap of older stores)
    members: list["Row"] = field(default_factory=list)  # the per-seed rows of an aggregated row
    key_space: dict[str, str] = field(default_factory=dict)  # feature metric key -> its space (several spaces)
    knn_k: dict[str, int] = field(default_factory=dict)  # {"prc_k": 3, "dc_k": 5}: the k each k-NN pair used
    options: dict[str, Any] = field(default_factory=dict)  # the spec's sampling options (guidance, eta, ...)

    @property
    def sampler_label(self) -> str:
        """The sampler with its sampling options, as tables show it: ``ddim [guidance=2]``."""
        return self.sampler + options_label(self.options)

    def value(self, key: str) -> float | None:
        v = self.metrics.get(key)
        return float(v) if _is_number(v) else None


def feature_space(rec: Record) -> str:
    p = rec.provenance
    name = p.get("features", rec.spec.features)
    sha = p.get("weights_sha256")
    return f"{name} (weights {sha[:12]})" if sha else str(name)


def row_of_record(rec: Record) -> Row:
    s, p = rec.spec, rec.provenance
    warnings = record_warnings(rec)
    return Row(s.dataset, feature_space(rec), s.model, s.family, s.sampler, s.steps, [s.seed],
               {k: v for k, v in rec.metrics.items() if _is_number(v)}, ci=dict(rec.ci), warnings=warnings,
               n_fake=p.get("n_fake"), n_real=p.get("n_real"), kid_subset_size=rec.info.get("kid_subset_size"),
               likelihood_kind=rec.info.get("likelihood_kind"), label=s.label(), nll_true=rec.info.get("nll_true_density"),
               key=rec.key, ci_method=rec.info.get("ci_method"), options=dict(s.options),
               key_space={k: feature_space(rec) for k in rec.metrics if k not in MODEL_KEYS},
               knn_k={k: int(rec.info[k]) for k in ("prc_k", "dc_k") if isinstance(rec.info.get(k), int)})


def merge_rows(rows: list[Row]) -> Row:
    """One row from one seed of a configuration in several feature spaces: each space's metrics, and the
    model's own (likelihood, NFE, time: one sampling pass) once, from the first space."""
    if len(rows) == 1:
        return rows[0]
    first = rows[0]
    metrics, ci, key_space = {}, {}, {}
    for r in rows:
        for k, v in r.metrics.items():
            metrics.setdefault(k, v)
        for k, sp in r.key_space.items():
            key_space.setdefault(k, sp)
        ci.update({k: v for k, v in r.ci.items() if k not in first.ci})
    ci.update(first.ci)
    return replace(first, space=" + ".join(dict.fromkeys(r.space for r in rows)), metrics=metrics, ci=ci,
                   warnings=list(dict.fromkeys(w for r in rows for w in r.warnings)), key_space=key_space,
                   kid_subset_size=next((r.kid_subset_size for r in rows if r.kid_subset_size is not None), None),
                   likelihood_kind=next((r.likelihood_kind for r in rows if r.likelihood_kind), None),
                   knn_k={k: v for r in reversed(rows) for k, v in r.knn_k.items()})


def rows_of_frame(df: pd.DataFrame) -> list[Row]:
    """Rows of a ``records_to_frame`` DataFrame (ok rows only), one per record."""
    from genbench.store import FRAME_INFO_COLUMNS, WARNING_SEPARATOR

    if df.empty:
        return []
    ci_keys = {c[: -len("_ci_low")] for c in df.columns if c.endswith("_ci_low")}
    skip = set(FRAME_INFO_COLUMNS) | {c for c in df.columns if c.endswith(("_ci_low", "_ci_high"))}
    rows = []
    for _, r in df[df["status"] == OK].iterrows():
        metrics = {c: float(r[c]) for c in df.columns if c not in skip and _is_number(_py(r[c]))}
        ci = {k: (float(r[f"{k}_ci_low"]), float(r[f"{k}_ci_high"])) for k in ci_keys
              if _is_number(_py(r[f"{k}_ci_low"])) and _is_number(_py(r[f"{k}_ci_high"]))}
        text = r.get("warnings")
        warnings = [w for w in str(text).split(WARNING_SEPARATOR) if w] if isinstance(text, str) else []
        steps = None if pd.isna(r["steps"]) else int(r["steps"])
        options = frame_options(r.get("options"))
        label = (f"{r['dataset']} | {r['model']} | {r['sampler']}{'@' + str(steps) if steps is not None else ''}"
                 f"{options_label(options)} | seed {r['seed']}")
        sha = _str(r.get("weights_sha256"))
        space = f"{r.get('features')} (weights {sha[:12]})" if sha else str(r.get("features"))
        rows.append(Row(r["dataset"], space, r["model"], r["family"], r["sampler"], steps, [int(r["seed"])],
                        metrics, ci=ci, warnings=warnings, n_fake=_int(r.get("n_fake")), n_real=_int(r.get("n_real")),
                        kid_subset_size=_int(r.get("kid_subset_size")), likelihood_kind=_str(r.get("likelihood_kind")),
                        label=label, options=options))
    return rows


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _str(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _config_key(rec: Record) -> str:
    """A row's configuration: the spec but its seed, suite, and the feature space it was evaluated in."""
    return content_key({k: v for k, v in rec.spec.to_dict().items() if k not in ("seed", "suite", "features", "metrics")})


def aggregate_rows(rows: list[Row]) -> Row:
    """Several seeds of one configuration: mean and std (ddof 1) across seeds of every metric."""
    if len(rows) == 1:
        return rows[0]
    first = rows[0]
    keys = sorted({k for r in rows for k in r.metrics})
    mean, std = {}, {}
    for k in keys:
        vals = [r.metrics[k] for r in rows if k in r.metrics]
        mean[k] = sum(vals) / len(vals)
        if len(vals) > 1:
            std[k] = math.sqrt(sum((v - mean[k]) ** 2 for v in vals) / (len(vals) - 1))
    warnings = list(dict.fromkeys(w for r in rows for w in r.warnings))
    first = min(rows, key=lambda r: r.seeds)
    return Row(first.dataset, first.space, first.model, first.family, first.sampler, first.steps,
               sorted(s for r in rows for s in r.seeds), mean, std, {}, warnings, first.n_fake, first.n_real,
               first.kid_subset_size, first.likelihood_kind, first.label, first.nll_true, first.key,
               members=sorted(rows, key=lambda r: r.seeds), key_space={k: v for r in rows for k, v in r.key_space.items()},
               knn_k={k: v for r in rows for k, v in r.knn_k.items()}, options=first.options)


def table_groups(records: list[Record]) -> dict[tuple[str, str], list[Row]]:
    """(dataset, feature spaces) -> rows. The ok records of one configuration and seed, one per feature
    space, make one row (``merge_rows``); its seeds make one aggregated row. A dataset's spaces share a
    table unless their keys collide (``space_tables``); the table's name joins its spaces with " + "."""
    ok = [rec for rec in records if rec.status == OK]
    table_of = space_tables(ok)
    cells: dict[tuple[str, int, str, int], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for rec in ok:
        ds, space = rec.spec.dataset, feature_space(rec)
        cells[(ds, table_of[(ds, space)], _config_key(rec), rec.spec.seed)][space].append(rec)
    by_config: dict[tuple[str, int, str], list[Row]] = defaultdict(list)
    for (ds, table, config, _), per_space in cells.items():
        by_config[(ds, table, config)].append(merge_rows([_row_of_records(rs) for rs in per_space.values()]))
    groups: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for (ds, table, _), rows in by_config.items():
        groups[(ds, table)].append(aggregate_rows(rows))
    names = {key: " + ".join(dict.fromkeys(sp for r in rows for sp in r.space.split(" + "))) for key, rows in groups.items()}
    return dict(sorted(((ds, names[(ds, t)]), rows) for (ds, t), rows in groups.items()))


def _row_of_records(recs: list[Record]) -> Row:
    """One space's row of a configuration and seed; records with other metric lists (same samples) add their keys."""
    row = row_of_record(recs[0])
    for rec in recs[1:]:
        other = row_of_record(rec)
        row.metrics = {**other.metrics, **row.metrics}
        row.ci = {**other.ci, **row.ci}
    return row


def space_tables(records: list[Record]) -> dict[tuple[str, str], int]:
    """(dataset, feature space) -> the index of its table among the dataset's: each space joins the first
    table none of whose spaces report one of its keys (``fid`` of Inception and of a domain classifier),
    in order of first appearance."""
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in records:
        keys[(rec.spec.dataset, feature_space(rec))] |= {k for k in rec.metrics if k not in MODEL_KEYS}
    tables: dict[str, list[set[str]]] = defaultdict(list)
    out = {}
    for (ds, space), ks in keys.items():
        taken = tables[ds]
        i = next((i for i, t in enumerate(taken) if not t & ks), len(taken))
        if i == len(taken):
            taken.append(set())
        taken[i] |= ks
        out[(ds, space)] = i
    return out


# ----------------------------------------------------------------------------------------------
# Warnings (footnotes in the table, lines on the terminal)


def kid_has_no_spread(row: Row) -> bool:
    """KID's subsets are the whole sets (subset size >= n_fake and n_real): every subset is the same,
    so its std over subsets is 0 by construction and says nothing."""
    m = row.kid_subset_size
    if "kid_mean" not in row.metrics:
        return False
    if m is not None and row.n_fake is not None and row.n_real is not None:
        return m >= row.n_fake and m >= row.n_real
    return row.metrics.get("kid_std") == 0.0


def excluded_by_interval(row: Row) -> list[str]:
    """Metrics whose point estimate lies outside its own bootstrap interval."""
    out = []
    for k, (lo, hi) in row.ci.items():
        v = row.value(k)
        if v is not None and not lo <= v <= hi:
            out.append(k)
    return out


def cell_warnings(row: Row) -> dict[str, list[str]]:
    """Per column, the warnings its cell carries (``"model"``: those of the whole row)."""
    out: dict[str, list[str]] = defaultdict(list)
    out["model"] += [w for w in row.warnings if not any(s in w for s in _RESTATED)]
    if kid_has_no_spread(row) and len(row.seeds) == 1:
        out["kid_mean"].append(f"KID has no ± here: its subsets are the whole sets (subset size {row.kid_subset_size} "
                               f">= n_fake {row.n_fake} and n_real {row.n_real}), so every subset is the same and "
                               "the std over subsets is 0 by construction; a smaller --kid-subset-size gives a spread")
    for k in excluded_by_interval(row):
        out[k].append(interval_note(k, row.ci_method))
    for member in row.members:  # a seed's own notes; its intervals and subset spreads show in the per-seed table
        out["model"] += [w for w in cell_warnings(member)["model"] if w not in out["model"]]
    return out


def interval_note(key: str, method: str | None) -> str:
    """Why an estimate can lie outside its own interval, by how the interval was made."""
    if method:  # bias-corrected (half-sampling): the interval is for the population value
        return (f"{key}: the estimate lies outside its own 95% {method} interval: at this n the estimate is biased, "
                "and the bias-corrected interval is for the population value; compare intervals, not estimates")
    return (f"{key}: the estimate lies outside its own 95% bootstrap interval (resampling bias); "
            "read the interval as spread, not as a confidence interval for the estimate")


def row_warnings(row: Row) -> list[str]:
    return list(dict.fromkeys(w for ws in cell_warnings(row).values() for w in ws))


def table_warnings(rows: list[Row]) -> list[str]:
    """Warnings about a table as a whole: rows computed at different n."""
    from genbench.metrics import warn_if_different_n

    flat = [m for r in rows for m in (r.members or [r])]
    return warn_if_different_n([{"n1": r.n_fake, "n2": r.n_real, "kid_subset_size": r.kid_subset_size} for r in flat])


def collect_warnings(records_or_df: Iterable[Record] | pd.DataFrame, max_labels: int = 3) -> list[str]:
    """Every warning of a set of records (or of a ``records_to_frame`` DataFrame), one line per
    distinct warning: ``"<dataset> (<features>): <warning>"`` for a table, ``"<warning> (<spec
    label>; ...)"`` naming the records that carry it (the first ``max_labels``, then how many more)."""
    if isinstance(records_or_df, pd.DataFrame):
        rows = rows_of_frame(records_or_df)
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for r in rows:
            groups[(r.dataset, r.space)].append(r)
    else:
        groups = table_groups(list(records_or_df))
    lines, carriers = [], defaultdict(list)
    for (ds, space), rows in sorted(groups.items()):
        lines += [f"{ds} ({space}): {w}" for w in table_warnings(rows)]
        for row in rows:
            for member in row.members or [row]:
                for w in row_warnings(member):
                    carriers[w].append(member.label)
    for w, labels in carriers.items():
        shown = "; ".join(labels[:max_labels]) + (f"; and {len(labels) - max_labels} more" if len(labels) > max_labels else "")
        lines.append(f"{w} ({shown})")
    return list(dict.fromkeys(lines))


# ----------------------------------------------------------------------------------------------
# Tables


def metric_columns(rows: list[Row]) -> list[str]:
    """Metric columns in COLUMN_ORDER; keys named in a feature space (fd_dinov2) where their base key goes.
    With several feature spaces, one group of columns per space (in order of appearance), then the
    model's own columns (likelihood, NFE, time)."""
    from genbench.metrics.base import split_space

    present = {k for r in rows for k in r.metrics if split_space(k)[0] not in HIDDEN}
    spaces = column_groups(rows)
    if len(spaces) > 1:
        groups = [[k for k in present if _space_of(k, rows) == sp] for sp in spaces]
        return [k for g in groups for k in _ordered(g)] + _ordered([k for k in present if _space_of(k, rows) is None])
    return _ordered(present)


def _ordered(keys) -> list[str]:
    from genbench.metrics.base import split_space

    rank = {k: i for i, k in enumerate(COLUMN_ORDER)}
    ordered = sorted((k for k in keys if split_space(k)[0] in rank), key=lambda k: (rank[split_space(k)[0]], k))
    return ordered + sorted(set(keys) - set(ordered))


def column_groups(rows: list[Row]) -> list[str]:
    """The feature spaces whose columns a table shows, in order of appearance (one for most tables)."""
    return list(dict.fromkeys(sp for r in rows for m in (r.members or [r]) for sp in m.key_space.values()))


def _space_of(key: str, rows: list[Row]) -> str | None:
    return next((m.key_space[key] for r in rows for m in (r.members or [r]) if key in m.key_space), None)


def paired_std(key: str) -> str | None:
    """The std key shown beside ``key``: kid_std for kid_mean, kid_std_dinov2 for kid_mean_dinov2."""
    from genbench.metrics.base import space_key, split_space

    base, space = split_space(key)
    return space_key(PAIRED_STD[base], space) if base in PAIRED_STD else None


def sort_metric(dataset: str, rows: list[Row], primary: str) -> str:
    """FID (the suite's primary metric) on images; on toy 2-D points a metric that sees the modes:
    NLL when every row has one, else coverage (a Fréchet distance of 2-D points compares only
    means and covariances)."""
    have = {k for r in rows for k in r.metrics}
    if is_points(dataset, rows):
        # the mode-seeing metric that ranks the most rows (NLL first; GANs and EBMs have none, coverage all)
        count = {k: sum(r.value(k) is not None for r in rows) for k in ("nll", "coverage", "recall")}
        best = max(count, key=lambda k: count[k])
        if count[best]:
            return best
    if primary in have:
        return primary
    # no FID: the Frechet distance of the table's feature space (fd_dinov2, sfid), if any
    from genbench.metrics.base import split_space

    fds = [k for k in metric_columns(rows) if split_space(k)[0] == split_space(primary)[0]]  # the first space's first
    return "fid" if "fid" in have else (fds[0] if fds else primary)


def is_points(dataset: str, rows: list[Row]) -> bool:
    """Whether a table holds points (toy 2-D data): the dataset's modality where it is registered, else guessed
    (a toy2d name, or an NLL, which points report and images do not)."""
    from genbench.data.base import DATASETS, POINTS

    if dataset in DATASETS:
        return DATASETS.get(dataset).modality == POINTS
    return dataset.startswith("toy2d:") or any("nll" in r.metrics for r in rows)


def sort_rows(rows: list[Row], key: str) -> list[Row]:
    sign = -1.0 if higher_is_better(key) else 1.0

    def order(r: Row) -> tuple:
        v = r.value(key)
        return (v is None, sign * (v if v is not None else 0.0), r.model, r.sampler, r.steps or 0, sorted(map(str, r.options.items())), r.seeds)

    return sorted(rows, key=order)


def best_values(rows: list[Row], cols: list[str]) -> dict[str, float]:
    """The best value of each column with a direction (tied best values all bold)."""
    best = {}
    for c in cols:
        hib = higher_is_better(c)
        vals = [v for r in rows if (v := r.value(c)) is not None]
        if hib is not None and len(vals) > 1 and min(vals) != max(vals):  # a column of equal values has no best
            best[c] = max(vals) if hib else min(vals)
    return best


def cell(row: Row, key: str) -> str:
    """``value ± spread [interval]``: the spread is the std across seeds (several seeds) or KID/IS's std
    over subsets/splits (one seed; none for KID whose subsets are the whole sets)."""
    text = fmt(row.metrics.get(key))
    if len(row.seeds) > 1:
        if key in row.seed_std:
            text += f" ± {fmt_spread(row.seed_std[key])}"
        return text
    paired = paired_std(key)
    if paired in row.metrics and not (key == "kid_mean" and kid_has_no_spread(row)):
        text += f" ± {fmt(row.metrics[paired])}"
    if key in row.ci:
        lo, hi = row.ci[key]
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    return text


def _marks(notes: dict[str, int], texts: list[str]) -> str:
    nums = [str(notes.setdefault(t, len(notes) + 1)) for t in texts]
    return "".join(n.translate(SUPERSCRIPT) if i == 0 else ("," + n).translate(SUPERSCRIPT) for i, n in enumerate(nums))


def render_table(rows: list[Row], cols: list[str], notes: dict[str, int], bold: bool = True) -> list[str]:
    """Markdown lines of one table; footnote marks are numbered into ``notes`` (text -> number)."""
    several = any(len(r.seeds) > 1 for r in rows)
    ll = any(k in cols for k in LIKELIHOOD_KEYS)
    head = SPEC_HEAD + (["seeds"] if several else ["seed"])
    heads = list(head)
    for c in cols:
        heads.append(f"{c} {arrow(c)}".strip())
        if ll and c == next(k for k in cols if k in LIKELIHOOD_KEYS):
            heads.append("likelihood")
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] * len(head) + ["---:"] * (len(heads) - len(head))) + "|"]
    best = best_values(rows, cols) if bold else {}
    for r in rows:
        warn = cell_warnings(r)
        seeds = f"{len(r.seeds)} ({', '.join(map(str, r.seeds))})" if several else str(r.seeds[0])
        out = [r.model + _marks(notes, warn.get("model", [])), r.family, r.sampler_label, fmt(r.steps), seeds]
        for c in cols:
            text = cell(r, c)
            if c in best and r.value(c) == best[c]:
                text = f"**{text}**"
            out.append(text + _marks(notes, warn.get(c, [])))
            if ll and c == next(k for k in cols if k in LIKELIHOOD_KEYS):
                out.append(r.likelihood_kind or "–")
        lines.append("| " + " | ".join(out) + " |")
    return lines


def render_group(ds: str, space: str, rows: list[Row], primary: str, figures: dict[str, str] | None = None) -> list[str]:
    from genbench.metrics.likelihood import CONVENTION
    from genbench.report.sweeps import sweep_tables

    key = sort_metric(ds, rows, primary)
    cols = metric_columns(rows)
    notes: dict[str, int] = {}
    parts = [f"## {ds} — features {space}", ""]
    several = any(len(r.seeds) > 1 for r in rows)
    how = f"Sorted by `{key}` {arrow(key)}"
    if key != primary and is_points(ds, rows):
        how += " (on 2-D points a metric that sees the modes; the Fréchet distance compares only means and covariances)"
    parts += [how + "; the best value of each column is in bold." +
              (" Rows over several seeds show mean ± std across seeds; each seed is listed below." if several else ""), ""]
    spaces = column_groups(rows)
    if len(spaces) > 1:
        parts += ["Column groups, one per feature space (the same samples): " + "; ".join(
            f"{sp}: " + ", ".join(f"`{c}`" for c in cols if _space_of(c, rows) == sp) for sp in spaces)
            + ". NFE, time and likelihood are the model's, from its one sampling pass.", ""]
    parts += render_table(sort_rows(rows, key), cols, notes)
    parts.append("")
    parts += knn_note(rows, cols)
    parts += [f"> warning: {w}" for w in table_warnings(rows)]
    if notes:
        parts += [f"{str(n).translate(SUPERSCRIPT)} {t}  " for t, n in notes.items()]
        parts.append("")
    parts += sweep_tables(rows)  # metrics against each swept numeric sampling option (guidance, eta, ...)
    if any("bpd" in r.metrics for r in rows):
        parts += [f"Likelihood: {CONVENTION}; the likelihood column says what kind of bound or estimate each row's is.", ""]
    if any("nll" in r.metrics for r in rows):
        parts += ["`nll`: negative log-likelihood in nats per example (a point; a molecule's whole SMILES string) on the "
                  "reference split; the likelihood column says whether it is exact, an ELBO/IWAE bound or an ODE estimate."]
        true = sorted({r.nll_true for r in rows} - {None})
        if true:
            parts += [f"The reference points' NLL under the true density is {', '.join(fmt(t) for t in true)} nats "
                      "(a model cannot beat it in expectation)."]
        parts.append("")
    if several:
        per_seed = sort_rows([m for r in rows for m in (r.members or [r])], key)
        parts += ["<details><summary>Each seed</summary>", ""]
        parts += render_table(per_seed, cols, notes, bold=False)
        parts += ["", "</details>", ""]
    for lines in (figures or {}).values():
        parts += [lines, ""]
    return parts


def knn_note(rows: list[Row], cols: list[str]) -> list[str]:
    """Which k the table's k-NN metrics used (dgm-eval uses k = 5 for all four; torch-fidelity k = 3 for
    precision/recall, prdc k = 5 for density/coverage)."""
    from genbench.metrics.base import split_space

    bases = {split_space(c)[0] for c in cols}
    parts = []
    for pair, info_key, names in ((("precision", "recall"), "prc_k", "precision/recall"),
                                  (("density", "coverage"), "dc_k", "density/coverage")):
        if bases & set(pair):
            ks = sorted({m.knn_k[info_key] for r in rows for m in (r.members or [r]) if info_key in m.knn_k})
            parts.append(f"{names} with k = {' and '.join(map(str, ks)) if ks else 'unrecorded'}")
    if not parts:
        return []
    return [f"k-NN metrics: {'; '.join(parts)} nearest neighbours (dgm-eval uses k = 5 for all four).", ""]


def compared_at_different_n(records: list[Record]) -> list[str]:
    """Warnings when rows of one table were computed at different n (FID, KID and k-NN metrics depend on n)."""
    return table_warnings([row_of_record(r) for r in records if r.status == OK])


def provenance_footer(records: list[Record]) -> list[str]:
    """What produced the numbers: one line per distinct value of each provenance field."""
    vals: dict[str, set[str]] = defaultdict(set)
    for r in records:
        p = r.provenance
        v = p.get("versions", {})
        vals["genbench"].add(f"{v.get('genbench', '?')} (git {p.get('git_revision') or 'n/a'})")
        vals["torch"].add(f"{v.get('torch', '?')}, torch-fidelity {v.get('torch-fidelity', '?')}")
        vals["device"].add(str(p.get("device")))
        weights = p.get("weights_sha256")
        unverified = str(p.get("weights_verification", "")).startswith("unverified")
        std = "" if p.get("standard_weights", True) else (
            " — UNVERIFIED WEIGHTS (no published sha256 to compare with; check the hash yourself)" if unverified
            else " — NON-STANDARD WEIGHTS, not comparable to published numbers")
        vals["features"].add(f"{p.get('features')} (weights sha256 {weights[:12] if weights else 'none'}, "
                             f"preprocessing {p.get('preprocessing')}){std}")
        vals["samples"].add(f"n_fake {p.get('n_fake')}, n_real {p.get('n_real')} ({p.get('reference_split')} split)")
        if p.get("argv"):  # the command that computed the record (a store filled by several commands lists each)
            vals["command"].add("`genbench " + " ".join(str(a) for a in p["argv"][1:]) + "`")
    return [f"- {k}: {'; '.join(sorted(v))}" for k, v in vals.items()]


def render_cited(cited: list[dict[str, Any]]) -> list[str]:
    """The suite's cited rows (published numbers, never measured here) as a table of their own, each row's
    source as a numbered note under it."""
    if not cited:
        return []
    present = {k for row in cited for k in row["metrics"]}
    rank = {k: i for i, k in enumerate(COLUMN_ORDER)}
    cols = sorted(present, key=lambda k: (rank.get(k, len(rank)), k))
    sources = list(dict.fromkeys(row["source"] for row in cited))
    lines = ["## Cited baselines (published numbers, not measured by this run)", "",
             "For scale only: these come from the sources below, with their own data, training and sample sizes, "
             "so they are not comparable cell by cell with the measured tables above.", "",
             "| model | dataset | " + " | ".join(f"{k} {arrow(k)}".strip() for k in cols) + " | source |",
             "|---|---|" + "---:|" * len(cols) + "---|"]
    for row in cited:
        cells = [fmt(row["metrics"].get(k)) for k in cols]
        lines.append(f"| {row['model']} | {row['dataset'] or '–'} | " + " | ".join(cells) + f" | [{sources.index(row['source']) + 1}] |")
    lines.append("")
    lines += [f"[{i}] {src}  " for i, src in enumerate(sources, 1)]
    return lines + [""]


def render_markdown(records: list[Record], suite_name: str, primary: str, description: str = "",
                    figures: dict[tuple[str, str], dict[str, str]] | None = None,
                    cited: list[dict[str, Any]] | None = None) -> str:
    """The leaderboard of ``records``; ``figures`` maps (dataset, space) to Markdown lines linking its figures;
    ``cited`` (a suite's ``cited:`` rows) is shown in a table of its own after the measured ones. Records
    superseded by a newer version of their recipe (``newest_records``) are left out and counted."""
    records, superseded = newest_records(records)
    parts = [f"# genbench leaderboard: {suite_name}", ""]
    if description:
        parts += [description.strip(), ""]
    methods = sorted({r.info.get("ci_method") or "percentile bootstrap" for r in records if r.ci})
    parts += ["↑ higher is better, ↓ lower is better. Cells show `value [95% interval]` where one was computed"
              + (f" ({', '.join(methods)})" if methods else "") + "; KID and IS show mean ± std over subsets/splits; "
              "superscripts refer to the notes under each table.", ""]
    groups = table_groups(records)
    datasets = sorted({r.spec.dataset for r in records})
    for ds in datasets:
        spaces = [(d, s) for (d, s) in groups if d == ds]
        for key in spaces:
            parts += render_group(ds, key[1], groups[key], primary, (figures or {}).get(key))
        failed = [r for r in records if r.spec.dataset == ds and r.status != OK]
        if failed:
            if not spaces:
                parts += [f"## {ds}", ""]
            parts += [f"- {r.status}: {r.spec.label()}: {r.error}" for r in failed] + [""]
    parts += render_cited(cited or [])
    if records:
        parts += ["## Provenance", ""] + provenance_footer([r for r in records if r.status == OK] or records) + [""]
        if superseded:
            parts += [f"- Left out: {plural_records(superseded)} of an earlier version of a recipe (same cell, "
                      "another recipe hash), superseded by the newest: "
                      + ", ".join(sorted({f"{r.spec.dataset} | {r.spec.model}" for r in superseded})) + ".", ""]
    return "\n".join(parts)


def plural_records(records: list[Record]) -> str:
    return f"{len(records)} record" + ("" if len(records) == 1 else "s")


def cell_identity(spec: Any) -> str:
    """A cell whatever version of its recipe and seed: the spec without ``recipe_hash``, ``seed`` and ``suite``."""
    d = spec.to_dict()
    for k in ("recipe_hash", "seed", "suite"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True, default=str)


def newest_records(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(kept, superseded): of the records of one cell (every seed) under different recipe hashes (a recipe
    edited between runs into one store) only those of the newest record's hash are kept, so a table never
    averages two versions of a model as if they were seeds. Without an edited recipe nothing is left out."""
    cells = [cell_identity(r.spec) for r in records]
    newest: dict[str, tuple[str, str]] = {}  # cell -> (created_at, recipe_hash) of its newest record
    for r, ident in zip(records, cells):
        if ident not in newest or r.created_at > newest[ident][0]:
            newest[ident] = (r.created_at, r.spec.recipe_hash)
    kept, dropped = [], []
    for r, ident in zip(records, cells):
        (kept if r.spec.recipe_hash == newest[ident][1] else dropped).append(r)
    return kept, dropped


def write_leaderboard(records: list[Record], suite: Any, stem: Path, csv: bool = True, figures: bool = True,
                      run_dir: Path | str | None = None) -> Path:
    """Write ``stem.md`` (and ``stem.csv``, and figures in ``stem_figures/``) atomically; returns the
    Markdown path. Sample figures come from the store in ``run_dir`` (default: beside ``stem``)."""
    from genbench.store import records_to_frame

    stem = Path(stem)
    kept = newest_records(records)[0]  # the Markdown counts what is left out; figures and CSV show the kept
    links = write_figures(kept, stem, suite.primary_metric, stored_previews(run_dir or stem.parent)) if figures else {}
    md = render_markdown(records, suite.name, suite.primary_metric, suite.description, links, getattr(suite, "cited", None))
    atomic_write_bytes(stem.with_suffix(".md"), md.encode())
    if csv:
        frame: pd.DataFrame = records_to_frame(kept)
        atomic_write_bytes(stem.with_suffix(".csv"), frame.to_csv(index=False).encode())
    return stem.with_suffix(".md")


def stored_previews(run_dir: Path | str) -> dict:
    """The samples a run kept per spec (``ResultsStore.previews``); empty where there is no store."""
    from genbench.store import ResultsStore, store_path

    path = store_path(run_dir)
    return ResultsStore(path, create=False).previews() if path.is_file() else {}


def write_figures(records: list[Record], stem: Path, primary: str, previews: dict | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """Figures and Pareto tables of every table group into ``stem_figures/``; Markdown lines per group."""
    from genbench.report.figures import group_figures

    out: dict[tuple[str, str], dict[str, str]] = {}
    folder = stem.parent / f"{stem.name}_figures"
    for (ds, space), rows in table_groups(records).items():
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{ds}-{space}").strip("_")
        try:
            lines = group_figures(rows, folder, slug, f"{ds} — features {space}", is_points(ds, rows), previews or {})
        except (WriteFailure, UnwritableError):
            raise  # the disk, not the figure
        except Exception as e:  # noqa: BLE001 - a figure that cannot be drawn must not cost the tables
            lines = {"error": f"> figures of this table could not be drawn ({type(e).__name__}: {e})"}
        if lines:
            out[(ds, space)] = lines
    return out


@dataclass
class StoredSuite:
    """What a leaderboard needs of a suite, recovered from a store (``suite`` names in its records)."""

    name: str
    primary_metric: str = "fid"
    description: str = ""
    cited: list = field(default_factory=list)


def suite_of_records(records: list[Record]) -> StoredSuite:
    names = sorted({r.spec.suite for r in records})
    name = ", ".join(names) or "(empty)"
    if len(names) == 1:
        try:
            from genbench.suite import load_suite

            s = load_suite(names[0])
            return StoredSuite(s.name, s.primary_metric, s.description, s.cited)
        except Exception:  # noqa: BLE001 - a suite file that moved away: the store still has the numbers
            pass
    return StoredSuite(name)


def write_leaderboard_from_store(run_dir: Path | str, publish_dir: Path | str | None = None) -> list[Path]:
    """Regenerate ``leaderboard.md``, ``.csv`` and figures of ``run_dir`` from its store (nothing is rerun);
    with ``publish_dir`` also ``publish_dir/<suite>.md``. Returns the Markdown paths written."""
    from genbench.store import ResultsStore, store_path

    path = store_path(run_dir)
    records = ResultsStore(path, create=False).records()
    suite = suite_of_records(records)
    written = [write_leaderboard(records, suite, path.parent / "leaderboard")]
    if publish_dir is not None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", suite.name) or "leaderboard"
        written.append(write_leaderboard(records, suite, Path(publish_dir) / stem, run_dir=path.parent))
    return written
