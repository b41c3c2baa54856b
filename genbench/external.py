"""Models genbench did not train, as ``GenerativeModel``s, so that the runner never knows which it has.

Model references (a suite's ``models:`` entry, the MODEL of ``genbench sample``)::

    diffusers:PATH               a saved diffusers pipeline directory (UNet2DModel + a VP scheduler, as
                                 DDPMPipeline / DDIMPipeline.save_pretrained write it), or a hub id when online
    python:MODULE:FUNCTION       FUNCTION() returns a GenerativeModel, or (denoiser, data_shape) where
                                 denoiser(x, sigma) is an EDM-form D(x; sigma) (x = x_0 + sigma * eps, sigma [N]),
                                 or (vp_model, data_shape) with a discrete VP model (genbench.samplers.vp's
                                 DiscreteVPModel: vp_schedule, prediction_type, model_output(x_t, t))

MODULE is a dotted module name (importable from the working directory) or a path to a ``.py`` file.
A diffusers model is a discrete VP model (``genbench.samplers.vp``): the ``vp`` samplers read its saved
scheduler config as the matching diffusers scheduler's ``from_config`` would, and every ``diffusion``
sampler runs on its sigma-form denoiser. Every failure is one line (UsageError, exit 2).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from genbench.data.base import IMAGES, POINTS, Samples
from genbench.errors import UsageError
from genbench.models.base import GenerativeModel, Progress, TrainBudget
from genbench.registry import check_choice
from genbench.samplers.base import SAMPLERS, CountingDenoiser, samplers_of_kind
from genbench.samplers.schedules import karras_sigmas
from genbench.seeding import SeededNoise

DIFFUSERS, PYTHON = "diffusers:", "python:"
PREFIXES = (DIFFUSERS, PYTHON)
# diffusers schedulers whose config describes a discrete VP process (betas over train timesteps)
VP_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "DPMSolverSDEScheduler",
)
VP_DEFAULT_STEPS = 50  # diffusers pipelines' default num_inference_steps
EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0


def is_external(ref: str) -> bool:
    """True for ``diffusers:...`` and ``python:...`` model references."""
    return isinstance(ref, str) and ref.startswith(PREFIXES)


class LoadedModel(GenerativeModel):
    """Base of external models: genbench samples them but does not train them."""

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        raise UsageError(f"{self.config.get('source', self.family)} is a loaded model; genbench samples it but does not "
                         "train it (name a recipe to train one)")


# -- diffusers --------------------------------------------------------------------------------------


class VPAdapter(LoadedModel):
    """A discrete VP model genbench did not train (``vp_schedule``, ``prediction_type``, ``scheduler_config``,
    ``model_output``), sampled by every ``vp`` sampler natively and every ``diffusion`` sampler in sigma form."""

    family = "vp"

    def __init__(self, data_shape: tuple[int, ...], scheduler_config: dict[str, Any], source: str,
                 schedule: Any = None):
        from genbench.samplers.vp import PREDICTION_TYPES, VPSchedule

        modality = IMAGES if len(data_shape) == 3 else POINTS
        super().__init__(data_shape, modality, None, source=source)
        self.scheduler_config = dict(scheduler_config)
        self.prediction_type = self.scheduler_config.get("prediction_type") or "epsilon"
        if self.prediction_type not in PREDICTION_TYPES:
            raise UsageError(f"{source}: prediction type {self.prediction_type!r} is not supported; genbench samples "
                             f"{', '.join(PREDICTION_TYPES)} models")
        if self.scheduler_config.get("rescale_betas_zero_snr"):
            raise UsageError(f"{source}: rescale_betas_zero_snr schedules (alpha_bar_T = 0) are not supported; "
                             "use a model with an ordinary beta schedule")
        self.vp_schedule = schedule if schedule is not None else VPSchedule.from_config(self.scheduler_config)

    @classmethod
    def supported_samplers(cls) -> list[str]:
        from genbench.samplers.vp import vp_model_samplers

        return vp_model_samplers()

    @classmethod
    def default_steps(cls, sampler: str, config: Any = None) -> int | None:
        return None if getattr(SAMPLERS.get(sampler), "adaptive", False) else VP_DEFAULT_STEPS

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "ddim", steps: int | None = None) -> tuple[torch.Tensor, float]:
        """x_T = noise (vp samplers) or sigma_max * noise (sigma-form samplers); images clamped to [-1, 1]."""
        from genbench.samplers.vp import sample_vp_model

        check_choice(sampler, self.supported_samplers(), f"sampler for a {self.family} model")
        cfg = self.scheduler_config
        steps = steps if steps is not None else (self.default_steps(sampler) or 2)
        x, nfe = sample_vp_model(self, noise, sampler, steps, self.data_shape, self.device,
                                 spacing=cfg.get("timestep_spacing") or "leading", steps_offset=int(cfg.get("steps_offset") or 0))
        return (x.clamp(-1.0, 1.0) if self.modality == IMAGES else x), nfe


class DiffusersVPModel(VPAdapter):
    """A diffusers UNet2DModel with its saved VP scheduler config."""

    family = "diffusers"
    modalities = (IMAGES,)

    def __init__(self, unet: torch.nn.Module, scheduler_config: dict[str, Any], source: str):
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        super().__init__((unet.config.in_channels, h, w), scheduler_config, source)
        self.unet = unet.eval().requires_grad_(False)

    @torch.no_grad()
    def model_output(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet's raw output at train timesteps t [N]; a learned-variance head's extra channels are dropped."""
        out = self.unet(x_t, t).sample
        return out[:, : x_t.shape[1]]


