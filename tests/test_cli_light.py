"""Light commands stay light: --help, --version, `ls` (from its cache) and `results` never import torch.

Each command runs in a fresh interpreter and reports which heavy modules it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genbench.spec import OK, Record, RunSpec
from genbench.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import contextlib, io, json, sys
from genbench.cli import main
out = io.StringIO()
code = 0
try:
    with contextlib.redirect_stdout(out):
        main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "out": out.getvalue(), "torch": "torch" in sys.modules}))
"""


def light_run(args, cache):
    env = {**os.environ, "GENBENCH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("light") / "run"
    s = ResultsStore(out)
    for seed in (0, 1):
        spec = RunSpec(suite="s", dataset="toy2d:moons", model="tiny", family="tiny", recipe_hash="r", sampler="native",
                       steps=None, seed=seed, n_samples=10, n_reference=10, metrics=("fid",), features="raw")
        s.put(Record(spec, OK, {"fid": 1.0 + seed}, provenance={"n_fake": 10, "n_real": 10}))
    return out


@pytest.mark.parametrize("args", [
    ["--version"],
    ["--help"],
    ["results", "{store}"],
    ["results", "{store}", "--format", "json"],
    ["results", "{store}", "--format", "csv"],
    ["results", "{store}", "--aggregate", "seeds"],
])
def test_light_commands_do_not_import_torch(args, store, tmp_path):
    r = light_run([a.format(store=store) for a in args], tmp_path / "cache")
    assert r["code"] == 0 and r["out"].strip()
    assert r["torch"] is False


def test_ls_imports_torch_only_to_fill_its_cache(tmp_path):
    first = light_run(["ls", "samplers"], tmp_path / "cache")
    second = light_run(["ls", "samplers"], tmp_path / "cache")
    assert first["code"] == second["code"] == 0
    assert first["out"] == second["out"] and "euler" in second["out"]
    assert second["torch"] is False
    assert light_run(["ls", "suites"], tmp_path / "cache")["torch"] is False


def test_listing_key_changes_with_a_source_file(tmp_path, monkeypatch):
    from genbench import listing

    fake = tmp_path / "genbench"
    fake.mkdir()
    (fake / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(listing, "source_files", lambda: sorted(fake.rglob("*.py")))
    before = listing.listing_key()
    (fake / "a.py").write_text("x = 22\n")
    assert listing.listing_key() != before
