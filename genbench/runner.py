"""RunSpec -> Record, with caching (checkpoints, reference features) and resume.

Each stage is one small function: ``train_or_load`` (recipe -> model), ``draw_samples``
(model -> samples, NFE, seconds), ``samples_to_features``, ``likelihood_metrics``, and
``evaluate_drawn`` (samples -> one spec's Record). ``run_cell`` ties them together for the specs
of one cell (one ``RunSpec.sampling_key``: a suite naming several feature spaces gives one spec
per space), which are trained and sampled once; ``run_spec`` is a cell of one spec.
``run_specs`` is the local executor: it runs the specs not yet stored as ok, cell after cell. The layers read downward: ``genbench.pipeline``
(a whole suite) -> ``genbench.executors`` -> this module -> models, data, metrics; the suite
loader sits beside it and neither imports the other.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from genbench import cache
from genbench.data.base import IMAGES, DATASETS, Samples, get_modality
from genbench.errors import DataUnavailableError, GenbenchError, UsageError
from genbench.models.base import GenerativeModel, build_model, load_checkpoint, read_checkpoint_meta, save_checkpoint
from genbench.progress import Reporter
from genbench.recipes import load_recipe
from genbench.seeding import SeededNoise, seed_everything
from genbench.spec import FAILED, LIKELIHOOD_METRICS, OK, SKIPPED, Record, RunSpec, base_provenance
from genbench.store import ResultsStore

CHECKPOINT_VERSION = 1  # bump when training code changes what a recipe produces
LIKELIHOOD_VERSION = 2  # bump when a change alters cached likelihoods (2: MADE's floor, per-example probes)
# Feature networks round differently at different batch sizes (oneDNN/cuDNN pick other kernels), so
# features are always extracted in batches of this size: they depend on the inputs only, never on
# RunContext.batch_size or on which run filled the reference-feature cache.
FEATURE_BATCH_SIZE = 256


@dataclass
class RunContext:
    """What every spec of one run shares: device, data root, in-process caches, progress."""

    device: str = "cpu"
    data_root: Path | None = None
    batch_size: int = 500  # sampling and likelihood batches (features use FEATURE_BATCH_SIZE)
    weights: Path | None = None
    reporter: Reporter | None = None
    _data: dict[tuple[str, str], Samples] = field(default_factory=dict)
    _extractors: dict[str, Any] = field(default_factory=dict)
    previews: dict[str, Any] = field(default_factory=dict)  # spec key -> a few samples, for the store's sample figures

    def data(self, dataset: str, split: str) -> Samples:
        if (dataset, split) not in self._data:
            self._data[(dataset, split)] = DATASETS.get(dataset).load(split, self.data_root)
        return self._data[(dataset, split)]

    def extractor(self, name: str):
        if name not in self._extractors:
            from genbench.features.base import build_features

            self._extractors[name] = build_features(name, weights=self.weights, device=self.device)
        return self._extractors[name]

    def stage(self, name: str, total: int):
        return self.reporter.stage(name, total) if self.reporter else None

    def event(self, event: str, spec: RunSpec | None = None, **fields: Any) -> None:
        """One line of the ``--log-json`` event log (nothing without one)."""
        if self.reporter:
            self.reporter.event(event, spec, **fields)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return device


def checkpoint_stem(spec: RunSpec) -> Path:
    key = cache.content_key({"recipe": spec.recipe_hash, "dataset": spec.dataset, "split": spec.train_split,
                             "seed": spec.seed, "version": CHECKPOINT_VERSION})
    return cache.subdir("checkpoints") / key


def train_or_load(spec: RunSpec, ctx: RunContext) -> tuple[GenerativeModel, dict[str, Any]]:
    """The model of ``spec``: loaded from the checkpoint cache, or trained from its recipe and cached
    (a ``diffusers:``/``python:`` model is loaded as it is: genbench does not train it)."""
    from genbench.external import is_external, load_external_once

    if is_external(spec.model):
        return load_external_once(spec.model, ctx.device), {"train_s": 0.0, "cached": True, "external": True}
    ds = DATASETS.get(spec.dataset)
    stem = checkpoint_stem(spec)
    if stem.with_suffix(".json").is_file():
        try:
            model = load_checkpoint(stem, expect_family=spec.family, map_location=ctx.device)
            meta = read_checkpoint_meta(stem)
            # train_s is what training this checkpoint cost, whether it was trained now or earlier
            return model.eval(), {**meta.get("train_report", {}), "train_s": float(meta.get("train_s") or 0.0),
                                  "cached": True}
        except UsageError as e:  # a damaged cache entry is retrained and replaced, like reference features
            if ctx.reporter:
                ctx.reporter.log(f"note: cached checkpoint unusable ({e}); retraining it")
    recipe = load_recipe(spec.model, ds.modality, spec.train, spec.dataset)
    data = ctx.data(spec.dataset, spec.train_split)
    model = build_model(recipe.family, ds.shape, ds.modality, ds.num_classes, **recipe.config).to(ctx.device)
    generator = seed_everything(spec.seed)
    t0 = time.perf_counter()
    report = model.fit(data, recipe.budget, generator, ctx.stage("train", recipe.budget.steps))
    train_s = time.perf_counter() - t0
    report = {k: float(v) for k, v in report.items()}
    save_checkpoint(model, stem, extra={"train_report": report, "train_s": train_s, "recipe": spec.model,
                                        "dataset": spec.dataset, "seed": spec.seed})
    return model.eval(), {**report, "train_s": train_s, "cached": False}


@dataclass
class Drawn:
    """What ``draw_samples`` returns: samples on the CPU, the class each was asked for, NFE, seconds."""

    x: Any  # the modality's examples: [N, *data_shape] tensors, or N SMILES strings
    labels: torch.Tensor | None  # [N] int64 for class-conditional families, else None
    nfe: dict[str, float]  # {"nfe": mean per sample, "nfe_max": the largest batch's count}
    seconds: float


@torch.no_grad()
def draw_samples(model: GenerativeModel, spec: RunSpec, ctx: RunContext) -> Drawn:
    """``spec.n_samples`` samples with per-sample seeds (and balanced class labels for conditional families).

    NFE: ``nfe``, the mean per sample, and ``nfe_max``, the largest batch's count; they differ only
    for an adaptive sampler (``ode``), whose solver picks its steps per batch.
    """
    noise = SeededNoise.for_run(spec.seed, spec.n_samples, ctx.device,
                                num_classes=model.num_classes if model.conditional else None)
    cb = ctx.stage("sample", spec.n_samples)
    chunks, nfe, done = [], [], 0
    _sync(ctx.device)
    t0 = time.perf_counter()
    for batch in noise.batches(ctx.batch_size):
        x, calls = model.sample(batch, spec.sampler, spec.steps, **spec.options)
        chunks.append(x)
        nfe.append((float(calls), len(batch)))
        done += len(batch)
        if cb:
            cb(done)
    _sync(ctx.device)
    seconds = time.perf_counter() - t0
    # every sample of a batch costs that batch's calls
    nfe_mean = sum(calls * size for calls, size in nfe) / sum(size for _, size in nfe)
    return Drawn(get_modality(model.modality).concat(chunks), noise.labels, {"nfe": nfe_mean, "nfe_max": max(calls for calls, _ in nfe)}, seconds)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def samples_to_features(x: Any, model: GenerativeModel, extractor, ctx: RunContext) -> dict[str, torch.Tensor]:
    """Images are quantised to uint8 first (the convention every extractor sees), by the map the model
    declares (``sample_quantisation``: the inverse of how its training data entered [-1, 1])."""
    inputs = get_modality(model.modality).features_input(x, model.sample_quantisation)
    return extractor.extract(inputs, batch_size=FEATURE_BATCH_SIZE)


@torch.no_grad()
def likelihood_metrics(model: GenerativeModel, spec: RunSpec, ctx: RunContext, wanted: list[str]) -> tuple[dict[str, float], dict]:
    """bits/dim (images: 8-bit, uniform dequantisation) or NLL in nats (points) on the reference split.

    A property of the checkpoint, not of the sampler: computed once per (checkpoint, split, n) and cached.
    """
    if model.likelihood_kind is None or not wanted:
        return {}, {}
    n = min(spec.n_reference, 2000)
    key = cache.content_key([checkpoint_stem(spec).name, spec.reference_split, n, LIKELIHOOD_VERSION])
    path = cache.subdir("likelihood") / f"{key}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            return saved["values"], saved["info"]
        except (json.JSONDecodeError, KeyError, OSError):
            pass  # a damaged entry is recomputed and rewritten
    values, info = compute_likelihood(model, spec, ctx, n)
    cache.atomic_write_bytes(path, json.dumps({"values": values, "info": info}).encode())
    return values, info


def compute_likelihood(model: GenerativeModel, spec: RunSpec, ctx: RunContext, n: int) -> tuple[dict[str, float], dict]:
    """The model's log-likelihood of ``n`` reference examples: images uniformly dequantised (one generator
    seeded with ``spec.seed``), the estimator's noise per example (``likelihood_noise``), so the value
    does not depend on ``ctx.batch_size`` (beyond an adaptive ODE solver's tolerance: its steps are the batch's)."""
    from genbench.metrics.likelihood import bits_per_dim
    from genbench.models.base import likelihood_noise

    ds = DATASETS.get(spec.dataset)
    modality = get_modality(ds.modality)
    data = ctx.data(spec.dataset, spec.reference_split).take(n)
    x = modality.likelihood_input(data.x, torch.Generator().manual_seed(spec.seed))
    noise = likelihood_noise(len(x), spec.seed).batches(ctx.batch_size)
    ll = torch.cat([model.log_likelihood(b, next(noise)).double().cpu() for b in modality.batches(x, ctx.batch_size, ctx.device)])
    info = {"likelihood_kind": model.likelihood_kind, "likelihood_n": int(len(ll))}
    if ds.modality == IMAGES:
        return {"bpd": bits_per_dim(ll, math.prod(ds.shape), discrete=getattr(model, "discrete_likelihood", False))}, info
    true_lp = ds.log_prob(data.x)
    if true_lp is not None:
        info["nll_true_density"] = float(-true_lp.double().mean())
    return {"nll": float(-ll.mean())}, info


def feature_metrics_for(spec: RunSpec, feature_keys: set[str], reference_keys: set[str] | None = None) -> list[str]:
    from genbench.metrics import default_metrics

    if not spec.metrics:
        return default_metrics(feature_keys, reference_keys)
    return [m for m in spec.metrics if m not in LIKELIHOOD_METRICS]


def run_spec(spec: RunSpec, ctx: RunContext) -> Record:
    """Train or load, sample, extract features, evaluate: one Record (never raises for a bad model)."""
    return run_cell([spec], ctx)[0]


def sampling_groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` grouped by ``RunSpec.sampling_key`` (a cell evaluated in several feature spaces), in
    order of first appearance: each group is sampled once."""
    groups: dict[str, list[RunSpec]] = {}
    for sp in specs:
        groups.setdefault(sp.sampling_key, []).append(sp)
    return list(groups.values())