class PythonVPModel(VPAdapter):
    """A user's discrete VP model (an object with ``vp_schedule``, ``prediction_type``, ``model_output`` and,
    optionally, ``scheduler_config``) of a given data shape."""

    def __init__(self, model: Any, data_shape: tuple[int, ...], source: str):
        config = {"prediction_type": model.prediction_type, **(getattr(model, "scheduler_config", None) or {})}
        super().__init__(data_shape, config, source, schedule=model.vp_schedule)
        self.user_model = model  # an nn.Module is registered as a submodule, so .to(device) moves it

    @torch.no_grad()
    def model_output(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.user_model.model_output(x_t, t)


def load_diffusers(ref: str, device: str | torch.device = "cpu") -> DiffusersVPModel:
    """``diffusers:PATH``: a saved pipeline directory (or a hub id, downloaded when online)."""
    path = _pipeline_dir(ref[len(DIFFUSERS):], ref)
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise UsageError("diffusers is not installed; pip install 'genbench[diffusers]'") from None
    index = _read_json(path / "model_index.json", ref)
    unet_kind = (index.get("unet") or [None, None])[1]
    if unet_kind != "UNet2DModel":
        raise UsageError(f"{ref}: the pipeline's unet is {unet_kind!r}; genbench loads unconditional UNet2DModel "
                         "pipelines (DDPMPipeline, DDIMPipeline, PNDMPipeline)")
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json", ref)
    kind = scheduler.get("_class_name")
    if kind not in VP_SCHEDULERS:
        raise UsageError(f"{ref}: scheduler {kind!r} is not supported; genbench reads discrete VP schedulers "
                         f"({', '.join(VP_SCHEDULERS[:4])}, ...)")
    try:
        unet = UNet2DModel.from_pretrained(str(path / "unet"), torch_dtype=torch.float32, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"{ref}: the UNet cannot be loaded ({first}); pass a complete pipeline directory") from None
    return DiffusersVPModel(unet, scheduler, ref).to(device)


def _pipeline_dir(where: str, ref: str) -> Path:
    """The local pipeline directory of PATH, downloading a hub id (org/name) when it is not a local path."""
    path = Path(where).expanduser()
    if not path.exists() and where.count("/") == 1 and not where.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(where, allow_patterns=["model_index.json", "unet/*", "scheduler/*"]))
        except Exception as e:  # offline, unknown id, no permission: one line
            raise UsageError(f"{ref}: no local directory {where!r}, and the hub download failed "
                             f"({type(e).__name__}); pass a saved pipeline directory") from None
    if not (path / "model_index.json").is_file():
        raise UsageError(f"{ref}: {where!r} is not a diffusers pipeline directory (no model_index.json); pass a "
                         "directory written by pipeline.save_pretrained")
    return path


def _read_json(path: Path, ref: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{ref}: {path.name} is missing or unreadable ({type(e).__name__}); pass a complete "
                         "pipeline directory") from None
    if not isinstance(data, dict):
        raise UsageError(f"{ref}: {path.name} is not a JSON object; pass a complete pipeline directory")
    return data


# -- python:MODULE:FUNCTION ---------------------------------------------------------------------------


class DenoiserModel(LoadedModel):
    """A user's EDM-form denoiser D(x; sigma) of data of a given shape, sampled by every ``diffusion`` sampler
    over the Karras schedule (rho = 7) from sigma_max to sigma_min (EDM's 80 and 0.002 by default)."""

    family = "denoiser"

    def __init__(self, denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data_shape: tuple[int, ...],
                 source: str, sigma_min: float = EDM_SIGMA_MIN, sigma_max: float = EDM_SIGMA_MAX):
        modality = IMAGES if len(data_shape) == 3 else POINTS
        super().__init__(data_shape, modality, None, source=source, sigma_min=sigma_min, sigma_max=sigma_max)
        self.denoiser = denoiser  # an nn.Module is registered as a submodule, so .to(device) moves it

    @classmethod
    def supported_samplers(cls) -> list[str]:
        return samplers_of_kind("diffusion")

    @classmethod
    def default_steps(cls, sampler: str, config: Any = None) -> int | None:
        from genbench.models.diffusion import EDMDiffusion

        return EDMDiffusion.default_steps(sampler)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "heun", steps: int | None = None) -> tuple[torch.Tensor, float]:
        """x_T = sigma_max * noise, then the sampler over the Karras schedule; NFE = denoiser calls per sample."""
        check_choice(sampler, self.supported_samplers(), "sampler for a denoiser model")
        steps = steps if steps is not None else (self.default_steps(sampler) or 2)
        sigmas = karras_sigmas(steps, self.config["sigma_min"], self.config["sigma_max"]).to(self.device)
        x = float(sigmas[0]) * noise.randn(*self.data_shape).to(self.device)
        counted = CountingDenoiser(self.denoiser)
        x = SAMPLERS.get(sampler).fn(counted, x, sigmas, noise)
        return (x.clamp(-1.0, 1.0) if self.modality == IMAGES else x), float(counted.calls)


