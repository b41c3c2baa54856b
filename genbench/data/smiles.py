"""The token-sequence modality ``smiles``: molecules as SMILES strings, and users' files of them.

A set of molecules is a ``Molecules`` (a tuple of strings, one per example, kept exactly as
generated: validity is a metric, so nothing is dropped or canonicalised here). Its extractors
(``input_kind = "smiles"``, e.g. ``chem``) take the strings as they are: there is no quantisation.

Files (``read_smiles_file``): ``.smi`` and ``.txt`` hold one SMILES per line (the first
whitespace-separated field; anything after it, such as a name, is ignored; blank lines are
skipped); a ``.csv`` holds a column named ``SMILES`` (any case; ``smiles`` and ``SMILES`` both
work). Refused with one line: an empty file, a CSV without a SMILES column, and bytes that are not
UTF-8 text (binary junk). A line that RDKit cannot parse is not refused: it counts against validity.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import MODALITIES, Modality
from genbench.errors import UsageError

SMILES = "smiles"
SMILES_SUFFIXES = (".smi", ".txt", ".csv")
SMILES_COLUMN = "smiles"  # matched case-insensitively


@dataclass(frozen=True)
class Molecules:
    """A set of molecules as SMILES strings, in order (invalid strings included)."""

    x: tuple[str, ...]
    y: None = None
    modality: str = SMILES

    def __len__(self) -> int:
        return len(self.x)

    def take(self, n: int, generator: torch.Generator | None = None) -> "Molecules":
        """The first ``n`` strings, or a seeded random subset of ``n`` when a generator is given."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=generator)[:n].tolist() if generator is not None else range(n)
        return Molecules(tuple(self.x[i] for i in idx))

    def content_sha256(self) -> str:
        h = hashlib.sha256(f"smiles|{len(self.x)}|".encode())
        for s in self.x:
            h.update(s.encode())
            h.update(b"\n")
        return h.hexdigest()


PREVIEW_SMILES = 64


def _batches(x: tuple[str, ...], size: int, device) -> "Iterator[tuple[str, ...]]":
    return (tuple(x[i:i + size]) for i in range(0, len(x), size))


MODALITIES.register(SMILES, Modality(SMILES, Molecules, (SMILES,), "chem", lambda x, quantisation: x, features_name_dataset=True,
                                     concat=lambda chunks: tuple(itertools.chain.from_iterable(chunks)),
                                     count_nonfinite=lambda x: 0,  # a string is a result: validity is a metric
                                     preview=lambda x, quantisation: np.asarray(x[:PREVIEW_SMILES], dtype=str),
                                     batches=_batches, example_dataset="moses-sample"),
                    description="molecules as SMILES strings (token sequences)")


def read_smiles_file(path: Path) -> Molecules:
    """A user's SMILES: .smi/.txt one per line, or .csv with a SMILES column (see the module doc)."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; give a SMILES file (.smi/.txt one per line, or .csv with a SMILES column)") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}; check the path and its permissions") from None
    if "\x00" in text:
        raise UsageError(f"{path} holds binary data, not text; give a SMILES file (.smi/.txt one per line, or .csv with a SMILES column)")
    smiles = _csv_column(text, path) if path.suffix.lower() == ".csv" else _lines(text)
    if not smiles:
        raise UsageError(f"{path} holds no SMILES; give a file with one SMILES per line (or a CSV with a SMILES column)")
    return Molecules(tuple(smiles))


def _lines(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _csv_column(text: str, path: Path) -> list[str]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        return []
    names = [h.strip().lower() for h in header]
    if SMILES_COLUMN not in names:
        raise UsageError(f"{path} has no SMILES column (columns: {', '.join(h.strip() for h in header)[:200]}); "
                         "name the column SMILES, or give a .smi file with one SMILES per line")
    col = names.index(SMILES_COLUMN)
    return [row[col].strip() for row in rows if len(row) > col and row[col].strip()]
