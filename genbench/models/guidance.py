"""Classifier-free guidance (Ho and Salimans 2022, "Classifier-Free Diffusion Guidance"): the machinery shared
by the class-conditional diffusion families ``ddpm_cfg`` and ``diffusion_cfg``.

Training (Ho and Salimans, Algorithm 1): one network learns both the conditional and the unconditional
prediction; each training example's label is replaced by the null class (index C of a C + 1 row
embedding, ``nets.embeddings.ClassEmbedding``) with probability ``p_uncond`` (default 0.1; the paper
sweeps 0.1, 0.2 and 0.5), drawn from the training generator.

Sampling (the ``guidance`` sampling option, w): every prediction the sampler asks for is

    f_w(x, t) = f(x, t, null) + w (f(x, t, y) - f(x, t, null))

with f the network's raw prediction (eps or v for ``ddpm_cfg``, the denoiser D(x; sigma) for
``diffusion_cfg``; the combination is the same in every one of these, as each is affine in eps at
fixed x). Convention: w = 1 is the plain conditional model (the default), w = 0 the unconditional
one, w > 1 guides. Ho and Salimans write eps~ = (1 + w') eps(y) - w' eps(null), so their w' = w - 1
(their w' = 0.3 is w = 1.3 here; their w' = 4 is w = 5).

NFE counts network passes: 2 per guided prediction, each pass counted by wrapping it; at w = 1 only
the conditional pass and at w = 0 only the unconditional pass is run (1 per prediction), since the
other's weight is 0. The two passes are separate calls (not one batch of 2N rows), so each counted
call evaluates every sample once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from genbench.data.base import IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import Progress, TrainBudget
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.seeding import SeededNoise

GUIDANCE = "guidance"
DEFAULT_GUIDANCE = 1.0  # the plain conditional model
DEFAULT_P_UNCOND = 0.1
GUIDANCE_MEANING = ("classifier-free guidance scale w: f(null) + w (f(y) - f(null)); 1 = conditional model (default), "
                    "0 = unconditional, > 1 guided (Ho and Salimans's w' = w - 1); NFE counts both passes")

NetPass = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t or sigma, y) -> prediction


def guided_prediction(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """f(null) + w (f(y) - f(null)) (Ho and Salimans 2022, Eq. 6 with their w' = w - 1)."""
    return uncond + w * (cond - uncond)


def drop_labels(y: torch.Tensor, p_uncond: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """y [B] with each label replaced by ``null_class`` with probability ``p_uncond`` (one uniform per label from
    ``generator``, drawn even at p = 0 so the generator's stream does not depend on p)."""
    drop = (torch.rand(len(y), generator=generator) < p_uncond).to(y.device)
    return torch.where(drop, torch.full_like(y, null_class), y)


class ClassifierFreeGuidance:
    """f_w(x, t) of a network pass ``net_pass(x, t, y)`` for the labels ``y`` [N]; ``calls`` counts the passes.

    A callable of (x, t) like the unguided prediction, so every sampler takes it unchanged.
    """

    def __init__(self, net_pass: NetPass, y: torch.Tensor, null_class: int, w: float):
        self.net_pass = net_pass
        self.y = y
        self.null = torch.full_like(y, null_class)
        self.w = float(w)
        self.calls = 0

    def _pass(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net_pass(x, t, y)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.w == 1.0:  # the conditional pass alone: its weight is 1, the other's 0
            return self._pass(x, t, self.y)
        if self.w == 0.0:  # the unconditional pass alone
            return self._pass(x, t, self.null)
        return guided_prediction(self._pass(x, t, self.y), self._pass(x, t, self.null), self.w)


def check_guidance(value: Any, p_uncond: float) -> float:
    """w as a float; one line for a non-number, a negative or non-finite w, or w != 1 on a model trained without
    label dropout (its null-class prediction was never trained)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UsageError(f"guidance must be a finite number >= 0 (1 = the conditional model, 0 = unconditional), "
                         f"got {value!r}")
    if float(value) != 1.0 and not p_uncond > 0:
        raise UsageError(f"guidance {value} needs the model's unconditional prediction, but it was trained with "
                         "p_uncond = 0; train with p_uncond > 0 (e.g. 0.1) or sample with guidance 1")
    return float(value)


def check_p_uncond(p_uncond: Any) -> None:
    if isinstance(p_uncond, bool) or not isinstance(p_uncond, (int, float)) or not 0.0 <= p_uncond < 1.0:
        raise UsageError(f"p_uncond (the label dropout rate) must lie in [0, 1), got {p_uncond!r}; 0.1 is usual")


class GuidedDiffusion:
    """Mixin (before the diffusion family in the bases) for a class-conditional diffusion family: the family's
    network gets a class embedding with a null class (its ``_build_net`` reads ``conditional``), ``fit`` drops
    labels at ``p_uncond``, and ``guided(noise, net_pass, w)`` builds the guided prediction for sampling.

    The family's constructor takes ``p_uncond`` beside the unconditional family's config; ``check_fits`` checks
    both (the rest of the config against the unconditional family's constructor).
    """

    conditional = True
    modalities = (IMAGES,)  # labelled datasets are images (digits, mnist5k, fashion-mnist, cifar10)

    def __init__(self, data_shape, modality, num_classes=None, p_uncond: float = DEFAULT_P_UNCOND, **config: Any):
        check_p_uncond(p_uncond)
        super().__init__(data_shape, modality, num_classes, **config)
        self.config["p_uncond"] = float(p_uncond)

    @classmethod
    def sampling_options(cls, sampler: str, config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """``guidance`` with every sampler, beside the unconditional family's options."""
        return {GUIDANCE: GUIDANCE_MEANING, **super().sampling_options(sampler, config)}

    @classmethod
    def check_sampling_options(cls, sampler: str, options: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        super().check_sampling_options(sampler, options, config)
        if GUIDANCE in options:
            check_guidance(options[GUIDANCE], float((config or {}).get("p_uncond", DEFAULT_P_UNCOND)))

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> None:
        super().check_fits(data_shape, modality, num_classes, config)
        rest = {k: v for k, v in config.items() if k != "p_uncond"}
        unconditional = cls.__mro__[cls.__mro__.index(GuidedDiffusion) + 1]
        try:
            inspect.signature(unconditional.__init__).bind(None, tuple(data_shape), modality, num_classes, **rest)
        except TypeError as e:
            raise UsageError(f"bad configuration for model family {cls.family!r}: {e}") from None
        check_p_uncond(config.get("p_uncond", DEFAULT_P_UNCOND))

    @property
    def null_class(self) -> int:
        """The index of the null class (no label): C."""
        return int(self.num_classes)

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """The family's loss (``training_loss(x0, generator, y)``) on labelled minibatches, labels dropped at ``p_uncond``."""
        init_parameters(self.net, generator)
        self.ema_net.load_state_dict(self.net.state_dict())
        x = data.x.to(self.device).float()
        y = self.training_labels(data).to(self.device)
        p = float(self.config["p_uncond"])

        def loss(idx: torch.Tensor) -> torch.Tensor:
            return self.training_loss(x[idx], generator, drop_labels(y[idx], p, self.null_class, generator))

        # minibatches of row indices, so the images and their labels are drawn together
        return train_with_adam(self.net, loss, torch.arange(len(x), device=self.device), budget, generator, progress,
                               self.ema_net)

    def guidance_of(self, options: Mapping[str, Any]) -> float:
        return check_guidance(options.get(GUIDANCE, DEFAULT_GUIDANCE), float(self.config["p_uncond"]))

    def guided(self, noise: SeededNoise, net_pass: NetPass, w: float) -> ClassifierFreeGuidance:
        """The guided prediction for the labels ``noise.labels`` asks for."""
        return ClassifierFreeGuidance(net_pass, self.class_labels(noise), self.null_class, w)
