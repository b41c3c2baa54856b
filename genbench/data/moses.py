"""``moses``: the MOSES benchmark's molecules (Polykovskiy et al. 2020, "Molecular Sets (MOSES)").

Splits: ``train`` (1,584,663 SMILES), ``test`` (176,074) and ``test_scaffolds`` (176,226, the
scaffold-test set TestSF: scaffolds absent from train), read from ``train.csv.gz``,
``test.csv.gz`` and ``test_scaffolds.csv.gz`` (one ``SMILES`` column). genbench looks in
``--data-root DIR`` (``DIR/moses/`` or ``DIR``), then in the data folder of an installed
``molsets`` wheel (found with ``importlib.util.find_spec``; none of its code is imported).

``moses-small`` is the same data with every split cut to a seeded random subset of at most
20,000 molecules, for CPU-sized runs (train within minutes; FCD/SNN against 20,000 test molecules).
``moses-sample`` ships with genbench (``genbench/data/moses_sample/``: seeded random 2,000 train, 500
test and 500 test_scaffolds molecules of MOSES, MIT-licensed), so molecule code and the contract tests
run offline without molsets; it is far too small to benchmark with.
The strings are kept as MOSES ships them (canonical SMILES).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import torch

from genbench.data.base import DATASETS, Dataset
from genbench.data.smiles import SMILES, Molecules
from genbench.errors import DataUnavailableError, UsageError

FILES = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}
SMALL_N = 20_000
SUBSET_SEED = 0


def molsets_data_dir() -> Path | None:
    """``moses/dataset/data`` of an installed molsets wheel, located without importing it."""
    try:
        spec = importlib.util.find_spec("moses")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data"


def candidate_dirs(data_root: Path | None) -> list[Path]:
    dirs = [Path(data_root) / "moses", Path(data_root)] if data_root else []
    wheel = molsets_data_dir()
    return dirs + ([wheel] if wheel else [])


@lru_cache(maxsize=4)
def read_split(path: Path) -> tuple[str, ...]:
    """The SMILES column of one MOSES .csv.gz."""
    try:
        with gzip.open(path, "rt", newline="") as f:
            rows = csv.reader(f)
            header = [h.strip().upper() for h in next(rows)]
            col = header.index("SMILES")
            return tuple(row[col] for row in rows if len(row) > col)
    except (OSError, EOFError, ValueError, StopIteration) as e:
        raise UsageError(f"{path} is not a readable MOSES file ({type(e).__name__}); reinstall molsets or replace the file") from None


class Moses(Dataset):
    modality = SMILES
    splits = tuple(FILES)
    description = "MOSES molecules as SMILES (train 1.58M, test 176k, test_scaffolds 176k); from molsets or --data-root"

    def __init__(self, name: str = "moses", subset: int | None = None, folder: Path | None = None):
        self.name = name
        self.subset = subset
        self.folder = folder  # a fixed folder of the split files (moses-sample), else --data-root / molsets
        self.shape = ()

    def locate(self, split: str, data_root: Path | None) -> Path:
        dirs = [self.folder] if self.folder is not None else candidate_dirs(data_root)
        for d in dirs:
            if (d / FILES[split]).is_file():
                return d / FILES[split]
        where = ", ".join(str(d) for d in dirs) or "nowhere (no --data-root and no molsets installed)"
        raise DataUnavailableError(f"MOSES {FILES[split]} not found (looked in {where}); "
                                   "pip install molsets --no-deps, or pass --data-root DIR holding the MOSES .csv.gz files")

    def load(self, split: str = "train", data_root: Path | None = None) -> Molecules:
        smiles = read_split(self.locate(self.check_split(split), data_root))
        data = Molecules(smiles)
        if self.subset is not None:
            data = data.take(self.subset, torch.Generator().manual_seed(SUBSET_SEED))
        return data

    def info(self) -> dict:
        return {**super().info(), "subset": self.subset, "subset_seed": SUBSET_SEED if self.subset else None}


DATASETS.register("moses", Moses())
DATASETS.register("moses-small", Moses("moses-small", SMALL_N),
                  description=f"MOSES with every split cut to a seeded random {SMALL_N:,} molecules (CPU-sized runs)")
DATASETS.register("moses-sample", Moses("moses-sample", folder=Path(__file__).parent / "moses_sample"),
                  description="2,000 train / 500 test MOSES molecules shipped with genbench (offline tests and demos)")
