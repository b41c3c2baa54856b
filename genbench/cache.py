"""Content-addressed artifacts (checkpoints, reference features/statistics), written atomically.

The cache lives outside the package: ``--cache DIR``, else ``$GENBENCH_CACHE``, else
``$XDG_CACHE_HOME/genbench``, else ``~/.cache/genbench``. Every entry is written to a temporary
file in the same directory, fsynced, and renamed into place, so a killed process leaves either
the complete entry or nothing (a stray ``*.tmp`` file is ignored, and ``sweep_stale_temp_files``
removes those older than an hour at the start of a run).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.errors import RunFailure, UsageError

if TYPE_CHECKING:  # torch is imported where tensors are written, so light commands stay light
    import torch

_override: Path | None = None
TEMP_SUFFIX = ".tmp"
STALE_TEMP_S = 3600.0  # a temp file this old belongs to no live writer


_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


class WriteFailure(RunFailure):
    """Writing an artifact failed (disk full, I/O error): the run stops instead of recording a spec as failed."""


class UnwritableError(UsageError):
    """A directory genbench must write to cannot be created or written (exit 2; the run stops)."""


def set_cache_dir(path: Path | str | None) -> None:
    global _override
    _override = Path(path) if path else None


def cache_dir() -> Path:
    if _override is not None:
        root = _override
    elif os.environ.get("GENBENCH_CACHE"):
        root = Path(os.environ["GENBENCH_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genbench"
    return root


def subdir(name: str) -> Path:
    d = cache_dir() / name
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UnwritableError(f"cannot create cache directory {d} ({e.strerror}); pass --cache DIR or set GENBENCH_CACHE to a writable place") from None
    return d


def content_key(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none of it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        if e.errno in _UNWRITABLE:
            raise UnwritableError(f"cannot write {path} ({e.strerror or e}); choose a writable directory") from None
        raise WriteFailure(f"could not write {path} ({e.strerror or e}); free disk space or choose another directory") from None
    try:
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; a finished file gets the mode any other file would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _silent_unlink(tmp)
        raise WriteFailure(f"could not write {path} ({e.strerror or e}); free disk space or choose another directory, then rerun (finished records are kept)") from None


def _umask_mode() -> int:
    """0666 less the process umask (what ``open(path, "w")`` would give a new file)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically."""
    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, blob)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; a corrupt entry is a UsageError naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(f"file {path} is not a readable safetensors file ({e}); delete it to have it rebuilt") from None


def sweep_stale_temp_files(max_age_s: float = STALE_TEMP_S) -> int:
    """Delete temp files that killed writers left in the cache (older than ``max_age_s``); returns how many."""
    root, now, removed = cache_dir(), time.time(), 0
    if not root.is_dir():
        return 0
    for p in root.rglob(f"*{TEMP_SUFFIX}"):
        try:
            if p.is_file() and now - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def _silent_unlink(p: str | Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
