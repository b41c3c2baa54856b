"""``cgan``: class-conditional DCGAN with a projection discriminator.

Generator G(z, y): the DCGAN generator with a learned class embedding concatenated to z (Mirza &
Osindero 2014, "Conditional Generative Adversarial Nets"). Discriminator D(x, y) = psi(phi(x)) +
<e(y), phi(x)>: the DCGAN discriminator's features phi(x), its linear head psi and an inner product
with a learned class embedding e(y) (Miyato & Koyama 2018, "cGANs with Projection Discriminator",
ICLR, eq. 3). Non-saturating loss; generated training samples take classes drawn from the data's
label frequencies (the real minibatch's labels in the discriminator step).

Sampling takes one class per sample (``SeededNoise.labels``); the runner asks for balanced classes
(sample i is of class i mod C) and keeps them with the samples for ``intra_fid`` and
``class_consistency``. Needs a labelled dataset.
"""

from __future__ import annotations

from genbench.models.base import MODELS
from genbench.models.dcgan import ConvGAN


@MODELS.register("cgan", description="class-conditional DCGAN, projection discriminator (Miyato & Koyama 2018); balanced classes, NFE 1")
class ConditionalGAN(ConvGAN):
    family = "cgan"
    conditional = True

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int = 64, width: int = 32,
                 n_up: int | None = None, beta1: float = 0.5, beta2: float = 0.999, bn_batches: int = 20):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, width=width, n_up=n_up,
                         bn_batches=bn_batches, beta1=beta1, beta2=beta2)
