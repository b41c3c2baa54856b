"""The discrete variance-preserving (VP) process shared by DDPM, the diffusers adapter and the discrete samplers.

Forward process (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Eq. 4), t = 0 .. T-1::

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),   alpha_bar_t = prod_{s <= t} (1 - beta_s)

``VPSchedule`` holds betas and alphas_cumprod (float64) for diffusers' schedule names ``linear``,
``scaled_linear`` and ``squaredcos_cap_v2`` (the cosine schedule of Nichol and Dhariwal 2021,
Eq. 17, betas clipped at 0.999), defined exactly as diffusers' schedulers define them.

Sigma form (Karras et al. 2022, Sec. 3; k-diffusion's ``DiscreteSchedule``): x_t / sqrt(alpha_bar_t)
= x_0 + sigma_t eps with sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t). ``VPDenoiser`` turns a
discrete model into the EDM denoiser D(x; sigma) every ``diffusion`` sampler takes (k-diffusion's
``DiscreteEpsDDPMDenoiser``): x_t = x / sqrt(1 + sigma^2), t = the (fractional) timestep whose
sigma is ``sigma``, found by linear interpolation in log sigma.

Model protocol (``DiscreteVPModel``): ``vp_schedule`` (a VPSchedule), ``prediction_type``
(``epsilon``, ``v_prediction`` or ``sample``) and the raw network call ``model_output(x_t, t)``
with t a float tensor [N] of train timesteps. Discrete samplers (kind ``vp``) have the signature::

    sample_<name>(model: DiscreteVP, x_T, timesteps, noise) -> x_0

where ``timesteps`` is a decreasing int64 tensor [steps + 1] of train timesteps ending in -1 (the
clean data, alpha_bar = 1); the model is called at timesteps[:-1]; x_T starts as ``noise.randn``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.registry import check_choice
from genbench.seeding import SeededNoise

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("linspace", "leading", "trailing", "uniform", "quadratic")
COSINE_S = 0.008  # Nichol and Dhariwal 2021, Eq. 17 offset
MAX_BETA = 0.999  # Nichol and Dhariwal 2021: betas clipped "to prevent singularities near t = T"

ModelOutput = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_betas(num_train_timesteps: int, max_beta: float = MAX_BETA) -> torch.Tensor:
    """Nichol and Dhariwal 2021 Eq. 17: alpha_bar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), beta_t = 1 - alpha_bar(t+1)/alpha_bar(t)."""
    T = num_train_timesteps

    def alpha_bar(u: float) -> float:
        return math.cos((u + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)],
                        dtype=torch.float64)


def make_betas(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> torch.Tensor:
    """betas [T] float64 for a diffusers schedule name (same formulas as diffusers' DDPMScheduler)."""
    check_choice(beta_schedule, list(BETA_SCHEDULES), "beta schedule")
    T = num_train_timesteps
    if beta_schedule == "linear":
        # Ho et al. 2020: linear from 1e-4 to 0.02
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        # latent diffusion: linear in sqrt(beta)
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    return cosine_betas(T)


@dataclass(frozen=True)
class VPSchedule:
    """A discrete VP noise schedule: betas, alphas_cumprod and sigmas (float64, indexed by train timestep).

    ``trained_betas`` (as diffusers' ``trained_betas``) overrides the named schedule, so an adapter
    can hand over a scheduler's own betas bit for bit.
    """

    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    trained_betas: tuple[float, ...] | None = None
    betas: torch.Tensor = field(init=False, repr=False, compare=False)
    alphas_cumprod: torch.Tensor = field(init=False, repr=False, compare=False)
    sigmas: torch.Tensor = field(init=False, repr=False, compare=False)
    log_sigmas: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if int(self.num_train_timesteps) != self.num_train_timesteps or self.num_train_timesteps < 2:
            raise UsageError(f"num_train_timesteps must be an integer >= 2, got {self.num_train_timesteps!r}")
        if self.trained_betas is not None:
            betas = torch.tensor(self.trained_betas, dtype=torch.float64)
            if betas.shape != (self.num_train_timesteps,):
                raise UsageError(f"trained_betas has {betas.numel()} values for {self.num_train_timesteps} timesteps; "
                                 "pass one beta per train timestep")
        else:
            betas = make_betas(self.beta_schedule, self.beta_start, self.beta_end, self.num_train_timesteps)
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise UsageError("every beta must lie in (0, 1); fix beta_start / beta_end")
        # alpha_bar_t = prod_{s <= t} (1 - beta_s): [T], decreasing
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", alphas_cumprod)
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "log_sigmas", sigmas.log())

    @classmethod
    def from_config(cls, config: dict) -> "VPSchedule":
        """From a dict with (a subset of) the keys of this dataclass, e.g. a diffusers scheduler config."""
        keys = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "trained_betas")
        kwargs = {k: config[k] for k in keys if config.get(k) is not None}
        if "trained_betas" in kwargs:
            kwargs["trained_betas"] = tuple(float(b) for b in kwargs["trained_betas"])
        return cls(**kwargs)

    @property
    def T(self) -> int:
        return int(self.num_train_timesteps)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    # -- discrete t <-> sigma (k-diffusion DiscreteSchedule) ----------------------------------------

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma at (fractional) timesteps t in [0, T-1], interpolating log sigma linearly in t; -1 -> 0."""
        t = torch.as_tensor(t, dtype=torch.float64)
        tc = t.clamp(0, self.T - 1)
        low = tc.floor().long()
        high = tc.ceil().long()
        w = tc - low
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        # the grid's own value at integer t (exp(log) would round)
        sigma = torch.where(w == 0, self.sigmas[low], log_sigma.exp())
        return torch.where(t < 0, torch.zeros_like(sigma), sigma)

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """Fractional timestep of sigma by linear interpolation in log sigma (clamped to [0, T-1]); float64.

        ``quantize`` returns the nearest discrete timestep in log sigma instead.
        """
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log()
        if quantize:
            return (log_sigma.reshape(-1, 1) - self.log_sigmas).abs().argmin(dim=1).reshape(log_sigma.shape).double()
        # index of the last log_sigma <= log_sigma, kept in [0, T-2]
        low = (torch.searchsorted(self.log_sigmas, log_sigma.contiguous(), right=True) - 1).clamp(0, self.T - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return low + w

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer timesteps t (float64), with alpha_bar(-1) = 1 (the clean data)."""
        t = torch.as_tensor(t, dtype=torch.long)
        ab = self.alphas_cumprod[t.clamp(min=0)]
        return torch.where(t < 0, torch.ones_like(ab), ab)

    # -- sampling timesteps ----------------------------------------------------------------------

    def timesteps(self, steps: int, spacing: str = "trailing", steps_offset: int = 0) -> torch.Tensor:
        """Decreasing int64 timesteps [steps + 1] ending in -1 (clean): see ``discrete_timesteps``."""
        t = discrete_timesteps(self.T, steps, spacing, steps_offset)
        return torch.cat([t, torch.tensor([-1])])


