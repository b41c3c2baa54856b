"""SQLite results store: one row per RunSpec, keyed by the spec's hash, safe for concurrent writers.

``<out>/results.sqlite`` holds a ``records`` table (the record shown for each spec) and an
``attempts`` table (every record ever put, in order). Writes are single transactions in WAL mode
with a busy timeout, so two ``genbench run`` processes writing the same store both finish and a
killed process never leaves a half-written row. A ``previews`` table keeps a few samples per
spec for the leaderboard's sample figures. A failed or skipped attempt never replaces an
ok record (``--rerun`` of a spec that then fails keeps the ok one shown, both in ``attempts``).

Readers (``genbench results``, ``compare``, ``check``, ``load_results``) open the file read-only
(``mode=ro``, falling back to ``immutable=1`` where SQLite cannot create its WAL index, e.g. on
a read-only filesystem), so a published store can be read where it cannot be written.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from genbench.errors import RunFailure, UsageError
from genbench.spec import NUMERICS_VERSION, OK, Record, RunSpec, numerics_version, record_from_dict, record_warnings

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
CREATE TABLE IF NOT EXISTS previews (key TEXT PRIMARY KEY, npz BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    record_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""
_COLUMNS = ("spec_json, status, metrics_json, ci_json, info_json, provenance_json, error, created_at")


def store_path(out: Path | str) -> Path:
    out = Path(out)
    return out if out.suffix == ".sqlite" else out / STORE_NAME


class ResultsStore:
    """Thin wrapper over one SQLite file; ``create=False`` opens an existing store read-only."""

    def __init__(self, path: Path | str, create: bool = True):
        self.path = store_path(path)
        self.readonly = not create
        if not self.path.exists() and not create:
            raise UsageError(f"no results store at {self.path}; run `genbench run --out {self.path.parent}` first")
        if self.readonly:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create output directory {self.path.parent} ({e.strerror}); choose a writable --out") from None
        with self._connect() as con:
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = self._open_readonly() if self.readonly else self._open_writable()
        try:
            yield con
        except sqlite3.DatabaseError as e:
            raise self._translate(e) from None
        finally:
            con.close()

    def _open_writable(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.DatabaseError as e:
            raise self._translate(e) from None
        try:
            con.execute("PRAGMA busy_timeout = 60000")
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            return con
        except sqlite3.DatabaseError as e:
            con.close()  # a failed open leaves no file handle behind (a disk could not be remounted)
            raise self._translate(e) from None

    def _open_readonly(self) -> sqlite3.Connection:
        """A reader never writes. Where the directory is writable it opens the store as writers do
        (so the last connection to close folds the WAL back and removes ``-wal``/``-shm``, leaving
        the directory as it found it); else ``mode=ro`` reads a live WAL store, and where SQLite cannot
        create the WAL index beside a store (a read-only directory or filesystem) ``immutable=1``
        reads the file as it is."""
        uri = self.path.resolve().as_uri()
        for flags in ("mode=rw", "mode=ro", "mode=ro&immutable=1"):
            con = None
            try:
                con = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=60.0, isolation_level=None)
                con.execute("PRAGMA busy_timeout = 60000")
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return con
            except sqlite3.DatabaseError as e:
                if con is not None:
                    con.close()
                last = e
                if "malformed" in str(e) or "not a database" in str(e):
                    break
        raise self._translate(last) from None

    def _translate(self, e: sqlite3.DatabaseError) -> Exception:
        msg = str(e)
        if "malformed" in msg or "not a database" in msg:
            return UsageError(f"{self.path} is not a genbench results store ({msg}); move it away or choose another --out")
        if self.readonly:
            return UsageError(f"cannot read results store {self.path} ({msg}); check the path and its permissions")
        if "readonly" in msg or "unable to open" in msg:
            return UsageError(f"results store {self.path} is not writable ({msg}); choose a writable --out")
        if "disk" in msg or "full" in msg or "I/O" in msg:
            return RunFailure(f"could not write results store {self.path} ({msg}); free disk space and rerun (finished records are kept)")
        return e

    def put(self, record: Record) -> None:
        """Store ``record`` as an attempt of its spec; it becomes the spec's shown record unless it is
        not ok and an ok record is already there (a failed rerun never hides a result)."""
        s = record.spec
        row = (
            record.key, s.suite, s.dataset, s.model, s.family, s.sampler, s.steps, s.seed, record.status,
            record.error, _dumps(s.to_dict()), _dumps(record.metrics), _dumps({k: list(v) for k, v in record.ci.items()}),
            _dumps(record.info), _dumps(record.provenance), record.created_at,
        )
        keep_ok = "" if record.status == OK else " WHERE records.status != 'ok'"
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO attempts (key, status, record_json, created_at) VALUES (?,?,?,?)",
                        (record.key, record.status, _dumps(record.to_dict()), record.created_at))
            con.execute(
                "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "suite=excluded.suite, status=excluded.status, error=excluded.error, metrics_json=excluded.metrics_json, "
                "ci_json=excluded.ci_json, info_json=excluded.info_json, provenance_json=excluded.provenance_json, "
                "created_at=excluded.created_at" + keep_ok,
                row,
            )
            con.execute("COMMIT")

    def done_keys(self, among: Iterable[str] | None = None) -> set[str]:
        """Keys of specs that finished successfully under the current NUMERICS_VERSION (a run skips
        these; an ok record of older numerics is computed again); ``among``: only those of these keys
        (one indexed lookup each, not a read of the whole store)."""
        query = "SELECT key, provenance_json FROM records WHERE status = ?"
        with self._connect() as con:
            if among is None:
                rows = con.execute(query, (OK,)).fetchall()
            else:
                rows = [row for key in among for row in con.execute(query + " AND key = ?", (OK, key)).fetchall()]
        return {key for key, prov in rows if numerics_version(json.loads(prov)) >= NUMERICS_VERSION}

    def records(self) -> list[Record]:
        """The shown record of every spec (its ok one when it has one)."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM records ORDER BY created_at, key").fetchall()
        return [_row_to_record(r) for r in rows]

    def attempts(self, key: str | None = None) -> list[Record]:
        """Every record put (each attempt of each spec, oldest first); stores older than the table have none."""
        with self._connect() as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'attempts'").fetchone():
                return []
            sql, args = "SELECT record_json FROM attempts", ()
            if key is not None:
                sql, args = sql + " WHERE key = ?", (key,)
            rows = con.execute(sql + " ORDER BY id", args).fetchall()
        return [record_from_dict(json.loads(r[0])) for r in rows]

    def put_preview(self, key: str, samples) -> None:
        """Keep a few samples of a spec (uint8 images N x C x H x W, or float points N x D) for the
        leaderboard's sample figures; stored as an .npz blob (numpy arrays, no pickle)."""
        if samples is None:
            return
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez_compressed(buf, samples=np.asarray(samples))
        with self._connect() as con:
            con.execute("INSERT INTO previews VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET npz=excluded.npz",
                        (key, buf.getvalue()))

    def previews(self) -> dict:
        """key -> the samples ``put_preview`` kept (empty for stores without any)."""
        import io

        import numpy as np

        with self._connect() as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'previews'").fetchone():
                return {}
            rows = con.execute("SELECT key, npz FROM previews").fetchall()
        out = {}
        for key, blob in rows:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                out[key] = z["samples"]
        return out

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


