"""``diffusion``: an EDM-preconditioned denoiser (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"), sampled by every registered diffusion sampler.

Denoiser (EDM Table 1, "ours"): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) with
c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
c_in = 1 / sqrt(sigma^2 + sigma_data^2), c_noise = ln(sigma) / 4. Training: ln sigma ~
N(P_mean, P_std^2) with P_mean = -1.2, P_std = 1.2, loss lambda(sigma) ||D(x + sigma n; sigma) - x||^2
with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

Scale: EDM's constants are for data with sigma_data = 0.5. For another ``sigma_data`` the noise
range scales with it: the defaults become sigma_min = 0.002 k, sigma_max = 80 k and the training
P_mean shifts by ln k, with k = sigma_data / 0.5 (so the model sees the same signal-to-noise
ratios). Set ``sigma_data`` near the data's per-dimension std (0.5 suits images in [-1, 1]; about
1.4 suits toy2d:8gaussians). sigma_max only has to drown the data: the mismatch between the
noised data and the N(0, sigma_max^2 I) prior grows with the dimension, so 2-D data does well
with sigma_max near 15 times its std (20 for toy2d:8gaussians, better at few steps than 224).
Sampling uses ``schedule`` (default ``karras``, rho = 7) from
sigma_max to sigma_min, then 0, and the EMA weights. Likelihood: the probability-flow ODE
(``genbench.samplers.ode.pf_ode_log_likelihood``), nats per example of the data as given.

Network: ``net="mlp"`` (points and flattened small images), ``"unet"`` (images), or ``"auto"``
(MLP for points and for images of at most 64 pixels per channel, else UNet). ``mlp_conditioning``:
``shift`` (additive time embedding, the default) or ``scale_shift`` (``genbench.models.nets.mlp``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from genbench.data.base import IMAGES, POINTS, Samples
from genbench.errors import UsageError
from genbench.models.base import (
    MODELS, SAMPLE_QUANTISATION_BY_DEQUANTIZE, GenerativeModel, Progress, TrainBudget, likelihood_noise,
)
from genbench.models.nets.mlp import TimeConditionedMLP
from genbench.models.nets.training import dequantise_images, init_parameters, train_with_adam
from genbench.models.nets.unet import UNet
from genbench.registry import check_choice
from genbench.samplers.base import SAMPLERS, CountingDenoiser, samplers_of_kind
from genbench.samplers.ode import pf_ode_log_likelihood
from genbench.samplers.schedules import SCHEDULES, build_sigmas
from genbench.seeding import SeededNoise

EDM_SIGMA_DATA = 0.5  # the data scale EDM's sigma_min, sigma_max and P_mean were chosen for
DEFAULT_STEPS = {"euler": 32, "euler_ancestral": 32, "heun": 18, "edm_stochastic": 32, "dpmpp_2m": 20, "ode": None}
DEFAULT_SAMPLER = "heun"  # EDM's deterministic sampler (Karras et al. 2022, Algorithm 1) at its 18 steps
NETS = ("auto", "mlp", "unet")
MLP_MAX_PIXELS = 64  # "auto" uses the MLP for images of at most this many pixels per channel


def edm_preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) of EDM Table 1 for noise levels sigma [N]."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1.0 / total.sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (EDM Eq. 8 / Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def _rows(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, ..., 1] broadcastable against x."""
    return v.reshape(-1, *([1] * (x.ndim - 1)))


@MODELS.register(
    "diffusion", description="EDM-preconditioned denoiser (Karras et al. 2022), all diffusion samplers, ODE likelihood")
