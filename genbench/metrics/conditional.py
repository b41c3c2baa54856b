"""Metrics of class-conditional generation: intra-FID and class consistency.

Both read the class each generated sample was asked for (``fake.labels``, kept with the samples
by the runner for class-conditional families) and the reference set's labels (``real.labels``).

* ``intra_fid``: FID between the generated and the reference samples of each class, averaged over
  the classes (Miyato & Koyama 2018, "cGANs with Projection Discriminator", ICLR, sec. 5). Each
  class has about N / C samples, so each per-class covariance is estimated from few samples: the
  value is biased upward more than FID at the same N, and a warning says when a class has fewer
  samples than feature dimensions.
* ``class_consistency``: the share of generated samples that the feature extractor's classifier
  (``logits``; the shipped ``domain:<dataset>`` classifier) assigns to the class they were asked
  for. The classifier's accuracy on the labelled reference set is recorded beside it
  (``class_consistency_reference``): the value a perfect conditional model would reach; a warning
  says when it is low, i.e. when the logits are not a classifier of the dataset's classes.
"""

from __future__ import annotations

import torch

from genbench.errors import UsageError
from genbench.metrics.base import (
    INFO_WARNINGS,
    MetricOptions,
    register_group,
    register_key,
)
from genbench.metrics.fid import (
    features_to_statistics,
    fid_with_reference_factor,
    rank_warning,
    covariance_factor,
)

INTRA_FID = register_key("intra_fid", False, "FID per class averaged over classes (Miyato & Koyama 2018)",
                         bias_corrected=True, bounds=(0.0, None))
CLASS_CONSISTENCY = register_key("class_consistency", True, "share of samples the classifier assigns to the class asked for",
                                 bounds=(0.0, 1.0))
FAKE_LABELS, REAL_LABELS = "fake.labels", "real.labels"
LOW_REFERENCE_ACCURACY = 0.5


def shared_classes(fake_labels: torch.Tensor, real_labels: torch.Tensor) -> list[int]:
    """Classes with at least 2 generated and 2 reference samples (a covariance needs 2)."""
    fake_counts = torch.bincount(fake_labels.cpu())
    real_counts = torch.bincount(real_labels.cpu())
    n = min(len(fake_counts), len(real_counts))
    classes = [c for c in range(n) if fake_counts[c] >= 2 and real_counts[c] >= 2]
    if not classes:
        raise UsageError("intra_fid needs at least 2 generated and 2 reference samples of some class; draw more samples")
    return classes


def per_class_reference(real: torch.Tensor, real_labels: torch.Tensor, classes: list[int]) -> dict[int, tuple]:
    """{class: (mu [D], sigma [D, D], F [D, D] with sigma = F F^T)} of the reference features of each class."""
    out = {}
    for c in classes:
        mu, sigma = features_to_statistics(real[real_labels == c])
        out[c] = (mu, sigma, covariance_factor(sigma))
    return out


def intra_fid_of(fake: torch.Tensor, fake_labels: torch.Tensor, reference: dict[int, tuple]) -> tuple[float, dict[int, float]]:
    """Mean over classes of FID(generated of class c, reference of class c), and the per-class values."""
    per_class = {}
    for c, (mu2, sigma2, sigma2_factor) in reference.items():
        mu1, sigma1 = features_to_statistics(fake[fake_labels == c])
        per_class[c] = max(fid_with_reference_factor(mu1, sigma1, mu2, sigma2, sigma2_factor), 0.0)
    return sum(per_class.values()) / len(per_class), per_class


def intra_fid_compute(fake, real, options: MetricOptions, extras: dict) -> tuple[dict[str, float], dict]:
    fake_labels, real_labels = extras[FAKE_LABELS].long(), extras[REAL_LABELS].long()
    classes = shared_classes(fake_labels, real_labels)
    reference = per_class_reference(real, real_labels, classes)
    value, per_class = intra_fid_of(fake, fake_labels, reference)
    smallest_fake = min(int((fake_labels == c).sum()) for c in classes)
    smallest_real = min(int((real_labels == c).sum()) for c in classes)
    info: dict = {"intra_fid_classes": len(classes), "intra_fid_per_class": {str(c): v for c, v in per_class.items()},
                  INFO_WARNINGS: rank_warning(smallest_fake, smallest_real, fake.shape[1], "intra-FID (per class)")}
    return {INTRA_FID.key: value}, info


def classifier_hits(logits: torch.Tensor, labels: torch.Tensor, what: str) -> torch.Tensor:
    """[N] float64: 1 where argmax(logits) equals the label."""
    if len(labels) != len(logits):
        raise UsageError(f"{what}: {len(labels)} labels for {len(logits)} samples; give one label per sample")
    if int(labels.max()) >= logits.shape[1] or int(labels.min()) < 0:
        raise UsageError(f"{what}: labels reach {int(labels.max())} but the classifier has {logits.shape[1]} classes; "
                         "use the dataset's domain classifier (--features domain:<dataset>)")
    return (logits.argmax(1) == labels).double()


def class_consistency_compute(fake, real, options: MetricOptions, extras: dict) -> tuple[dict[str, float], dict]:
    hits = classifier_hits(fake, extras[FAKE_LABELS].long(), "class_consistency")
    info: dict = {INFO_WARNINGS: []}
    if real is not None:
        reference = float(classifier_hits(real, extras[REAL_LABELS].long(), "class_consistency (reference)").mean())
        info["class_consistency_reference"] = reference
        if reference < LOW_REFERENCE_ACCURACY:
            info[INFO_WARNINGS].append(
                f"class_consistency: the feature extractor's classifier labels only {reference:.1%} of the reference "
                "images correctly, so it is not a classifier of this dataset's classes; use domain:<dataset> features.")
    return {CLASS_CONSISTENCY.key: float(hits.mean())}, info


register_group("intra_fid", (INTRA_FID,), intra_fid_compute, needs="pool", extras=(FAKE_LABELS, REAL_LABELS))
register_group("class_consistency", (CLASS_CONSISTENCY,), class_consistency_compute, needs="logits",
               extras=(FAKE_LABELS, REAL_LABELS))
