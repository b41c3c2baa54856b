r"""``genbench results DIR --format latex``: booktabs tables for a paper.

One ``tabular`` per dataset and feature space (a table never mixes feature spaces), one row per
configuration. Several seeds: ``mean $\\pm$ std`` across seeds. One seed with a bootstrap
interval: ``value$^{+a}_{-b}$`` (the interval's distance above and below the value, so an
asymmetric interval stays asymmetric; an interval that excludes its estimate is printed as
``value [lo, hi]$^\dagger$`` with a note). The best value of each column is in bold. Needs
``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import math

import pandas as pd

from genbench.report.tables import SEED_STD_SUFFIX, aggregate_seeds
from genbench.spec import frame_options, options_label

SPEC = ["model", "sampler", "steps"]
_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def num(v: float) -> str:
    a = abs(v)
    return f"{v:.3g}" if a >= 1000 else f"{v:.4g}" if a >= 0.01 or a == 0 else f"{v:.2e}"


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and not pd.isna(v)


def latex_cell(row: pd.Series, key: str, several: bool, bold: bool) -> str:
    v = row.get(key)
    if not _present(v):
        return "--"
    text = num(float(v))
    spread = ""
    if several and _present(row.get(key + SEED_STD_SUFFIX)):
        spread = rf" \pm {num(float(row[key + SEED_STD_SUFFIX]))}"
    elif not several and _present(row.get(f"{key}_ci_low")) and _present(row.get(f"{key}_ci_high")):
        lo, hi = float(row[f"{key}_ci_low"]), float(row[f"{key}_ci_high"])
        if lo <= float(v) <= hi:
            spread = rf"^{{+{num(hi - float(v))}}}_{{-{num(float(v) - lo)}}}"
        else:  # an interval that excludes its estimate is shown as it is, and flagged
            spread = rf"\,[{num(lo)}, {num(hi)}]^\dagger"
    body = rf"\mathbf{{{text}}}" if bold else text
    return f"${body}{spread}$"


def _metric_columns(df: pd.DataFrame) -> list[str]:
    from genbench.report.leaderboard import COLUMN_ORDER, HIDDEN
    from genbench.store import FRAME_INFO_COLUMNS

    skip = set(FRAME_INFO_COLUMNS) | HIDDEN | {"n_seeds", "seeds"}
    cols = [c for c in df.columns if c not in skip and not c.endswith(("_ci_low", "_ci_high", SEED_STD_SUFFIX))
            and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]
    return [c for c in COLUMN_ORDER if c in cols] + sorted(set(cols) - set(COLUMN_ORDER))


def _best(df: pd.DataFrame, cols: list[str]) -> dict[str, float]:
    from genbench.report.leaderboard import higher_is_better

    out = {}
    for c in cols:
        hib = higher_is_better(c)
        vals = df[c].dropna()
        if hib is not None and len(vals) > 1 and vals.min() != vals.max():
            out[c] = float(vals.max() if hib else vals.min())
    return out


def _latex_arrow(a: str) -> str:
    return {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}.get(a, "")


def group_to_latex(df: pd.DataFrame, caption: str, several: bool) -> str:
    from genbench.report.leaderboard import arrow

    cols = _metric_columns(df)
    best = _best(df, cols)
    heads = [escape(c) for c in SPEC] + (["seeds"] if several else []) + [f"{escape(c)} {_latex_arrow(arrow(c))}".strip() for c in cols]
    lines = [f"% {escape(caption)}", r"\begin{tabular}{" + "l" * (len(SPEC) + several) + "r" * len(cols) + "}", r"\toprule",
             " & ".join(heads) + r" \\", r"\midrule"]
    for _, row in df.iterrows():
        steps = "--" if not _present(row.get("steps")) else str(int(row["steps"]))
        cells = [escape(row["model"]), escape(row["sampler"] + options_label(frame_options(row.get("options")))), steps]
        if several:
            cells.append(str(int(row["n_seeds"])))
        cells += [latex_cell(row, c, several, c in best and _present(row.get(c)) and float(row[c]) == best[c]) for c in cols]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if "dagger" in "".join(lines):
        lines.append(r"% $^\dagger$: the estimate lies outside its own interval (a biased estimate at this n, "
                     r"or resampling bias of a percentile bootstrap)")
    return "\n".join(lines)


def results_to_latex(df: pd.DataFrame) -> str:
    """Booktabs LaTeX of a ``records_to_frame`` DataFrame: one tabular per dataset and feature space."""
    if df.empty or not (df.get("status") == "ok").any():
        return "% no ok results\n"
    ok = df[df["status"] == "ok"]
    parts = []
    keys = [c for c in ("dataset", "features", "weights_sha256") if c in ok.columns]
    for group_key, group in ok.groupby(keys, dropna=False, sort=True):
        several = group.groupby([c for c in ("model", "sampler", "steps") if c in group], dropna=False)["seed"].nunique().max() > 1
        table = aggregate_seeds(group) if several else group
        key = sort_key(table)
        if key is not None:
            from genbench.report.leaderboard import higher_is_better

            table = table.sort_values(key, ascending=not higher_is_better(key), na_position="last")
        ds, space = group_key[0], group_key[1] if len(group_key) > 1 else ""
        parts.append(group_to_latex(table, f"{ds}, features {space}" + ("; mean and std across seeds" if several else ""), several))
    return "\n\n".join(parts) + "\n"


def sort_key(df: pd.DataFrame) -> str | None:
    """As the leaderboard sorts: FID on images; on 2-D points NLL or coverage, whichever ranks more rows."""
    cols = [c for c in df.columns if df[c].notna().any()]
    points = str(df["dataset"].iloc[0]).startswith("toy2d:") or "nll" in cols
    if points:
        count = {k: int(df[k].notna().sum()) for k in ("nll", "coverage") if k in cols}
        if count:
            return max(count, key=lambda k: count[k])
    for key in ("fid", "fd_inf", "kid_mean"):
        if key in cols:
            return key
    return None
