"""The SQLite results store: idempotence by spec hash, round trips, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

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


def test_a_failed_rerun_never_replaces_an_ok_record(tmp_path):
    store = ResultsStore(tmp_path)
    store.put(Record(spec(), OK, {"fid": 1.5}, created_at="2026-01-01T00:00:00+00:00"))
    store.put(Record(spec(), FAILED, error="boom", created_at="2026-01-02T00:00:00+00:00"))
    shown = store.records()
    assert len(shown) == 1 and shown[0].status == OK and shown[0].metrics == {"fid": 1.5}
    assert [a.status for a in store.attempts(spec().key)] == [OK, FAILED]  # both attempts kept
    assert store.attempts()[1].error == "boom"
    store.put(Record(spec(), OK, {"fid": 1.4}))  # a newer ok one does replace it
    assert store.records()[0].metrics == {"fid": 1.4} and len(store.attempts()) == 3
    store.put(Record(spec(seed=1), FAILED, error="x"))  # a failure with nothing ok before is shown
    assert {r.status for r in store.records()} == {OK, FAILED}


def test_frame_shows_the_sizes_used_under_one_name(tmp_path):
    store = ResultsStore(tmp_path)
    store.put(Record(spec(n_samples=1000, n_reference=500), OK, {"fid": 1.0}, info={"likelihood_kind": "exact"},
                     provenance={"n_fake": 1000, "n_real": 360, "features": "raw"}))
    df = load_results(tmp_path)
    assert (df.loc[0, "n_fake"], df.loc[0, "n_real"]) == (1000, 360)  # 360 used where 500 were asked for
    assert "n_reference" not in df.columns and "n_samples" not in df.columns
    assert df.loc[0, "likelihood_kind"] == "exact"


READ_FIDS = ("import json, sys; from genbench.store import load_results; "
             "print(json.dumps(sorted(load_results(sys.argv[1])['fid'].tolist())))")


def _read_on_a_read_only_mount(run_dir):
    """Read the store in a child whose view of ``run_dir`` is a read-only bind mount (a mount
    namespace, so nothing outside the child changes); None where namespaces are not allowed."""
    import json
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        return None
    script = 'mount --bind -o ro "$0" "$0" && touch "$0/probe" 2>/dev/null && exit 99; exec "$1" -c "$2" "$0"'
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(run_dir), sys.executable, READ_FIDS],
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and ("unshare" in res.stderr or "mount" in res.stderr):
        return None
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_store_on_a_read_only_filesystem_can_be_read(tmp_path):
    import os

    run_dir = tmp_path / "run"
    store = ResultsStore(run_dir)
    for s in range(3):
        store.put(Record(spec(seed=s), OK, {"fid": float(s)}))
    assert not (run_dir / "results.sqlite-shm").exists()  # the last writer checkpointed and removed it
    fids = _read_on_a_read_only_mount(run_dir)
    if fids is None:
        if os.geteuid() == 0:
            pytest.skip("no mount namespace here, and root ignores a read-only directory mode")
        os.chmod(run_dir, 0o555)  # no -wal/-shm can be created beside the store
        try:
            fids = sorted(r.metrics["fid"] for r in ResultsStore(run_dir, create=False).records())
        finally:
            os.chmod(run_dir, 0o755)
    assert fids == [0.0, 1.0, 2.0]


def test_records_of_older_numerics_are_recomputed_and_flagged(tmp_path):
    """A record computed before a numbers fix (NUMERICS_VERSION) is not reused by a run, and every
    table shows it with a warning until it is recomputed; the recomputed record replaces it."""
    from genbench.report.leaderboard import collect_warnings
    from genbench.spec import NUMERICS_VERSION, base_provenance

    store = ResultsStore(tmp_path)
    old_prov = {k: v for k, v in base_provenance("cpu").items() if k != "numerics_version"}
    store.put(Record(spec(seed=0), OK, {"fid": 1.0}, provenance=old_prov))
    store.put(Record(spec(seed=1), OK, {"fid": 2.0}, provenance=base_provenance("cpu")))
    assert base_provenance("cpu")["numerics_version"] == NUMERICS_VERSION
    assert store.done_keys() == {spec(seed=1).key}
    df = load_results(tmp_path)
    stale = df.set_index("seed")["warnings"]
    assert "older genbench" in stale[0] and not isinstance(stale[1], str)
    assert any("older genbench" in w for w in collect_warnings(store.records()))
    store.put(Record(spec(seed=0), OK, {"fid": 1.5}, provenance=base_provenance("cpu")))
    assert store.done_keys() == {spec(seed=0).key, spec(seed=1).key}
    assert not any("older genbench" in w for w in collect_warnings(store.records()))
