"""`genbench eval A B --features inception --weights W --metrics fid,kid,is` against torch-fidelity's
``calculate_metrics`` on the same PNG folders and weights (issue 11), and where the time goes.

    PYTHONPATH=. python benchmarks/inception_eval_cpu.py --n 250 --pairs 3 [--threads 2] [--probe 32 --chunks 16,32,64]

Writes two folders of ``n`` 32x32 PNGs (smooth colour fields and dark noise) and a random
(Kaiming, BN-calibrated) InceptionV3 weights file in torch-fidelity's format under ``--workdir``,
then runs each side ``pairs`` times, alternating, each run in a fresh Python process (so imports
and weight loading, the first-call cost, are counted as a user meets them). Per run it prints
the wall time of the whole process, the time of the call alone (after imports), the peak resident
memory of the process and the largest of its children (torch-fidelity's loader workers), and
FID/KID/IS. The summary gives the medians, genbench/torch-fidelity time ratios (above 1: genbench
is slower) and the largest relative difference of the values.

``--probe N`` also times torch-fidelity's InceptionV3 forward alone on N images at several chunk
sizes, in the default and the channels_last memory format, and prints the largest deviation of
the pool features from the default layout at the same chunk (relative to the largest |feature|).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
side, a, b, w, threads = sys.argv[1:6]
import torch
torch.set_num_threads(int(threads))
if side == "genbench":
    from genbench.evaluation import evaluate
    t1 = time.perf_counter()
    out = evaluate(a, b, features="inception", weights=w, metrics=["fid", "kid", "is"], device="cpu")
    vals = {"fid": out["fid"], "kid": out["kid_mean"], "is": out["is_mean"]}
else:
    import torch_fidelity
    t1 = time.perf_counter()
    m = torch_fidelity.calculate_metrics(input1=a, input2=b, cuda=False, isc=True, fid=True, kid=True,
                                         feature_extractor_weights_path=w, kid_subset_size=min(1000, int(sys.argv[6])),
                                         verbose=False, save_cpu_ram=True)
    vals = {"fid": m["frechet_inception_distance"], "kid": m["kernel_inception_distance_mean"],
            "is": m["inception_score_mean"]}
t2 = time.perf_counter()
mib = lambda who: resource.getrusage(who).ru_maxrss / 1024
print("RESULT " + json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "rss_mib": mib(resource.RUSAGE_SELF),
                              "child_rss_mib": mib(resource.RUSAGE_CHILDREN), **vals}))
"""


def make_inputs(workdir: Path, n: int) -> tuple[Path, Path, Path]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_inception_parity import noisy_rgb, smooth_rgb, write_png_folder

    from genbench.features.inception import make_random_inception_weights

    w = workdir / "inception-random-seed0.pth"
    if not w.exists():
        make_random_inception_weights(w, seed=0)
    a, b = workdir / f"smooth{n}", workdir / f"noisy{n}"
    g = torch.Generator().manual_seed(2024)
    sa, sb = smooth_rgb(n, g), noisy_rgb(n, g)
    if not a.exists():
        write_png_folder(a, sa)
    if not b.exists():
        write_png_folder(b, sb)
    return a, b, w


def run_side(side: str, a: Path, b: Path, w: Path, threads: int, n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, side, str(a), str(b), str(w), str(threads), str(n)],
                       capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not line:
        raise SystemExit(f"{side} failed:\n{p.stderr[-2000:]}")
    return {"side": side, "wall_s": wall, **json.loads(line[0][7:])}


def probe(w: Path, threads: int, chunks: list[int], n: int) -> None:
    import torch

    from genbench.features.inception import load_inception

    torch.set_num_threads(threads)
    net, _ = load_inception(w)
    x = (torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    for chunk in chunks:
        res = {}
        for cl in (False, True):
            net = net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            t = time.perf_counter()
            with torch.inference_mode():
                pool = torch.cat([net(x[i:i + chunk])[0] for i in range(0, n, chunk)])
            res[cl] = (n / (time.perf_counter() - t), pool)
        dev = ((res[True][1] - res[False][1]).abs().max() / res[False][1].abs().max()).item()
        print(f"forward chunk {chunk:3d}: default {res[False][0]:.2f} img/s, channels_last {res[True][0]:.2f} img/s, "
              f"pool deviation {dev:.1e} (relative to max |feature|)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/genbench-bench-inception"))
    ap.add_argument("--probe", type=int, default=0, metavar="N", help="also probe the forward on N images")
    ap.add_argument("--chunks", default="16,32,64", help="chunk sizes the probe times")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    a, b, w = make_inputs(args.workdir, args.n)
    import platform

    import torch
    import torch_fidelity

    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, load "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}, torch-fidelity {torch_fidelity.__version__}; "
          f"n={args.n} per folder, {args.threads} threads", flush=True)
    if args.probe:
        probe(w, args.threads, [int(c) for c in args.chunks.split(",")], args.probe)
    runs = []
    for i in range(args.pairs):
        for side in (("genbench", "torch-fidelity") if i % 2 == 0 else ("torch-fidelity", "genbench")):
            r = run_side(side, a, b, w, args.threads, args.n)
            runs.append(r)
            print(f"{side:15s} wall {r['wall_s']:7.1f} s  call {r['call_s']:7.1f} s  import {r['import_s']:5.1f} s  "
                  f"rss {r['rss_mib']:6.0f} MiB  largest child {r['child_rss_mib']:6.0f} MiB  "
                  f"fid {r['fid']:.6g} kid {r['kid']:.6g} is {r['is']:.6g}", flush=True)
    med = {s: {k: statistics.median(r[k] for r in runs if r["side"] == s) for k in ("wall_s", "call_s", "rss_mib")}
           for s in ("genbench", "torch-fidelity")}
    g, t = med["genbench"], med["torch-fidelity"]
    ours = next(r for r in runs if r["side"] == "genbench")
    ref = next(r for r in runs if r["side"] == "torch-fidelity")
    diff = max(abs(ours[k] - ref[k]) / max(abs(ref[k]), 1e-5) for k in ("fid", "kid", "is"))
    print(f"median wall: genbench {g['wall_s']:.1f} s, torch-fidelity {t['wall_s']:.1f} s, speed ratio "
          f"torch-fidelity/genbench {t['wall_s'] / g['wall_s']:.2f}x (call alone {t['call_s'] / g['call_s']:.2f}x); "
          f"peak rss {g['rss_mib']:.0f} vs {t['rss_mib']:.0f} MiB (+ its loader workers); "
          f"largest relative difference of fid/kid/is {diff:.1e}")


if __name__ == "__main__":
    main()
