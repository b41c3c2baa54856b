"""Classifier-free guidance (ddpm_cfg, diffusion_cfg) and the ddpm family's sampling options (eta, timestep_spacing).

The shared contract tests cover fit/sample/checkpoints/labels of both families; here: the guided prediction
is its formula, w = 1 is the conditional model and w = 0 the unconditional one under every sampler, the NFE
counts both passes, label dropout drops at its rate, and DDIM's eta reaches the sampler.
"""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data.base import IMAGES, POINTS, get_dataset
from genbench.errors import UsageError
from genbench.models.base import MODELS, TrainBudget, build_model, check_model_fits
from genbench.models.guidance import ClassifierFreeGuidance, drop_labels, guided_prediction
from genbench.samplers.base import SAMPLERS
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIGITS = get_dataset("digits")
TINY = {"ddpm_cfg": {"width": 16, "depth": 1, "emb_dim": 8, "num_train_timesteps": 100},
        "diffusion_cfg": {"width": 16, "depth": 1, "emb_dim": 8}}
PLAIN = {"ddpm_cfg": "ddpm", "diffusion_cfg": "diffusion"}


def tiny(family: str, **config):
    torch.manual_seed(0)  # untrained weights: any fixed draw (the label embedding makes classes differ)
    return build_model(family, DIGITS.shape, IMAGES, DIGITS.num_classes, **{**TINY[family], **config})


def plain_with(family: str, model, prediction):
    """The unconditional family's model whose network call is replaced by ``prediction`` (x, t or sigma) -> output:
    the reference a guided model must equal."""
    plain = build_model(PLAIN[family], DIGITS.shape, IMAGES, None, **TINY[family])
    if family == "ddpm_cfg":
        plain.model_output = prediction
    else:
        plain.denoise = prediction
    return plain


def net_pass(family: str, model):
    """(x, t or sigma, y) -> the model's conditional prediction for labels y (None: the null class)."""
    if family == "ddpm_cfg":
        return lambda x, t, y: model.model_output(x, t, y=y)
    return lambda x, s, y: model.denoise(x, s, y=y)


def noise(n: int = 4, seed: int = 3) -> SeededNoise:
    return SeededNoise.for_run(seed, n, num_classes=DIGITS.num_classes)


def steps_for(model, sampler: str) -> int | None:
    return None if model.default_steps(sampler, model.config) is None else 3


# -- the guided prediction --------------------------------------------------------------------------------------


def test_guided_prediction_is_its_formula_on_a_network_with_known_outputs():
    # f(x, t, y) = (y + 1) x + t: conditional 3 x + t for y = 2, unconditional (null = 10) 11 x + t
    def f(x, t, y):
        return (y.double() + 1)[:, None] * x + t[:, None]

    x, t = torch.randn(2, 5, dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    y = torch.tensor([2, 2])
    for w in (0.0, 1.0, 1.5, 3.0):
        guided = ClassifierFreeGuidance(f, y, 10, w)
        expected = (11 * x + t[:, None]) + w * ((3 * x + t[:, None]) - (11 * x + t[:, None]))
        torch.testing.assert_close(guided(x, t), expected, rtol=1e-12, atol=1e-12)
        assert guided.calls == (1 if w in (0.0, 1.0) else 2)
    # Ho and Salimans's (1 + w') eps(y) - w' eps(null) with w' = w - 1
    c, u = torch.randn(3), torch.randn(3)
    torch.testing.assert_close(guided_prediction(c, u, 3.0), (1 + 2.0) * c - 2.0 * u)


def sampler_cases(family: str) -> list[str]:
    return MODELS.get(family).supported_samplers()


CASES = [(f, s) for f in TINY for s in sampler_cases(f)]


@pytest.mark.parametrize("family,sampler", CASES)
def test_guided_sampling_equals_the_formula_and_counts_both_passes(family, sampler):
    # under every sampler: w = 1 is the conditional model, w = 0 the unconditional one, and w = 2.5 the unguided
    # family sampled with the prediction f(null) + 2.5 (f(y) - f(null)), with twice its NFE
    model = tiny(family)
    f = net_pass(family, model)
    nz = noise()
    y = nz.labels
    steps = steps_for(model, sampler)
    references = {1.0: lambda x, t: f(x, t, y), 0.0: lambda x, t: f(x, t, None),
                  2.5: lambda x, t: guided_prediction(f(x, t, y), f(x, t, None), 2.5)}
    for w, prediction in references.items():
        x, nfe = model.sample(noise(), sampler, steps, guidance=w)
        ref, ref_nfe = plain_with(family, model, prediction).sample(noise(), sampler, steps)
        torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-5, msg=f"{sampler} at guidance {w}")
        assert nfe == (2 if w == 2.5 else 1) * ref_nfe, (w, nfe, ref_nfe)


