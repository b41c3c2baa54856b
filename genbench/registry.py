"""One generic registry for every kind of pluggable thing genbench knows.

Things register themselves in the module that defines them::

    DATASETS = Registry("dataset")

    @DATASETS.register("digits", description="scikit-learn's 8x8 digits")
    class Digits(ImageDataset): ...

A name registered twice is refused, an object of the wrong base class is refused, and an
unknown name is answered with "did you mean ...?" and the list of known names.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from genbench.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """Name -> object map with duplicate checks and "did you mean" errors."""

    def __init__(self, kind: str, base: type | None = None, package: str | tuple[str, ...] | None = None,
                 listing: str | None = None):
        self.kind = kind
        self.listing = listing or f"{kind}s"  # the `genbench ls` argument that lists these
        self.base = base
        # packages imported lazily on first lookup so that their modules' registrations run
        self.packages = (package,) if isinstance(package, str) else tuple(package or ())
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = not self.packages

    def register(self, name: str, obj: T | None = None, *, description: str | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj`` returns a decorator."""

        def add(o: T) -> T:
            if name in self._entries and self._entries[name].obj is not o:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.base is not None and isinstance(o, type) and not issubclass(o, self.base):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__name__}")
            own = getattr(o, "description", None)
            doc = description or (own if isinstance(own, str) and own else None) or _first_line(getattr(o, "__doc__", None)) or ""
            self._entries[name] = Entry(name, o, doc)
            return o

        return add if obj is None else add(obj)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for package in self.packages:
                import_submodules(package)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._load()
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known)} "
            f"(`genbench ls {self.listing}` describes them)."
        )

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._load()
        for name in sorted(self._entries):
            yield self._entries[name]


def import_submodules(package: str) -> None:
    """Import every module of ``package`` so that their registrations run."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__, prefix=package + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def check_choice(value: str, choices: list[str], what: str) -> str:
    """Validate a plain string choice with the same "did you mean" answer."""
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {what} {value!r}.{hint} Choose from: {', '.join(choices)}.")
    return value


Factory = Callable[..., Any]
