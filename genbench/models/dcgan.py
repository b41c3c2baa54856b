"""``dcgan``: deep convolutional GAN (Radford, Metz & Chintala 2016, ICLR) with the non-saturating loss.

Generator: z ~ N(0, I) projected to a small map and doubled by 4x4 stride-2 transposed
convolutions with batch norm and ReLU, tanh output; discriminator: 4x4 stride-2 convolutions with
LeakyReLU(0.2) and batch norm after all but the first (``genbench.models.nets.conv``). Losses
(Goodfellow et al. 2014, non-saturating form)::

    L_D = E softplus(-D(x)) + E softplus(D(G(z)))        L_G = E softplus(-D(G(z)))

Adam(lr, beta1 = 0.5, beta2 = 0.999) as in the paper; real and generated minibatches pass the
discriminator separately (each with its own batch statistics), one discriminator step per
generator step. Images only.

Per-sample seeds: batch norm in training mode mixes the samples of a batch, so samples are drawn
in evaluation mode. Its running statistics are recalibrated after training: reset, then averaged
(cumulative mean) over ``bn_batches`` batches of z from the training generator, the population
statistics of the final generator rather than a momentum average of past ones. With
``budget.ema`` the generator's weights are an exponential moving average (Yazici et al. 2019).
Sampling is one generator pass (NFE 1). ``ConvGAN`` is the base of ``cgan`` and ``wgan`` too.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from genbench.data.base import IMAGES, Samples
from genbench.errors import RunFailure, UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.gan import discriminator_loss, generator_loss
from genbench.models.nets.conv import ConvDiscriminator, ConvGenerator, upsampling_plan
from genbench.models.nets.training import ema_decay_at, init_parameters, minibatch_indices, update_ema
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise


class ConvGAN(GenerativeModel):
    """Shared machinery of the convolutional GANs: networks, the training loop, BN recalibration, sampling.

    Subclasses define ``discriminator_step`` and ``generator_step`` losses and their optimisers.
    """

    modalities = (IMAGES,)
    discriminator_norm = True  # batch norm in the discriminator (DCGAN); a WGAN-GP critic has none

    def __init__(self, data_shape, modality, num_classes=None, *, latent_dim: int, width: int, n_up: int | None,
                 bn_batches: int, **extra):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, width=width, n_up=n_up,
                         bn_batches=bn_batches, **extra)
        if latent_dim < 1 or width < 1 or bn_batches < 1:
            raise UsageError(f"{self.family} needs latent_dim >= 1, width >= 1 and bn_batches >= 1; fix the recipe's config")
        n = self.check_fits(self.data_shape, modality, num_classes, self.config)
        c, h, w = self.data_shape
        k = int(num_classes or 0) if self.conditional else 0
        self.generator = ConvGenerator(latent_dim, c, h, w, width, n, norm=True, num_classes=k)
        self.discriminator = ConvDiscriminator(c, h, w, width, n, norm=self.discriminator_norm, num_classes=k)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> int:
        """The generator's number of doublings; UsageError when the image size cannot be reached (or labels lack)."""
        super().check_fits(data_shape, modality, num_classes, config)
        return upsampling_plan_of(data_shape, config.get("n_up"), f"{cls.family}'s generator")

    # -- pieces used by the losses ---------------------------------------------------------------

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config["latent_dim"], generator=generator).to(self.device)

    def fake_labels(self, n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor | None:
        """Classes for generated training samples, drawn from the data's label frequencies (None: unconditional)."""
        if labels is None:
            return None
        return labels[torch.randint(len(labels), (n,), generator=generator).to(labels.device)]

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.generator(z, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x, y)

    # -- losses and optimisers (DCGAN) -----------------------------------------------------------

    def optimizers(self, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        betas = (self.config["beta1"], self.config["beta2"])
        return (torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
                torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas))

    def discriminator_steps(self) -> int:
        return 1

    def discriminator_step(self, opt, x_real, y_real, labels, generator) -> float:
        with torch.no_grad():
            x_fake = self.generate(self.latents(len(x_real), generator), y_real)
        loss = discriminator_loss(self.discriminate(x_real, y_real), self.discriminate(x_fake, y_real))
        return optimizer_step(opt, loss)

    def generator_step(self, opt, n, labels, generator) -> float:
        y = self.fake_labels(n, labels, generator)
        return optimizer_step(opt, generator_loss(self.discriminate(self.generate(self.latents(n, generator), y), y)))

    # -- training ----------------------------------------------------------------------------------

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """``discriminator_steps()`` discriminator steps per generator step for ``budget.steps`` generator steps."""
        init_parameters(self, generator)
        self.train()
        x = data.x.to(self.device).float()
        labels = self.training_labels(data).to(self.device) if self.conditional else None
        opt_d, opt_g = self.optimizers(budget.lr)
        ema_g = copy.deepcopy(self.generator).requires_grad_(False)
        batches = minibatch_indices(len(x), budget.batch_size, generator)
        loss_d = loss_g = math.nan
        for step in range(budget.steps):
            for _ in range(self.discriminator_steps()):
                idx = next(batches).to(self.device)
                loss_d = self.discriminator_step(opt_d, x[idx], None if labels is None else labels[idx], labels, generator)
            loss_g = self.generator_step(opt_g, min(budget.batch_size, len(x)), labels, generator)
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                raise RunFailure(f"{self.family} training diverged at step {step} (loss_d {loss_d}, loss_g {loss_g}); "
                                 f"lower the learning rate (now {budget.lr})")
            update_ema(ema_g, self.generator, ema_decay_at(step, budget.ema) if budget.ema else 0.0)
            if progress:
                progress(step + 1, budget.steps)
        self.generator.load_state_dict(ema_g.state_dict())
        self.recalibrate_batch_norm(min(budget.batch_size, len(x)), labels, generator)
        self.eval()
        return {"loss_d": float(loss_d), "loss_g": float(loss_g), "steps": float(budget.steps)}

    @torch.no_grad()
    def recalibrate_batch_norm(self, batch_size: int, labels: torch.Tensor | None, generator: torch.Generator) -> None:
        """Replace the generator's running BN statistics by their average over ``bn_batches`` batches of z."""
        norms = [m for m in self.generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        self.generator.train()
        for _ in range(self.config["bn_batches"]):
            self.generate(self.latents(batch_size, generator), self.fake_labels(batch_size, labels, generator))
        for m in norms:
            m.momentum = 0.1
        self.generator.eval()

    # -- sampling ------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        """z ~ N(0, I) per sample (and its class for conditional families), one generator pass (NFE 1, counted)."""
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        self.eval()
        z = noise.randn(self.config["latent_dim"]).to(self.device)
        y = self.class_labels(noise) if self.conditional else None
        net = CountingDenoiser(lambda z_, _: self.generate(z_, y))
        return net(z, None), float(net.calls)


def upsampling_plan_of(data_shape: tuple[int, ...], n_up: int | None, who: str) -> int:
    """Doublings from the base grid to images of ``data_shape`` (C, H, W); UsageError when none fits."""
    if len(data_shape) != 3:
        raise UsageError(f"{who} needs images C x H x W, got shape {tuple(data_shape)}")
    return upsampling_plan(data_shape[1], data_shape[2], n_up, who)[0]


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@MODELS.register("dcgan", description="DCGAN (Radford et al. 2016): conv generator with batch norm, strided-conv discriminator, non-saturating loss; NFE 1")
class DCGAN(ConvGAN):
    family = "dcgan"

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int = 64, width: int = 32,
                 n_up: int | None = None, beta1: float = 0.5, beta2: float = 0.999, bn_batches: int = 20):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, width=width, n_up=n_up,
                         bn_batches=bn_batches, beta1=beta1, beta2=beta2)
