"""``ddpm``: a discrete-time variance-preserving diffusion model (Ho et al. 2020, "Denoising Diffusion
Probabilistic Models"), T = 1000 timesteps, sampled by every ``vp`` sampler natively and by every
``diffusion`` sampler in sigma form (k-diffusion's DiscreteEpsDDPMDenoiser, ``genbench.samplers.vp``).

Process: ``genbench.samplers.vp.VPSchedule``, beta schedule ``linear`` (Ho et al.: 1e-4 to 0.02) or
``cosine`` (Nichol and Dhariwal 2021, diffusers' ``squaredcos_cap_v2``). Training (Ho et al.
Algorithm 1, L_simple): t ~ U{0, ..., T-1}, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, loss
||target - net(x_t, t)||^2 with target eps (``prediction_type: epsilon``) or v = sqrt(alpha_bar) eps -
sqrt(1 - alpha_bar) x_0 (``v_prediction``, Salimans and Ho 2022). Images are uniformly dequantised
(``dequantize``), so samples map back to 8 bits by floor. EMA weights per the budget's ``ema``.

Network: ``net`` ``mlp`` (points, small images), ``unet`` or ``auto``; the MLP's ``mlp_conditioning`` is
``shift`` (additive time embedding) or ``scale_shift`` (``genbench.models.nets.mlp``). An MLP with
epsilon prediction on 784 pixels (mnist5k) failed: its eps error near t = T, multiplied by
1 / sqrt(alpha_bar_T) = 158 in the x_0 estimate, sent DDIM's trajectory far out of range (FID 5,029).
v-prediction is bounded at every t (x_0 = sqrt(ab) x_t - sqrt(1 - ab) v), so the mnist5k recipe uses it.

Sampling: ``vp`` samplers (ddpm, ddpm_beta, euler_maruyama, ddim, pndm, ...) walk
``timestep_spacing`` timesteps (default ``trailing``); ``clip_denoised`` (default off) clamps their x_0
predictions of images to [-1, 1] as Ho et al. do. Off by default because on genbench's digits DDPM it
hurt: FID 195 vs 161 (ancestral, 50 steps) and 457 vs 67 (DDIM, 50 steps), domain:digits features,
1000 samples. The scheduler settings ``vp`` samplers read (``scheduler_config``) are the model's own.
``diffusion`` samplers walk ``sigma_schedule`` (default
``karras``, rho = 7) from sigma(T-1) to sigma(0). Default steps: 1000 for ancestral and
Euler-Maruyama, 50 for DDIM-like, EDM's counts for the sigma-form samplers. Sampling options
(``sampling_options``, swept by suites like steps): ``eta`` with ``ddim`` (default 0; 1 is the ancestral
step with the posterior variance) and ``timestep_spacing`` with every ``vp`` sampler (default the config's).
``ddpm_cfg`` (``genbench.models.ddpm_cfg``) is this family with classes and classifier-free guidance.

Likelihood (``likelihood``): ``vlb`` (default), Ho et al.'s variational bound L_T + sum_t L_{t-1} + L_0
(Eq. 5) with reverse variances sigma_t^2 = beta_t and, on images, the discretised Gaussian decoder
for L_0 (Sec. 3.3): a discrete log-probability of the 8-bit pixels (bits/dim without the +8
dequantisation offset). Points use a Gaussian decoder density (nats). ``vlb_timesteps`` K evaluates
K of the T-1 KL terms (one random t per stratum of T-1 / K, unbiased); None evaluates all.
``ode``: the probability-flow ODE through the sigma-form denoiser, as the ``diffusion`` family.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from types import SimpleNamespace
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
from genbench.samplers.base import SAMPLERS, CountingDenoiser
from genbench.samplers.ode import pf_ode_log_likelihood
from genbench.samplers.vp import (
    SPACINGS,
    VP_KIND,
    VPDenoiser,
    VPSchedule,
    eps_x0_to_output,
    output_to_eps_x0,
    sample_vp_model,
    vp_model_samplers,
)
from genbench.seeding import SeededNoise

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "squaredcos_cap_v2": "squaredcos_cap_v2",
                  "scaled_linear": "scaled_linear"}
NETS = ("auto", "mlp", "unet")
MLP_MAX_PIXELS = 64  # "auto" uses the MLP for images of at most this many pixels per channel
LIKELIHOODS = ("vlb", "ode")
# steps when a suite names none: the full chain for ancestral samplers, DDIM's 50, EDM's counts in sigma form
FULL_CHAIN = ("ddpm", "ddpm_beta", "euler_maruyama")
DEFAULT_STEPS = {"heun": 18, "dpmpp_2m": 20,
                 "dpm_solver_2": 10, "dpm_solver_3": 7, "adaptive_sde": 8}
DPMPP_SPACINGS = ("linspace", "leading", "trailing")  # the spacings dpmpp_2m_discrete walks (diffusers' three)
HALF_BIN = 1.0 / 255.0  # half the width of an 8-bit bin on [-1, 1]


def _rows(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, ..., 1] in x's dtype and device."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def gaussian_kl(mean_q: torch.Tensor, var_q: float, mean_p: torch.Tensor, var_p: float) -> torch.Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) summed over all but the first dimension: [N] nats."""
    kl = 0.5 * (math.log(var_p / var_q) + var_q / var_p - 1.0 + (mean_q - mean_p) ** 2 / var_p)
    return kl.flatten(1).sum(1)


