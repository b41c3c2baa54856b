"""``gan``: an MLP GAN with the non-saturating loss and an R1 gradient penalty.

Objective (Goodfellow et al. 2014, non-saturating form; Mescheder, Geiger & Nowozin 2018,
"Which training methods for GANs do actually converge?", R1 regulariser, eq. 9)::

    L_D = softplus(-D(x)) + softplus(D(G(z))) + gamma / 2 * ||grad_x D(x)||^2    (x real)
    L_G = softplus(-D(G(z)))

R1 on the real data keeps the discriminator's gradient small on the data manifold, which
makes small-data training converge without a Lipschitz-constrained critic. Images are
flattened (fine for 8x8 and 28x28); the generator ends in tanh so samples lie in [-1, 1].
Sampling is one generator pass (NFE 1). A GAN has no likelihood.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from genbench.data.base import IMAGES, ROUND, Samples
from genbench.errors import RunFailure, UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.mlp import MLP
from genbench.models.nets.training import (
    ema_decay_at,
    init_parameters,
    minibatch_indices,
    update_ema,
)
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """Batch mean of ||grad_x D(x)||^2 at real data x (Mescheder et al. 2018, eq. 9); differentiable."""
    (grad,) = torch.autograd.grad(d_real.sum(), x_real, create_graph=True)
    # [B, ...] -> [B]
    return grad.pow(2).flatten(1).sum(1).mean()


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Logistic loss of the discriminator: E softplus(-D(x)) + E softplus(D(G(z)))."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss E softplus(-D(G(z))) = -E log sigmoid(D(G(z)))."""
    return F.softplus(-d_fake).mean()


@MODELS.register("gan", description="MLP GAN, non-saturating loss + R1 penalty (Mescheder et al. 2018); NFE 1")
class GAN(GenerativeModel):
    """Generator and discriminator MLPs on flattened data; sampling is one generator pass."""

    family = "gan"
    sample_quantisation = ROUND  # trained on the 8-bit grid u / 127.5 - 1

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int = 16, hidden: int = 256,
                 depth: int = 3, r1_gamma: float = 1.0, d_steps: int = 1, beta1: float = 0.5, beta2: float = 0.9):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, hidden=hidden, depth=depth,
                         r1_gamma=r1_gamma, d_steps=d_steps, beta1=beta1, beta2=beta2)
        if latent_dim < 1 or depth < 1 or d_steps < 1 or r1_gamma < 0:
            raise UsageError("gan needs latent_dim >= 1, depth >= 1, d_steps >= 1 and r1_gamma >= 0; fix the recipe's config")
        d = math.prod(self.data_shape)
        self.generator = MLP(latent_dim, d, hidden, depth)
        self.discriminator = MLP(d, 1, hidden, depth)

    def generate(self, z: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        """Latents [N, latent_dim] -> samples [N, *data_shape] (tanh-squashed for images)."""
        x = (net or self.generator)(z)
        if self.modality == IMAGES:
            x = torch.tanh(x)
        return x.reshape(z.shape[0], *self.data_shape)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Samples [N, *data_shape] -> logits [N]."""
        return self.discriminator(x.flatten(1)).squeeze(1)

    def _latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config["latent_dim"], generator=generator).to(self.device)

    def _discriminator_step(self, opt: torch.optim.Optimizer, x_real: torch.Tensor, generator: torch.Generator) -> float:
        with torch.no_grad():
            x_fake = self.generate(self._latents(len(x_real), generator))
        x_real = x_real.detach().requires_grad_(True)
        d_real = self.discriminate(x_real)
        # logistic loss + gamma / 2 * R1
        loss = discriminator_loss(d_real, self.discriminate(x_fake))
        loss = loss + 0.5 * self.config["r1_gamma"] * r1_penalty(d_real, x_real)
        return _adam_step(opt, loss)

    def _generator_step(self, opt: torch.optim.Optimizer, n: int, generator: torch.Generator) -> float:
        return _adam_step(opt, generator_loss(self.discriminate(self.generate(self._latents(n, generator)))))

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Alternate ``d_steps`` discriminator steps and one generator step with Adam; EMA of G per ``budget.ema``."""
        init_parameters(self, generator)
        x = data.x.to(self.device).float()
        betas = (self.config["beta1"], self.config["beta2"])
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=budget.lr, betas=betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=budget.lr, betas=betas)
        ema_g = copy.deepcopy(self.generator).requires_grad_(False)
        batches = minibatch_indices(len(x), budget.batch_size, generator)
        loss_d = loss_g = math.nan
        for step in range(budget.steps):
            for _ in range(self.config["d_steps"]):
                loss_d = self._discriminator_step(opt_d, x[next(batches).to(self.device)], generator)
            loss_g = self._generator_step(opt_g, budget.batch_size, generator)
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                raise RunFailure(f"gan training diverged at step {step} (loss_d {loss_d}, loss_g {loss_g}); "
                                 f"lower the learning rate (now {budget.lr}) or raise r1_gamma")
            update_ema(ema_g, self.generator, ema_decay_at(step, budget.ema) if budget.ema else 0.0)
            if progress:
                progress(step + 1, budget.steps)
        self.generator.load_state_dict(ema_g.state_dict())
        return {"loss_d": float(loss_d), "loss_g": float(loss_g), "steps": float(budget.steps)}

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        """z ~ N(0, I) per sample, then one generator pass (NFE 1, counted)."""
        check_choice(sampler, self.supported_samplers(), "sampler for the gan family")
        z = noise.randn(self.config["latent_dim"]).to(self.device)
        net = CountingDenoiser(lambda z_, _: self.generate(z_))
        return net(z, None), float(net.calls)


def _adam_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())
