"""Figures and Pareto tables beside a leaderboard, drawn from stored records (never a live run).

Per table (dataset x feature space):

* ``<slug>-quality-nfe.png``: sample quality (FID on images; coverage on 2-D points, which sees
  the modes) against NFE per sample, one line per model and sampler: the step-count figure of
  the diffusion-sampler papers (e.g. Karras et al. 2022, Fig. 2);
* ``<slug>-precision-recall.png``: precision against recall, one point per row (Kynkäänniemi et
  al. 2019 plot models this way);
* ``<slug>-samples-<model>-<sampler>-<steps>.png``: the samples a run kept per spec
  (``ResultsStore.previews``: 64 images as uint8, or 2,000 points as a scatter);
* a Pareto table: the rows no other row beats in both quality and cost, for cost = NFE and
  cost = seconds per 1,000 samples;
* ``<slug>-sweep-<option>.png``: every quality metric against a swept numeric sampling option
  (``genbench.report.sweeps``).

matplotlib draws with the Agg backend (no display needed); files are written atomically.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from genbench.cache import atomic_write_bytes
from genbench.spec import options_label

if TYPE_CHECKING:
    from genbench.report.leaderboard import Row

COSTS = (("nfe", "NFE"), ("sample_s_per_1k", "seconds per 1k samples"))


def quality_metric(rows: list["Row"], points: bool) -> str | None:
    """FID on images; on 2-D points coverage (FID there compares only means and covariances)."""
    have = {k for r in rows for k in r.metrics}
    for key in (("coverage", "fid") if points else ("fid", "fd_inf", "kid_mean")):
        if key in have:
            return key
    return None


def pareto_front(rows: list["Row"], quality: str, cost: str) -> list["Row"]:
    """Rows not dominated in (quality, cost): none is at least as good in both and better in one."""
    from genbench.report.leaderboard import higher_is_better

    sign = -1.0 if higher_is_better(quality) else 1.0
    pts = [(r, sign * q, c) for r in rows if (q := r.value(quality)) is not None and (c := r.value(cost)) is not None]
    return [r for r, q, c in pts
            if not any(q2 <= q and c2 <= c and (q2 < q or c2 < c) for _, q2, c2 in pts)]


def pareto_table(rows: list["Row"], quality: str) -> list[str]:
    """Markdown lines: rows on the (quality, NFE) or (quality, seconds) front, marked per front."""
    from genbench.report.leaderboard import arrow, fmt

    fronts = {cost: {id(r) for r in pareto_front(rows, quality, cost)} for cost, _ in COSTS}
    on = [r for r in rows if any(id(r) in f for f in fronts.values())]
    if len(rows) < 2 or not on:
        return []
    lines = [f"Pareto front: rows that no other row beats in both `{quality}` and cost.", "",
             f"| model | sampler | steps | {quality} {arrow(quality)} | nfe ↓ | sample_s_per_1k ↓ | front: NFE | front: seconds |",
             "|---|---|---|---:|---:|---:|:---:|:---:|"]
    for r in sorted(on, key=lambda r: (r.value("nfe") or 0.0, r.model, r.sampler)):
        marks = ["✓" if id(r) in fronts[c] else "" for c, _ in COSTS]
        lines.append(f"| {r.model} | {r.sampler_label} | {fmt(r.steps)} | {fmt(r.value(quality))} | {fmt(r.value('nfe'))} | "
                     f"{fmt(r.value('sample_s_per_1k'))} | {marks[0]} | {marks[1]} |")
    return lines + [""]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def quality_nfe_figure(rows: list["Row"], quality: str, path: Path, title: str) -> bool:
    """One line per (model, sampler) through its step counts; False when there is nothing to draw."""
    from genbench.report.leaderboard import arrow

    lines: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in rows:
        q, n = r.value(quality), r.value("nfe")
        if q is not None and n is not None and n > 0:
            lines.setdefault((r.model, r.sampler_label), []).append((n, q, r.seed_std.get(quality, 0.0)))
    if len({n for pts in lines.values() for n, _, _ in pts}) < 2:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours, markers = plt.get_cmap("tab20").colors, "os^vDPX*<>"
    for i, ((model, sampler), pts) in enumerate(sorted(lines.items())):
        pts.sort()
        # 20 colours x 10 markers: no two series of a figure look alike (the default cycle repeats after 10)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], capsize=2,
                    color=colours[i % 20], marker=markers[(i // 20 + i) % len(markers)], label=f"{model} / {sampler}")
    ax.set_xscale("log")
    ax.set_xlabel("NFE per sample (log scale)")
    ax.set_ylabel(f"{quality} {arrow(quality)}")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    return True


def precision_recall_figure(rows: list["Row"], path: Path, title: str) -> bool:
    pts = [(r, p, q) for r in rows if (p := r.value("precision")) is not None and (q := r.value("recall")) is not None]
    if not pts:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for i, (r, p, q) in enumerate(pts):
        ax.scatter([q], [p], s=22)
        steps = f"@{r.steps}" if r.steps is not None else ""
        # labels of nearby points are staggered vertically so they stay readable
        ax.annotate(f"{r.model}/{r.sampler}{steps}{options_label(r.options)}", (q, p), fontsize=6, xytext=(4, 3 - 8 * (i % 3)), textcoords="offset points")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall ↑")
    ax.set_ylabel("precision ↑")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    _save(fig, path)
    return True


def sample_grid_figure(samples, path: Path, title: str) -> None:
    """uint8 images [N, C, H, W] as a square grid (grey or RGB), or 2-D points as a scatter."""
    import numpy as np

    plt = _pyplot()
    if samples.ndim == 4:
        n, c, h, w = samples.shape
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        # [N, C, H, W] -> [rows * (H + 1), cols * (W + 1), C] with one-pixel gutters
        grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
        for i in range(n):
            r, q = divmod(i, cols)
            grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = samples[i].transpose(1, 2, 0)
        fig, ax = plt.subplots(figsize=(3.2, 3.4))
        ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.axis("off")
    else:
        fig, ax = plt.subplots(figsize=(3.2, 3.4))
        ax.scatter(samples[:, 0], samples[:, 1], s=1.5, alpha=0.5)
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=7)
    _save(fig, path)


def sample_grids(rows: list["Row"], folder: Path, slug: str, previews: dict) -> list[str]:
    """One sample figure per row with kept samples (per model, and per sampler and steps); Markdown images."""
    links = []
    for r in sorted(rows, key=lambda r: (r.model, r.sampler, r.steps or 0, sorted(map(str, r.options.items())))):
        samples = previews.get(r.key)
        if samples is None or samples.ndim not in (2, 4) or (samples.ndim == 2 and samples.shape[1] != 2):
            continue
        steps = f"-{r.steps}" if r.steps is not None else ""
        opts = "".join(f"-{k}{v}" for k, v in r.options.items())
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{slug}-samples-{r.model}-{r.sampler}{steps}{opts}") + ".png"
        what = (f"{r.model} / {r.sampler}" + (f" @ {r.steps}" if r.steps is not None else "") + options_label(r.options)
                + f" (seed {r.seeds[0]})")
        sample_grid_figure(samples, folder / name, what)
        links.append(f"![{what}]({folder.name}/{name})")
    return links


def sample_texts(rows: list["Row"], previews: dict, k: int = 8) -> list[str]:
    """The first ``k`` kept SMILES (or other strings) of each row with text previews, as Markdown list items."""
    lines = []
    for r in sorted(rows, key=lambda r: (r.model, r.sampler, r.steps or 0, sorted(map(str, r.options.items())))):
        samples = previews.get(r.key)
        if samples is None or samples.ndim != 1 or samples.dtype.kind != "U":
            continue
        what = f"{r.model} / {r.sampler}" + (f" @ {r.steps}" if r.steps is not None else "") + options_label(r.options)
        shown = ", ".join(f"`{s}`" if s else "(empty)" for s in samples[:k].tolist())
        lines.append(f"- {what} (seed {r.seeds[0]}): {shown}")
    return lines


def group_figures(rows: list["Row"], folder: Path, slug: str, title: str, points: bool,
                  previews: dict | None = None) -> dict[str, str]:
    """Write the figures of one table into ``folder``; returns Markdown (name -> lines) linking them."""
    out: dict[str, str] = {}
    quality = quality_metric(rows, points)
    if quality is not None:
        png = folder / f"{slug}-quality-nfe.png"
        if quality_nfe_figure(rows, quality, png, title):
            out["quality-nfe"] = f"![{quality} against NFE per sampler]({folder.name}/{png.name})"
        table = pareto_table(rows, quality)
        if table:
            out["pareto"] = "\n".join(table)
    png = folder / f"{slug}-precision-recall.png"
    if precision_recall_figure(rows, png, title):
        out["precision-recall"] = f"![precision against recall]({folder.name}/{png.name})"
    from genbench.report.sweeps import sweep_figures

    swept = sweep_figures(rows, folder, slug, title)  # metrics against each swept numeric sampling option
    if swept:
        out["sweeps"] = "\n".join(swept)
    texts = sample_texts(rows, previews or {})
    if texts:
        out["sample-text"] = "\n".join(["<details><summary>Samples (the first 8 of each row's first seed, as generated)</summary>",
                                        "", *texts, "", "</details>"])
    grids = sample_grids(rows, folder, slug, previews or {})
    if grids:
        out["samples"] = "\n".join(["<details><summary>Samples (the first of each row's first seed)</summary>", "",
                                    " ".join(grids), "", "</details>"])
    return out
