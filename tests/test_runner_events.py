"""The runner's event log: one JSON line per stage, and a failed spec's record and event."""

from __future__ import annotations

import json

from genbench import runner
from genbench.progress import EVENTS, EventLog, Reporter
from genbench.runner import RunContext, run_specs
from genbench.spec import FAILED, OK, RunSpec
from genbench.store import ResultsStore


def spec(seed):
    return RunSpec(suite="s", dataset="toy2d:moons", model="tiny", family="tiny", recipe_hash="r", sampler="native",
                   steps=None, seed=seed, n_samples=50, n_reference=50, metrics=("fid",), features="raw")


def test_a_failing_spec_is_stored_logged_and_the_run_goes_on(tmp_path, monkeypatch):
    real_train = runner.train_or_load

    def train(sp, ctx):
        if sp.seed == 1:
            raise RuntimeError("loss is NaN at step 3\nmore detail")
        return real_train(sp, ctx)

    monkeypatch.setattr(runner, "train_or_load", train)
    store = ResultsStore(tmp_path / "run")
    log = tmp_path / "events.jsonl"
    with Reporter(2, enabled=False, quiet=True, events=EventLog(log)) as reporter:
        records = run_specs([spec(1), spec(0)], store, RunContext(reporter=reporter))
    assert [r.status for r in records] == [FAILED, OK]
    assert records[0].error == "RuntimeError: loss is NaN at step 3"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["spec_started", "failed", "spec_started", "trained", "sampled", "evaluated"]
    assert events[1]["error"] == records[0].error and events[1]["key"] == spec(1).key
    assert all(e["event"] in EVENTS and e["time"] and e["elapsed_s"] >= 0 for e in events)
    # a rerun computes only the failed spec again
    with Reporter(2, enabled=False, quiet=True) as reporter:
        again = run_specs([spec(1), spec(0)], store, RunContext(reporter=reporter))
    assert [r.spec.seed for r in again] == [1]


def test_a_cell_another_process_finished_meanwhile_is_skipped(tmp_path, monkeypatch):
    # two workers on one store: what one finishes while the other runs is not computed twice
    store = ResultsStore(tmp_path / "run")
    ran = []

    def fake_cell(cell, ctx):
        ran.append(cell[0].seed)
        if cell[0].seed == 0:  # meanwhile, "another process" stores seed 1's record
            store.put(runner.Record(spec(1), OK, {"fid": 1.0}))
        return [runner.Record(cell[0], OK, {"fid": 0.5})]

    monkeypatch.setattr(runner, "run_cell", fake_cell)
    records = run_specs([spec(0), spec(1), spec(2)], store, RunContext())
    assert ran == [0, 2] and [r.spec.seed for r in records] == [0, 2]
    assert {r.spec.seed for r in store.records()} == {0, 1, 2}
    # with --rerun every spec runs, whatever the store holds
    ran.clear()
    run_specs([spec(0), spec(1)], store, RunContext(), rerun=True)
    assert ran == [0, 1]


def test_a_spec_another_process_stored_while_it_ran_is_not_stored_twice(tmp_path, monkeypatch):
    # both workers computed the same cell at once: the one that finishes second stores nothing
    store = ResultsStore(tmp_path / "run")

    def fake_cell(cell, ctx):
        store.put(runner.Record(cell[0], OK, {"fid": 1.0}))  # "another process" stores this very spec meanwhile
        return [runner.Record(cell[0], OK, {"fid": 0.5})]

    monkeypatch.setattr(runner, "run_cell", fake_cell)
    assert run_specs([spec(0)], store, RunContext()) == []
    assert [r.metrics["fid"] for r in store.records()] == [1.0]
