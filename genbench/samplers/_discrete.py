"""Pieces shared by the discrete-time (``vp``) samplers that follow diffusers' schedulers.

A ``vp`` sampler reads its scheduler settings from ``model.config`` (a diffusers scheduler config,
or a genbench DDPM's settings) with its own defaults for missing keys, exactly as diffusers'
``Scheduler.from_config(config)`` does: a key the config lacks takes that scheduler's default.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from genbench.errors import UsageError
from genbench.samplers.vp import DiscreteVP


def settings(model: DiscreteVP, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's scheduler settings: ``defaults`` overridden by the keys ``model.config`` sets (not None)."""
    config = getattr(model, "config", None) or {}
    return {k: (config[k] if config.get(k) is not None else v) for k, v in defaults.items()}


def final_alpha_bar(model: DiscreteVP, set_alpha_to_one: bool) -> float:
    """alpha_bar of the step after the last timestep: 1 (clean data) or alpha_bar_0 (diffusers' ``set_alpha_to_one``)."""
    return 1.0 if set_alpha_to_one else float(model.schedule.alphas_cumprod[0])


def alpha_bar_of(model: DiscreteVP, t: int, final: float) -> float:
    """alpha_bar at train timestep t, ``final`` at t = -1 (the target of the last step)."""
    return final if t < 0 else model.alpha_bar_at(t)


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3): s = the ``ratio`` quantile of |x0| per
    sample, clamped to [1, max_value]; x0 is clipped to [-s, s] and divided by s."""
    flat = x0.reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs().float(), ratio, dim=1).clamp(1, max_value).to(x0.dtype)
    # [N, 1] broadcast over the flattened sample
    return (flat.clamp(-s[:, None], s[:, None]) / s[:, None]).reshape(x0.shape)


def process_x0(x0: torch.Tensor, cfg: Mapping[str, Any]) -> torch.Tensor:
    """The x_0 estimate after the config's ``thresholding`` or ``clip_sample`` (diffusers' order: thresholding wins)."""
    if cfg.get("thresholding"):
        return dynamic_threshold(x0, float(cfg["dynamic_thresholding_ratio"]), float(cfg["sample_max_value"]))
    if cfg.get("clip_sample"):
        r = float(cfg["clip_sample_range"])
        return x0.clamp(-r, r)
    return x0


def require_settled(cfg: Mapping[str, Any], unsupported: Mapping[str, Any], sampler: str) -> None:
    """Refuse config values this sampler does not implement (one line naming the key and the fix)."""
    for key, ok in unsupported.items():
        if cfg.get(key) not in (None, ok):
            raise UsageError(f"scheduler setting {key}={cfg[key]!r} is not supported by the {sampler} sampler "
                             f"(it needs {ok!r}); use a sigma-form sampler such as dpmpp_2m or heun instead")
