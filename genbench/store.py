"""SQLite results store: one row per RunSpec, keyed by the spec's hash, safe for concurrent writers.

``<out>/results.sqlite`` holds a ``records`` table. Writes are single ``INSERT ... ON CONFLICT``
statements in WAL mode with a busy timeout, so two ``genbench run`` processes writing the same
store both finish and a killed process never leaves a half-written row.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from genbench.errors import RunFailure, UsageError
from genbench.spec import OK, Record, RunSpec

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    family TEXT NOT NULL,
    sampler TEXT NOT NULL,
    steps INTEGER,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    spec_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    ci_json TEXT NOT NULL,
    info_json TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def store_path(out: Path | str) -> Path:
    out = Path(out)
    return out if out.suffix == ".sqlite" else out / STORE_NAME


class ResultsStore:
    """Thin wrapper over one SQLite file."""

    def __init__(self, path: Path | str, create: bool = True):
        self.path = store_path(path)
        if not self.path.exists() and not create:
            raise UsageError(f"no results store at {self.path}; run `genbench run --out {self.path.parent}` first")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create output directory {self.path.parent} ({e.strerror}); choose a writable --out") from None
        with self._connect() as con:
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.OperationalError as e:
            raise UsageError(f"cannot open results store {self.path} ({e}); check that the directory is writable") from None
        try:
            con.execute("PRAGMA busy_timeout = 60000")
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            yield con
        except sqlite3.DatabaseError as e:
            msg = str(e)
            if "readonly" in msg or "unable to open" in msg:
                raise UsageError(f"results store {self.path} is not writable ({msg}); choose a writable --out") from None
            if "disk" in msg or "full" in msg or "I/O" in msg:
                raise RunFailure(f"could not write results store {self.path} ({msg}); free disk space and rerun (finished records are kept)") from None
            if "malformed" in msg or "not a database" in msg:
                raise UsageError(f"{self.path} is not a genbench results store ({msg}); move it away or choose another --out") from None
            raise
        finally:
            con.close()

    def put(self, record: Record) -> None:
        """Insert or replace the record of ``record.spec`` (idempotent by spec hash)."""
        s = record.spec
        row = (
            record.key, s.suite, s.dataset, s.model, s.family, s.sampler, s.steps, s.seed, record.status,
            record.error, _dumps(s.to_dict()), _dumps(record.metrics), _dumps({k: list(v) for k, v in record.ci.items()}),
            _dumps(record.info), _dumps(record.provenance), record.created_at,
        )
        with self._connect() as con:
            con.execute(
                "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "suite=excluded.suite, status=excluded.status, error=excluded.error, metrics_json=excluded.metrics_json, "
                "ci_json=excluded.ci_json, info_json=excluded.info_json, provenance_json=excluded.provenance_json, "
                "created_at=excluded.created_at",
                row,
            )

    def done_keys(self) -> set[str]:
        """Keys of specs that finished successfully (a rerun skips these)."""
        with self._connect() as con:
            return {r[0] for r in con.execute("SELECT key FROM records WHERE status = ?", (OK,))}

    def records(self) -> list[Record]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT spec_json, status, metrics_json, ci_json, info_json, provenance_json, error, created_at "
                "FROM records ORDER BY created_at, key"
            ).fetchall()
        return [_row_to_record(r) for r in rows]

    def integrity_ok(self) -> bool:
        with self._connect() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _row_to_record(r: tuple) -> Record:
    spec_json, status, metrics_json, ci_json, info_json, prov_json, error, created_at = r
    ci = {k: (float(v[0]), float(v[1])) for k, v in json.loads(ci_json).items()}
    return Record(RunSpec.from_dict(json.loads(spec_json)), status, json.loads(metrics_json), ci,
                  json.loads(info_json), json.loads(prov_json), error, created_at)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default, allow_nan=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def records_to_frame(records: list[Record]) -> pd.DataFrame:
    """One row per record: spec columns, status, one column per metric, CI columns, key provenance."""
    rows = []
    for rec in records:
        s = rec.spec
        row: dict[str, Any] = {
            "suite": s.suite, "dataset": s.dataset, "model": s.model, "family": s.family, "sampler": s.sampler,
            "steps": s.steps, "seed": s.seed, "status": rec.status, "n_samples": s.n_samples,
            "n_reference": s.n_reference, "features": s.features,
        }
        row.update(rec.metrics)
        for k, (lo, hi) in rec.ci.items():
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = lo, hi
        row["error"] = rec.error
        row["key"] = rec.key
        row["created_at"] = rec.created_at
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["steps"] = df["steps"].astype("Int64")
    return df


def load_results(out: Path | str) -> pd.DataFrame:
    """The results stored under ``out`` (a run directory or a .sqlite file) as a DataFrame."""
    return records_to_frame(ResultsStore(out, create=False).records())
