"""``ddpm_cfg``: class-conditional DDPM with classifier-free guidance (Ho and Salimans 2022).

The ``ddpm`` family (``genbench.models.ddpm``: its config, schedules, samplers and likelihood) whose network
also embeds the class (added to the time embedding; C classes and a null class), trained with label
dropout at ``p_uncond`` (default 0.1) and sampled with the ``guidance`` option w, the guided prediction
eps(null) + w (eps(y) - eps(null)) (w = 1 the conditional model, the default; 0 unconditional; Ho and
Salimans's w' = w - 1), under every ``vp`` and ``diffusion`` sampler; ``eta`` (ddim) and
``timestep_spacing`` (vp samplers) as for ``ddpm``. NFE counts both passes (``genbench.models.guidance``).
Sample i is of class ``noise.labels[i]`` (balanced in runs). ``log_likelihood`` receives no labels, so
its VLB is the unconditional model's (the null class): a bound on log p(x), not log p(x | y).
"""

from __future__ import annotations

from genbench.models.base import MODELS
from genbench.models.ddpm import DDPM
from genbench.models.guidance import GuidedDiffusion


@MODELS.register("ddpm_cfg", description="class-conditional DDPM, classifier-free guidance (Ho & Salimans 2022): label dropout, "
                                         "guidance option, every vp and diffusion sampler; NFE counts both passes")
class GuidedDDPM(GuidedDiffusion, DDPM):
    family = "ddpm_cfg"

    def prediction(self, noise, options):
        """The guided eps (or v) for the labels ``noise`` asks for, counting both passes."""
        return self.guided(noise, lambda x_t, t, y: self.model_output(x_t, t, y=y), self.guidance_of(options))
