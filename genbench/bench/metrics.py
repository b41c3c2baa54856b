"""Metrics on features: genbench against torch-fidelity, prdc, clean-fid and pytorch-fid.

On the same synthetic features (non-negative, like pooled ReLU activations, and logits) each
metric is computed by genbench and by each installed peer's own feature-level function. clean-fid
draws its KID subsets with its own generator: at subsets of the whole set (n <= 1,000) the value is
the same, above it differs by sampling noise. Below n = 1,000 every side uses KID subsets of n
samples, as ``genbench eval`` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch

from genbench.bench.measure import Case, Values
from genbench.metrics import MetricOptions, evaluate_features

# the speed-ups for the k-NN metrics (at 50k x 50k x 2048)
PRDC_TARGET, TF_PRC_TARGET = 10.0, 20.0


def synthetic_features(n: int, dim: int, seed: int = 0, classes: int = 1008) -> dict[str, torch.Tensor]:
    """Two sets of non-negative float32 features (like pooled ReLU activations) and logits."""
    g = torch.Generator().manual_seed(seed)
    fake = (torch.randn(n, dim, generator=g) + 0.1).abs()
    real = (torch.randn(n, dim, generator=g) * 1.02 + torch.linspace(-0.1, 0.1, dim)).abs()
    return {"fake": fake, "real": real, "logits": torch.randn(n, classes, generator=g) * 3}


def kid_subset_size(f: dict) -> int:
    """The KID subset size both sides use: torch-fidelity's 1,000, or n when the sets are smaller
    (as ``genbench eval`` reduces it; torch-fidelity refuses a subset larger than a set)."""
    return min(MetricOptions().kid_subset_size, len(f["fake"]), len(f["real"]))


def genbench_runner(names: list[str], f: dict, device: str) -> Callable[[], Values]:
    fake = {"pool": f["fake"], "logits": f["logits"]}
    options = MetricOptions(device=device, kid_subset_size=kid_subset_size(f))
    return lambda: evaluate_features(names, fake, {"pool": f["real"]}, options).values


def torch_fidelity_cases(f: dict, device: str, size: str) -> list[Case]:
    from torch_fidelity import metric_fid, metric_isc, metric_kid, metric_prc

    def fid() -> Values:
        stats = metric_fid.fid_features_to_statistics(f["fake"]), metric_fid.fid_features_to_statistics(f["real"])
        return {"fid": metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]}

    def kid(dtype: torch.dtype) -> Callable[[], Values]:
        def run() -> Values:
            out = metric_kid.kid_features_to_metric(
                f["fake"].to(dtype), f["real"].to(dtype), kid_subset_size=kid_subset_size(f), verbose=False
            )
            return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}

        return run

    def isc() -> Values:
        out = metric_isc.isc_features_to_metric(f["logits"].to(device))
        return {"is_mean": out["inception_score_mean"], "is_std": out["inception_score_std"]}

    def prc() -> Values:
        out = metric_prc.prc_features_to_metric(f["fake"].to(device), f["real"].to(device), verbose=False)
        return {"precision": out["precision"], "recall": out["recall"]}

    peer = "torch-fidelity"
    return [
        Case("FID (features)", peer, size, genbench_runner(["fid"], f, device), fid),
        Case("KID (features)", peer, size, genbench_runner(["kid"], f, device), kid(torch.float32),
             note="torch-fidelity sums the kernel in float32, genbench in float64"),
        Case("KID (features)", "torch-fidelity (float64 input)", size, genbench_runner(["kid"], f, device),
             kid(torch.float64)),
        Case("IS (logits)", peer, size, genbench_runner(["is"], f, device), isc),
        Case("precision/recall (features)", peer, size, genbench_runner(["precision", "recall"], f, device), prc,
             target=TF_PRC_TARGET),
    ]


def prdc_cases(f: dict, device: str, size: str) -> list[Case]:
    prdc = importlib.import_module("prdc")

    def dc() -> Values:
        out = prdc.compute_prdc(f["real"].numpy(), f["fake"].numpy(), nearest_k=5)
        return {"density": float(out["density"]), "coverage": float(out["coverage"])}

    return [Case("density/coverage (features)", "prdc", size, genbench_runner(["density", "coverage"], f, device), dc,
                 target=PRDC_TARGET)]


def _numpy_statistics(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = x.numpy()
    return np.mean(a, axis=0), np.cov(a, rowvar=False)


def clean_fid_cases(f: dict, device: str, size: str) -> list[Case]:
    cleanfid = importlib.import_module("cleanfid.fid")

    def fid() -> Values:
        return {"fid": float(cleanfid.frechet_distance(*_numpy_statistics(f["fake"]), *_numpy_statistics(f["real"])))}

    def kid() -> Values:
        np.random.seed(2020)
        m = kid_subset_size(f)
        kid = cleanfid.kernel_distance(f["fake"].numpy(), f["real"].numpy(), num_subsets=100, max_subset_size=m)
        return {"kid_mean": kid}

    return [
        Case("FID (features)", "clean-fid", size, genbench_runner(["fid"], f, device), fid),
        Case("KID (features)", "clean-fid", size, genbench_runner(["kid"], f, device), kid,
             note="clean-fid sums the kernel in float32" + (", draws its own subsets" if len(f["fake"]) > 1000 else "")),
    ]


def pytorch_fid_cases(f: dict, device: str, size: str) -> list[Case]:
    fid_score = importlib.import_module("pytorch_fid.fid_score")

    def fid() -> Values:
        stats = _numpy_statistics(f["fake"]) + _numpy_statistics(f["real"])
        return {"fid": float(fid_score.calculate_frechet_distance(*stats))}

    return [Case("FID (features)", "pytorch-fid", size, genbench_runner(["fid"], f, device), fid)]


PEERS: dict[str, Callable[[dict, str, str], list[Case]]] = {
    "torch-fidelity": torch_fidelity_cases,
    "prdc": prdc_cases,
    "clean-fid": clean_fid_cases,
    "pytorch-fid": pytorch_fid_cases,
}


def metric_cases(n: int, dim: int, device: str, fid_n: int | None = None) -> tuple[list[Case], dict[str, str]]:
    """Cases of every installed peer on n x dim features, and {peer: why skipped}; the FID cases on fid_n rows
    when given (FID's cost is D^3 whatever n, KID's grows with n up to its 1,000-sample subsets)."""
    f = synthetic_features(n, dim)
    f_fid = synthetic_features(fid_n, dim) if fid_n and fid_n != n else f
    cases, skipped = [], {}
    for name, build in PEERS.items():
        try:
            cases += [c for c in build(f, device, f"n={n}, d={dim}") if not c.task.startswith("FID")]
            cases += [c for c in build(f_fid, device, f"n={len(f_fid['fake'])}, d={dim}") if c.task.startswith("FID")]
        except ImportError as e:
            skipped[name] = f"not installed ({e.name}); pip install 'genbench[bench]'"
    return cases, skipped
