"""The MOSES metrics (Polykovskiy et al. 2020, "Molecular Sets (MOSES)"), over ``chem`` features.

Definitions follow the MOSES reference implementation (molecularsets/moses, metrics/metrics.py):

    validity    fraction of the N strings RDKit parses
    unique@k    |set(first k valid canonical SMILES)| / k   (all valid ones, with a warning, when fewer than k)
    novelty     fraction of the distinct valid canonical SMILES not in the train split
    filters     fraction of valid molecules passing MOSES's filters (MCF, PAINS, atoms, charge, rings)
    intdiv_p    1 - mean_i (mean_j T(m_i, m_j)^p)^(1/p) over valid generated molecules, T the Tanimoto
                similarity of Morgan fingerprints (r = 2, 1024 bits), p = 1 and 2 (MOSES takes the p-th
                root per molecule, then the mean; the paper's formula puts the root outside the mean)
    fcd         Fréchet ChemNet Distance (Preuer et al. 2018) of valid generated vs reference molecules
    snn         mean over valid generated molecules of the largest Tanimoto similarity to a reference molecule
    frag, scaf  cosine similarity of BRICS-fragment counts / Bemis-Murcko-scaffold counts (scaffolds of
                >= 2 rings) of the generated and the reference set

Every metric but validity is computed on the valid molecules (duplicates kept, as MOSES does). A set
with too few valid molecules leaves a metric undefined, with a warning, never an error.
"""

from __future__ import annotations

from collections import Counter

import torch

from genbench.features.chem import CANON, CHEMNET, FILTERS, FRAG, MORGAN, NOVEL, SCAF, VALID
from genbench.metrics.base import INFO_WARNINGS, METRICS, Metric, MetricOptions, register_key
from genbench.metrics.fid import clamp_fid, features_to_statistics, statistics_to_fid

VALIDITY = register_key("validity", True, "fraction of SMILES RDKit parses (MOSES)", bounds=(0.0, 1.0))
UNIQUE_1K = register_key("unique@1k", True, "distinct fraction of the first 1,000 valid molecules (MOSES)", bounds=(0.0, 1.0))
UNIQUE_10K = register_key("unique@10k", True, "distinct fraction of the first 10,000 valid molecules (MOSES)", bounds=(0.0, 1.0))
NOVELTY = register_key("novelty", True, "fraction of distinct valid molecules not in the train split (MOSES)", bounds=(0.0, 1.0))
FILTERS_KEY = register_key("filters", True, "fraction of valid molecules passing MOSES's filters", bounds=(0.0, 1.0))
INTDIV1 = register_key("intdiv1", True, "internal diversity, p = 1 (MOSES; Morgan r=2, 1024 bits)", bounds=(0.0, 1.0))
INTDIV2 = register_key("intdiv2", True, "internal diversity, p = 2 (MOSES; Morgan r=2, 1024 bits)", bounds=(0.0, 1.0))
FCD = register_key("fcd", False, "Fréchet ChemNet Distance (Preuer et al. 2018)", bounds=(0.0, None))
SNN = register_key("snn", True, "mean nearest-neighbour Tanimoto similarity to the reference (MOSES)", bounds=(0.0, 1.0))
FRAG_KEY = register_key("frag", True, "cosine similarity of BRICS fragment counts (MOSES)", bounds=(0.0, 1.0))
SCAF_KEY = register_key("scaf", True, "cosine similarity of Bemis-Murcko scaffold counts (MOSES)", bounds=(0.0, 1.0))
CHUNK = 512  # generated rows per block of a Tanimoto matrix


