"""``genbench sample``: draw samples of any model (recipe, checkpoint, diffusers pipeline, Python factory) to an .npz.

The file holds ``samples`` (float32, data space: N x C x H x W in [-1, 1] for images, N x D for points),
``nfe`` (denoiser calls per sample, counted), ``seconds`` (sampling wall-clock), and the ``model``,
``sampler`` and ``steps`` used. ``init_noise`` (an N x *shape standard-normal .npy) replaces the first
noise draw of every sample, the one the sampler scales into its initial state (x_T = noise for VP models,
sigma_max * noise for EDM/VE ones), so two samplers or two tools can start from the same noise.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.models.base import GenerativeModel, load_checkpoint
from genbench.seeding import SeededNoise


class InitNoise(SeededNoise):
    """Per-sample noise whose first ``randn`` returns given rows (the initial state's noise); later draws
    (stochastic samplers) come from the per-sample generators as usual."""

    def __init__(self, rows: torch.Tensor, noise: SeededNoise):
        if len(rows) != len(noise):
            raise UsageError(f"--init-noise holds {len(rows)} rows for {len(noise)} samples; pass --n {len(rows)}")
        self.seeds, self.device, self._gens, self.labels = noise.seeds, noise.device, noise._gens, noise.labels
        self.rows = rows
        self._used = False

    def batches(self, batch_size: int):
        for start, sub in zip(range(0, len(self), batch_size), SeededNoise.batches(self, batch_size)):
            yield InitNoise(self.rows[start : start + len(sub)], sub)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self._used:
            return super().randn(*shape, dtype=dtype)
        self._used = True
        if tuple(self.rows.shape[1:]) != tuple(shape):
            raise UsageError(f"--init-noise rows have shape {tuple(self.rows.shape[1:])}, but this model starts from "
                             f"noise of shape {tuple(shape)}; pass an array of shape ({len(self)}, {', '.join(map(str, shape))})")
        return self.rows.to(dtype=dtype, device=self.device)


@dataclass(frozen=True)
class SampleResult:
    samples: Any  # [N, *data_shape] float32 on the CPU, or N SMILES strings (the modality's concat)
    nfe: float
    seconds: float
    sampler: str
    steps: int | None


def resolve_model(ref: str, dataset: str | None = None, device: str = "cpu", seed: int = 0) -> GenerativeModel:
    """The model a MODEL argument names: diffusers:PATH, python:MODULE:FUNCTION, a checkpoint path, or a recipe."""
    from genbench.external import is_external, load_external

    if is_external(ref):
        return load_external(ref, device)
    stem = Path(ref)
    if stem.suffix in (".json", ".safetensors") or stem.with_suffix(".json").is_file():
        return load_checkpoint(stem, map_location=device).eval()
    if dataset is None:
        raise UsageError(f"model {ref!r} is neither diffusers:PATH, python:MODULE:FUNCTION nor a checkpoint file; "
                         "to use it as a recipe name the dataset with --dataset")
    return _recipe_model(ref, dataset, device, seed)


def _recipe_model(recipe_name: str, dataset: str, device: str, seed: int) -> GenerativeModel:
    """A recipe's model on ``dataset``: from the checkpoint cache, or trained and cached (as ``genbench run`` does)."""
    from genbench.data.base import DATASETS
    from genbench.recipes import load_recipe
    from genbench.runner import RunContext, train_or_load
    from genbench.spec import RunSpec

    ds = DATASETS.get(dataset)
    recipe = load_recipe(recipe_name, ds.modality, None, dataset)  # per-dataset sections hash as in suites
    spec = RunSpec(suite="sample", dataset=dataset, model=recipe_name, family=recipe.family, recipe_hash=recipe.hash,
                   sampler="native", steps=None, seed=seed, n_samples=0, n_reference=0, metrics=(), features="raw")
    model, _ = train_or_load(spec, RunContext(device=device))
    return model


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``--option NAME=VALUE`` pairs -> {name: value}; a value that reads as a number becomes one."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, eq, text = pair.partition("=")
        if not eq or not name.strip() or not text.strip():
            raise UsageError(f"--option {pair!r} must be NAME=VALUE, e.g. --option guidance=2")
        if name.strip() in out:
            raise UsageError(f"--option {name.strip()!r} is given twice; give each option once")
        value: Any = text.strip()
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[name.strip()] = value
    return out


def load_init_noise(path: Path, n: int | None) -> torch.Tensor:
    """A float .npy of standard-normal rows [N, *shape] (checked: finite, at least one row, N == n when n is given)."""
    try:
        arr = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"--init-noise {path} is not a readable .npy array ({type(e).__name__}); save it with numpy.save") from None
    if arr.ndim < 2 or arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"--init-noise {path} must be a float array of shape (N, *data_shape), got {arr.dtype} "
                         f"{arr.shape}; save standard-normal noise with numpy.save")
    if n is not None and arr.shape[0] != n:
        raise UsageError(f"--init-noise {path} holds {arr.shape[0]} rows but --n is {n}; pass --n {arr.shape[0]} or drop --n")
    if not np.isfinite(arr).all():
        raise UsageError(f"--init-noise {path} holds NaN or Inf; pass standard-normal noise")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def draw(model: GenerativeModel, sampler: str | None = None, steps: int | None = None, n: int = 16, seed: int = 0,
         init_noise: torch.Tensor | None = None, batch_size: int = 256, device: str = "cpu",
         options: dict[str, Any] | None = None) -> SampleResult:
    """Samples of ``model`` with per-sample seeds (or the given initial noise), the counted NFE and the seconds;
    ``options``: sampling options (``--option guidance=2``), checked by the model's family."""
    from genbench.registry import check_choice

    sampler = sampler or model.supported_samplers()[0]
    check_choice(sampler, model.supported_samplers(), f"sampler for this {model.family} model")
    steps = steps if steps is not None else model.default_steps(sampler, model.config)
    options = dict(options or {})
    model.check_sampling_options(sampler, options, model.config)
    if batch_size < 1 or n < 1:
        raise UsageError("--n and --batch-size must be positive integers")
    num_classes = model.num_classes if getattr(model, "conditional", False) else None  # balanced classes, as runs ask
    noise: SeededNoise = SeededNoise.for_run(seed, len(init_noise) if init_noise is not None else n, device,
                                             num_classes=num_classes)
    if init_noise is not None:
        noise = InitNoise(init_noise, noise)
    chunks, nfe = [], []
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in noise.batches(batch_size):
            x, calls = model.sample(batch, sampler, steps, **options)
            chunks.append(x)
            nfe.append((float(calls), len(batch)))
    _sync(device)
    # NFE per sample: every sample of a batch costs that batch's calls (as the runner reports it)
    nfe_mean = sum(c * k for c, k in nfe) / sum(k for _, k in nfe)
    from genbench.data.base import get_modality

    return SampleResult(get_modality(model.modality).concat(chunks), nfe_mean, time.perf_counter() - t0, sampler, steps)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def sample_to_file(model: str, out: Path, dataset: str | None = None, sampler: str | None = None,
                   steps: int | None = None, n: int | None = None, seed: int = 0, init_noise: Path | None = None,
                   batch_size: int = 256, device: str = "auto", options: dict[str, Any] | None = None) -> SampleResult:
    """Everything ``genbench sample`` does: resolve the model, draw, write ``out`` (.npz) atomically."""
    from genbench.cache import atomic_write_bytes
    from genbench.runner import resolve_device

    out = Path(out)
    if out.suffix != ".npz":
        raise UsageError(f"--out {out} must end in .npz")
    if out.parent and not out.parent.exists():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist; create it first")
    device = resolve_device(device)
    rows = load_init_noise(init_noise, n) if init_noise is not None else None
    m = resolve_model(model, dataset, device, seed)
    result = draw(m, sampler, steps, n if n is not None else 16, seed, rows, batch_size, device, options)
    buf = io.BytesIO()
    samples = result.samples  # float data-space tensors, or SMILES strings (a unicode array: no pickle)
    samples = samples.numpy().astype(np.float32) if isinstance(samples, torch.Tensor) else np.asarray(samples, dtype=str)
    np.savez(buf, samples=samples, nfe=np.float64(result.nfe),
             seconds=np.float64(result.seconds), model=np.str_(model), sampler=np.str_(result.sampler),
             steps=np.int64(-1 if result.steps is None else result.steps), options=np.str_(json.dumps(options or {})))
    atomic_write_bytes(out, buf.getvalue())
    return result