class EDMDiffusion(GenerativeModel):
    family = "diffusion"
    likelihood_kind = "ode"

    def __init__(self, data_shape, modality, num_classes=None, net: str = "auto", width: int | None = None,
                 depth: int | None = None, channel_mult: tuple[int, ...] | list[int] = (1, 2), emb_dim: int = 64,
                 sigma_data: float = EDM_SIGMA_DATA, sigma_min: float | None = None, sigma_max: float | None = None,
                 rho: float = 7.0, schedule: str = "karras", p_mean: float = -1.2, p_std: float = 1.2,
                 dropout: float = 0.0, mlp_conditioning: str = "shift", dequantize: bool = True,
                 exact_divergence_dims: int = 16,
                 likelihood_tol: float = 1e-5):
        super().__init__(data_shape, modality, num_classes, net=net, width=width, depth=depth,
                         channel_mult=list(channel_mult), emb_dim=emb_dim, sigma_data=sigma_data, sigma_min=sigma_min,
                         sigma_max=sigma_max, rho=rho, schedule=schedule, p_mean=p_mean, p_std=p_std,
                         dropout=dropout, mlp_conditioning=mlp_conditioning, dequantize=dequantize,
                         exact_divergence_dims=exact_divergence_dims,
                         likelihood_tol=likelihood_tol)
        check_choice(schedule, sorted(SCHEDULES), "sigma schedule")
        if not sigma_data > 0:
            raise UsageError(f"sigma_data must be positive, got {sigma_data}; set it near the data's per-dimension std")
        self.sigma_data = float(sigma_data)
        scale = self.sigma_data / EDM_SIGMA_DATA
        self.sigma_min = float(sigma_min if sigma_min is not None else 0.002 * scale)
        self.sigma_max = float(sigma_max if sigma_max is not None else 80.0 * scale)
        if not 0 < self.sigma_min < self.sigma_max:
            raise UsageError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}; fix the model config")
        self.kind = self._choose_net(net)
        self.net = self._build_net()
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)

    # -- network -------------------------------------------------------------------------------

    def _choose_net(self, net: str) -> str:
        check_choice(net, list(NETS), "diffusion network")
        if net == "unet" and self.modality != IMAGES:
            raise UsageError("net 'unet' needs image data; use net: mlp for points")
        if net != "auto":
            return net
        small = self.modality == POINTS or math.prod(self.data_shape[1:]) <= MLP_MAX_PIXELS
        return "mlp" if small else "unet"

    def _build_net(self) -> nn.Module:
        c = self.config
        # a class-conditional variant (diffusion_cfg) embeds C classes and the null class
        k = int(self.num_classes or 0) if self.conditional else 0
        if self.kind == "mlp":
            d = math.prod(self.data_shape)
            return TimeConditionedMLP(d, d, hidden=c["width"] or 256, depth=c["depth"] or 4, emb_dim=c["emb_dim"],
                                      dropout=c["dropout"], num_classes=k,
                                      conditioning=c["mlp_conditioning"])
        return UNet(self.data_shape[0], channels=c["width"] or 64, channel_mult=tuple(c["channel_mult"]),
                    num_res_blocks=c["depth"] or 2, attn_levels=(len(c["channel_mult"]) - 1,), dropout=c["dropout"],
                    num_classes=k)

    def _net_output(self, net: nn.Module, x_in: torch.Tensor, c_noise: torch.Tensor,
                    y: torch.Tensor | None = None) -> torch.Tensor:
        """F(c_in x; c_noise[, y]) in x's shape (the MLP sees flattened examples)."""
        labels = () if y is None else (y,)
        if self.kind == "mlp":
            return net(x_in.reshape(x_in.shape[0], -1), c_noise, *labels).reshape(x_in.shape)
        return net(x_in, c_noise, *labels)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, net: nn.Module | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """D(x; sigma) for x [N, *data_shape] and sigma [N] (or a scalar), with the EMA net unless ``net`` is given;
        ``y`` [N]: class labels of a class-conditional variant (the null class C, or None, for the unconditional pass)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        out = self._net_output(net if net is not None else self.ema_net, _rows(c_in, x) * x, c_noise, y)
        return _rows(c_skip, x) * x + _rows(c_out, x) * out

    sample_quantisation = SAMPLE_QUANTISATION_BY_DEQUANTIZE  # floor after dequantised training

    # -- training ------------------------------------------------------------------------------

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Train from scratch (weights re-initialised from ``generator``) with Adam; EMA per ``budget.ema``."""
        init_parameters(self.net, generator)
        self.ema_net.load_state_dict(self.net.state_dict())
        x = data.x.to(self.device).float()

        def loss(x0: torch.Tensor) -> torch.Tensor:
            return self.denoising_loss(x0, generator)

        return train_with_adam(self.net, loss, x, budget, generator, progress, self.ema_net)

    def denoising_loss(self, x0: torch.Tensor, generator: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
        """EDM loss E[lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2], mean over dimensions and batch (``y``: the
        labels of a class-conditional variant, some already dropped to the null class)."""
        if self.modality == IMAGES and self.config["dequantize"]:
            x0 = dequantise_images(x0, generator)
        # ln sigma ~ N(P_mean + ln(sigma_data / 0.5), P_std^2): [B]
        p_mean = self.config["p_mean"] + math.log(self.sigma_data / EDM_SIGMA_DATA)
        sigma = torch.exp(p_mean + self.config["p_std"] * torch.randn(x0.shape[0], generator=generator)).to(x0.device)
        n = torch.randn(x0.shape, generator=generator).to(x0.device)
        denoised = self.denoise(x0 + _rows(sigma, x0) * n, sigma, net=self.net, y=y)
        weight = _rows(edm_loss_weight(sigma, self.sigma_data), x0)
        return (weight * (denoised - x0) ** 2).mean()

    training_loss = denoising_loss  # the loss a class-conditional variant's fit calls (genbench.models.guidance)

    # -- sampling ------------------------------------------------------------------------------

    @classmethod
    def supported_samplers(cls) -> list[str]:
        """Every diffusion sampler, EDM's Heun first: the one a suite or ``genbench sample`` uses when none is named."""
        return sorted(samplers_of_kind("diffusion"), key=lambda name: name != DEFAULT_SAMPLER)

    @classmethod
    def default_steps(cls, sampler: str, config: Mapping[str, Any] | None = None) -> int | None:
        """Steps when a suite names none: EDM's 18 for heun, 20 for dpmpp_2m, 32 for first-order and stochastic
        samplers, None for ``ode`` (adaptive: the steps are the solver's, and ``sample`` ignores ``steps``)."""
        return DEFAULT_STEPS.get(sampler, 32)

    def sigmas(self, steps: int) -> torch.Tensor:
        """The sampling schedule: [steps + 1] decreasing sigmas from sigma_max to sigma_min, then 0."""
        c = self.config
        return build_sigmas(c["schedule"], steps, self.sigma_min, self.sigma_max, c["rho"])

    def denoiser(self, noise: SeededNoise, options: Mapping[str, Any]) -> Any:
        """The denoiser D(x; sigma) the sampler walks, counting network passes in ``calls``: the EMA net's D.
        A class-conditional variant returns its guided denoiser, which counts both passes."""
        return CountingDenoiser(self.denoise)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "heun", steps: int | None = None,
               **options: Any) -> tuple[torch.Tensor, float]:
        """x_T = sigma_max * noise, then the named sampler over the schedule; NFE = network passes per sample.
        ``options``: ``sampling_options`` (``guidance`` for the class-conditional variant)."""
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        self.check_sampling_options(sampler, options, self.config)
        if self.default_steps(sampler, self.config) is None:
            steps = 2  # a sampler without steps (``ode``) only reads the schedule's ends
        elif steps is None:
            steps = self.default_steps(sampler, self.config)
        sigmas = self.sigmas(steps).to(self.device)
        self.eval()
        x = float(sigmas[0]) * noise.randn(*self.data_shape).to(self.device)
        denoiser = self.denoiser(noise, options)
        x = SAMPLERS.get(sampler).fn(denoiser, x, sigmas, noise)
        if self.modality == IMAGES:
            x = x.clamp(-1.0, 1.0)
        return x, float(denoiser.calls)

    # -- likelihood ----------------------------------------------------------------------------

    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """log p(x) in nats per example from the probability-flow ODE between sigma_min and sigma_max.

        Exact divergence when the data has at most ``exact_divergence_dims`` dimensions, else
        Hutchinson's estimator with one Rademacher probe per example from its own generator in
        ``noise`` (default ``likelihood_noise``); dopri5 with rtol = atol = ``likelihood_tol``
        (default 1e-5). Deterministic given the noise; the solver's steps are shared by the batch,
        so a value can move with the batch within the tolerance, not with the probes.
        The mean is heavy-tailed for small models: an example whose ODE path leaves the region the
        net was trained on can drift far from the origin and score thousands of nats below the rest.
        """
        self.eval()
        exact = math.prod(self.data_shape) <= self.config["exact_divergence_dims"]
        noise = noise if noise is not None else likelihood_noise(len(x))
        x = x.to(self.device).float()
        tol = self.config["likelihood_tol"]
        return pf_ode_log_likelihood(self.denoise, x, self.sigma_min, self.sigma_max, exact, noise, rtol=tol, atol=tol)