def run_cell(specs: list[RunSpec], ctx: RunContext) -> list[Record]:
    """The Records of specs that share one ``sampling_key``: the model is trained or loaded and sampled
    once, and every spec evaluates those samples in its own feature space; all record the NFE and
    seconds of that one pass. A failure to train or sample fails every spec of the cell; a failure in
    one feature space (weights missing, a metric undefined) fails only its spec."""
    if len({sp.sampling_key for sp in specs}) != 1:
        raise ValueError("run_cell takes specs that share one sampling_key; group them with sampling_groups")
    provs = [{**base_provenance(ctx.device), "spec": sp.to_dict()} for sp in specs]
    shared = _guarded(specs[0], provs[0], lambda: _train_and_sample(specs[0], ctx))
    if isinstance(shared, Record):  # training or sampling failed, or the samples are not finite: for every spec
        return [replace(shared, spec=sp, provenance=prov) for sp, prov in zip(specs, provs)]
    model, train_report, drawn, preview = shared
    records = []
    for sp, prov in zip(specs, provs):
        rec = _guarded(sp, prov, lambda: evaluate_drawn(sp, model, train_report, drawn, ctx, prov))
        if rec.status == OK:
            ctx.previews[sp.key] = preview
        records.append(rec)
    return records


def _guarded(spec: RunSpec, prov: dict[str, Any], stage):
    """``stage()``, or the skipped/failed Record of ``spec`` when it raises for a bad model or missing data."""
    try:
        return stage()
    except DataUnavailableError as e:
        return Record(spec, SKIPPED, provenance=prov, error=str(e))
    except (cache.WriteFailure, cache.UnwritableError):
        raise  # the disk, not the spec: stop the run, keep the records stored so far
    except (GenbenchError, RuntimeError, ValueError, FloatingPointError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return Record(spec, FAILED, provenance=prov, error=f"{type(e).__name__}: {first}")


def _train_and_sample(spec: RunSpec, ctx: RunContext) -> tuple[GenerativeModel, dict[str, Any], Drawn, Any] | Record:
    """The sampling part of a cell: model, training report, samples and their preview (a failed Record for
    non-finite samples)."""
    model, train_report = train_or_load(spec, ctx)
    ctx.event("trained", spec, train_s=train_report.get("train_s"), cached=train_report.get("cached"))
    drawn = draw_samples(model, spec, ctx)
    ctx.event("sampled", spec, n=len(drawn.x), seconds=drawn.seconds, nfe=drawn.nfe)
    x = drawn.x
    bad = get_modality(model.modality).count_nonfinite(x)
    if bad:
        return Record(spec, FAILED, info={"train": train_report},
                      error=f"model produced {bad} of {len(x)} samples with NaN or Inf; lower the learning rate or check the recipe")
    return model, train_report, drawn, preview_samples(x, model)


def evaluate_drawn(spec: RunSpec, model: GenerativeModel, train_report: dict[str, Any], drawn: Drawn, ctx: RunContext,
                   prov: dict[str, Any]) -> Record:
    """One spec's Record from its cell's samples: features in the spec's space, metrics, likelihood, costs."""
    from genbench.metrics import MetricOptions, MetricResult, evaluate_features
    from genbench.metrics.base import LABELS
    from genbench.metrics.evaluate import n_examples
    from genbench.reference import reference_extras, reference_features

    x, nfe, seconds = drawn.x, drawn.nfe, drawn.seconds
    extractor = ctx.extractor(spec.features)
    cb = ctx.stage("features", 2)
    real = reference_features(spec.dataset, spec.reference_split, spec.n_reference, extractor, data_root=ctx.data_root,
                              batch_size=FEATURE_BATCH_SIZE)
    real = {**real, **reference_extras(spec.dataset, spec.reference_split, spec.n_reference, ctx.data_root)}
    if cb:
        cb(1)
    fake = samples_to_features(x, model, extractor, ctx)
    if drawn.labels is not None:
        fake[LABELS] = drawn.labels
    if cb:
        cb(2)
    names = feature_metrics_for(spec, set(fake), set(real))
    # a metric these sizes cannot define (fd_inf with n < 4.8 d) is left out with a warning, not a failed spec
    options = MetricOptions(bootstrap=spec.bootstrap, device=ctx.device, seed=2020, on_undefined="warn")
    cb = ctx.stage("metrics", 2)
    result = evaluate_features(names, fake, real, options, space=extractor.space) if names else MetricResult()  # e.g. metrics: [bpd]
    if cb:
        cb(1)
    wanted_ll = [m for m in (spec.metrics or LIKELIHOOD_METRICS) if m in LIKELIHOOD_METRICS]
    ll_values, ll_info = likelihood_metrics(model, spec, ctx, wanted_ll)
    if cb:
        cb(2)
    metrics = {**result.values, **ll_values, "nfe": nfe["nfe"], "sample_s_per_1k": seconds * 1000.0 / len(x),
               "train_s": float(train_report.get("train_s", 0.0))}
    info = {**result.info, **ll_info, "train": train_report, "warnings": result.warnings,
            "n_samples": len(x), "sample_s": seconds, "nfe_max": nfe["nfe_max"]}
    prov = {**prov, **extractor.identity()}
    prov.update({"n_fake": len(x), "n_real": int(n_examples(real)), "reference_split": spec.reference_split,
                 "sampler": spec.sampler, "steps": spec.steps, "ema": train_report.get("ema"),
                 "sampling_key": spec.sampling_key})
    return Record(spec, OK, metrics, dict(result.ci), info, prov)


def preview_samples(x: Any, model: GenerativeModel):
    """A few samples for the store's figures, as the modality keeps them: the first 64 images as the uint8 an
    extractor sees, the first 2,000 points, the first 64 SMILES strings."""
    return get_modality(model.modality).preview(x, model.sample_quantisation)


def pending_specs(specs: list[RunSpec], store: ResultsStore, rerun: bool = False) -> list[RunSpec]:
    """The specs a run must compute: all with ``rerun``, else those not already stored as ok."""
    done = set() if rerun else store.done_keys()
    return [sp for sp in specs if sp.key not in done]


def run_specs(specs: list[RunSpec], store: ResultsStore, ctx: RunContext, rerun: bool = False) -> list[Record]:
    """Run every spec not already stored as ok (all with ``rerun``), one cell after another (the specs of
    a cell in several feature spaces share one sampling pass, ``run_cell``); each record is stored as
    soon as its cell is evaluated. Returns the records computed now."""
    todo = pending_specs(specs, store, rerun)
    records = []
    for cell in sampling_groups(todo):  # specs of one cell in several feature spaces: one sampling pass
        keys = {s.key for s in cell}
        if not rerun and len(todo) > 1 and keys <= store.done_keys(among=keys):
            continue  # another process writing this store (a second worker on the suite) finished it meanwhile
        for spec in cell:
            if ctx.reporter:
                ctx.reporter.progress.update(ctx.reporter.overall, description="suite")
                ctx.reporter.log(f"run  {spec.label()}")
            ctx.event("spec_started", spec)
        for rec in run_cell(cell, ctx):
            preview = ctx.previews.pop(rec.key, None)
            if not rerun and rec.status == OK and rec.key in store.done_keys(among={rec.key}):
                continue  # another process finished this spec while we computed it: keep one ok record per key
            store.put(rec)
            if rec.status == OK:
                store.put_preview(rec.key, preview)
            records.append(rec)
            report_record(rec, ctx)
    return records


def report_record(rec: Record, ctx: RunContext) -> None:
    """The end of one spec on the terminal and in the event log (every executor calls this)."""
    if rec.status == OK:
        ctx.event("evaluated", rec.spec, metrics=rec.metrics)
    else:
        ctx.event(rec.status, rec.spec, error=rec.error)
    if ctx.reporter:
        if rec.status != OK:
            ctx.reporter.log(f"{rec.status}: {rec.spec.label()}: {rec.error}", important=True)
        ctx.reporter.advance_overall()


def check_run_inputs(specs: list[RunSpec], ctx: RunContext) -> None:
    """Refuse an unwritable cache and a bad ``--weights`` file up front (exit 2, nothing written)."""
    cache.subdir("checkpoints")
    cache.sweep_stale_temp_files()
    if ctx.weights is None:
        return
    several = next((cell for cell in sampling_groups(specs) if len({sp.features for sp in cell}) > 1), None)
    if several:  # one file cannot be the weights of several networks
        raise UsageError(f"--weights names one weights file, but this suite evaluates {several[0].dataset} in the feature "
                         f"spaces {', '.join(dict.fromkeys(sp.features for sp in several))}; drop --weights and give each "
                         "network its file by environment variable ($GENBENCH_INCEPTION_WEIGHTS, "
                         "$GENBENCH_DINOV2_WEIGHTS, $GENBENCH_CLIP_WEIGHTS)")
    for name in dict.fromkeys(sp.features for sp in specs):
        try:
            ctx.extractor(name)  # loads (and keeps) the extractor: a pickle with code or a wrong network is refused
        except DataUnavailableError:
            pass  # its specs are skipped with the message
