"""Metrics against a swept numeric sampling option (a guidance scale, DDIM's eta, a temperature): a table and a
figure per option, beside a leaderboard table, drawn from its rows (never a live run).

A *sweep* is a set of rows of one table that differ only in one numeric option: the same model, sampler,
steps and other options, at two or more values of the option. Nothing here knows an option's name or
meaning; the trade-off it shows (for classifier-free guidance: FID and recall against precision and
class consistency, Ho and Salimans 2022, Fig. 2) is whatever the stored metrics say.

* the table (``sweep_tables``): one per option name, rows grouped by sweep and ordered by the option's
  value, every metric column of the leaderboard (mean ± std across seeds where there are several) but
  the training time, which an option cannot change;
* the figure (``sweep_figure``, ``<slug>-sweep-<option>.png``): one panel per quality metric (those with a
  direction, not costs), the metric against the option's value, one line per sweep, error bars the std
  across seeds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.spec import options_label

if TYPE_CHECKING:
    from genbench.report.leaderboard import Row

NOT_SWEPT = ("train_s",)  # the same model at every option value
COST_KEYS = ("nfe", "sample_s_per_1k", "train_s")  # columns, not panels
MAX_PANELS = 6


def numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def sweeps(rows: list["Row"]) -> dict[str, list[list["Row"]]]:
    """option name -> its sweeps, each a list of rows ordered by the option's value (sweeps in table order:
    model, sampler, steps, other options). Rows without the option, or with a non-numeric value, are in none."""
    names = sorted({k for r in rows for k, v in r.options.items() if numeric(v)})
    out: dict[str, list[list[Row]]] = {}
    for name in names:
        groups: dict[tuple, list[Row]] = defaultdict(list)
        for r in rows:
            if numeric(r.options.get(name)):
                others = tuple(sorted((k, str(v)) for k, v in r.options.items() if k != name))
                groups[(r.model, r.family, r.sampler, r.steps or 0, others)].append(r)
        found = [sorted(g, key=lambda r: float(r.options[name])) for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))
                 if len({float(r.options[name]) for r in g}) >= 2]
        if found:
            out[name] = found
    return out


def series_label(row: "Row", option: str) -> str:
    """``model / sampler @ steps [other options]``: what a sweep holds fixed."""
    rest = {k: v for k, v in row.options.items() if k != option}
    steps = f" @ {row.steps}" if row.steps is not None else ""
    return f"{row.model} / {row.sampler}{steps}{options_label(rest)}"


def sweep_tables(rows: list["Row"]) -> list[str]:
    """Markdown: per swept option, a table of every metric against its value (empty list: nothing swept)."""
    from genbench.report.leaderboard import arrow, cell, fmt, metric_columns

    lines: list[str] = []
    for option, found in sweeps(rows).items():
        members = [r for s in found for r in s]
        cols = [c for c in metric_columns(members) if c not in NOT_SWEPT]
        several = any(len(r.seeds) > 1 for r in members)
        lines += [f"**Metrics against the sampling option `{option}`**: rows that differ only in `{option}`, "
                  "in order of its value" + (" (mean ± std across seeds)" if several else "") + ".", ""]
        rest = {id(r): options_label({k: v for k, v in r.options.items() if k != option}).strip(" []") for r in members}
        fixed = ["other options"] if any(rest.values()) else []  # the options a sweep holds fixed, where there are any
        head = ["model", "sampler", "steps", *fixed, option] + [f"{c} {arrow(c)}".strip() for c in cols]
        n_text = 3 + len(fixed)
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * n_text + ["---:"] * (len(head) - n_text)) + "|"]
        for r in members:
            out = [r.model, r.sampler, fmt(r.steps), *([rest[id(r)] or "–"] if fixed else []), fmt(r.options[option])]
            lines.append("| " + " | ".join(out + [cell(r, c) for c in cols]) + " |")
        lines.append("")
    return lines


def panel_metrics(rows: list["Row"]) -> list[str]:
    """The quality metrics the sweeps hold (those with a direction, not costs), in leaderboard order."""
    from genbench.report.leaderboard import arrow, metric_columns

    return [c for c in metric_columns(rows) if c not in COST_KEYS and arrow(c)][:MAX_PANELS]


def sweep_figure(option: str, found: list[list["Row"]], path: Path, title: str) -> bool:
    """Each quality metric against ``option``'s value, one line per sweep; False when there is nothing to draw."""
    from genbench.report.figures import _pyplot, _save
    from genbench.report.leaderboard import arrow

    members = [r for s in found for r in s]
    metrics = panel_metrics(members)
    if not metrics:
        return False
    plt = _pyplot()
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, metrics):
        for s in found:
            pts = [(float(r.options[option]), v, r.seed_std.get(key, 0.0)) for r in s if (v := r.value(key)) is not None]
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es if any(es) else None, marker="o", ms=3, capsize=2, label=series_label(s[0], option))
        ax.set_xlabel(option)
        ax.set_ylabel(f"{key} {arrow(key)}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"{title}: metrics against {option}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return True


def sweep_figures(rows: list["Row"], folder: Path, slug: str, title: str) -> list[str]:
    """Write one figure per swept option into ``folder``; Markdown image lines linking them."""
    links = []
    for option, found in sweeps(rows).items():
        png = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{slug}-sweep-{option}") + ".png")
        if sweep_figure(option, found, png, title):
            links.append(f"![metrics against {option}]({folder.name}/{png.name})")
    return links
