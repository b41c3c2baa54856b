"""The papers' sampler orderings, checked on a samplers suite's stored results.

    PYTHONPATH=. python benchmarks/sampler_orderings.py RUN_DIR [--metric fid]

RUN_DIR is a ``genbench run --suite digits-samplers`` (or mnist5k-samplers) run directory. Printed, as
Markdown, each comparison the DDPM issue names, with the metric's mean over seeds (and its standard
deviation where there are several), the NFE of each side and the verdict (lower FID is better):

- DDIM (eta = 0) against DDPM ancestral at equal steps (Song et al. 2021, Table 1: better at 10-100 steps);
- Heun against Euler at about equal NFE (Karras et al. 2022: Heun's 2N - 1 calls against Euler's 2N);
- DPM-Solver (orders 1-3, and DPM-Solver++ 2M) at 8-20 NFE against DDIM at the nearest NFE (Lu et al. 2022),
  and against Euler on the same Karras sigmas (DDIM in sigma form, so only the solver differs);
- consistency distillation against consistency training at 1, 2 and 4 steps (Song et al. 2023).

Verdicts: "holds" / "does not hold" where Welch's t-test across seeds gives p < 0.05, "level" where it does
not, and "(one seed: no test)" where a side has a single seed.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from genbench.api import load_results


def welch_p(a: pd.Series, b: pd.Series) -> float | None:
    """Two-sided Welch t-test p-value of two samples (None with fewer than 2 values on a side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def cells(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (model, sampler, steps, options): metric values over seeds, and the NFE."""
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    ok["options"] = ok["options"].fillna("").map(lambda s: "" if s in ("", "{}") else s)
    ok["steps"] = ok["steps"].fillna(-1).astype(int)
    return ok.groupby(["model", "sampler", "steps", "options"]).agg(values=(metric, list), nfe=("nfe", "mean")).reset_index()


def lookup(c: pd.DataFrame, model: str, sampler: str, steps: int, options: str = "") -> pd.Series | None:
    rows = c[(c["model"] == model) & (c["sampler"] == sampler) & (c["steps"] == steps) & (c["options"] == options)]
    return None if rows.empty else rows.iloc[0]


def nearest_nfe(c: pd.DataFrame, model: str, sampler: str, nfe: float, within: float = 1.25) -> pd.Series | None:
    """The cell of ``sampler`` whose NFE is nearest ``nfe``; None unless the two are within a factor ``within``."""
    rows = c[(c["model"] == model) & (c["sampler"] == sampler) & (c["options"] == "")]
    if rows.empty:
        return None
    best = rows.iloc[(rows["nfe"] - nfe).abs().argsort().iloc[0]]
    return best if max(best["nfe"], nfe) <= within * min(best["nfe"], nfe) else None


def fmt(values: list[float]) -> str:
    s = pd.Series(values, dtype=float)
    return f"{s.mean():.1f}" if len(s) < 2 else f"{s.mean():.1f} ± {s.std(ddof=1):.1f}"


def compare(label: str, a: pd.Series | None, b: pd.Series | None, claim: str) -> str | None:
    """A table row 'a vs b': better when a's mean is lower; None when a side is missing."""
    if a is None or b is None:
        return None
    ma, mb = sum(a["values"]) / len(a["values"]), sum(b["values"]) / len(b["values"])
    p = welch_p(pd.Series(a["values"]), pd.Series(b["values"]))
    if p is None:
        verdict = ("holds" if ma < mb else "does not hold") + " (one seed: no test)"
    elif p >= 0.05:
        verdict = f"level ({'lower' if ma < mb else 'higher'}, not significant: p = {p:.2f})"
    else:
        verdict = ("holds" if ma < mb else "does not hold") + f" (p = {p:.3f})"
    nfe = f"{a['nfe']:.0f} / {b['nfe']:.0f}"
    def side(r: pd.Series) -> str:
        opts = f" {r['options']}" if r["options"] else ""
        return f"{r['model']} {r['sampler']}@{r['steps']}{opts}: {fmt(r['values'])}"

    return f"| {label} | {claim} | {side(a)} | {side(b)} | {nfe} | {verdict} |"


def orderings(df: pd.DataFrame, metric: str) -> list[str]:
    c = cells(df, metric)
    rows: list[str | None] = []
    ddpm = "ddpm"
    for steps in (8, 16, 32, 64, 128):
        rows.append(compare(f"{ddpm}, {steps} steps", lookup(c, ddpm, "ddim", steps), lookup(c, ddpm, "ddpm", steps),
                            "DDIM < ancestral"))
    eta = json.dumps({"eta": 1})
    for steps in (10, 50):  # the eta sweep's cells: eta = 0 against eta = 1 (DDPM's posterior variance)
        a = lookup(c, ddpm, "ddim", steps, json.dumps({"eta": 0}))
        b = lookup(c, ddpm, "ddim", steps, eta)
        rows.append(compare(f"{ddpm}, {steps} steps (eta 0 vs 1)", a, b, "DDIM < ancestral"))
    for model in ("diffusion", ddpm):
        for heun_steps in (4, 8, 16, 32, 64):
            h = lookup(c, model, "heun", heun_steps)
            if h is not None:
                rows.append(compare(f"{model}, NFE ~{h['nfe']:.0f}", h, nearest_nfe(c, model, "euler", h["nfe"]),
                                    "Heun < Euler"))
    for solver in ("dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpmpp_2m_discrete", "dpmpp_2m"):
        for steps in (4, 8, 16):
            s = lookup(c, ddpm, solver, steps)
            if s is not None and 8 <= s["nfe"] <= 20:
                rows.append(compare(f"{ddpm}, NFE {s['nfe']:.0f}", s, nearest_nfe(c, ddpm, "ddim", s["nfe"]),
                                    "DPM-Solver <= DDIM"))
    # DDIM is Euler on the sigma-form ODE (Karras et al. 2022, Sec. 3): Euler on the solvers' own sigmas is
    # DDIM without the difference in timesteps (the ddim sampler walks the trailing discrete ones)
    for solver in ("dpm_solver_2", "dpm_solver_3", "dpmpp_2m"):
        for steps in (4, 8, 16):
            s = lookup(c, ddpm, solver, steps)
            if s is not None and 8 <= s["nfe"] <= 20:
                rows.append(compare(f"{ddpm}, NFE {s['nfe']:.0f}, same sigmas", s, nearest_nfe(c, ddpm, "euler", s["nfe"]),
                                    "DPM-Solver <= DDIM (as Euler)"))
    for steps in (1, 2, 4):
        rows.append(compare(f"{steps} step(s)", lookup(c, "consistency_distillation", "consistency", steps),
                            lookup(c, "consistency", "consistency", steps), "CD < CT"))
    header = [f"| cell | paper's ordering | {metric} (mean ± sd over seeds) | against | NFE | as measured |",
              "|---|---|---|---|---|---|"]
    return header + [r for r in rows if r is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--metric", default="fid")
    args = ap.parse_args()
    df = load_results(args.run_dir)
    seeds = sorted(int(s) for s in df["seed"].dropna().unique())
    print(f"{args.run_dir}: {len(df)} records, seeds {seeds}; lower {args.metric} is better\n")
    print("\n".join(orderings(df, args.metric)))


if __name__ == "__main__":
    main()
