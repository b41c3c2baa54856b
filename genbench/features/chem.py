"""``chem`` / ``chem:DATASET``: what the MOSES metrics need of a set of SMILES, in one pass.

Polykovskiy et al. 2020 ("Molecular Sets (MOSES)") compute every metric but validity on the valid
molecules, as RDKit canonical SMILES. This extractor parses each string with RDKit (an empty or
unparsable string is invalid) and returns, as tensors:

    valid    [N, 1]        1.0 where RDKit parses the string (all N strings, in order)
    canon    [V, 1] int64  a 63-bit hash (BLAKE2b) of each valid molecule's canonical SMILES, in order
    filters  [V, 1]        1.0 where the molecule passes MOSES's filters (see ``passes_filters``)
    morgan   [V, 1024]     Morgan fingerprint bits, radius 2, 1024 bits (uint8)
    chemnet  [V, 512]      ChemNet activations of the canonical SMILES (the ``fcd`` package's model and weights)
    frag     [F, 1] int64  hashes of the BRICS fragments of every valid molecule (one row per occurrence)
    scaf     [S, 1] int64  hashes of Bemis-Murcko scaffolds with at least 2 rings (one row per molecule that has one)
    novel    [V, 2] int64  (canon hash, 1 if the canonical SMILES is not in DATASET's train split); ``chem:DATASET`` only

Hashes stand in for strings so that every feature is a tensor; two different strings share a 63-bit
hash with probability about n^2 / 2^64 (below 1e-7 for the 1.6M MOSES train SMILES). Novelty compares
with the train split as shipped (MOSES's train SMILES are already canonical, as MOSES assumes).
"""

from __future__ import annotations

import hashlib
import pkgutil
from functools import lru_cache

import numpy as np
import torch

from genbench.data.base import DATASETS
from genbench.errors import UsageError
from genbench.features.base import FEATURES, FeatureExtractor

VALID, CANON, FILTERS, MORGAN, CHEMNET, FRAG, SCAF, NOVEL = "valid", "canon", "filters", "morgan", "chemnet", "frag", "scaf", "novel"
MORGAN_RADIUS, MORGAN_BITS = 2, 1024
SCAFFOLD_MIN_RINGS = 2
FILTER_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
CHEMNET_FILE = "ChemNet_v0.13_pretrained.pt"


def smiles_hash(s: str) -> int:
    """A 63-bit hash of a string (BLAKE2b, so the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") >> 1


def parse(smiles: str):
    """The RDKit molecule of ``smiles``, or None (empty or unparsable strings, as MOSES's get_mol)."""
    from rdkit import Chem

    if not smiles:
        return None
    return Chem.MolFromSmiles(smiles)


def morgan_bits(mol) -> np.ndarray:
    """[1024] uint8 Morgan bits, radius 2 (Rogers and Hahn 2010)."""
    return _morgan_generator().GetFingerprintAsNumPy(mol).astype(np.uint8)


@lru_cache(maxsize=1)
def _morgan_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)


def brics_fragments(mol) -> list[str]:
    """Canonical SMILES of the fragments left by cutting every BRICS bond (Degen et al. 2008)."""
    from rdkit import Chem

    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def scaffold(mol) -> str | None:
    """Canonical SMILES of the Bemis-Murcko scaffold when it has at least 2 rings, else None."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    if not smiles or core.GetRingInfo().NumRings() < SCAFFOLD_MIN_RINGS:
        return None
    return smiles


@lru_cache(maxsize=1)
def filter_patterns() -> tuple:
    """MOSES's filter SMARTS: its medicinal-chemistry filters (mcf.csv) and the PAINS set (wehi_pains.csv),
    read from an installed molsets wheel (data only)."""
    import csv

    from rdkit import Chem

    from genbench.data.moses import molsets_data_dir

    base = molsets_data_dir()
    folder = base.parent.parent / "metrics" if base else None
    if folder is None or not (folder / "mcf.csv").is_file() or not (folder / "wehi_pains.csv").is_file():
        raise UsageError("MOSES's filter lists (mcf.csv, wehi_pains.csv) were not found; pip install molsets --no-deps, "
                         "or leave out the filters metric")
    with open(folder / "mcf.csv", newline="") as f:
        smarts = [row["smarts"] for row in csv.DictReader(f)]
    with open(folder / "wehi_pains.csv", newline="") as f:
        smarts += [row[0] for row in csv.reader(f) if row]
    return tuple(Chem.MolFromSmarts(s) for s in smarts)


def passes_filters(mol) -> bool:
    """MOSES's filters: no ring of 8 or more atoms, no charged atom, only C N S O F Cl Br H, no match of
    the MCF or PAINS patterns (matched on the molecule with explicit hydrogens), and a SMILES (without
    stereo) that parses again."""
    from rdkit import Chem

    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in FILTER_ATOMS for a in mol.GetAtoms()):
        return False
    with_h = Chem.AddHs(mol)
    if any(with_h.HasSubstructMatch(p) for p in filter_patterns()):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


@lru_cache(maxsize=1)
def chemnet():
    """The ``fcd`` package's ChemNet (Preuer et al. 2018) with the weights it ships, and their sha256."""
    import fcd

    data = pkgutil.get_data("fcd", CHEMNET_FILE)
    if data is None:
        raise UsageError(f"the fcd package lacks {CHEMNET_FILE}; reinstall it: pip install fcd")
    return fcd.load_ref_model(), hashlib.sha256(data).hexdigest()


