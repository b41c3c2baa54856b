"""``consistency_distillation``: a consistency model distilled from a genbench diffusion teacher (Song, Dhariwal,
Chen & Sutskever 2023, "Consistency Models", Algorithm 2, CD), next to consistency training (``consistency``).

The teacher is a genbench recipe of the ``diffusion`` (EDM) or ``ddpm`` family (config ``teacher``),
trained inside ``fit`` on the same data with the same generator (its training keys may be overridden
by ``teacher_train``, its config by ``teacher_config``); only the student is saved. The student's noise
range is the teacher's (EDM: its sigma_min and sigma_max; DDPM: sigma of t = 0 and t = T-1).

Loss (CM Algorithm 2 with the Heun solver, N levels, sigma_1 < ... < sigma_N Karras rho = 7): n ~ U{1, ..., N-1},
x_{n+1} = x + sigma_{n+1} z, x_hat_n = one Heun step of the teacher's probability-flow ODE
(Karras et al. 2022, Algorithm 1) from sigma_{n+1} to sigma_n, loss d(f_theta(x_{n+1}, sigma_{n+1}),
f_theta^-(x_hat_n, sigma_n)) with the pseudo-Huber metric d (iCT; the paper's LPIPS needs ImageNet
weights) and the target network theta^- an EMA of theta with decay ``target_ema`` (CM: mu = 0.95).
Sampling is the ``consistency`` sampler, 1 to 4 steps (default 1), with the sampling EMA of the budget.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch

from genbench.data.base import IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, Progress, TrainBudget, build_model
from genbench.models.consistency import ConsistencyModel, pseudo_huber, training_sigmas
from genbench.models.nets.training import dequantise_images, init_parameters, train_with_adam, update_ema

TEACHER_FAMILIES = ("diffusion", "ddpm")


def heun_ode_step(denoiser, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Heun step of dx/dsigma = (x - D(x; sigma)) / sigma from sigma [B] to sigma_next [B] > 0 (EDM Algorithm 1)."""
    rows = (-1,) + (1,) * (x.ndim - 1)
    s, s_next = sigma.view(rows), sigma_next.view(rows)
    d = (x - denoiser(x, sigma)) / s
    x_euler = x + (s_next - s) * d
    d_next = (x_euler - denoiser(x_euler, sigma_next)) / s_next
    return x + (s_next - s) * 0.5 * (d + d_next)


def teacher_sigma_range(teacher) -> tuple[float, float]:
    """(sigma_min, sigma_max) over which the teacher's denoiser was trained."""
    if hasattr(teacher, "vp_schedule"):
        return teacher.vp_schedule.sigma_min, teacher.vp_schedule.sigma_max
    return float(teacher.sigma_min), float(teacher.sigma_max)


@MODELS.register("consistency_distillation",
                 description="consistency model distilled from a diffusion/ddpm teacher (Song et al. 2023, CD); 1-4 steps")
class ConsistencyDistillation(ConsistencyModel):
    """The consistency-model student of ``consistency`` (same network, scalings and sampler), trained by CD."""

    family = "consistency_distillation"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 256, depth: int = 4, emb_dim: int = 64,
                 sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 n_levels: int = 18, target_ema: float = 0.95, teacher: str = "diffusion",
                 teacher_config: dict | None = None, teacher_train: dict | None = None, dequantize: bool = True):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, depth=depth, emb_dim=emb_dim,
                         sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                         dequantize=dequantize)
        if n_levels < 2 or not 0 <= target_ema < 1:
            raise UsageError("consistency_distillation needs n_levels >= 2 and 0 <= target_ema < 1; fix the recipe's config")
        # only this family's keys (consistency training's n_start, n_end, p_mean, p_std do not apply)
        self.config = dict(hidden=hidden, depth=depth, emb_dim=emb_dim, sigma_data=sigma_data, sigma_min=sigma_min,
                           sigma_max=sigma_max, rho=rho, n_levels=n_levels, target_ema=target_ema, teacher=teacher,
                           teacher_config=dict(teacher_config or {}), teacher_train=dict(teacher_train or {}),
                           dequantize=dequantize)

    def train_teacher(self, data: Samples, generator: torch.Generator):
        """The teacher recipe, built for this data and trained on it (config and training overrides applied)."""
        from genbench.recipes import load_recipe

        c = self.config
        recipe = load_recipe(c["teacher"], self.modality, c["teacher_train"] or None)
        if recipe.family not in TEACHER_FAMILIES:
            raise UsageError(f"consistency distillation needs a diffusion teacher ({', '.join(TEACHER_FAMILIES)}); "
                             f"recipe {c['teacher']!r} is a {recipe.family!r} model")
        teacher = build_model(recipe.family, self.data_shape, self.modality, self.num_classes,
                              **{**recipe.config, **c["teacher_config"]}).to(self.device)
        report = teacher.fit(data, recipe.budget, generator)
        return teacher.eval().requires_grad_(False), report

    def cd_loss(self, x0: torch.Tensor, teacher, target_net, generator: torch.Generator) -> torch.Tensor:
        """CM Algorithm 2 on a minibatch x0 [B, ...]: student at sigma_{n+1} against the target at the teacher's Heun step."""
        c = self.config
        if self.modality == IMAGES and c["dequantize"]:
            x0 = dequantise_images(x0, generator)
        sigmas = training_sigmas(c["n_levels"], c["sigma_min"], c["sigma_max"], c["rho"]).to(x0.device)
        # n ~ U{0, ..., N-2}: sigma_n < sigma_{n+1}, [B] each
        n = torch.randint(0, c["n_levels"] - 1, (x0.shape[0],), generator=generator).to(x0.device)
        sigma, sigma_next = sigmas[n].float(), sigmas[n + 1].float()
        z = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_next = x0 + sigma_next.view((-1,) + (1,) * (x0.ndim - 1)) * z
        with torch.no_grad():
            x_hat = heun_ode_step(teacher.denoise, x_next, sigma_next, sigma)
            target = self._consistency_with(target_net, x_hat, sigma)
        online = self.consistency_fn(x_next, sigma_next)
        return pseudo_huber(online, target, 0.00054 * math.sqrt(x0[0].numel())).mean()

    def _consistency_with(self, net, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """f(x, sigma) computed with another copy of the network (the target net)."""
        own = self.net
        self.net = net
        try:
            return self.consistency_fn(x, sigma)
        finally:
            self.net = own

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Train the teacher, take its noise range, then distil with Adam; sampling weights: EMA (``budget.ema``) or last."""
        teacher, teacher_report = self.train_teacher(data, generator)
        self.config["sigma_min"], self.config["sigma_max"] = teacher_sigma_range(teacher)
        init_parameters(self.net, generator)
        target_net = copy.deepcopy(self.net).requires_grad_(False)
        ema_net = copy.deepcopy(self.net).requires_grad_(False)
        x = data.x.to(self.device).float()
        step = itertools.count()

        def loss(batch: torch.Tensor) -> torch.Tensor:
            # theta^- <- mu theta^- + (1 - mu) theta after each optimiser step (before the next loss)
            if next(step) > 0:
                update_ema(target_net, self.net, self.config["target_ema"])
            return self.cd_loss(batch, teacher, target_net, generator)

        report = train_with_adam(self.net, loss, x, budget, generator, progress, ema_net)
        self.net.load_state_dict(ema_net.state_dict())
        return {**report, **{f"teacher_{k}": float(v) for k, v in teacher_report.items()}}
