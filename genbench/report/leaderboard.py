"""Markdown leaderboards: a table per dataset, a column per metric with the arrow from the
metric's own higher-is-better flag, sorted by the suite's primary metric, provenance below."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from genbench.cache import atomic_write_bytes
from genbench.metrics.base import metric_key
from genbench.spec import OK, Record
from genbench.store import records_to_frame

COLUMN_ORDER = ("fid", "fd_inf", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "intra_fid",
                "class_consistency", "modes_captured", "high_quality", "mode_kl", "bpd", "nll", "nfe", "sample_s_per_1k",
                "train_s")
PAIRED_STD = {"kid_mean": "kid_std", "is_mean": "is_std"}
HIDDEN = set(PAIRED_STD.values())


def arrow(key: str) -> str:
    mk = metric_key(key)
    return "" if mk is None else ("↑" if mk.higher_is_better else "↓")


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        a = abs(v)
        return f"{v:.3g}" if a >= 1000 else f"{v:.4g}" if a >= 0.01 or a == 0 else f"{v:.2e}"
    return str(v)


def metric_columns(records: list[Record]) -> list[str]:
    present = {k for r in records for k in r.metrics} - HIDDEN
    ordered = [k for k in COLUMN_ORDER if k in present]
    return ordered + sorted(present - set(ordered))


def cell(rec: Record, key: str) -> str:
    v = rec.metrics.get(key)
    text = fmt(v)
    if key in PAIRED_STD and PAIRED_STD[key] in rec.metrics:
        text += f" ± {fmt(rec.metrics[PAIRED_STD[key]])}"
    if key in rec.ci:
        lo, hi = rec.ci[key]
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    return text


def sort_records(records: list[Record], primary: str) -> list[Record]:
    mk = metric_key(primary)
    sign = -1.0 if (mk is not None and mk.higher_is_better) else 1.0

    def key(r: Record) -> tuple:
        v = r.metrics.get(primary)
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, sign * (v if not missing else 0.0), r.spec.model, r.spec.sampler, r.spec.steps or 0, r.spec.seed)

    return sorted(records, key=key)


def dataset_table(records: list[Record], primary: str) -> str:
    cols = metric_columns(records)
    head = ["model", "family", "sampler", "steps", "seed"] + [f"{c} {arrow(c)}".strip() for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 5 + ["---:"] * len(cols)) + "|"]
    for r in sort_records(records, primary):
        s = r.spec
        row = [s.model, s.family, s.sampler, fmt(s.steps), str(s.seed)] + [cell(r, c) for c in cols]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def compared_at_different_n(records: list[Record]) -> list[str]:
    """Warnings when rows of one table were computed at different n (FID, KID and k-NN metrics depend on n)."""
    from genbench.metrics import warn_if_different_n

    rows = [{"n1": r.provenance.get("n_fake"), "n2": r.provenance.get("n_real"),
             "kid_subset_size": r.info.get("kid_subset_size")} for r in records]
    return warn_if_different_n(rows)


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
        std = "" if p.get("standard_weights", True) else " — NON-STANDARD WEIGHTS, not comparable to published numbers"
        vals["features"].add(f"{p.get('features')} (weights sha256 {weights[:12] if weights else 'none'}, "
                             f"preprocessing {p.get('preprocessing')}){std}")
        vals["samples"].add(f"n_fake {p.get('n_fake')}, n_real {p.get('n_real')} ({p.get('reference_split')} split)")
    return [f"- {k}: {'; '.join(sorted(v))}" for k, v in vals.items()]


def likelihood_kinds(records: list[Record]) -> list[str]:
    """One line naming the kind of each model's likelihood number (exact, elbo, iwae-k, ode, vlb): bounds are not exact values."""
    kinds = sorted({(r.spec.model, r.info["likelihood_kind"]) for r in records if r.info.get("likelihood_kind")})
    if not kinds:
        return []
    return ["Kind of each likelihood: " + ", ".join(f"{model} {kind}" for model, kind in kinds)
            + " (elbo and iwae-k are lower bounds on log p, so their bits/dim are upper bounds).", ""]


def render_markdown(records: list[Record], suite_name: str, primary: str, description: str = "") -> str:
    from genbench.metrics.likelihood import CONVENTION

    parts = [f"# genbench leaderboard: {suite_name}", ""]
    if description:
        parts += [description.strip(), ""]
    parts += [f"Sorted by `{primary}` {arrow(primary)}. ↑ higher is better, ↓ lower is better. "
              "Cells show `value [95% bootstrap CI]` where a CI was computed; KID and IS show mean ± std over subsets/splits.", ""]
    by_ds: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_ds[r.spec.dataset].append(r)
    for ds in sorted(by_ds):
        ok = [r for r in by_ds[ds] if r.status == OK]
        parts += [f"## {ds}", ""]
        if ok:
            feats = sorted({r.provenance.get("features", r.spec.features) for r in ok})
            parts += [f"Features: {', '.join(feats)}.", ""]
            if "raw" in feats and all(r.spec.dataset.startswith("toy2d:") for r in ok):
                parts += ["On raw 2-D points the Fréchet distance compares only means and covariances (a Gaussian "
                          "fitted to the data scores near 0); precision, recall, density, coverage and NLL see the modes.", ""]
            parts += [dataset_table(ok, primary), ""]
            parts += [f"> warning: {w}" for w in compared_at_different_n(ok)]
            if any("bpd" in r.metrics for r in ok):
                parts += [f"Likelihood: {CONVENTION}.", ""]
                parts += likelihood_kinds(ok)
            if any("nll" in r.metrics for r in ok):
                parts += ["`nll`: negative log-likelihood in nats per point (exact, ELBO or ODE, as the family provides)."]
                true = sorted({r.info["nll_true_density"] for r in ok if "nll_true_density" in r.info})
                if true:
                    parts += [f"The reference points' NLL under the true density is {', '.join(fmt(t) for t in true)} nats "
                              "(a model cannot beat it in expectation)."]
                parts.append("")
        for r in by_ds[ds]:
            if r.status != OK:
                parts.append(f"- {r.status}: {r.spec.label()}: {r.error}")
        parts.append("")
    if records:
        parts += ["## Provenance", ""] + provenance_footer([r for r in records if r.status == OK] or records) + [""]
    return "\n".join(parts)


def write_leaderboard(records: list[Record], suite: Any, stem: Path, csv: bool = True) -> Path:
    """Write ``stem.md`` (and ``stem.csv``) atomically; returns the Markdown path."""
    stem = Path(stem)
    md = render_markdown(records, suite.name, suite.primary_metric, suite.description)
    atomic_write_bytes(stem.with_suffix(".md"), md.encode())
    if csv:
        frame: pd.DataFrame = records_to_frame(records)
        atomic_write_bytes(stem.with_suffix(".csv"), frame.to_csv(index=False).encode())
    return stem.with_suffix(".md")
