"""``video_diffusion``: EDM diffusion on videos with a factorised space-time UNet (Ho et al. 2022, "Video
Diffusion Models"), sampled by every registered diffusion sampler.

The denoiser, its preconditioning, the training loss and the sampling loop are the ``diffusion`` family's
(``genbench.models.diffusion``, Karras et al. 2022); only the network differs:
``genbench.models.nets.spacetime_unet.SpaceTimeUNet`` takes the whole video [N, T, C, H, W] with one noise
level per video, like Ho et al.'s model, so the frames are denoised jointly.

``temporal`` picks the temporal blocks: ``attention`` (Ho et al.: attention over the frames with relative
position bias), ``conv`` (a 1-D convolution over time), or ``none``: a 2-D UNet applied to each frame alone.
With ``none`` every frame of a video is an independent draw of the same image diffusion model (each
frame's noise is its own, and no layer mixes frames), which is the per-frame baseline of the video
benchmark (recipe ``frame-diffusion``): each frame right, the motion absent.

Videos are trained on uniformly dequantised frames (``dequantize``, as the image families do) and
sampled frames are clamped to [-1, 1]. There is no likelihood (the ODE likelihood of a 4,608-dimensional
video costs far more than the benchmark).
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.data.video import VIDEO
from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.diffusion import EDM_SIGMA_DATA, EDMDiffusion
from genbench.models.nets.spacetime_unet import TEMPORAL, SpaceTimeUNet
from genbench.models.nets.training import dequantise_images
from genbench.registry import check_choice
from genbench.seeding import SeededNoise


@MODELS.register("video_diffusion",
                 description="EDM diffusion with a factorised space-time UNet for videos (Ho et al. 2022); all diffusion samplers")
class VideoDiffusion(EDMDiffusion):
    family = "video_diffusion"
    likelihood_kind = None
    modalities = (VIDEO,)

    def __init__(self, data_shape, modality, num_classes=None, temporal: str = "attention", width: int = 32,
                 depth: int = 1, channel_mult: tuple[int, ...] | list[int] = (1, 2), attn_levels: tuple[int, ...] | list[int] = (),
                 patch: int = 1, sigma_data: float = EDM_SIGMA_DATA, sigma_min: float | None = None, sigma_max: float | None = None,
                 rho: float = 7.0, schedule: str = "karras", p_mean: float = -1.2, p_std: float = 1.2,
                 dropout: float = 0.0, dequantize: bool = True):
        check_choice(temporal, list(TEMPORAL), "temporal block")
        self.check_fits(tuple(data_shape), modality, num_classes, {})
        super().__init__(data_shape, modality, num_classes, width=width, depth=depth, channel_mult=channel_mult,
                         sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, schedule=schedule,
                         p_mean=p_mean, p_std=p_std, dropout=dropout, dequantize=dequantize)
        # the config is this family's own (what build_model gets back from a checkpoint)
        self.config = dict(temporal=temporal, width=width, depth=depth, channel_mult=list(channel_mult),
                           attn_levels=list(attn_levels), patch=patch, sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max,
                           rho=rho, schedule=schedule, p_mean=p_mean, p_std=p_std, dropout=dropout, dequantize=dequantize)
        self.net = self._build_net()
        self.ema_net = self._build_net().requires_grad_(False)
        self.ema_net.load_state_dict(self.net.state_dict())

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> None:
        super().check_fits(data_shape, modality, num_classes, config)
        if len(data_shape) != 4:
            raise UsageError(f"model family {cls.family!r} needs videos [T, C, H, W], got examples of shape "
                             f"{list(data_shape)}; use a video dataset (moving-digits)")

    def _choose_net(self, net: str) -> str:
        return "spacetime"

    def _build_net(self) -> nn.Module:
        c = self.config
        if "temporal" not in c:  # EDMDiffusion.__init__ builds before this family's config is set: a placeholder
            return nn.Identity()
        frames, channels = self.data_shape[0], self.data_shape[1]
        return SpaceTimeUNet(frames, channels, channels=c["width"], channel_mult=tuple(c["channel_mult"]),
                             num_res_blocks=c["depth"], attn_levels=tuple(c["attn_levels"]), temporal=c["temporal"],
                             patch=c["patch"], dropout=c["dropout"])

    def denoising_loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The EDM loss on videos: frames uniformly dequantised first when ``dequantize``."""
        if self.config["dequantize"]:
            x0 = dequantise_images(x0, generator)
        return super().denoising_loss(x0, generator)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "heun", steps: int | None = None) -> tuple[torch.Tensor, float]:
        """Every diffusion sampler over the EDM denoiser (the ``diffusion`` family's loop); frames clamped to [-1, 1]."""
        x, nfe = super().sample(noise, sampler, steps)
        return x.clamp(-1.0, 1.0), nfe
