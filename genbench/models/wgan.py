"""``wgan``: Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of
Wasserstein GANs", NeurIPS, Algorithm 1), or with weight clipping (Arjovsky, Chintala & Bottou 2017,
"Wasserstein GAN", ICML, Algorithm 1) as ``constraint: clip``.

Critic D (the DCGAN discriminator without batch norm: the penalty is per example, and batch norm
would couple the examples) and generator G (the DCGAN generator)::

    L_D = E D(G(z)) - E D(x) + lambda E (||grad_x_hat D(x_hat)||_2 - 1)^2,  x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1]
    L_G = -E D(G(z))

``constraint: gp`` (default): lambda = 10, n_critic = 5 critic steps per generator step,
Adam(lr, beta1 = 0, beta2 = 0.9), the paper's settings. ``constraint: clip``: no penalty, every
critic weight clipped to [-c, c] after each critic step (c = 0.01), RMSProp(lr), n_critic = 5.
Sampling is one generator pass (NFE 1).
"""

from __future__ import annotations

import torch

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.dcgan import ConvGAN, optimizer_step
from genbench.registry import check_choice

CONSTRAINTS = ("gp", "clip")


def gradient_penalty(critic, x_real: torch.Tensor, x_fake: torch.Tensor, eps: torch.Tensor, gp_lambda: float) -> torch.Tensor:
    """lambda * mean_i (||grad D(x_hat_i)||_2 - 1)^2 at x_hat = eps x_real + (1 - eps) x_fake, eps [N]; differentiable."""
    # eps [N] -> [N, 1, ..., 1] to interpolate whole examples
    e = eps.reshape(-1, *([1] * (x_real.dim() - 1))).to(x_real)
    x_hat = (e * x_real + (1 - e) * x_fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return gp_lambda * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@MODELS.register("wgan", description="WGAN-GP (Gulrajani et al. 2017; lambda 10, n_critic 5) or weight-clipping WGAN (Arjovsky et al. 2017); NFE 1")
class WGAN(ConvGAN):
    family = "wgan"
    discriminator_norm = False

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int = 64, width: int = 32,
                 n_up: int | None = None, constraint: str = "gp", gp_lambda: float = 10.0, n_critic: int = 5,
                 clip: float = 0.01, beta1: float = 0.0, beta2: float = 0.9, bn_batches: int = 20):
        check_choice(constraint, list(CONSTRAINTS), "WGAN constraint")
        if n_critic < 1 or gp_lambda < 0 or clip <= 0:
            raise UsageError("wgan needs n_critic >= 1, gp_lambda >= 0 and clip > 0; fix the recipe's config")
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, width=width, n_up=n_up,
                         bn_batches=bn_batches, constraint=constraint, gp_lambda=gp_lambda, n_critic=n_critic,
                         clip=clip, beta1=beta1, beta2=beta2)

    def optimizers(self, lr: float):
        if self.config["constraint"] == "clip":  # Arjovsky et al. 2017: RMSProp (momentum-free)
            return (torch.optim.RMSprop(self.discriminator.parameters(), lr=lr),
                    torch.optim.RMSprop(self.generator.parameters(), lr=lr))
        return super().optimizers(lr)

    def discriminator_steps(self) -> int:
        return self.config["n_critic"]

    def discriminator_step(self, opt, x_real, y_real, labels, generator) -> float:
        with torch.no_grad():
            x_fake = self.generate(self.latents(len(x_real), generator), y_real)
        # L_D = E D(G(z)) - E D(x) (+ gradient penalty)
        loss = self.discriminate(x_fake, y_real).mean() - self.discriminate(x_real, y_real).mean()
        if self.config["constraint"] == "gp":
            eps = torch.rand(len(x_real), generator=generator)
            loss = loss + gradient_penalty(lambda x: self.discriminate(x, y_real), x_real, x_fake, eps,
                                           self.config["gp_lambda"])
        value = optimizer_step(opt, loss)
        if self.config["constraint"] == "clip":
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.config["clip"], self.config["clip"])
        return value

    def generator_step(self, opt, n, labels, generator) -> float:
        y = self.fake_labels(n, labels, generator)
        return optimizer_step(opt, -self.discriminate(self.generate(self.latents(n, generator), y), y).mean())
