"""Known answers for the autoregressive image families (pixelcnn, pixelrnn, igpt): each sub-pixel's output
depends on no later sub-pixel (a gradient test over every position), the log-probability accumulated
while sampling equals the model's log-likelihood of the drawn image, cached sampling (PixelRNN rows,
the transformer's key-value cache) draws exactly what full passes draw, the 8-bit convention of the
likelihood, and a short real training run."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data.base import get_dataset
from genbench.metrics.likelihood import bits_per_dim, dequantise
from genbench.models.base import TrainBudget, build_model
from genbench.models.igpt import palette_bins
from genbench.models.nets.pixel_ar import draw_level, levels_of_dequantised, levels_to_images, to_sequence
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {
    "pixelcnn": {"hidden": 12, "n_layers": 2, "out_hidden": 12},
    "pixelrnn": {"hidden": 12, "n_layers": 2, "out_hidden": 12},
    "igpt": {"d_model": 16, "n_layers": 2, "n_heads": 2},
}
FAMILIES = list(SMALL)


def randomised(model, scale: float = 0.3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def small(family: str, shape=(1, 4, 4), **extra):
    return randomised(build_model(family, shape, "images", **{**SMALL[family], **extra}))


def output_input_dependence(model, shape) -> torch.Tensor:
    """[D, D] matrix: entry (p, q) is |d output_p / d input_q| summed, from autograd, in raster order."""
    c, h, w = shape
    d = c * h * w
    dep = torch.zeros(d, d)
    if model.family == "igpt":
        # inputs: the embedded sequence (start token, then positions 0..D-2); output p is read from input slot p
        k = torch.randint(0, 256, (1, *shape), generator=torch.Generator().manual_seed(5))
        e = model.embed(model.inputs_of(k)).detach().requires_grad_()
        out = model.transformer(e)  # [1, D, K]
        for p in range(d):
            (g,) = torch.autograd.grad(out[0, p].sum(), e, retain_graph=True)
            # input slot s holds sub-pixel s - 1
            dep[p, : d - 1] = g[0, 1:].abs().sum(-1)
        return dep
    x = (torch.rand(1, *shape, generator=torch.Generator().manual_seed(5)) * 2 - 1).requires_grad_()
    logits = model.logits_of_images(x).reshape(1, c, 256, h, w)
    for p in range(d):
        i, rest = divmod(p, w * c)
        j, ch = divmod(rest, c)
        (g,) = torch.autograd.grad(logits[0, ch, :, i, j].sum(), x, retain_graph=True)
        dep[p] = to_sequence(g.abs())[0]
    return dep


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 3, 3)])
@pytest.mark.parametrize("family", FAMILIES)
def test_no_output_depends_on_its_own_or_a_later_subpixel(family, shape):
    model = small(family, shape, **({"hidden": 12, "out_hidden": 12} if family != "igpt" else {}))
    dep = output_input_dependence(model, shape)
    d = dep.shape[0]
    later_or_self = torch.triu(torch.ones(d, d), 0).bool()
    assert float(dep[later_or_self].max()) == 0.0, f"{family}: output at p depends on an input at q >= p"
    # not vacuous: each output p > 0 depends on earlier sub-pixels (grey: on the one just before it; with
    # colour a few units per sub-pixel may be dead ReLUs at random weights, so on some earlier one)
    assert bool((dep[1:] > 0).any(1).all())
    if shape[0] == 1:
        assert bool((dep[torch.arange(1, d), torch.arange(d - 1)] > 0).all())


def test_gated_pixelcnn_has_no_blind_spot():
    # two stacks: with enough layers every earlier pixel reaches every output (the single-stack PixelCNN
    # misses the pixels up and to the right)
    model = small("pixelcnn", (1, 5, 5), n_layers=3)
    dep = output_input_dependence(model, (1, 5, 5))
    earlier = torch.tril(torch.ones(25, 25), -1).bool()
    assert bool((dep[earlier] > 0).all())


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 3, 3)])
@pytest.mark.parametrize("family", FAMILIES)
def test_log_probability_accumulated_while_sampling_is_the_log_likelihood(family, shape):
    model = small(family, shape)
    k, log_p, nfe = model.sample_levels(SeededNoise.for_run(3, 6))
    d = math.prod(shape)
    assert nfe == d and k.shape == (6, *shape) and k.dtype == torch.long
    torch.testing.assert_close(log_p, model.log_prob_levels(k).double(), rtol=1e-5, atol=1e-4)
    # and the likelihood the runner sees, at dequantised samples: log P(k) + D ln 128
    x = dequantise(levels_to_images(k), torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.log_likelihood(x).double(), log_p + d * math.log(128), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_sampling_draws_what_full_passes_draw(family):
    # PixelRNN carries row states, the transformer a key-value cache, PixelCNN crops to the receptive field
    for shape in [(1, 4, 4), (3, 3, 3), (1, 9, 2)]:
        model = small(family, shape, **({"first_kernel": 3} if family == "pixelcnn" else {}))
        k, log_p, nfe = model.sample_levels(SeededNoise.for_run(4, 5))
        k_full, log_p_full, nfe_full = model.sample_levels_uncached(SeededNoise.for_run(4, 5))
        assert torch.equal(k, k_full) and nfe == nfe_full
        torch.testing.assert_close(log_p, log_p_full, rtol=1e-6, atol=1e-4)


def test_reduced_palette_is_an_exact_distribution_over_256_levels():
    bins = palette_bins(16)
    assert bins[0] == 0 and bins[-1] == 15 and (bins[:1] != bins[1]).all() and (bins[-2] != bins[-1])
    assert bool((bins.diff() >= 0).all()) and set(bins.tolist()) == set(range(16))
    assert torch.equal(palette_bins(256), torch.arange(256))
    model = small("igpt", palette=16)
    k = torch.randint(0, 256, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    lp = model.level_log_probs(k)  # [3, 16, 256]
    torch.testing.assert_close(torch.logsumexp(lp, -1), torch.zeros(3, 16), rtol=0, atol=1e-5)
    # levels in one bin share its probability equally
    same_bin = (bins == bins[100]).nonzero().squeeze(1)
    assert torch.allclose(lp[..., same_bin], lp[..., same_bin[:1]])


def test_inverse_cdf_draw_follows_the_distribution():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3] + [0.0] * 252)
    u = (torch.arange(1000) + 0.5) / 1000
    k = draw_level(torch.log(probs).expand(1000, -1), u)
    counts = torch.bincount(k, minlength=256)[:4]
    assert counts.tolist() == [100, 0, 600, 300]


def test_dequantised_pixels_map_back_to_their_level_with_floor_not_round():
    k = torch.arange(256)
    for u in (0.0, 0.49, 0.51, 0.999):
        x = (k + u) / 128 - 1
        assert torch.equal(levels_of_dequantised(x), k), u


def test_bits_per_dim_is_the_exact_discrete_nll():
    # bpd of log_likelihood at dequantised data = -log2 P(k) / D, whatever the dequantisation noise
    model = small("pixelcnn")
    k = torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    exact = float((-model.log_prob_levels(k).detach().double() / (16 * math.log(2))).mean())
    for seed in (0, 1):
        x = dequantise(levels_to_images(k), torch.Generator().manual_seed(seed))
        assert bits_per_dim(model.log_likelihood(x), 16) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_short_training_on_digits_improves_bits_per_dim(family):
    data = get_dataset("digits").load("train")
    test = dequantise(get_dataset("digits").load("test").x[:200], torch.Generator().manual_seed(0))
    model = build_model(family, (1, 8, 8), "images", **SMALL[family])
    model.fit(data, TrainBudget(steps=1, batch_size=32, lr=1e-3), torch.Generator().manual_seed(0))
    before = bits_per_dim(model.log_likelihood(test), 64)
    model.fit(data, TrainBudget(steps=40, batch_size=32, lr=1e-2), torch.Generator().manual_seed(0))
    after = bits_per_dim(model.log_likelihood(test), 64)
    # 8 bits/dim is a uniform guess; digits use 17 grey levels
    print(family, before, after)
    assert before > 7 and after < 5, (before, after)
