"""Invertible layers on images [B, C, H, W] shared by the multi-scale flows (``realnvp``, ``glow``).

Every layer maps ``forward(x) -> (y, log|det dy/dx| [B])`` and back with ``inverse(y) -> x``.

* ``Squeeze``: 2x2 space-to-depth, [C, H, W] -> [4C, H/2, W/2] (Dinh et al. 2017, section 3.6).
* ``ActNorm``: per-channel affine, initialised from the first training batch to zero mean and
  unit variance (Kingma & Dhariwal 2018, Glow, section 3.1).
* ``InvConv1x1``: invertible 1x1 convolution with W = P L (U + diag(sign(s) exp(log|s|))),
  log|det| = H W sum(log|s|) (Glow, section 3.2, LU form).
* ``Coupling``: additive (NICE) or affine (RealNVP) coupling with a checkerboard or a channel
  mask (Dinh et al. 2017, section 3.4). The log-scale is bounded: ``scale * tanh`` (RealNVP) or
  Glow's ``sigmoid(h + 2)`` scale kept above ``SIGMOID_FLOOR`` (so an inverse pass expands by at
  most 1 / SIGMOID_FLOOR per coupling: with Glow's unbounded 1 / sigmoid, rare tail latents
  overflowed to inf and NaN when sampling at temperature 1).
* ``FactorOut``: keeps half the channels and emits the other half as latent (RealNVP 3.6);
  with a learned conditional prior (Glow's split) it standardises the emitted half by a mean and
  log-std predicted from the kept half, so every latent is N(0, I); the log-std is bounded,
  ``LOG_STD_BOUND * tanh(h / LOG_STD_BOUND)``, for the same reason.
* ``ImageFlowFamily``: the family protocol shared by ``realnvp`` and ``glow`` (training on
  dequantised pixels, exact log-density, one-pass sampling at a temperature).
* ``MultiScaleFlow``: stages of layers with a factor-out between consecutive stages; ``to_latent``
  returns the concatenated latent [B, D] and the total log|det|, ``from_latent`` inverts it.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import FLOOR, IMAGES, Samples
from genbench.models.base import NATIVE, TEMPERATURE, GenerativeModel, Progress, TrainBudget, check_positive_option
from genbench.models.nets.training import dequantise_images, init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

SIGMOID_FLOOR = 1e-3  # smallest scale of a Glow coupling
LOG_STD_BOUND = 7.0  # |log sigma| of a learned split prior, sigma in [9e-4, 1.1e3]


class Squeeze(nn.Module):
    """[B, C, H, W] -> [B, 4C, H/2, W/2]: each 2x2 block becomes 4 channels (volume preserving)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """y = (x + b) * exp(log_s) per channel, b and log_s set from the first training batch (Glow 3.1)."""

    def __init__(self, c: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        # zero mean, unit variance per channel over batch and pixels
        self.bias.copy_(-x.mean((0, 2, 3), keepdim=True))
        self.log_scale.copy_(-torch.log(x.std((0, 2, 3), keepdim=True) + 1e-6))
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and torch.is_grad_enabled() and not bool(self.initialised):
            self.initialise(x)
        hw = x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), (hw * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution in LU form (Glow 3.2): W = P L (U + diag(sign_s * exp(log_s)))."""

    def __init__(self, c: int):
        super().__init__()
        self.register_buffer("perm", torch.eye(c))
        self.register_buffer("sign_s", torch.ones(c))
        self.register_buffer("l_mask", torch.tril(torch.ones(c, c), -1), persistent=False)
        self.lower = nn.Parameter(torch.zeros(c, c))
        self.upper = nn.Parameter(torch.zeros(c, c))
        self.log_s = nn.Parameter(torch.zeros(c))

    @torch.no_grad()
    def initialise_from(self, generator: torch.Generator) -> None:
        """A random rotation (QR of a Gaussian matrix), factorised as P L U (Glow's initialisation)."""
        c = self.log_s.numel()
        q, _ = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))
        p, l, u = torch.linalg.lu(q)
        s = torch.diagonal(u)
        self.perm.copy_(p.float())
        self.sign_s.copy_(torch.sign(s).float())
        self.lower.copy_(l.float())
        self.upper.copy_(torch.triu(u, 1).float())
        self.log_s.copy_(torch.log(s.abs()).float())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.log_s.numel(), device=self.log_s.device)
        lower = self.lower * self.l_mask + eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        hw = x.shape[2] * x.shape[3]
        return F.conv2d(x, w[:, :, None, None]), (hw * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return F.conv2d(y, w_inv[:, :, None, None])


def checkerboard(h: int, w: int, parity: int) -> torch.Tensor:
    """[1, 1, H, W] mask, 1 where (i + j + parity) is even (the kept, conditioning pixels)."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j + parity) % 2 == 0).float()[None, None]


class ResNetCouplingNet(nn.Module):
    """RealNVP's coupling network: conv3x3 in, ``n_blocks`` residual blocks, zero-initialised conv3x3 out."""

    def __init__(self, c_in: int, c_out: int, hidden: int, n_blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1))
            for _ in range(n_blocks))
        self.out = zero_conv(hidden, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(F.relu(h))


class GlowCouplingNet(nn.Module):
    """Glow's coupling network: conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3."""

    def __init__(self, c_in: int, c_out: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 zero_conv(hidden, c_out, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def zero_conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    """A convolution that starts at zero (so a coupling starts as the identity); kept at zero by init_parameters."""
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    conv.zero_init = True
    return conv


class Coupling(nn.Module):
    """y_b = x_b * exp(s(x_a)) + t(x_a) (affine) or x_b + t(x_a) (additive); x_a passes unchanged.

    ``mask``: "checkerboard" (x_a = the pixels of one parity, all channels; the network also sees
    the mask) or "channel" (x_a = one half of the channels). ``parity`` picks which half is x_a.
    ``scale``: "tanh" (s = scale_c * tanh(h), RealNVP) or "sigmoid" (s = log sigmoid(h + 2), Glow).
    """

    def __init__(self, shape: tuple[int, int, int], mask: str, parity: int, affine: bool, net: str, hidden: int,
                 n_blocks: int = 1, scale: str = "tanh"):
        super().__init__()
        c, h, w = shape
        self.mask_kind, self.parity, self.affine, self.scale_kind = mask, parity, affine, scale
        if mask == "checkerboard":
            self.register_buffer("mask", checkerboard(h, w, parity), persistent=False)
            c_in, c_b = c + 1, c
        else:
            self.c_a = c // 2 if parity == 0 else c - c // 2
            c_in, c_b = self.c_a, c - self.c_a
        c_out = (2 if affine else 1) * c_b
        self.net = (ResNetCouplingNet(c_in, c_out, hidden, n_blocks) if net == "resnet"
                    else GlowCouplingNet(c_in, c_out, hidden))
        if affine and scale == "tanh":
            self.tanh_scale = nn.Parameter(torch.ones(1, c_b, 1, 1))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input, x_b); for the checkerboard x_b is all of x (masked in the update)."""
        if self.mask_kind == "checkerboard":
            return torch.cat([x * self.mask, self.mask.expand(x.shape[0], 1, -1, -1)], 1), x
        x_a, x_b = x[:, :self.c_a], x[:, self.c_a:]
        return x_a, x_b

    def _merge(self, x: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        if self.mask_kind == "checkerboard":
            return x * self.mask + y_b * (1 - self.mask)
        return torch.cat([x[:, :self.c_a], y_b], 1)

    def shift_and_log_scale(self, net_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(net_in)
        if not self.affine:
            s, t = torch.zeros_like(h), h
        else:
            s, t = h.chunk(2, dim=1)
            s = (self.tanh_scale * torch.tanh(s) if self.scale_kind == "tanh"
                 else torch.log(SIGMOID_FLOOR + (1 - SIGMOID_FLOOR) * torch.sigmoid(s + 2.0)))
        if self.mask_kind == "checkerboard":
            # only the transformed pixels change (and count in the log-det)
            s, t = s * (1 - self.mask), t * (1 - self.mask)
        return s, t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net_in, x_b = self._split(x)
        s, t = self.shift_and_log_scale(net_in)
        return self._merge(x, x_b * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        net_in, y_b = self._split(y)
        s, t = self.shift_and_log_scale(net_in)
        return self._merge(y, (y_b - t) * torch.exp(-s))


class FactorOut(nn.Module):
    """[B, C, H, W] -> kept [B, C - C/2, H, W] and latent [B, C/2, H, W] (standardised by a learned prior)."""

    def __init__(self, c: int, learned_prior: bool):
        super().__init__()
        self.c_keep = c - c // 2
        self.prior = zero_conv(self.c_keep, 2 * (c // 2), 3) if learned_prior else None

    def _mean_log_std(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, h = self.prior(kept).chunk(2, dim=1)
        return mean, LOG_STD_BOUND * torch.tanh(h / LOG_STD_BOUND)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kept, z = x[:, :self.c_keep], x[:, self.c_keep:]
        if self.prior is None:
            return kept, z, x.new_zeros(x.shape[0])
        # z = (x_2 - mu(x_1)) / sigma(x_1), log|det| = -sum log sigma
        mean, log_std = self._mean_log_std(kept)
        return kept, (z - mean) * torch.exp(-log_std), -log_std.flatten(1).sum(1)

    def inverse(self, kept: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.prior is not None:
            mean, log_std = self._mean_log_std(kept)
            z = z * torch.exp(log_std) + mean
        return torch.cat([kept, z], 1)


class MultiScaleFlow(nn.Module):
    """Stages of invertible layers with a ``FactorOut`` after every stage but the last.

    ``stages``: lists of layers; ``splits``: one FactorOut per stage boundary. ``latent_shapes`` are
    the per-example shapes of the emitted latents, in emission order (the last stage's output last).
    """

    def __init__(self, stages: list[list[nn.Module]], splits: list[FactorOut], latent_shapes: list[tuple[int, ...]]):
        super().__init__()
        self.stages = nn.ModuleList(nn.ModuleList(s) for s in stages)
        self.splits = nn.ModuleList(splits)
        self.latent_shapes = latent_shapes

    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] -> z [B, D] (all latents, flattened and concatenated) and log|det dz/dx| [B]."""
        logdet = x.new_zeros(x.shape[0])
        zs = []
        for i, stage in enumerate(self.stages):
            for layer in stage:
                x, ld = layer(x)
                logdet = logdet + ld
            if i < len(self.splits):
                x, z, ld = self.splits[i](x)
                zs.append(z.flatten(1))
                logdet = logdet + ld
        zs.append(x.flatten(1))
        return torch.cat(zs, 1), logdet

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> x [B, C, H, W]: the inverse pass."""
        sizes = [math.prod(s) for s in self.latent_shapes]
        pieces = [p.reshape(z.shape[0], *s) for p, s in zip(z.split(sizes, 1), self.latent_shapes)]
        x = pieces[-1]
        for i in reversed(range(len(self.stages))):
            if i < len(self.splits):
                x = self.splits[i].inverse(x, pieces[i])
            for layer in reversed(self.stages[i]):
                x = layer.inverse(x)
        return x


def initialise_flow(module: nn.Module, generator: torch.Generator) -> None:
    """Layers with a random initialisation of their own (InvConv1x1) draw it from ``generator``;
    ActNorms re-initialise from the next training batch; RealNVP's tanh scales restart at 1."""
    for m in module.modules():
        if isinstance(m, InvConv1x1):
            m.initialise_from(generator)
        elif isinstance(m, ActNorm):
            m.initialised.fill_(False)
        elif isinstance(m, Coupling) and hasattr(m, "tanh_scale"):
            m.tanh_scale.data.fill_(1.0)


def logit_with_logdet(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantised pixels x in [-1, 1) -> logit(alpha + (1 - 2 alpha) (x + 1) / 2) and log|det| [B] (RealNVP 4.1)."""
    p = alpha + (1 - 2 * alpha) * (x + 1) / 2
    y = torch.log(p) - torch.log1p(-p)
    # dp/dx = (1 - 2 alpha) / 2, dy/dp = 1 / (p (1 - p))
    logdet = math.log((1 - 2 * alpha) / 2) - torch.log(p) - torch.log1p(-p)
    return y, logdet.flatten(1).sum(1)


def from_logit(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Inverse of ``logit_with_logdet``: back to [-1, 1]."""
    return 2 * (torch.sigmoid(y) - alpha) / (1 - 2 * alpha) - 1


LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) [B] for z [B, D]."""
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)


def check_squeezes(family: str, data_shape: tuple[int, ...], n_squeezes: int, min_side: int, knob: str) -> None:
    """A UsageError unless H and W are divisible by 2^n_squeezes and leave at least ``min_side`` pixels a side."""
    from genbench.errors import UsageError

    if len(data_shape) != 3:
        raise UsageError(f"{family} needs images [C, H, W], got data of shape {list(data_shape)}")
    _, h, w = data_shape
    f = 2 ** n_squeezes
    if h % f or w % f or h // f < min_side or w // f < min_side:
        fits = max((k for k in range(0, 12) if h % 2**k == 0 and w % 2**k == 0 and min(h, w) // 2**k >= min_side), default=0)
        raise UsageError(f"{family} squeezes {h}x{w} images {n_squeezes} times, but H and W "
                         f"must be divisible by {f} and leave at least {min_side}x{min_side} pixels; this image size allows "
                         f"at most {fits} squeezes (lower {knob})")


class ImageFlowFamily(GenerativeModel):
    """What the multi-scale image flows share: dequantised maximum likelihood, exact log-density, one-pass sampling.

    A subclass sets ``preprocessing`` ("logit": RealNVP's logit(alpha + (1 - 2 alpha) p); "affine":
    Glow's x / 2 in [-0.5, 0.5]), implements ``build_flow`` and ``check_fits``.
    """

    likelihood_kind = "exact"
    modalities = (IMAGES,)
    preprocessing = "logit"
    sample_quantisation = FLOOR  # trained on uniformly dequantised pixels: samples fill the bins

    def __init__(self, data_shape, modality, num_classes=None, **config):
        super().__init__(data_shape, modality, num_classes, **config)
        type(self).check_fits(self.data_shape, modality, self.num_classes, self.config)
        self.flow = self.build_flow()

    def build_flow(self) -> MultiScaleFlow:
        raise NotImplementedError

    def sampling_temperature(self) -> float:
        return 1.0

    def to_flow_space(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantised images on [-1, 1] -> the flow's input space, and log|det| [B] of that map."""
        if self.preprocessing == "logit":
            return logit_with_logdet(x, self.config["logit_alpha"])
        return x / 2, x.new_full((x.shape[0],), -math.prod(x.shape[1:]) * math.log(2.0))

    def from_flow_space(self, y: torch.Tensor) -> torch.Tensor:
        return from_logit(y, self.config["logit_alpha"]) if self.preprocessing == "logit" else 2 * y

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density [B] of dequantised images x [B, C, H, W] on the [-1, 1] scale."""
        y, ld_pre = self.to_flow_space(x.to(self.device))
        z, ld_flow = self.flow.to_latent(y)
        return standard_normal_log_prob(z) + ld_flow + ld_pre

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Maximum likelihood of uniformly dequantised pixels with Adam (gradient norm clipped at 50)."""
        init_parameters(self, generator)
        initialise_flow(self, generator)
        x = data.x.to(self.device).float()

        def nll_bits(batch: torch.Tensor) -> torch.Tensor:
            # mean NLL per dimension (the loss scale does not grow with the image size)
            return -self.log_prob(dequantise_images(batch, generator)).mean() / math.prod(self.data_shape)

        report = train_with_adam(self, nll_bits, x, budget, generator, progress, grad_clip=50.0)
        self.eval()
        return {**report, "temperature": self.sampling_temperature()}

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Exact log-density in nats per example at already-dequantised x (the caller dequantises)."""
        return self.log_prob(x)

    @classmethod
    def sampling_options(cls, sampler, config=None) -> dict[str, str]:
        return {TEMPERATURE: "latent scale T, z ~ N(0, T^2 I) (Kingma & Dhariwal 2018's reduced temperature; "
                             "default: the recipe's, else 1)"}

    @classmethod
    def check_sampling_options(cls, sampler, options, config=None) -> None:
        super().check_sampling_options(sampler, options, config)
        check_positive_option(cls.family, TEMPERATURE, options)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None,
               temperature: float | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        if temperature is not None:
            self.check_sampling_options(sampler, {TEMPERATURE: temperature})
        t = self.sampling_temperature() if temperature is None else float(temperature)
        z = t * noise.randn(math.prod(self.data_shape)).to(self.device)
        # one inverse pass in float64 (tail latents can map far out; bounded scales keep that finite there),
        # counted by wrapping it
        flow64 = copy.deepcopy(self.flow).double()
        net = CountingDenoiser(lambda z_, _: flow64.from_latent(z_))
        # dequantised pixels in [-1, 1] (samples beyond it are clamped); the runner floors them
        x = self.from_flow_space(net(z.double(), None)).clamp(-1.0, 1.0).float()
        return x.reshape(len(noise), *self.data_shape), float(net.calls)