@pytest.mark.parametrize("family", TINY)
def test_default_guidance_is_the_conditional_model_and_w0_ignores_the_labels(family):
    model = tiny(family)
    sampler = "ddim" if family == "ddpm_cfg" else "heun"
    default, _ = model.sample(noise(), sampler, 3)
    assert torch.equal(default, model.sample(noise(), sampler, 3, guidance=1)[0])
    def other_labels():  # the same per-sample noise, other classes
        return SeededNoise(noise().seeds, labels=(noise().labels + 3) % 10)

    assert not torch.allclose(default, model.sample(other_labels(), sampler, 3)[0])
    unconditional, _ = model.sample(noise(), sampler, 3, guidance=0)
    assert torch.equal(unconditional, model.sample(other_labels(), sampler, 3, guidance=0)[0])


@pytest.mark.parametrize("family", TINY)
def test_nfe_is_the_number_of_network_passes(family):
    # counted independently of the model's own counter: calls of the network's forward
    model = tiny(family)
    calls = []
    model.ema_net.register_forward_hook(lambda *a: calls.append(1))
    sampler = "ddim" if family == "ddpm_cfg" else "heun"
    for w, per_step in ((2.0, 2), (1.0, 1), (0.0, 1)):
        calls.clear()
        _, nfe = model.sample(noise(), sampler, 5, guidance=w)
        steps_nfe = 5 if sampler == "ddim" else 2 * 5 - 1
        assert nfe == len(calls) == per_step * steps_nfe, (w, nfe, len(calls))


# -- training with label dropout ----------------------------------------------------------------------------------


def test_label_dropout_drops_at_its_rate_and_is_seeded():
    y = torch.arange(40_000) % 10
    for p in (0.0, 0.1, 0.5):
        a = drop_labels(y, p, 10, torch.Generator().manual_seed(0))
        b = drop_labels(y, p, 10, torch.Generator().manual_seed(0))
        assert torch.equal(a, b)
        dropped = a == 10
        rate = float(dropped.double().mean())
        # 4 binomial standard errors (0.006 at p = 0.5)
        assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / len(y)) + 1e-12, (p, rate)
        assert torch.equal(a[~dropped], y[~dropped])


@pytest.mark.parametrize("family", TINY)
def test_fit_trains_on_the_datasets_labels_with_dropout(family, monkeypatch):
    model = tiny(family, p_uncond=0.5)
    seen = []
    real_loss = type(model).training_loss

    def spy(self, x0, generator, y=None):
        seen.append((x0.clone(), y.clone()))
        return real_loss(self, x0, generator, y)

    monkeypatch.setattr(type(model), "training_loss", spy)
    data = DIGITS.load("train").take(256)
    model.fit(data, TrainBudget(steps=10, batch_size=64), torch.Generator().manual_seed(0))
    labels = torch.cat([y for _, y in seen])
    rate = float((labels == 10).double().mean())
    assert len(labels) == 640 and abs(rate - 0.5) < 4 * math.sqrt(0.25 / 640), rate  # 4 standard errors: 0.079
    # the labels that stay are each image's own
    by_image = {tuple(x.flatten().tolist()): int(c) for x, c in zip(data.x, data.y)}
    for x0, y in seen:
        for xi, yi in zip(x0, y):
            if int(yi) != 10:
                assert by_image[tuple(xi.flatten().tolist())] == int(yi)