def tanimoto(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tanimoto similarities [Na, Nb] of bit vectors a [Na, D], b [Nb, D]; 1 where both are all zero (as MOSES)."""
    a, b = a.double(), b.double()
    both = a @ b.T  # |a & b|
    union = a.sum(1, keepdim=True) + b.sum(1)[None, :] - both
    return torch.where(union > 0, both / union.clamp_min(1.0), torch.ones_like(both))


def validity(fake: torch.Tensor, real, options: MetricOptions):
    return {VALIDITY.key: float(fake.double().mean())}, {}


def unique_at(hashes: list[int], k: int, key: str) -> tuple[float, list[str]]:
    first = hashes[:k]
    note = [] if len(hashes) >= k else [f"{key} computed on all {len(hashes)} valid molecules (fewer than {k:,})"]
    return len(set(first)) / len(first), note


def unique(fake: torch.Tensor, real, options: MetricOptions):
    hashes = fake[:, 0].tolist()
    (u1, w1), (u10, w10) = unique_at(hashes, 1000, UNIQUE_1K.key), unique_at(hashes, 10_000, UNIQUE_10K.key)
    return {UNIQUE_1K.key: u1, UNIQUE_10K.key: u10}, {INFO_WARNINGS: w1 + w10, "n_valid": len(hashes)}


def novelty(fake: torch.Tensor, real, options: MetricOptions):
    distinct = dict(zip(fake[:, 0].tolist(), fake[:, 1].tolist()))  # canon hash -> novel
    return {NOVELTY.key: sum(distinct.values()) / len(distinct)}, {}


def filters(fake: torch.Tensor, real, options: MetricOptions):
    return {FILTERS_KEY.key: float(fake.double().mean())}, {}


def internal_diversity(fake: torch.Tensor, real, options: MetricOptions):
    # per molecule i: mean_j T_ij^p, blockwise over i
    m1, m2 = [], []
    for block in fake.split(CHUNK):
        t = tanimoto(block, fake)  # [B, V]
        m1.append(t.mean(1))
        m2.append(t.pow(2).mean(1).sqrt())
    return {INTDIV1.key: float(1 - torch.cat(m1).mean()), INTDIV2.key: float(1 - torch.cat(m2).mean())}, {}


def fcd(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    mu1, sigma1 = features_to_statistics(fake)
    mu2, sigma2 = features_to_statistics(real)
    value, warnings = clamp_fid(statistics_to_fid(mu1, sigma1, mu2, sigma2))
    return {FCD.key: value}, {INFO_WARNINGS: [w.replace("FID", "FCD") for w in warnings]}


def snn(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    nearest = torch.cat([tanimoto(block, real).max(1).values for block in fake.split(CHUNK)])  # [V]
    return {SNN.key: float(nearest.mean())}, {}


def count_cosine(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Cosine similarity of the count vectors of two multisets of hashes (absent entries count 0)."""
    g, r = Counter(fake[:, 0].tolist()), Counter(real[:, 0].tolist())
    dot = sum(c * r[h] for h, c in g.items())
    norm = (sum(c * c for c in g.values()) * sum(c * c for c in r.values())) ** 0.5
    return dot / norm


def frag(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    return {FRAG_KEY.key: count_cosine(fake, real)}, {}


def scaf(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    return {SCAF_KEY.key: count_cosine(fake, real)}, {}


def register(name: str, keys, needs: str, compute, needs_reference: bool, min_n: int = 1, intervals: bool = True,
             description: str = "") -> None:
    METRICS.register(name, Metric(name=name, keys=tuple(k.key for k in keys), needs=needs, needs_reference=needs_reference,
                                  compute=compute, description=description or keys[0].description, intervals=intervals,
                                  min_n=min_n, may_be_undefined=True))


register("validity", (VALIDITY,), VALID, validity, False)
register("unique", (UNIQUE_1K, UNIQUE_10K), CANON, unique, False, intervals=False,
         description="distinct fraction of the first k valid molecules, k = 1,000 and 10,000 (MOSES)")
register("novelty", (NOVELTY,), NOVEL, novelty, False, intervals=False)
register("filters", (FILTERS_KEY,), FILTERS, filters, False)
register("intdiv", (INTDIV1, INTDIV2), MORGAN, internal_diversity, False,
         description="internal diversity IntDiv1 and IntDiv2 (MOSES; Tanimoto on Morgan r=2, 1024 bits)")
register("fcd", (FCD,), CHEMNET, fcd, True, min_n=2)
register("snn", (SNN,), MORGAN, snn, True)
register("frag", (FRAG_KEY,), FRAG, frag, True, intervals=False)  # rows are fragments, not molecules
register("scaf", (SCAF_KEY,), SCAF, scaf, True, intervals=False)  # rows are molecules with a scaffold
