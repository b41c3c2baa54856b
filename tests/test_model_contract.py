"""One contract test for every registered model family (a new family is tested by registering it).

Each family is fitted for a few steps with a tiny network on its modality's example dataset
(``Modality.example_dataset``: toy2d:8gaussians for points, digits for images, moses-sample for SMILES;
points first where a family handles them and needs no labels, and on digits too when it handles images), then: the train report holds finite floats; the weights depend on the
training generator only, not on the global RNG; every supported sampler
returns finite samples of the right shape with NFE > 0; a checkpoint round-trip reproduces the
samples bit for bit; samples do not depend on the batch they are drawn in (per-sample seeds);
loading a checkpoint as another family is refused; families with a likelihood return finite
[N] log-likelihoods of the input the runner sends (images uniformly dequantised), which do not
depend on the batch either (per-example estimator noise); image samples go back to 8 bits by
the inverse of the map that made the family's training data (``sample_quantisation``);
class-conditional families sample the class asked for and refuse to sample without labels.
"""

from __future__ import annotations

import math
import re
from functools import cache

import pytest
import torch

from genbench import runner
from genbench.data.base import FLOOR, IMAGES, MODALITIES, POINTS, ROUND, get_dataset, get_modality, images_to_uint8
from genbench.errors import UsageError
from genbench.models.base import (
    MODELS,
    GenerativeModel,
    TrainBudget,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from genbench.metrics.likelihood import dequantise
from genbench.samplers.base import SAMPLERS
from genbench.seeding import SeededNoise, balanced_labels

FAMILIES = MODELS.names()

# Small networks so that the whole file runs in seconds; families not listed use their defaults.
TINY_CONFIG: dict[str, dict] = {
    "gan": {"latent_dim": 4, "hidden": 16, "depth": 1},
    "flow": {"n_layers": 2, "hidden": 16, "depth": 1},
    "autoregressive": {"hidden": 16, "depth": 1, "n_components": 2},
    "consistency": {"hidden": 16, "depth": 1, "emb_dim": 8},
    "ebm": {"hidden": 16, "depth": 1, "langevin_steps": 3},
    "diffusion": {"width": 16, "depth": 1, "emb_dim": 8},
    "ddpm": {"width": 16, "depth": 1, "emb_dim": 8, "num_train_timesteps": 100},
    "ddpm_cfg": {"width": 16, "depth": 1, "emb_dim": 8, "num_train_timesteps": 100},
    "diffusion_cfg": {"width": 16, "depth": 1, "emb_dim": 8},
    "consistency_distillation": {"hidden": 16, "depth": 1, "emb_dim": 8, "teacher_config": {"width": 16, "depth": 1},
                                 "teacher_train": {"steps": 3, "batch_size": 32}},
    "vae": {"hidden": 16, "depth": 1, "latent_dim": 2},
    "nice": {"n_couplings": 2, "hidden": 16, "depth": 1},
    "realnvp": {"n_scales": 2, "hidden": 8, "n_blocks": 1},
    "glow": {"n_levels": 2, "n_steps": 1, "hidden": 8},
    "pixelcnn": {"hidden": 8, "n_layers": 2, "out_hidden": 8},
    "pixelrnn": {"hidden": 8, "n_layers": 1, "out_hidden": 8},
    "igpt": {"d_model": 16, "n_layers": 1, "n_heads": 2},
    "dcgan": {"latent_dim": 4, "width": 4, "bn_batches": 2},
    "cgan": {"latent_dim": 4, "width": 4, "bn_batches": 2},
    "wgan": {"latent_dim": 4, "width": 4, "n_critic": 2, "bn_batches": 2},
    "convvae": {"latent_dim": 2, "width": 4, "likelihood_samples": 2},
    "charrnn": {"hidden": 16, "n_layers": 2, "embed": 8, "max_length": 60},
    "smiles_vae": {"embed": 8, "enc_hidden": 16, "latent_dim": 4, "dec_hidden": 16, "dec_layers": 2, "max_length": 60},
}
TINY_BUDGET = TrainBudget(steps=3, batch_size=32, lr=1e-3)
# every modality's example dataset (always there offline, small enough to train a family on in a test)
DATASETS = {name: MODALITIES.get(name).example_dataset for name in MODALITIES.names() if MODALITIES.get(name).example_dataset}
MODALITY_ORDER = [POINTS, IMAGES] + [m for m in DATASETS if m not in (POINTS, IMAGES)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def primary_modality(family: str) -> str:
    """Points where the family handles them (and needs no labels, which toy points lack), else images, else
    the first other modality it handles."""
    cls = MODELS.get(family)
    return next(m for m in MODALITY_ORDER if m in cls.modalities and (not cls.conditional or get_dataset(DATASETS[m]).num_classes))


def same_samples(a, b) -> bool:
    """Bit-identical samples (tensors, or strings)."""
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else tuple(a) == tuple(b)


def assert_close_samples(a, b) -> None:
    """Equal up to float rounding (tensors), or equal (strings)."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    else:
        assert tuple(a) == tuple(b)


def tiny_model(family: str, modality: str | None = None) -> GenerativeModel:
    modality = modality or primary_modality(family)
    ds = get_dataset(DATASETS[modality])
    return build_model(family, ds.shape, modality, ds.num_classes, **TINY_CONFIG.get(family, {}))


@cache
def fitted(family: str, modality: str | None = None) -> tuple[GenerativeModel, dict]:
    """A tiny model of ``family`` fitted for 3 steps (cached: fitting is shared by the tests)."""
    modality = modality or primary_modality(family)
    torch.manual_seed(0)
    model = tiny_model(family, modality)
    data = get_dataset(DATASETS[modality]).load("train").take(64)
    report = model.fit(data, TINY_BUDGET, torch.Generator().manual_seed(0))
    return model, report


def handles(family: str, modality: str) -> bool:
    return modality in MODELS.get(family).modalities


def draw(model: GenerativeModel, sampler: str, n: int = 6, start: int = 0, seed: int = 7) -> tuple[torch.Tensor, float]:
    noise = SeededNoise.for_run(seed, n, start=start, num_classes=model.num_classes if model.conditional else None)
    return model.sample(noise, sampler, model.default_steps(sampler, model.config))


def runner_input(modality: str, n: int, seed: int = 0):
    """Test examples as ``runner.compute_likelihood`` sends them (the modality's ``likelihood_input``: images
    uniformly dequantised)."""
    x = get_dataset(DATASETS[modality]).load("test").x[:n]
    return get_modality(modality).likelihood_input(x, torch.Generator().manual_seed(seed))


# Known violations, kept visible (strict xfail: the test fails once they are fixed, so the entry goes).
BATCH_DEPENDENT = {
    ("diffusion", "ode"): "adaptive dopri5 picks one step size for the whole batch, so a sample depends on its batch",
    # every adaptive sampler (Sampler.adaptive) chooses its steps for the whole batch
    **{(f, s): f"adaptive sampler {s} picks one step size for the whole batch" for f in FAMILIES
       for s in MODELS.get(f).supported_samplers() if SAMPLERS.get(s).adaptive},
}


def sampler_cases(known: dict[tuple[str, str], str] | None = None) -> list:
    cases = [(f, s) for f in FAMILIES for s in MODELS.get(f).supported_samplers()]
    known = known or {}
    return [pytest.param(f, s, marks=pytest.mark.xfail(reason=known[f, s], strict=True)) if (f, s) in known else (f, s)
            for f, s in cases]


def test_every_family_is_tested():
    # the built-in families are registered (a rename would silently drop them from this file)
    assert {"tiny", "gan", "flow", "autoregressive", "consistency", "ebm", "charrnn", "smiles_vae"} <= set(FAMILIES)
    # and every family's modalities have an example dataset to train it on here
    assert {m for f in FAMILIES for m in MODELS.get(f).modalities} <= set(DATASETS)


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_reports_finite_floats(family):
    _, report = fitted(family)
    assert report, f"{family}.fit returned an empty report"
    for key, value in report.items():
        assert isinstance(key, str) and isinstance(value, float), (key, value)
        assert math.isfinite(value), f"{family} report {key} = {value}"


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_is_reproducible_from_its_generator(family):
    # the same recipe and training generator give the same weights, whatever the global RNG state
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model = tiny_model(family)
        model.fit(get_dataset(DATASETS[primary_modality(family)]).load("train").take(64), TINY_BUDGET,
                  torch.Generator().manual_seed(0))
        states.append(model.state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), f"{family}: {key} depends on the global RNG"


@pytest.mark.parametrize("family,sampler", sampler_cases())
def test_samples_have_data_shape_and_count_nfe(family, sampler):
    model, _ = fitted(family)
    x, nfe = draw(model, sampler)
    modality = get_modality(model.modality)
    assert len(x) == 6 and modality.count_nonfinite(x) == 0
    assert len(modality.sample_type(x)) == 6  # the modality's sample type holds them
    if isinstance(x, torch.Tensor):
        assert x.shape == (6, *model.data_shape) and x.dtype == torch.float32
    else:
        assert all(isinstance(s, str) for s in x)
    assert isinstance(nfe, float) and nfe > 0


@pytest.mark.parametrize("family,sampler", sampler_cases(BATCH_DEPENDENT))
def test_samples_do_not_depend_on_the_batch(family, sampler):
    # per-sample seeds: rows 0..5 in one call equal rows 0..2 and 3..5 drawn in two calls, up to
    # float rounding (BLAS blocks a matmul differently for 3 and 6 rows: differences of ~1e-7 seen)
    model, _ = fitted(family)
    whole, _ = draw(model, sampler, n=6)
    first, _ = draw(model, sampler, n=3, start=0)
    second, _ = draw(model, sampler, n=3, start=3)
    assert_close_samples(whole, get_modality(model.modality).concat([first, second]))
    # and a different seed gives different samples
    other, _ = draw(model, sampler, n=6, seed=8)
    assert not same_samples(whole, other)


@pytest.mark.parametrize("family", FAMILIES)
def test_unknown_sampler_is_a_usage_error(family):
    model, _ = fitted(family)
    with pytest.raises(UsageError, match="no_such_sampler"):
        model.sample(SeededNoise.for_run(0, 2), "no_such_sampler", 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_round_trip_gives_identical_samples(family, tmp_path):
    model, _ = fitted(family)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", expect_family=family)
    assert type(loaded) is type(model) and loaded.config == model.config
    for sampler in model.supported_samplers():
        a, nfe_a = draw(model, sampler)
        b, nfe_b = draw(loaded, sampler)
        assert same_samples(a, b), f"{family}/{sampler}: samples differ after a checkpoint round-trip"
        assert nfe_a == nfe_b


@pytest.mark.parametrize("family", FAMILIES)
def test_loading_as_another_family_is_refused(family, tmp_path):
    model, _ = fitted(family)
    save_checkpoint(model, tmp_path / "ckpt")
    other = next(f for f in FAMILIES if f != family)
    with pytest.raises(UsageError, match=f"is a '{family}' model, not '{other}'"):
        load_checkpoint(tmp_path / "ckpt", expect_family=other)


@pytest.mark.parametrize("family", [f for f in FAMILIES if MODELS.get(f).likelihood_kind])
def test_log_likelihood_is_finite_per_example(family):
    model, _ = fitted(family)
    assert MODELS.get(family).likelihood_kind in {"exact", "elbo", "vlb", "ode"}
    assert re.fullmatch(r"exact|elbo|iwae-\d+|vlb|ode", model.likelihood_kind), model.likelihood_kind
    x = get_dataset(DATASETS[primary_modality(family)]).load("test").x[:5]
    ll = model.log_likelihood(x)
    assert ll.shape == (5,) and torch.isfinite(ll).all()


LIKELIHOOD_BATCH_DEPENDENT = {
    (f, m): "adaptive dopri5 picks one step size for the whole batch, so an example's ODE likelihood moves with "
            "its batch (here ~1e-3 relative at likelihood_tol 1e-5); its Hutchinson probes are per example "
            "(tests/test_likelihood.py)"
    for f, m in [("diffusion", POINTS), ("diffusion", IMAGES), ("diffusion_cfg", IMAGES)]
}


def likelihood_cases(known: dict) -> list:
    cases = [(f, m) for f in FAMILIES for m in MODALITY_ORDER if MODELS.get(f).likelihood_kind and handles(f, m)]
    return [pytest.param(f, m, marks=pytest.mark.xfail(reason=known[f, m], strict=True)) if (f, m) in known else (f, m)
            for f, m in cases]


@pytest.mark.parametrize("family,modality", likelihood_cases(LIKELIHOOD_BATCH_DEPENDENT))
def test_log_likelihood_does_not_depend_on_the_batch(family, modality):
    # the estimator's noise (ELBO draws, Hutchinson probes) is per example, like sampling noise
    model, _ = fitted(family, modality)
    x = runner_input(modality, 6)
    whole = model.log_likelihood(x, SeededNoise.for_run(5, 6))
    parts = torch.cat([model.log_likelihood(xb, nb) for xb, nb in zip(get_modality(modality).batches(x, 3, model.device),
                                                                       SeededNoise.for_run(5, 6).batches(3))])
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", [f for f in FAMILIES if handles(f, IMAGES)])
def test_images_fit_sample_and_likelihood(family):
    model, report = fitted(family, IMAGES)
    assert all(math.isfinite(v) for v in report.values())
    for sampler in model.supported_samplers():
        x, nfe = draw(model, sampler, n=4)
        assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and nfe > 0
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1, f"{family}/{sampler} leaves [-1, 1]"
    if model.likelihood_kind:
        ll = model.log_likelihood(runner_input(IMAGES, 4))  # dequantised, as the runner sends them
        assert ll.shape == (4,) and torch.isfinite(ll).all()


def trains_on_dequantised_pixels(family: str, monkeypatch) -> bool:
    """Whether ``fit`` of ``family`` on digits calls the shared uniform dequantiser (spied in every model module
    that imported it: a family's fit may live in shared code under models/nets)."""
    import sys

    calls = []
    for name, module in list(sys.modules.items()):
        if name.startswith("genbench.models") and hasattr(module, "dequantise_images"):
            real = module.dequantise_images
            monkeypatch.setattr(module, "dequantise_images", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    model = tiny_model(family, IMAGES)
    model.fit(get_dataset("digits").load("train").take(32), TrainBudget(steps=1, batch_size=16), torch.Generator().manual_seed(0))
    return bool(calls)


@pytest.mark.parametrize("family", [f for f in FAMILIES if handles(f, IMAGES)])
def test_sample_quantisation_inverts_the_training_data(family, monkeypatch):
    # a perfect model's samples are its training data: dequantised pixels (u + U) / 128 - 1 for a family
    # that dequantises, the grid u / 127.5 - 1 otherwise; the declared map must give u back exactly
    dequantised = trains_on_dequantised_pixels(family, monkeypatch)
    model = tiny_model(family, IMAGES)
    assert model.sample_quantisation == (FLOOR if dequantised else ROUND)
    real = get_dataset("digits").load("train").x  # [1437, 1, 8, 8] on the grid
    u = images_to_uint8(real)
    perfect = dequantise(real, torch.Generator().manual_seed(0)) if dequantised else real
    assert torch.equal(images_to_uint8(perfect, model.sample_quantisation), u)
    if dequantised:  # round moves a large share of dequantised digit pixels up one level
        moved = float((images_to_uint8(perfect, ROUND) != u).double().mean())
        assert 0.3 < moved < 0.5, moved


class RecordingExtractor:
    def extract(self, x, batch_size):
        self.inputs = x
        return {"raw": x.reshape(len(x), -1).float()}


@pytest.mark.parametrize("family", [f for f in FAMILIES if handles(f, IMAGES)])
def test_runner_quantises_image_samples_with_the_family_map(family):
    model = tiny_model(family, IMAGES)
    real = get_dataset("digits").load("test").x
    x = dequantise(real, torch.Generator().manual_seed(0)) if model.sample_quantisation == FLOOR else real
    extractor = RecordingExtractor()
    runner.samples_to_features(x, model, extractor, runner.RunContext())
    assert torch.equal(extractor.inputs, images_to_uint8(real))


@pytest.mark.parametrize("family", [f for f in FAMILIES if handles(f, IMAGES) and "dequantize" in tiny_model(f, IMAGES).config])
def test_a_family_trained_on_the_grid_by_config_rounds(family):
    ds = get_dataset("digits")
    model = build_model(family, ds.shape, IMAGES, ds.num_classes, **{**TINY_CONFIG.get(family, {}), "dequantize": False})
    assert model.sample_quantisation == ROUND


@pytest.mark.parametrize("family", [f for f in FAMILIES if not handles(f, IMAGES)])
def test_families_without_images_refuse_them(family):
    with pytest.raises(UsageError, match="does not handle images"):
        tiny_model(family, IMAGES)


CONDITIONAL = [f for f in FAMILIES if MODELS.get(f).conditional]


@pytest.mark.parametrize("family", CONDITIONAL)
def test_conditional_samples_follow_the_labels_asked_for(family):
    # the same seeds with other labels give other samples; the same labels the same samples
    model, _ = fitted(family)
    seeds = SeededNoise.for_run(7, 6).seeds
    a, _ = model.sample(SeededNoise(seeds, labels=balanced_labels(6, model.num_classes)))
    b, _ = model.sample(SeededNoise(seeds, labels=balanced_labels(6, model.num_classes, start=3)))
    c, _ = model.sample(SeededNoise(seeds, labels=balanced_labels(6, model.num_classes)))
    assert torch.equal(a, c) and not torch.allclose(a, b)


@pytest.mark.parametrize("family", CONDITIONAL)
def test_conditional_families_refuse_missing_labels_and_unlabelled_data(family):
    model, _ = fitted(family)
    with pytest.raises(UsageError, match="class-conditional"):
        model.sample(SeededNoise.for_run(0, 2))
    with pytest.raises(UsageError, match="class labels must lie in"):
        model.sample(SeededNoise([1, 2], labels=torch.tensor([0, model.num_classes])))
    ds = get_dataset("digits")
    with pytest.raises(UsageError, match="needs a dataset with class labels"):
        build_model(family, ds.shape, ds.modality, None, **TINY_CONFIG.get(family, {}))


@pytest.mark.parametrize("family", [f for f in FAMILIES if not handles(f, POINTS)])
def test_families_without_points_refuse_them(family):
    with pytest.raises(UsageError, match="does not handle points"):
        tiny_model(family, POINTS)