# -- option checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family,sampler,options,match", [
    ("ddpm_cfg", "ddim", {"guidance": -1}, "guidance must be a finite number >= 0"),
    ("ddpm_cfg", "heun", {"guidance": "strong"}, "guidance must be"),
    ("diffusion_cfg", "heun", {"guidance": float("inf")}, "guidance must be"),
    ("diffusion_cfg", "heun", {"eta": 0.5}, "eta"),
    ("ddpm", "ddim", {"guidance": 2}, "guidance"),
    ("ddpm", "ddpm", {"eta": 0.5}, "eta"),
    ("ddpm", "ddim", {"eta": 1.5}, r"eta must be a number in \[0, 1\]"),
    ("ddpm", "heun", {"timestep_spacing": "linspace"}, "timestep_spacing"),
    ("ddpm", "ddim", {"timestep_spacing": "cubic"}, "cubic"),
    ("ddpm", "dpmpp_2m_discrete", {"timestep_spacing": "quadratic"}, "quadratic"),
])
def test_bad_sampling_options_are_one_line_usage_errors(family, sampler, options, match):
    with pytest.raises(UsageError, match=match):
        MODELS.get(family).check_sampling_options(sampler, options, {})


def test_guidance_needs_a_model_trained_with_label_dropout():
    with pytest.raises(UsageError, match="p_uncond = 0"):
        MODELS.get("ddpm_cfg").check_sampling_options("ddim", {"guidance": 2}, {"p_uncond": 0.0})
    MODELS.get("ddpm_cfg").check_sampling_options("ddim", {"guidance": 1}, {"p_uncond": 0.0})
    with pytest.raises(UsageError, match=r"p_uncond .* must lie in \[0, 1\)"):
        check_model_fits("diffusion_cfg", DIGITS.shape, IMAGES, 10, p_uncond=1.0)
    with pytest.raises(UsageError, match="unexpected keyword argument 'widht'"):
        check_model_fits("ddpm_cfg", DIGITS.shape, IMAGES, 10, widht=16)


def test_sampling_options_are_declared_per_sampler():
    ddpm, cfg = MODELS.get("ddpm"), MODELS.get("diffusion_cfg")
    assert set(ddpm.sampling_options("ddim")) == {"eta", "timestep_spacing"}
    assert set(ddpm.sampling_options("ddpm")) == {"timestep_spacing"}
    assert set(ddpm.sampling_options("heun")) == set()
    assert set(MODELS.get("ddpm_cfg").sampling_options("ddim")) == {"guidance", "eta", "timestep_spacing"}
    assert set(cfg.sampling_options("heun")) == {"guidance"}


# -- DDIM's eta and the timestep spacing reach the sampler ------------------------------------------------------------


def tiny_ddpm(**config):
    torch.manual_seed(0)
    return build_model("ddpm", (2,), POINTS, None, width=16, depth=1, emb_dim=8, num_train_timesteps=100, **config)


def test_ddim_eta_option_reaches_the_sampler():
    # eta = 1 is DDPM's ancestral step with the posterior variance beta-tilde (Song et al. 2021, Eq. 16), drawing the
    # same per-sample noise, so it equals the ddpm sampler (whose variance tests/test_vp_samplers.py checks)
    model = tiny_ddpm()
    nz = lambda: SeededNoise.for_run(0, 64)  # noqa: E731
    eta0, nfe = model.sample(nz(), "ddim", 10)
    assert torch.equal(eta0, model.sample(nz(), "ddim", 10, eta=0)[0]) and nfe == 10
    eta1, nfe1 = model.sample(nz(), "ddim", 10, eta=1)
    ancestral, _ = model.sample(nz(), "ddpm", 10)
    assert not torch.allclose(eta0, eta1, atol=1e-2)
    torch.testing.assert_close(eta1, ancestral, rtol=1e-4, atol=1e-4)
    assert nfe1 == 10
    half, _ = model.sample(nz(), "ddim", 10, eta=0.5)
    assert not torch.allclose(half, eta1, atol=1e-2) and not torch.allclose(half, eta0, atol=1e-2)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "pndm"])