WARNING_SEPARATOR = " | "  # joins a record's warnings in its one ``warnings`` cell
# columns of the frame that are neither metrics nor intervals
FRAME_INFO_COLUMNS = ("suite", "dataset", "model", "family", "sampler", "steps", "options", "seed", "status", "n_fake", "n_real",
                      "features", "weights_sha256", "likelihood_kind", "kid_subset_size", "warnings", "error", "key",
                      "created_at")


def records_to_frame(records: list[Record]) -> pd.DataFrame:
    """One row per record: spec columns, status, the sample sizes used (``n_fake``, ``n_real``: the
    one name for n in JSON, CSV, DataFrame and Markdown), one column per metric, CI columns, key
    provenance. A record that never got to evaluation (failed, skipped) has no sizes."""
    rows = []
    for rec in records:
        s, p = rec.spec, rec.provenance
        row: dict[str, Any] = {
            "suite": s.suite, "dataset": s.dataset, "model": s.model, "family": s.family, "sampler": s.sampler,
            "steps": s.steps, "options": json.dumps(s.options) if s.options else None, "seed": s.seed, "status": rec.status,
            "n_fake": p.get("n_fake"), "n_real": p.get("n_real"),
            "features": p.get("features", s.features), "weights_sha256": p.get("weights_sha256"),
            "likelihood_kind": rec.info.get("likelihood_kind"), "kid_subset_size": rec.info.get("kid_subset_size"),
        }
        row.update(rec.metrics)
        for k, (lo, hi) in rec.ci.items():
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = lo, hi
        row["warnings"] = WARNING_SEPARATOR.join(record_warnings(rec)) or None
        row["error"] = rec.error
        row["key"] = rec.key
        row["created_at"] = rec.created_at
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        for col in ("steps", "n_fake", "n_real", "kid_subset_size"):
            df[col] = df[col].astype("Int64")
    return df


def load_results(out: Path | str) -> pd.DataFrame:
    """The results stored under ``out`` (a run directory or a .sqlite file) as a DataFrame."""
    return records_to_frame(ResultsStore(out, create=False).records())