def chemnet_activations(smiles: list[str], device: torch.device, batch_size: int) -> torch.Tensor:
    import fcd

    model, _ = chemnet()
    act = fcd.get_predictions(model, smiles, batch_size=batch_size, n_jobs=0, device=str(device))
    return torch.from_numpy(np.asarray(act, dtype=np.float32).reshape(len(smiles), -1))


@lru_cache(maxsize=2)
def train_hashes(dataset: str) -> np.ndarray:
    """Sorted hashes of ``dataset``'s train SMILES (the novelty reference)."""
    train = DATASETS.get(dataset).load("train")
    return np.unique(np.fromiter((smiles_hash(s) for s in train.x), dtype=np.int64, count=len(train)))


def column(values, dtype=torch.int64) -> torch.Tensor:
    return torch.tensor(list(values), dtype=dtype).reshape(-1, 1)


class ChemFeatures(FeatureExtractor):
    """MOSES's per-molecule quantities (RDKit, ChemNet), optionally with novelty against a train split."""

    name = "chem"
    input_kind = "smiles"
    feature_keys = (VALID, CANON, FILTERS, MORGAN, CHEMNET, FRAG, SCAF, NOVEL)
    preprocessing = "chem-v1: RDKit canonical SMILES; Morgan r=2 1024 bits; BRICS; Murcko >= 2 rings; MOSES filters"

    def __init__(self, train_dataset: str | None = None, device: torch.device | str = "cpu"):
        self.train_dataset = train_dataset
        self.device = torch.device(device)
        if train_dataset is not None:
            DATASETS.get(train_dataset)  # "did you mean" for a wrong name
            self.name = f"chem:{train_dataset}"
        else:
            self.feature_keys = tuple(k for k in ChemFeatures.feature_keys if k != NOVEL)
        self.weights_sha256 = chemnet()[1]

    def extract(self, x, batch_size: int = 256) -> dict[str, torch.Tensor]:
        from rdkit import Chem, rdBase

        with rdBase.BlockLogs():  # an invalid string is a result (validity), not a log line
            mols = [parse(s) for s in x]
        valid = [m for m in mols if m is not None]
        canon = [Chem.MolToSmiles(m) for m in valid]
        hashes = [smiles_hash(s) for s in canon]
        scaffolds = [s for s in map(scaffold, valid) if s is not None]
        out = {
            VALID: torch.tensor([float(m is not None) for m in mols]).reshape(-1, 1),
            CANON: column(hashes),
            FILTERS: column((float(passes_filters(m)) for m in valid), torch.float32),
            MORGAN: torch.from_numpy(np.stack([morgan_bits(m) for m in valid]) if valid else np.zeros((0, MORGAN_BITS), np.uint8)),
            CHEMNET: chemnet_activations(canon, self.device, batch_size) if canon else torch.zeros(0, 512),
            FRAG: column(smiles_hash(f) for m in valid for f in brics_fragments(m)),
            SCAF: column(smiles_hash(s) for s in scaffolds),
        }
        if self.train_dataset is not None:
            novel = ~np.isin(np.asarray(hashes, dtype=np.int64), train_hashes(self.train_dataset))
            out[NOVEL] = torch.stack([column(hashes)[:, 0], torch.from_numpy(novel.astype(np.int64))], 1)
        return out

    def identity(self) -> dict:
        return {**super().identity(), "novelty_reference": f"{self.train_dataset}:train" if self.train_dataset else None}


@FEATURES.register("chem", description="MOSES molecule features (RDKit + ChemNet); chem:DATASET adds novelty against DATASET's train split")
def build_chem(arg=None, weights=None, device="cpu") -> ChemFeatures:
    if weights is not None:
        raise UsageError("--weights does not apply to chem features (ChemNet's weights come with the fcd package); leave it out")
    return ChemFeatures(arg, device)