def load_python(ref: str, device: str | torch.device = "cpu") -> GenerativeModel:
    """``python:MODULE:FUNCTION``: FUNCTION() -> GenerativeModel, (denoiser, data_shape) or (vp_model, data_shape)."""
    module_name, sep, fn_name = ref[len(PYTHON):].rpartition(":")
    if not sep or not module_name or not fn_name:
        raise UsageError(f"{ref!r} is not python:MODULE:FUNCTION; e.g. python:my_models:make_model")
    module = _import(module_name, ref)
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise UsageError(f"{ref}: module {module_name!r} has no function {fn_name!r}; name a factory it defines")
    made = factory()
    if isinstance(made, GenerativeModel):
        return made.to(device).eval()
    if isinstance(made, tuple) and len(made) == 2 and _is_shape(made[1]):
        from genbench.samplers.vp import DiscreteVPModel

        shape = tuple(int(s) for s in made[1])
        if isinstance(made[0], DiscreteVPModel):
            return PythonVPModel(made[0], shape, ref).to(device).eval()
        if callable(made[0]):
            return DenoiserModel(made[0], shape, ref).to(device).eval()
    raise UsageError(f"{ref} returned a {type(made).__name__}; return a genbench GenerativeModel, a tuple "
                     "(denoiser, data_shape) with denoiser(x, sigma) -> D(x; sigma), or (discrete VP model, data_shape)")


def _is_shape(s: Any) -> bool:
    return isinstance(s, (tuple, list, torch.Size)) and len(s) > 0 and all(isinstance(d, int) and d > 0 for d in s)


def _import(module_name: str, ref: str):
    """A module by dotted name (the working directory is on the path) or by ``.py`` file path."""
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise UsageError(f"{ref}: no file {module_name!r}; pass an existing .py file or a module name")
            spec = importlib.util.spec_from_file_location(f"genbench_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as e:  # the user's module failed to import: one line naming why
        raise UsageError(f"{ref}: module {module_name!r} does not import ({type(e).__name__}: "
                         f"{(str(e).strip().splitlines() or [''])[0]}); fix it or check the name") from None


# -- one entry point ----------------------------------------------------------------------------------


def load_external(ref: str, device: str | torch.device = "cpu") -> GenerativeModel:
    """The model a ``diffusers:`` or ``python:`` reference names, on ``device``, in eval mode."""
    if ref.startswith(DIFFUSERS):
        return load_diffusers(ref, device)
    if ref.startswith(PYTHON):
        return load_python(ref, device)
    raise UsageError(f"{ref!r} is not an external model reference; use diffusers:PATH or python:MODULE:FUNCTION")


@lru_cache(maxsize=4)
def load_external_once(ref: str, device: str = "cpu") -> GenerativeModel:
    """``load_external`` loaded once per process and device (a suite's runs of one model share it)."""
    return load_external(ref, device)


@lru_cache(maxsize=32)
def describe_external(ref: str) -> tuple[str, str, type[GenerativeModel], tuple[int, ...]]:
    """(family, identity hash, model class, data shape) of an external model, for suites and run specs
    (loaded once per process).

    The hash covers what can change its samples: a diffusers pipeline's config and weight files, a Python
    factory's source file (the module itself; what it imports is not followed).
    """
    model = load_external(ref)
    return model.family, _identity(ref), type(model), model.data_shape


def _identity(ref: str) -> str:
    h = hashlib.sha256(ref.encode())
    if ref.startswith(DIFFUSERS):
        root = _pipeline_dir(ref[len(DIFFUSERS):], ref)
        files = [root / "model_index.json", *sorted((root / "scheduler").glob("*")), *sorted((root / "unet").glob("*"))]
    else:
        module_name = ref[len(PYTHON):].rpartition(":")[0]
        origin = module_name if module_name.endswith(".py") else getattr(importlib.util.find_spec(module_name), "origin", None)
        files = [Path(origin)] if origin else []
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()
