"""``diffusion_cfg``: class-conditional EDM with classifier-free guidance (Ho and Salimans 2022).

The ``diffusion`` family (``genbench.models.diffusion``: EDM preconditioning, loss, schedules and samplers)
whose network also embeds the class (added to the noise-level embedding; C classes and a null class),
trained with label dropout at ``p_uncond`` (default 0.1) and sampled with the ``guidance`` option w: the
guided denoiser D(x; sigma, null) + w (D(x; sigma, y) - D(x; sigma, null)) (w = 1 the conditional model,
the default; 0 unconditional; Ho and Salimans's w' = w - 1; the same combination as of eps, since
eps = (x - D) / sigma), under every ``diffusion`` sampler. NFE counts both passes
(``genbench.models.guidance``). Sample i is of class ``noise.labels[i]`` (balanced in runs).
``log_likelihood`` receives no labels, so its probability-flow ODE is the unconditional model's
(the null class): log p(x), not log p(x | y).
"""

from __future__ import annotations

from genbench.models.base import MODELS
from genbench.models.diffusion import EDMDiffusion
from genbench.models.guidance import GuidedDiffusion


@MODELS.register("diffusion_cfg", description="class-conditional EDM, classifier-free guidance (Ho & Salimans 2022): label "
                                              "dropout, guidance option, every diffusion sampler; NFE counts both passes")
class GuidedEDM(GuidedDiffusion, EDMDiffusion):
    family = "diffusion_cfg"

    def denoiser(self, noise, options):
        """The guided D(x; sigma) for the labels ``noise`` asks for, counting both passes."""
        return self.guided(noise, lambda x, sigma, y: self.denoise(x, sigma, y=y), self.guidance_of(options))
