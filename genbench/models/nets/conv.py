"""Convolutional networks for small images: the DCGAN generator and discriminator (Radford, Metz &
Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional GANs", sec. 3) and
the VAE encoder built from the same blocks.

Sizes: the generator projects z to a ``width * 2^(n-1)``-channel map of the base size
(H / 2^n, W / 2^n) and doubles it ``n`` times with 4x4 stride-2 transposed convolutions, halving
the channels each time; the last one outputs the image channels. 8x8 digits use n = 2 (base 2x2),
28x28 images n = 2 (base 7x7), 32x32 images n = 3 (base 4x4), as the automatic choice (``n_up`` None). ``upsampling_plan`` refuses a size
that halving cannot reach. The discriminator mirrors it with 4x4 stride-2 convolutions and LeakyReLU
(0.2); DCGAN puts batch norm after every generator layer but the last and every discriminator
layer but the first; a WGAN-GP critic has none (``norm=False``; Gulrajani et al. 2017, sec. 4).

Class conditioning: the generator concatenates a learned class embedding to z (Mirza & Osindero
2014); the discriminator adds the projection term <embed(y), phi(x)> to its output (Miyato &
Koyama 2018, eq. 3).
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.errors import UsageError

MAX_UPSAMPLINGS = 3


def upsampling_plan(height: int, width: int, n_up: int | None, who: str) -> tuple[int, int, int]:
    """(n, base height, base width) such that base * 2^n = the image size; ``n_up`` None picks the largest
    n <= 3 that keeps the base at least 2 pixels. A size that halving cannot reach is a UsageError."""
    if n_up is None:
        candidates = [n for n in range(1, MAX_UPSAMPLINGS + 1)
                      if height % 2**n == 0 and width % 2**n == 0 and min(height, width) // 2**n >= 2]
        if not candidates:
            raise UsageError(f"{who} doubles a base grid up to the image size, but {height}x{width} cannot be halved "
                             "to a grid of at least 2x2 (needs H and W divisible by 2 with H/2, W/2 >= 2); "
                             "use another family for this image size")
        n_up = max(candidates)
    if n_up < 1 or height % 2**n_up or width % 2**n_up:
        raise UsageError(f"{who} with n_up = {n_up} needs H and W divisible by 2^{n_up} = {2**n_up}, but the images are "
                         f"{height}x{width}; set n_up to a smaller value (or leave it out to choose automatically)")
    return n_up, height // 2**n_up, width // 2**n_up


class ConvGenerator(nn.Module):
    """z [N, Z] (+ class y [N]) -> [N, channels, H, W]: images in [-1, 1] (tanh), or raw outputs (``tanh=False``)."""

    def __init__(self, latent_dim: int, channels: int, height: int, width: int, base_width: int, n_up: int,
                 norm: bool = True, num_classes: int = 0, tanh: bool = True):
        super().__init__()
        self.tanh = tanh
        self.n_up, self.base_h, self.base_w = n_up, height // 2**n_up, width // 2**n_up
        self.c0 = base_width * 2 ** (n_up - 1)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        in_dim = latent_dim * (2 if num_classes else 1)
        # project and reshape: [N, in] -> [N, c0 * h0 * w0]
        self.project = nn.Linear(in_dim, self.c0 * self.base_h * self.base_w, bias=not norm)
        self.project_norm = nn.BatchNorm2d(self.c0) if norm else nn.Identity()
        layers: list[nn.Module] = []
        c = self.c0
        for i in range(n_up):
            last = i == n_up - 1
            out = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1, bias=last or not norm))
            if not last:
                layers += [nn.BatchNorm2d(out) if norm else nn.Identity(), nn.ReLU()]
            c = out
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        h = self.project(z).reshape(z.shape[0], self.c0, self.base_h, self.base_w)
        h = torch.relu(self.project_norm(h))
        out = self.body(h)
        return torch.tanh(out) if self.tanh else out


def conv_out(size: int) -> int:
    """Spatial size after a 4x4 stride-2 padding-1 convolution."""
    return (size - 2) // 2 + 1


class ConvDiscriminator(nn.Module):
    """Images [N, C, H, W] (+ class y [N]) -> logits or critic values [N]; ``features`` gives phi(x) [N, F]."""

    def __init__(self, channels: int, height: int, width: int, base_width: int, n_down: int, norm: bool = True,
                 num_classes: int = 0, out_dim: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, h, w = channels, height, width
        for i in range(n_down):
            c_out = base_width * 2**i
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not (norm and i > 0)))
            if norm and i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in, h, w = c_out, conv_out(h), conv_out(w)
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = c_in * h * w
        self.head = nn.Linear(self.feature_dim, out_dim)
        # projection discriminator: D(x, y) = psi(phi(x)) + <embed(y), phi(x)>
        self.embed = nn.Embedding(num_classes, self.feature_dim) if num_classes else None
        if self.embed is not None:
            self.embed.zero_init = True  # the projection term starts at 0 (init_parameters keeps it zero)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.body(x)  # [N, F]
        out = self.head(phi)
        if out.shape[1] == 1:
            out = out.squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * phi).sum(1)
        return out
