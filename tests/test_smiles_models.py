"""The SMILES families (charrnn, smiles_vae), the temperature option and the moses suite.

What the shared contract tests (tests/test_model_contract.py) do not check: the runner draws SMILES with
per-sample seeds whatever its batch size; temperature changes the samples and is part of the spec and
the record; CharRNN's likelihood is an exact distribution over strings (it sums to 1, and equals the
log-probability the sampler accumulates); the moses suite plans; its cited baselines are a table of
their own; bad input is one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import cache

import pytest
import torch

from genbench import runner
from genbench.cli import main
from genbench.data.base import get_dataset
from genbench.data.smiles import Molecules
from genbench.errors import UsageError
from genbench.models.base import TrainBudget, build_model
from genbench.report.leaderboard import render_markdown
from genbench.seeding import SeededNoise
from genbench.spec import OK, Record, RunSpec
from genbench.suite import load_suite, plan_suite

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "charrnn": {"hidden": 16, "n_layers": 2, "embed": 8, "max_length": 60},
    "smiles_vae": {"embed": 8, "enc_hidden": 16, "latent_dim": 4, "dec_hidden": 16, "dec_layers": 1, "max_length": 60},
}


@cache
def fitted(family: str):
    data = get_dataset("moses-sample").load("train")
    model = build_model(family, (), "smiles", None, **TINY[family])
    model.fit(data.take(256), TrainBudget(steps=30, batch_size=32, lr=1e-2), torch.Generator().manual_seed(0))
    return model


def spec(family: str, n: int = 12, **options) -> RunSpec:
    return RunSpec(suite="t", dataset="moses-sample", model=family, family=family, recipe_hash="x", sampler="native",
                   steps=None, seed=3, n_samples=n, n_reference=8, metrics=("validity",), features="chem", options=options)


@pytest.mark.parametrize("family", sorted(TINY))
def test_runner_draws_the_same_smiles_at_any_batch_size(family):
    model = fitted(family)
    big = runner.draw_samples(model, spec(family), runner.RunContext(batch_size=500))
    small = runner.draw_samples(model, spec(family), runner.RunContext(batch_size=5))
    assert isinstance(big.x, tuple) and len(big.x) == 12 and all(isinstance(s, str) for s in big.x)
    assert big.x == small.x
    assert big.nfe["nfe"] == pytest.approx(small.nfe["nfe"])  # NFE per sample: its own tokens, not its batch's
    assert big.nfe["nfe"] == pytest.approx(sum(min(len(s) + 1, 61) for s in big.x) / 12)
    other = runner.draw_samples(model, dataclasses.replace(spec(family), seed=4), runner.RunContext())
    assert other.x != big.x
    preview = runner.preview_samples(big.x, model)
    assert preview.dtype.kind == "U" and list(preview) == list(big.x)


@pytest.mark.parametrize("family", sorted(TINY))
def test_temperature_changes_the_samples_and_is_in_the_spec(family):
    model = fitted(family)
    draws = {t: runner.draw_samples(model, spec(family, 40, temperature=t), runner.RunContext()).x for t in (0.7, 1.0, 1.3)}
    assert draws[0.7] != draws[1.0] != draws[1.3]
    assert draws[1.0] == runner.draw_samples(model, spec(family, 40), runner.RunContext()).x  # 1 is the default
    # lower temperature concentrates the draws: fewer distinct characters per string on average
    distinct = {t: sum(len(set(s)) for s in x) / len(x) for t, x in draws.items()}
    assert distinct[0.7] < distinct[1.3]
    keys = {spec(family, temperature=t).key for t in (0.7, 1.0, 1.3)} | {spec(family).key}
    assert len(keys) == 4 and "[temperature=0.7]" in spec(family, temperature=0.7).label()


def test_near_zero_temperature_is_greedy():
    # CharRNN has no latent: as T -> 0 every seed draws the argmax string
    x, _ = fitted("charrnn").sample(SeededNoise.for_run(0, 6), temperature=1e-4)
    assert len(set(x)) == 1


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "hot", True])
def test_bad_temperatures_are_refused(bad):
    for family in TINY:
        with pytest.raises(UsageError, match="temperature"):
            fitted(family).sample(SeededNoise.for_run(0, 2), temperature=bad)
    with pytest.raises(UsageError, match="no sampling option 'guidance'"):
        fitted("charrnn").check_sampling_options("native", {"guidance": 2})


def test_charrnn_likelihood_equals_the_log_probability_accumulated_while_sampling():
    model = fitted("charrnn")
    for temperature in (1.0, 0.7):  # the accumulated value is the model's log p (T = 1) whatever T draws
        smiles, log_p, calls = model.sample_with_log_prob(SeededNoise.for_run(1, 16), temperature=temperature)
        recomputed = model.log_likelihood(smiles)
        assert torch.isfinite(recomputed).all()
        torch.testing.assert_close(recomputed, log_p, rtol=1e-5, atol=1e-4)
        assert torch.equal(calls, torch.tensor([min(len(s) + 1, 61) for s in smiles]))


def test_charrnn_probabilities_sum_to_one_over_every_string():
    # alphabet {C, N}, at most 3 characters: 1 + 2 + 4 + 8 strings, the empty one and the unfinished ones included
    model = build_model("charrnn", (), "smiles", None, hidden=8, n_layers=1, embed=4, alphabet="CN", max_length=3)
    model.fit(Molecules(("CC", "N", "CNC", "C")), TrainBudget(steps=5, batch_size=2), torch.Generator().manual_seed(0))
    strings = ["".join(t) for k in range(4) for t in itertools.product("CN", repeat=k)]
    ll = model.log_likelihood(strings)
    assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    assert model.log_likelihood(["CO", "CCCC"]).tolist() == [-math.inf, -math.inf]  # not in the alphabet; too long


def test_vae_elbo_is_per_example_and_below_its_own_mean_decoder_bound():
    model = fitted("smiles_vae")
    x = get_dataset("moses-sample").load("test").x[:6]
    whole = model.log_likelihood(x, SeededNoise.for_run(2, 6))
    parts = torch.cat([model.log_likelihood(x[:2], SeededNoise.for_run(2, 2)),
                       model.log_likelihood(x[2:], SeededNoise.for_run(2, 4, start=2))])
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-4)
    assert (whole < 0).all() and model.likelihood_kind == "elbo"


# ------------------------------------------------------------------ the moses suite


def test_moses_suite_plans_every_family_and_temperature():
    suite = load_suite("moses")
    plan = plan_suite(suite)
    assert {(s.family, s.options["temperature"]) for s in plan.specs} == {
        (f, t) for f in ("charrnn", "smiles_vae") for t in (0.7, 1.0, 1.3)}
    assert {s.features for s in plan.specs} == {"chem:moses"} and not plan.notes
    assert suite.primary_metric == "fcd" and "nll" in plan.specs[0].metrics
    cited = {row["model"]: row["metrics"] for row in suite.cited}
    assert cited["CharRNN (MOSES)"]["validity"] == 0.9598 and cited["CharRNN (MOSES)"]["fcd"] == 0.3233
    assert cited["VAE (MOSES)"]["validity"] == 0.9528 and cited["VAE (MOSES)"]["fcd"] == 0.2540


def test_cited_rows_are_a_table_of_their_own():
    s = spec("charrnn", temperature=0.7)
    rec = Record(s, OK, {"validity": 0.5, "fcd": 3.0}, provenance={"n_fake": 12, "n_real": 8})
    cited = [{"model": "CharRNN (MOSES)", "dataset": "moses", "source": "MOSES README", "metrics": {"validity": 0.9598}}]
    md = render_markdown([rec], "t", "fcd", cited=cited)
    measured, _, quoted = md.partition("## Cited baselines")
    assert "0.9598" not in measured and "CharRNN (MOSES)" not in measured
    assert "| CharRNN (MOSES) | moses | 0.9598 | [1] |" in quoted and "[1] MOSES README" in quoted
    assert "native [temperature=0.7]" in measured


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("extra, message", [
    ("runs:\n  - {datasets: [moses-sample], models: [charrnn], options: {temperature: [0]}}\n", "must be a positive number"),
    ("runs:\n  - {datasets: [moses-sample], models: [charrnn], options: {guidance: [2]}}\n", "no sampling option 'guidance'"),
    ("runs:\n  - {datasets: [moses-sample], models: [charrnn]}\ncited:\n  - {model: X, metrics: {fcd: 1}}\n", "needs a 'source'"),
    ("runs:\n  - {datasets: [moses-sample], models: [charrnn]}\ncited:\n  - {model: X, source: S, metrics: {fcdd: 1}}\n", "fcd"),
    ("runs:\n  - {datasets: [moses-sample], models: [charrnn], settings: {metrics: [bpd]}}\n", "use 'nll'"),
])
def test_bad_suites_are_one_line_and_exit_2(tmp_path, capsys, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + extra)
    code, out, err = run_cli(["run", "--suite", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_genbench_sample_writes_smiles(tmp_path, capsys):
    import numpy as np

    from genbench.models.base import save_checkpoint

    model = fitted("charrnn")
    save_checkpoint(model, tmp_path / "ckpt")
    code, out, err = run_cli(["sample", tmp_path / "ckpt", "--n", 7, "--seed", 2, "--option", "temperature=0.7",
                              "--out", tmp_path / "s.npz"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        got = z["samples"].tolist()
    assert got == list(model.sample(SeededNoise.for_run(2, 7), temperature=0.7)[0])
    code, out, err = run_cli(["sample", tmp_path / "ckpt", "--option", "temperature=0", "--out", tmp_path / "t.npz"], capsys)
    assert code == 2 and "temperature" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "t.npz").exists()


def test_leaderboard_lists_kept_smiles_as_text():
    import numpy as np

    from genbench.report.figures import sample_texts
    from genbench.report.leaderboard import row_of_record

    rec = Record(spec("charrnn", temperature=1.3), OK, {"validity": 0.5})
    kept = runner.preview_samples(("CCO", "", "c1ccccc1") + ("C",) * 70, fitted("charrnn"))
    assert kept.shape == (64,) and kept.dtype.kind == "U"  # the store keeps the first 64 strings
    (line,) = sample_texts([row_of_record(rec)], {rec.key: kept}, k=3)
    assert line == "- charrnn / native [temperature=1.3] (seed 3): `CCO`, (empty), `c1ccccc1`"
    assert sample_texts([row_of_record(rec)], {rec.key: np.zeros((4, 2), np.float32)}) == []  # points are figures
