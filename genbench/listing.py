"""``genbench ls`` without importing torch on every call.

What is registered is known only by importing the registries' packages (models, samplers,
metrics, ...), which import torch: seconds for a one-line answer. The listing is therefore kept
in the cache (``<cache>/listing/<kind>-<key>.json``) under a key made of genbench's version and
the name, size and modification time of every source file of the package and of the recipes, so
any change to what could be registered makes a new entry; an unwritable cache only costs speed.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from genbench import cache

def source_files() -> list[Path]:
    roots = [Path(str(resources.files("genbench")))]
    try:
        roots.append(Path(str(resources.files("reference_models"))))
    except ModuleNotFoundError:  # pragma: no cover - an install without recipes
        pass
    return sorted(p for root in roots for pattern in ("*.py", "*.yaml", "*.json") for p in root.rglob(pattern))


def listing_key() -> str:
    """Changes whenever a file that could register something (or a recipe) changes."""
    from genbench import __version__

    stats = []
    for p in source_files():
        st = p.stat()
        stats.append([str(p), st.st_size, st.st_mtime_ns])
    return cache.content_key({"version": __version__, "files": stats})


def cached_listing(kind: str) -> list[tuple[str, str]]:
    """(name, description) rows of ``kind``, from the cache when the sources are unchanged."""
    path = cache.cache_dir() / "listing" / f"{kind}-{listing_key()}.json"
    try:
        return [tuple(row) for row in json.loads(path.read_text())]
    except (OSError, ValueError):
        pass
    from genbench.report.tables import listing

    rows = listing(kind)
    try:
        cache.atomic_write_bytes(path, json.dumps(rows).encode())
    except (OSError, cache.WriteFailure, cache.UnwritableError):
        pass  # a read-only cache: list without keeping it
    return rows