def test_timestep_spacing_option_equals_the_config(sampler):
    model = tiny_ddpm()
    linspace = tiny_ddpm(timestep_spacing="linspace")
    linspace.load_state_dict(model.state_dict())
    x, _ = model.sample(SeededNoise.for_run(0, 8), sampler, 7, timestep_spacing="linspace")
    assert torch.equal(x, linspace.sample(SeededNoise.for_run(0, 8), sampler, 7)[0])
    assert not torch.allclose(x, model.sample(SeededNoise.for_run(0, 8), sampler, 7)[0])


def test_samplers_of_a_guided_family_are_the_unconditional_familys():
    for family, plain in PLAIN.items():
        assert MODELS.get(family).supported_samplers() == MODELS.get(plain).supported_samplers()
        assert MODELS.get(family).conditional and not MODELS.get(plain).conditional
    assert all(SAMPLERS.get(s).kind in ("vp", "diffusion") for s in MODELS.get("ddpm_cfg").supported_samplers())


# -- through a suite: options in the spec, the record, the store and the leaderboard -----------------------------------

GUIDED_SUITE = """
name: guided
settings: {n_samples: 60, n_reference: 60, features: auto, metrics: [fid, class_consistency], train: {steps: 20, batch_size: 64}}
runs:
  - datasets: [digits]
    models: [ddpm_cfg]
    samplers: [ddim]
    steps: [4]
    options: {guidance: [1, 3]}
"""


def test_guidance_is_recorded_with_every_result_and_swept_in_the_leaderboard(tmp_path):
    from genbench.pipeline import run_suite
    from genbench.report.leaderboard import render_markdown
    from genbench.store import ResultsStore, load_results

    path = tmp_path / "guided.yaml"
    path.write_text(GUIDED_SUITE)
    run_suite(str(path), out=tmp_path / "run", progress=False)
    recs = sorted(ResultsStore(tmp_path / "run").records(), key=lambda r: r.spec.options["guidance"])
    assert [r.status for r in recs] == ["ok", "ok"]
    assert [r.spec.options for r in recs] == [{"guidance": 1}, {"guidance": 3}]
    assert [r.metrics["nfe"] for r in recs] == [4.0, 8.0]  # 2 passes per guided step
    assert all(0 <= r.metrics["class_consistency"] <= 1 for r in recs)
    df = load_results(tmp_path / "run")
    assert sorted(df["options"].tolist()) == ['{"guidance": 1}', '{"guidance": 3}']
    md = render_markdown(recs, "guided", "fid")
    assert "ddim [guidance=3]" in md and "**Metrics against the sampling option `guidance`**" in md


@pytest.mark.parametrize("family", TINY)
def test_the_unet_takes_the_class_too(family):
    # the contract tests' 8x8 digits take the MLP; the UNet's class embedding (larger images) is checked here
    torch.manual_seed(0)
    model = build_model(family, DIGITS.shape, IMAGES, DIGITS.num_classes, net="unet", width=8, depth=1,
                        channel_mult=[1, 2], **({"num_train_timesteps": 100} if family == "ddpm_cfg" else {}))
    assert model.kind == "unet" and model.ema_net.label_embed.table.weight.shape[0] == DIGITS.num_classes + 1
    for p in model.ema_net.parameters():  # the UNet starts as the identity (zero output convolutions): perturb it
        p.data.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    f = net_pass(family, model)
    x, s = torch.randn(4, *DIGITS.shape), torch.full((4,), 0.7)
    y = torch.tensor([0, 1, 2, 3])
    cond, uncond = f(x, s, y), f(x, s, None)
    assert not torch.allclose(cond, uncond) and not torch.allclose(cond, f(x, s, (y + 1) % 10))
    torch.testing.assert_close(ClassifierFreeGuidance(f, y, 10, 2.0)(x, s), uncond + 2.0 * (cond - uncond))
