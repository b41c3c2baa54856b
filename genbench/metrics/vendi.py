"""Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for
Machine Learning", TMLR), with dgm-eval's defaults (Stein et al. 2023): features L2-normalised,
linear kernel, order q = 1.

    K = X X^T / n   (X [n, D], unit rows: K is PSD with trace 1)
    VS = exp(-sum_i lambda_i log lambda_i)   over the eigenvalues lambda_i > 0 of K

the exponential of the Shannon entropy of K's eigenvalues: the effective number of distinct
samples, between 1 (all identical) and min(n, D). K's non-zero eigenvalues are those of
X^T X / n (D x D), which is what is diagonalised (as vendi-score's ``score_dual``), in float64.
It needs no reference set.

``vendi_per_class`` is the per-class variant for labelled data (dgm-eval's per-class Vendi): the
mean over classes of the Vendi score of each class's samples. The generated side's classes are
those each sample was asked for (``fake.labels``, kept by the runner for class-conditional
families, as ``intra_fid`` reads them); each class's score is in ``info`` (``vendi_by_class``).
"""

from __future__ import annotations

import torch

from genbench.errors import UsageError
from genbench.metrics.base import METRICS, Metric, MetricOptions, register_key

VENDI = register_key("vendi", True, "Vendi score, q = 1, linear kernel on L2-normalised features (Friedman & Dieng 2023)",
                     bounds=(1.0, None))
VENDI_PER_CLASS = register_key("vendi_per_class", True, "mean over classes of the Vendi score of each class's samples "
                               "(q = 1, linear kernel, L2-normalised features)", bounds=(1.0, None))
FAKE_LABELS = "fake.labels"


def vendi_score(x: torch.Tensor) -> float:
    """Vendi score (q = 1) of features x [n, D] after L2-normalising each row; float64."""
    x = torch.as_tensor(x).to(torch.float64)
    norms = x.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise UsageError("vendi: a feature vector is all zeros and cannot be L2-normalised; check the features")
    x = x / norms
    n = x.shape[0]
    # eigenvalues of X X^T / n via the D x D (or n x n, whichever is smaller) Gram matrix
    gram = (x.T @ x if x.shape[1] <= n else x @ x.T) / n
    lam = torch.linalg.eigvalsh(gram)
    lam = lam[lam > 0]
    return float(torch.exp(-(lam * torch.log(lam)).sum()))


def per_class_vendi(x: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """{class: Vendi score of that class's features} for features x [n, D] and integer labels [n]."""
    labels = torch.as_tensor(labels).reshape(-1)
    if len(labels) != len(x):
        raise UsageError(f"per-class vendi: {len(labels)} labels for {len(x)} samples; give one label per sample")
    return {int(c): vendi_score(x[labels == c]) for c in torch.unique(labels).tolist()}


def vendi_compute(fake: torch.Tensor, real: torch.Tensor | None, options: MetricOptions):
    return {VENDI.key: vendi_score(fake)}, {}


def vendi_per_class_compute(fake: torch.Tensor, real: torch.Tensor | None, options: MetricOptions, extras: dict):
    per_class = per_class_vendi(fake.cpu(), extras[FAKE_LABELS].long().cpu())
    value = sum(per_class.values()) / len(per_class)
    return {VENDI_PER_CLASS.key: value}, {"vendi_classes": len(per_class),
                                          "vendi_by_class": {str(c): v for c, v in per_class.items()}}


METRICS.register(
    "vendi",
    Metric(name="vendi", keys=(VENDI.key,), needs="pool", needs_reference=False, compute=vendi_compute,
           description=VENDI.description, default=False),
)
METRICS.register(
    "vendi_per_class",
    Metric(name="vendi_per_class", keys=(VENDI_PER_CLASS.key,), needs="pool", needs_reference=False,
           compute=vendi_per_class_compute, description=VENDI_PER_CLASS.description, default=False,
           extras=(FAKE_LABELS,)),
)
