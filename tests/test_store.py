"""The SQLite results store: idempotence by spec hash, round trips, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from genbench.spec import FAILED, OK, Record, RunSpec
from genbench.store import ResultsStore, load_results


def spec(seed=0, **kw):
    base = dict(suite="t", dataset="toy2d:moons", model="tiny", family="tiny", recipe_hash="r", sampler="native",
                steps=None, seed=seed, n_samples=10, n_reference=10, metrics=("fid",), features="raw")
    base.update(kw)
    return RunSpec(**base)


def test_put_is_idempotent_by_spec_hash(tmp_path):
    store = ResultsStore(tmp_path)
    store.put(Record(spec(), FAILED, error="boom"))
    store.put(Record(spec(), OK, {"fid": 1.5}, {"fid": (1.0, 2.0)}))
    store.put(Record(spec(), OK, {"fid": 1.5}, {"fid": (1.0, 2.0)}))
    recs = store.records()
    assert len(recs) == 1
    assert recs[0].status == OK and recs[0].metrics == {"fid": 1.5} and recs[0].ci == {"fid": (1.0, 2.0)}
    assert recs[0].spec == spec()
    assert store.done_keys() == {spec().key}


def test_load_results_frame(tmp_path):
    store = ResultsStore(tmp_path)
    for s in range(3):
        store.put(Record(spec(seed=s), OK, {"fid": float(s)}))
    df = load_results(tmp_path)
    assert sorted(df["seed"]) == [0, 1, 2]
    assert sorted(df["fid"]) == [0.0, 1.0, 2.0]


def _writer(path, start):
    store = ResultsStore(path)
    for s in range(start, start + 40):
        store.put(Record(spec(seed=s), OK, {"fid": float(s)}))


def test_two_processes_write_one_store(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, k * 40)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ResultsStore(tmp_path)
    assert len(store.records()) == 80
    assert store.integrity_ok()
    con = sqlite3.connect(tmp_path / "results.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