def discrete_timesteps(T: int, steps: int, spacing: str = "trailing", steps_offset: int = 0) -> torch.Tensor:
    """``steps`` decreasing int64 train timesteps in [0, T-1].

    ``linspace``, ``leading`` (+ ``steps_offset``) and ``trailing`` are diffusers' ``timestep_spacing``
    (``linspace`` = the evenly strided respacing of Nichol and Dhariwal 2021, both ends included;
    ``trailing`` starts at T-1, Lin et al. 2024); ``uniform`` (every (T // steps)-th timestep from 0)
    and ``quadratic`` (int(linspace(0, sqrt(0.8 T), steps)^2)) are the DDIM paper's (Song et al. 2021,
    App. D.2). ``steps = T`` with ``linspace``/``leading``/``trailing`` is the full chain.
    """
    check_choice(spacing, list(SPACINGS), "timestep spacing")
    if int(steps) != steps or steps < 1:
        raise UsageError(f"the number of sampling steps must be a positive integer, got {steps!r}; pass --steps 1 or more")
    if steps > T:
        raise UsageError(f"{steps} steps exceed the model's {T} train timesteps; pass --steps {T} or fewer")
    if spacing == "linspace":
        t = np.linspace(0, T - 1, steps).round()[::-1]
    elif spacing == "leading":
        t = (np.arange(0, steps) * (T // steps)).round()[::-1] + steps_offset
    elif spacing == "trailing":
        t = np.round(np.arange(T, 0, -T / steps)) - 1
    elif spacing == "uniform":
        t = np.arange(0, T, T // steps)[:steps][::-1]
    else:
        t = (np.linspace(0, math.sqrt(T * 0.8), steps) ** 2).astype(np.int64)[::-1]
    t = torch.from_numpy(np.ascontiguousarray(t).astype(np.int64))
    if len(t) != steps or bool((t[1:] >= t[:-1]).any()) or int(t.min()) < 0 or int(t.max()) > T - 1:
        raise UsageError(f"{spacing!r} spacing gives no {steps} distinct timesteps in [0, {T - 1}]; "
                         "use fewer steps or 'trailing' spacing")
    return t


# -- model protocol and output conversions -------------------------------------------------------------


@runtime_checkable
class DiscreteVPModel(Protocol):
    """What a discrete VP model exposes (DDPM, a diffusers UNet, a user's network)."""

    vp_schedule: VPSchedule
    prediction_type: str

    def model_output(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


def _rows(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, ..., 1] in x's dtype and device."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def output_to_eps_x0(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                     prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, x_0) from a raw output at x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps; ``alpha_bar`` [N].

    v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans and Ho 2022, "Progressive Distillation", App. D).
    """
    a, s = _rows(alpha_bar.sqrt(), x_t), _rows((1 - alpha_bar).sqrt(), x_t)
    if prediction_type == "epsilon":
        eps = output
        return eps, (x_t - s * eps) / a
    if prediction_type == "v_prediction":
        return s * x_t + a * output, a * x_t - s * output
    if prediction_type == "sample":
        x0 = output
        return (x_t - a * x0) / s, x0
    raise UsageError(f"unknown prediction type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}")


def eps_x0_to_output(eps: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The training target of a prediction type: eps, v = sqrt(ab) eps - sqrt(1 - ab) x_0, or x_0."""
    check_choice(prediction_type, list(PREDICTION_TYPES), "prediction type")
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    return _rows(alpha_bar.sqrt(), eps) * eps - _rows((1 - alpha_bar).sqrt(), x0) * x0


class DiscreteVP:
    """What a ``vp`` sampler receives: the raw call (counted by its wrapper), the schedule and prediction type."""

    def __init__(self, model_output: ModelOutput, schedule: VPSchedule, prediction_type: str = "epsilon",
                 clip_x0: float | None = None, config: dict | None = None):
        check_choice(prediction_type, list(PREDICTION_TYPES), "prediction type")
        self.model_output = model_output
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_x0 = clip_x0  # x_0 predictions clamped to [-clip_x0, clip_x0] (Ho et al.'s images), eps kept
        # scheduler settings (a diffusers scheduler config); samplers that follow a diffusers scheduler read
        # them with that scheduler's defaults for missing keys
        self.config = dict(config or {})

    @classmethod
    def of(cls, model: DiscreteVPModel, model_output: ModelOutput | None = None,
           clip_x0: float | None = None) -> "DiscreteVP":
        return cls(model_output or model.model_output, model.vp_schedule, model.prediction_type, clip_x0,
                   getattr(model, "scheduler_config", None))

    def eps_x0(self, x_t: torch.Tensor, t: int | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps, x_0) predicted at one timestep t (>= 0) for the batch x_t; one model call.

        A fractional t uses alpha_bar = 1 / (1 + sigma(t)^2) with sigma interpolated in log sigma.
        """
        t_rows = torch.full((x_t.shape[0],), float(t), dtype=x_t.dtype, device=x_t.device)
        out = self.model_output(x_t, t_rows)
        ab = self.alpha_bar_at(t)
        eps, x0 = output_to_eps_x0(out, x_t, torch.full((x_t.shape[0],), ab, dtype=torch.float64), self.prediction_type)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        return eps, x0

    def alpha_bar_at(self, t: int | float) -> float:
        """alpha_bar at a timestep (1 at t = -1; fractional t through the log-sigma interpolation)."""
        if float(t) == int(t):
            return float(self.schedule.alpha_bar(torch.tensor(int(t))))
        sigma = float(self.schedule.t_to_sigma(torch.tensor(float(t))))
        return 1.0 / (1.0 + sigma**2)


class VPDenoiser:
    """EDM-form denoiser D(x; sigma) of a discrete VP model (k-diffusion ``DiscreteEpsDDPMDenoiser``).

    x is on the sigma scale, x = x_0 + sigma eps; the network sees x_t = x / sqrt(1 + sigma^2) at the
    fractional timestep t(sigma) (``quantize``: the nearest discrete one), and D = the x_0 estimate.
    """

    def __init__(self, model_output: ModelOutput, schedule: VPSchedule, prediction_type: str = "epsilon",
                 quantize: bool = False):
        check_choice(prediction_type, list(PREDICTION_TYPES), "prediction type")
        self.model_output = model_output
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.quantize = quantize

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
        t = self.schedule.sigma_to_t(sigma, quantize=self.quantize)
        # c_in = 1 / sqrt(1 + sigma^2) = sqrt(alpha_bar) of the given sigma (also when t is quantised)
        alpha_bar = 1.0 / (1.0 + sigma**2)
        x_t = x * _rows(alpha_bar.sqrt(), x)
        out = self.model_output(x_t, t.to(device=x.device, dtype=x.dtype))
        _, x0 = output_to_eps_x0(out, x_t, alpha_bar, self.prediction_type)
        return x0


def vp_sigma_range(schedule: VPSchedule) -> tuple[float, float]:
    """(sigma_min, sigma_max) of the train timesteps, the range sigma-form samplers walk."""
    return schedule.sigma_min, schedule.sigma_max


def initial_vp_noise(noise: SeededNoise, data_shape: tuple[int, ...]) -> torch.Tensor:
    """x_T = noise (standard normal, per-sample seeds): the start of every ``vp`` sampler."""
    return noise.randn(*data_shape)


# -- sampling a discrete VP model with any sampler --------------------------------------------------------

VP_KIND = "vp"  # the sampler kind of discrete-time VP samplers: fn(DiscreteVP, x_T, timesteps, noise) -> x_0


def vp_model_samplers() -> list[str]:
    """Every sampler a discrete VP model runs: the ``vp`` kind natively, the ``diffusion`` kind through VPDenoiser."""
    from genbench.samplers.base import samplers_of_kind

    return samplers_of_kind(VP_KIND) + samplers_of_kind("diffusion")


def sample_vp_model(model: DiscreteVPModel, noise: SeededNoise, sampler: str, steps: int,
                    data_shape: tuple[int, ...], device: torch.device | str = "cpu", spacing: str = "trailing",
                    steps_offset: int = 0, sigma_schedule: str = "karras", rho: float = 7.0,
                    clip_x0: float | None = None, sampler_options: dict | None = None) -> tuple[torch.Tensor, float]:
    """Draw len(noise) samples of a discrete VP model with any registered sampler; returns (x_0, NFE per sample).

    ``vp`` samplers: x_T = noise, timesteps = the sampler's own ``timesteps`` hook (samplers that follow a
    diffusers scheduler read the model's ``scheduler_config``), else ``vp_schedule.timesteps(steps, spacing, steps_offset)``.
    ``diffusion`` samplers: x = sigma_max noise over the ``sigma_schedule`` from sigma(T-1) to sigma(0),
    the model seen through ``VPDenoiser``. ``clip_x0`` clamps the x_0 predictions of ``vp`` samplers only.
    ``sampler_options`` go to the sampler function as keywords (DDIM's ``eta``).
    The NFE counts the calls of ``model.model_output``.
    """
    from genbench.samplers.base import SAMPLERS, CountingDenoiser
    from genbench.samplers.schedules import build_sigmas

    entry = SAMPLERS.get(sampler)
    schedule = model.vp_schedule
    counted = CountingDenoiser(model.model_output)
    if entry.kind == VP_KIND:
        vp = DiscreteVP.of(model, counted, clip_x0)
        # a sampler that follows a diffusers scheduler builds its own timesteps from the scheduler settings
        timesteps = entry.timesteps(vp, steps) if entry.timesteps else schedule.timesteps(steps, spacing, steps_offset)
        x = initial_vp_noise(noise, data_shape).to(device)
        x = entry.fn(vp, x, timesteps, noise, **(sampler_options or {}))
    elif entry.kind == "diffusion":
        sigmas = build_sigmas(sigma_schedule, steps, schedule.sigma_min, schedule.sigma_max, rho)
        x = float(sigmas[0]) * noise.randn(*data_shape).to(device)
        x = entry.fn(VPDenoiser(counted, schedule, model.prediction_type), x, sigmas.to(device), noise,
                     **(sampler_options or {}))
    else:
        raise UsageError(f"sampler {sampler!r} is of kind {entry.kind!r}; a discrete VP model takes "
                         f"{', '.join(vp_model_samplers())}")
    return x, float(counted.calls)
