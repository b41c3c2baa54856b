"""RunSpec (what to run) and Record (what came out), both frozen and serialisable.

Every number in a results store can be traced to the RunSpec that produced it: the spec is
stored beside its metrics, and its hash (``RunSpec.key``) makes runs idempotent.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genbench.cache import content_key

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
# Metrics the runner computes from the model's likelihood, not from features: bits/dim for images,
# NLL in nats for points (named here, below the suite loader and the runner that both use them).
BPD, NLL = "bpd", "nll"
LIKELIHOOD_METRICS = (BPD, NLL)

# Bump when a change alters numbers that stored records hold: a run then recomputes the records of
# older versions instead of reusing them, and tables flag such records until it has.
#   1: genbench 0.1.0 as first published.
#   2: images quantised by each family's map (floor after dequantised training), MADE scored at the
#      level of dequantised pixels, per-example likelihood noise, half-sampling intervals,
#      precision/recall/density/coverage at equal n.
NUMERICS_VERSION = 2

# Fields that do not change the numbers and so are left out of the hash.
_UNHASHED = frozenset({"suite"})
# Fields that change how samples are evaluated, not which samples are drawn: specs equal in every other
# field share one sampling pass (``RunSpec.sampling_key``; a suite naming several feature spaces).
_EVALUATION_ONLY = frozenset({"suite", "features", "metrics", "n_reference", "reference_split", "bootstrap"})


@dataclass(frozen=True)
class RunSpec:
    """One cell of a suite's grid: dataset x model recipe x sampler x steps x seed."""

    suite: str
    dataset: str
    model: str  # recipe name in reference_models/
    family: str
    recipe_hash: str  # sha256 of the recipe (config + training) as used, overrides applied
    sampler: str
    steps: int | None
    seed: int
    n_samples: int
    n_reference: int
    metrics: tuple[str, ...]
    features: str
    train_split: str = "train"
    reference_split: str = "test"
    bootstrap: int = 0
    train: dict[str, Any] = field(default_factory=dict)  # the suite's overrides of the recipe's training
    # sampling options swept like steps (guidance scale, DDIM eta, temperature): name -> value
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Content hash of every field that can change a number (the store's primary key).

        ``options`` enters the hash only when it holds something, so specs without options keep the
        keys they had before the field existed."""
        d = {k: v for k, v in self.to_dict().items() if k not in _UNHASHED}
        if not d["options"]:
            del d["options"]
        return content_key(d)

    @property
    def sampling_key(self) -> str:
        """Hash of the fields that decide the samples (model, training, sampler, steps, seed, n): specs
        that differ only in how samples are evaluated (feature space, metrics, reference) share it."""
        return content_key({k: v for k, v in self.to_dict().items() if k not in _EVALUATION_ONLY})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["metrics"] = tuple(kw.get("metrics", ()))
        kw["options"] = dict(kw.get("options") or {})
        return cls(**kw)

    def sampler_label(self) -> str:
        """``ddim@10``, with the sampling options when there are any: ``ddim@10 [guidance=2, eta=0.5]``."""
        steps = f"@{self.steps}" if self.steps is not None else ""
        return f"{self.sampler}{steps}{options_label(self.options)}"

    def label(self) -> str:
        return f"{self.dataset} | {self.model} | {self.sampler_label()} | seed {self.seed}"


def frame_options(text: Any) -> dict[str, Any]:
    """The options of a results frame's ``options`` cell (JSON text; empty or missing: none)."""
    if not isinstance(text, str) or not text:
        return {}
    return dict(json.loads(text))


def options_label(options: dict[str, Any] | None) -> str:
    """`` [name=value, ...]`` in the options' own order ("" without options)."""
    if not options:
        return ""
    return " [" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()) + "]"


@dataclass(frozen=True)
class Record:
    """The outcome of one RunSpec: metrics, their CIs, costs and provenance."""

    spec: RunSpec
    status: str  # ok | failed | skipped
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def key(self) -> str:
        return self.spec.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "spec": self.spec.to_dict(),
            "status": self.status,
            "metrics": self.metrics,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "info": self.info,
            "provenance": self.provenance,
            "error": self.error,
            "created_at": self.created_at,
        }


def record_from_dict(d: dict[str, Any]) -> Record:
    """Inverse of ``Record.to_dict`` (used by executors that ship records between processes)."""
    ci = {k: (float(v[0]), float(v[1])) for k, v in (d.get("ci") or {}).items()}
    return Record(RunSpec.from_dict(d["spec"]), d["status"], dict(d.get("metrics") or {}), ci, dict(d.get("info") or {}),
                  dict(d.get("provenance") or {}), d.get("error"), d.get("created_at") or "")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that can change a number."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("genbench", "torch", "torchvision", "torch-fidelity", "numpy", "scipy", "scikit-learn", "torchdiffeq"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def git_revision(path: Path | None = None) -> str | None:
    """The git commit of genbench's source tree (with '+dirty' when modified), if it is a checkout."""
    root = Path(path or Path(__file__).resolve().parent.parent)
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def base_provenance(device: str) -> dict[str, Any]:
    return {
        "numerics_version": NUMERICS_VERSION,
        "versions": library_versions(),
        "git_revision": git_revision(),
        "device": device_description(device),
        "platform": platform.platform(),
        "argv": sys.argv[:],
    }


def numerics_version(provenance: dict[str, Any]) -> int:
    """The NUMERICS_VERSION a record was computed under: a runner's record from before the field
    (it has library versions but no numerics version) is 1; a record made by hand, with no
    provenance at all, counts as current."""
    if "numerics_version" not in provenance:
        return 1 if "versions" in provenance else NUMERICS_VERSION
    v = provenance["numerics_version"]
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def record_warnings(rec: "Record") -> list[str]:
    """The warnings a record carries: its metrics' own, and one when it is stale (older numerics)."""
    out = [w for w in rec.info.get("warnings") or [] if isinstance(w, str)]
    v = numerics_version(rec.provenance)
    if rec.status == OK and v < NUMERICS_VERSION:
        out.append(f"computed by an older genbench (numerics version {v}, now {NUMERICS_VERSION}) whose numbers "
                   "differ; run the suite again into this directory to recompute it")
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