def discretised_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Ho et al. 2020 Eq. 13: log P(x) of 8-bit pixels x in [-1, 1] under N(mean, std^2) binned, edges open: [N]."""
    normal = torch.distributions.Normal(0.0, 1.0)
    cdf_plus = normal.cdf((x + HALF_BIN - mean) / std)
    cdf_minus = normal.cdf((x - HALF_BIN - mean) / std)
    # first bin (-inf, -1 + 1/255], last bin [1 - 1/255, inf)
    prob = torch.where(x < -0.999, cdf_plus, torch.where(x > 0.999, 1.0 - cdf_minus, cdf_plus - cdf_minus))
    return prob.clamp(min=1e-12).log().flatten(1).sum(1)


@MODELS.register("ddpm", description="DDPM (Ho et al. 2020): discrete VP, T = 1000, every vp and diffusion sampler, VLB likelihood")
class DDPM(GenerativeModel):
    family = "ddpm"
    likelihood_kind = "vlb"

    def __init__(self, data_shape, modality, num_classes=None, net: str = "auto", width: int | None = None,
                 depth: int | None = None, channel_mult: tuple[int, ...] | list[int] = (1, 2), emb_dim: int = 64,
                 dropout: float = 0.0, mlp_conditioning: str = "shift", beta_schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02,
                 num_train_timesteps: int = 1000, prediction_type: str = "epsilon", timestep_spacing: str = "trailing",
                 sigma_schedule: str = "karras", rho: float = 7.0, clip_denoised: bool = False, dequantize: bool = True,
                 likelihood: str = "vlb", vlb_timesteps: int | None = None, exact_divergence_dims: int = 16,
                 likelihood_tol: float = 1e-5):
        super().__init__(data_shape, modality, num_classes, net=net, width=width, depth=depth,
                         channel_mult=list(channel_mult), emb_dim=emb_dim, dropout=dropout,
                         mlp_conditioning=mlp_conditioning, beta_schedule=beta_schedule,
                         beta_start=beta_start, beta_end=beta_end, num_train_timesteps=num_train_timesteps,
                         prediction_type=prediction_type, timestep_spacing=timestep_spacing,
                         sigma_schedule=sigma_schedule, rho=rho, clip_denoised=clip_denoised, dequantize=dequantize,
                         likelihood=likelihood, vlb_timesteps=vlb_timesteps,
                         exact_divergence_dims=exact_divergence_dims, likelihood_tol=likelihood_tol)
        check_choice(beta_schedule, list(BETA_SCHEDULES), "DDPM beta schedule")
        check_choice(prediction_type, ["epsilon", "v_prediction"], "DDPM prediction type")
        check_choice(likelihood, list(LIKELIHOODS), "DDPM likelihood")
        if vlb_timesteps is not None and not 1 <= int(vlb_timesteps) <= num_train_timesteps - 1:
            raise UsageError(f"vlb_timesteps must lie in 1..{num_train_timesteps - 1} or be null (all), got {vlb_timesteps}")
        self.vp_schedule = VPSchedule(BETA_SCHEDULES[beta_schedule], beta_start, beta_end, num_train_timesteps)
        self.prediction_type = prediction_type
        # the settings samplers that follow a diffusers scheduler (ddim, pndm, ...) read; without them they would
        # take diffusers' defaults (clip_sample=True, leading spacing), not this model's
        self.scheduler_config = {"num_train_timesteps": num_train_timesteps, "beta_schedule": self.vp_schedule.beta_schedule,
                                 "beta_start": beta_start, "beta_end": beta_end, "prediction_type": prediction_type,
                                 "clip_sample": bool(clip_denoised and modality == IMAGES), "clip_sample_range": 1.0,
                                 "timestep_spacing": timestep_spacing, "steps_offset": 0, "set_alpha_to_one": True}
        self.likelihood_kind = likelihood
        self.kind = self._choose_net(net)
        self.net = self._build_net()
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)

    # -- network -------------------------------------------------------------------------------

    def _choose_net(self, net: str) -> str:
        check_choice(net, list(NETS), "DDPM network")
        if net == "unet" and self.modality != IMAGES:
            raise UsageError("net 'unet' needs image data; use net: mlp for points")
        if net != "auto":
            return net
        small = self.modality == POINTS or math.prod(self.data_shape[1:]) <= MLP_MAX_PIXELS
        return "mlp" if small else "unet"

    def _build_net(self) -> nn.Module:
        c = self.config
        # the embedding sees 1000 t / T, so T = 1000 embeds t itself (Ho et al.)
        t_scale = 1000.0 / self.vp_schedule.T
        # a class-conditional variant (ddpm_cfg) embeds C classes and the null class
        k = int(self.num_classes or 0) if self.conditional else 0
        if self.kind == "mlp":
            d = math.prod(self.data_shape)
            return TimeConditionedMLP(d, d, hidden=c["width"] or 256, depth=c["depth"] or 4, emb_dim=c["emb_dim"],
                                      t_scale=t_scale, dropout=c["dropout"], num_classes=k,
                                      conditioning=c["mlp_conditioning"])
        return UNet(self.data_shape[0], channels=c["width"] or 64, channel_mult=tuple(c["channel_mult"]),
                    num_res_blocks=c["depth"] or 2, attn_levels=(len(c["channel_mult"]) - 1,), t_scale=t_scale,
                    dropout=c["dropout"], num_classes=k)

    def model_output(self, x_t: torch.Tensor, t: torch.Tensor, net: nn.Module | None = None,
                     y: torch.Tensor | None = None) -> torch.Tensor:
        """The raw prediction (eps or v) at x_t [N, *data_shape] and timesteps t [N], with the EMA net unless ``net``;
        ``y`` [N]: class labels of a class-conditional variant (the null class C, or None, for the unconditional pass)."""
        net = net if net is not None else self.ema_net
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        labels = () if y is None else (y,)
        if self.kind == "mlp":
            return net(x_t.reshape(x_t.shape[0], -1), t, *labels).reshape(x_t.shape)
        return net(x_t, t, *labels)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x; sigma) in EDM form (x = x_0 + sigma eps), the denoiser every ``diffusion`` sampler takes."""
        return VPDenoiser(self.model_output, self.vp_schedule, self.prediction_type)(x, sigma)

    sample_quantisation = SAMPLE_QUANTISATION_BY_DEQUANTIZE  # floor after dequantised training

    # -- training ------------------------------------------------------------------------------

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Train from scratch (weights re-initialised from ``generator``) on L_simple with Adam; EMA per ``budget.ema``."""
        init_parameters(self.net, generator)
        self.ema_net.load_state_dict(self.net.state_dict())
        x = data.x.to(self.device).float()

        def loss(x0: torch.Tensor) -> torch.Tensor:
            return self.simple_loss(x0, generator)

        return train_with_adam(self.net, loss, x, budget, generator, progress, self.ema_net)

    def simple_loss(self, x0: torch.Tensor, generator: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
        """Ho et al. Algorithm 1: E_{t, eps} ||target - net(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t)||^2, mean over dims
        (``y``: the labels of a class-conditional variant, some already dropped to the null class)."""
        if self.modality == IMAGES and self.config["dequantize"]:
            x0 = dequantise_images(x0, generator)
        t = torch.randint(0, self.vp_schedule.T, (x0.shape[0],), generator=generator)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        alpha_bar = self.vp_schedule.alphas_cumprod[t]
        x_t = _rows(alpha_bar.sqrt(), x0) * x0 + _rows((1 - alpha_bar).sqrt(), x0) * eps
        target = eps_x0_to_output(eps, x0, alpha_bar.to(x0.device), self.prediction_type)
        return ((self.model_output(x_t, t.to(x0.device), net=self.net, y=y) - target) ** 2).mean()

    training_loss = simple_loss  # the loss a class-conditional variant's fit calls (genbench.models.guidance)

    # -- sampling ------------------------------------------------------------------------------

    @classmethod
    def supported_samplers(cls) -> list[str]:
        return vp_model_samplers()

    @classmethod
    def default_steps(cls, sampler: str, config: Mapping[str, Any] | None = None) -> int | None:
        """None for ``ode`` (adaptive), the full chain T for ancestral and Euler-Maruyama, else ``DEFAULT_STEPS`` or 50."""
        entry = SAMPLERS.get(sampler)
        if entry.adaptive and not entry.stochastic:
            return None
        if sampler in FULL_CHAIN:
            return int((config or {}).get("num_train_timesteps", 1000))
        return DEFAULT_STEPS.get(sampler, 50 if entry.kind == VP_KIND else 32)

    @classmethod
    def sampling_options(cls, sampler: str, config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """``eta`` with ``ddim``; ``timestep_spacing`` with every ``vp`` sampler (sigma-form ones walk ``sigma_schedule``)."""
        options = {}
        if sampler == "ddim":
            options["eta"] = "DDIM's eta in [0, 1] (Song et al. 2021, Eq. 16): 0 deterministic (default), 1 DDPM's posterior variance"
        if sampler in SAMPLERS and SAMPLERS.get(sampler).kind == VP_KIND:
            options["timestep_spacing"] = (f"respacing of the train timesteps: {', '.join(SPACINGS)} (default: the model's "
                                           "timestep_spacing config, trailing)")
        return options

    @classmethod
    def check_sampling_options(cls, sampler: str, options: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        """Names from ``sampling_options``; eta a number in [0, 1]; a spacing the sampler can walk."""
        super().check_sampling_options(sampler, options, config)
        eta = options.get("eta", 0.0)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise UsageError(f"DDIM's eta must be a number in [0, 1], got {eta!r}; 0 is deterministic DDIM, 1 is DDPM's variance")
        if "timestep_spacing" in options:
            spacings = DPMPP_SPACINGS if sampler == "dpmpp_2m_discrete" else SPACINGS
            check_choice(options["timestep_spacing"], list(spacings), f"timestep spacing of the {sampler} sampler")

    def prediction(self, noise: SeededNoise, options: Mapping[str, Any]) -> Any:
        """The raw prediction (x_t, t) -> eps or v the sampler walks, counting network passes in ``calls``.
        A class-conditional variant returns its guided prediction, which counts both passes."""
        return CountingDenoiser(self.model_output)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "ddpm", steps: int | None = None,
               **options: Any) -> tuple[torch.Tensor, float]:
        """x_T = noise (vp samplers) or sigma_max * noise (sigma-form samplers); NFE = network calls per sample.

        ``options`` (``sampling_options``): ``eta`` for ddim, ``timestep_spacing`` for vp samplers (``guidance`` for
        the class-conditional variant)."""
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        self.check_sampling_options(sampler, options, self.config)
        default = self.default_steps(sampler, self.config)
        steps = 2 if default is None else (steps if steps is not None else default)
        self.eval()
        c = self.config
        clip = 1.0 if self.modality == IMAGES and c["clip_denoised"] else None
        spacing = options.get("timestep_spacing", c["timestep_spacing"])
        output = self.prediction(noise, options)
        # the model as the sampler sees it: this prediction and these scheduler settings
        view = SimpleNamespace(vp_schedule=self.vp_schedule, prediction_type=self.prediction_type, model_output=output,
                               scheduler_config={**self.scheduler_config, "timestep_spacing": spacing})
        fn_options = {"eta": float(options["eta"])} if "eta" in options else {}
        x, _ = sample_vp_model(view, noise, sampler, steps, self.data_shape, self.device, spacing,
                               0, c["sigma_schedule"], c["rho"], clip_x0=clip, sampler_options=fn_options)
        if self.modality == IMAGES:
            x = x.clamp(-1.0, 1.0)
        return x, float(output.calls)

    # -- likelihood ----------------------------------------------------------------------------

    @property
    def discrete_likelihood(self) -> bool:
        """The VLB of images is a log-probability of the 8-bit pixels (discretised decoder)."""
        return self.likelihood_kind == "vlb" and self.modality == IMAGES

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Minus the VLB (nats per example; images: log P of the 8-bit pixels) or the ODE log-density (``ode``)."""
        self.eval()
        noise = noise if noise is not None else likelihood_noise(len(x))
        x = x.to(self.device).float()
        if self.likelihood_kind == "ode":
            exact = math.prod(self.data_shape) <= self.config["exact_divergence_dims"]
            tol = self.config["likelihood_tol"]
            s = self.vp_schedule
            return pf_ode_log_likelihood(self.denoise, x, s.sigma_min, s.sigma_max, exact, noise, rtol=tol, atol=tol)
        if self.modality == IMAGES:
            # the bin centre u / 127.5 - 1 of the dequantised pixel (u + U) / 128 - 1
            x = torch.floor((x + 1.0) * 128.0).clamp(0, 255) / 127.5 - 1.0
        return -self.vlb_terms(x, noise).sum(1)

    def vlb_timesteps(self, noise: SeededNoise) -> list[torch.Tensor]:
        """The timesteps t in 1..T-1 whose KL terms are evaluated, as [N] tensors: every t, or with ``vlb_timesteps``
        K one uniform draw per stratum [1 + j (T-1)/K, 1 + (j+1)(T-1)/K) for each example from its own generator."""
        T, k = self.vp_schedule.T, self.config["vlb_timesteps"]
        if k is None:
            return [torch.full((len(noise),), t, dtype=torch.long) for t in range(1, T)]
        u = noise.rand(k, dtype=torch.float64).cpu()  # [N, K]
        return [(1 + ((j + u[:, j]) * (T - 1) / k).long()).clamp(max=T - 1) for j in range(k)]

    def vlb_terms(self, x: torch.Tensor, noise: SeededNoise) -> torch.Tensor:
        """[N, 3] nats: (L_T prior KL, sum of the KL terms L_{t-1} (reweighted when sampled), L_0 decoder NLL)."""
        s = self.vp_schedule
        # L_T = KL(q(x_{T-1} | x) || N(0, I))
        ab_T = float(s.alphas_cumprod[-1])
        prior = gaussian_kl(math.sqrt(ab_T) * x, 1.0 - ab_T, torch.zeros_like(x), 1.0)
        ts = self.vlb_timesteps(noise)
        kl = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for t in ts:
            kl += self.kl_term(x, t, noise).double()
        kl *= (s.T - 1) / len(ts)
        # L_0 = -log p(x | x_0): decoder N(x_0-prediction, beta_0)
        x0_hat, _ = self._predict_at(x, torch.zeros(len(x), dtype=torch.long), noise)
        std0 = math.sqrt(float(s.betas[0]))
        if self.modality == IMAGES:
            decoder = -discretised_gaussian_log_prob(x, x0_hat, std0)
        else:
            decoder = -torch.distributions.Normal(x0_hat, std0).log_prob(x).flatten(1).sum(1)
        return torch.stack([prior.double(), kl, decoder.double()], dim=1)

    def _predict_at(self, x: torch.Tensor, t: torch.Tensor, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0 prediction, x_t) at per-example timesteps t [N] for x_t = sqrt(ab_t) x + sqrt(1 - ab_t) eps, eps from ``noise``."""
        ab = self.vp_schedule.alphas_cumprod[t]  # [N] float64
        eps = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
        x_t = _rows(ab.sqrt(), x) * x + _rows((1 - ab).sqrt(), x) * eps
        _, x0_hat = output_to_eps_x0(self.model_output(x_t, t.to(x.device, x.dtype)), x_t, ab, self.prediction_type)
        if self.modality == IMAGES and self.config["clip_denoised"]:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        return x0_hat, x_t

    def kl_term(self, x: torch.Tensor, t: torch.Tensor, noise: SeededNoise) -> torch.Tensor:
        """L_{t-1} = KL(q(x_{t-1} | x_t, x) || p(x_{t-1} | x_t)) [N] at per-example t [N] >= 1, p's variance beta_t (Ho Eq. 5)."""
        ab = self.vp_schedule.alphas_cumprod
        ab_t, ab_s = ab[t], ab[t - 1]
        x0_hat, x_t = self._predict_at(x, t, noise)
        # posterior q(x_{t-1} | x_t, x_0) of the step t -> t-1 (Ho et al. Eqs. 6-7): [N] each
        beta = 1.0 - ab_t / ab_s
        coef_x0 = _rows(ab_s.sqrt() * beta / (1.0 - ab_t), x)
        beta_tilde = (1.0 - ab_s) / (1.0 - ab_t) * beta
        # KL of two Gaussians with variances beta_tilde (q) and beta (p); both means share the x_t term,
        # so they are apart by coef_x0 (x - x0_hat)
        var_ratio = _rows(beta_tilde / beta, x)
        kl = 0.5 * (-var_ratio.log() + var_ratio - 1.0 + coef_x0**2 * (x - x0_hat) ** 2 / _rows(beta, x))
        return kl.flatten(1).sum(1)
