"""Model recipes: ``reference_models/<name>.yaml`` files naming a family, its config and training.

A recipe::

    family: diffusion
    description: EDM denoiser, MLP
    config: {hidden: 256, depth: 4}          # constructor kwargs of the family
    train: {steps: 3000, batch_size: 512, lr: 2.0e-3, ema: 0.999}
    images:                                  # optional overrides for one modality (points, images, smiles, ...)
      config: {...}
      train: {...}
    datasets:                                # optional overrides for one dataset (after the modality's)
      fashion-mnist:
        train: {steps: 20000}                # e.g. a budget sized for a GPU

Suites name recipes; a suite's ``train:`` setting may override training keys (smoke suites
train briefly). The recipe as used (overrides applied) is hashed into the RunSpec.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from genbench.cache import content_key
from genbench.data.base import DATASETS, MODALITIES
from genbench.errors import UsageError
from genbench.models.base import MODELS, TrainBudget
from genbench.registry import check_choice

_RECIPE_KEYS = {"family", "description", "config", "train", "datasets"}  # and one section per modality
_OVERRIDE_KEYS = {"config", "train"}


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    description: str
    config: dict[str, Any]
    train: dict[str, Any]

    @property
    def budget(self) -> TrainBudget:
        return TrainBudget.from_dict(self.train)

    @property
    def hash(self) -> str:
        return content_key({"family": self.family, "config": self.config, "train": self.train})


def recipes_dir() -> Path:
    return Path(str(resources.files("reference_models")))


@lru_cache(maxsize=None)
def _raw_recipe(name: str) -> dict[str, Any]:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        check_choice(name, recipe_names(), "model recipe")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"recipe {path} is not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
    modalities = MODALITIES.names()
    _check_keys(raw, _RECIPE_KEYS | set(modalities), f"recipe {path.name}")
    for modality in modalities:
        _check_keys(raw.get(modality) or {}, _OVERRIDE_KEYS, f"recipe {path.name} section {modality!r}")
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise UsageError(f"recipe {path.name} section 'datasets' must map dataset names to {{config, train}} overrides")
    for dataset, section in datasets.items():
        DATASETS.get(str(dataset))  # "did you mean" for a misspelt dataset
        _check_keys(section or {}, _OVERRIDE_KEYS, f"recipe {path.name} section 'datasets: {dataset}'")
    if "family" not in raw:
        raise UsageError(f"recipe {path.name} names no 'family'; add one of: {', '.join(MODELS.names())}")
    MODELS.get(raw["family"])
    return raw


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def load_recipe(name: str, modality: str, train_overrides: dict[str, Any] | None = None,
                dataset: str | None = None) -> Recipe:
    """The recipe ``name`` for data of ``modality`` (and ``dataset``), with a suite's training overrides applied.

    Precedence, lowest first: the recipe's top level, its modality section, its ``datasets: <dataset>``
    section, the suite's ``train`` overrides.
    """
    raw = _raw_recipe(name)
    section = raw.get(modality) or {}
    per_dataset = (raw.get("datasets") or {}).get(dataset) or {} if dataset else {}
    config = {**copy.deepcopy(raw.get("config") or {}), **(section.get("config") or {}),
              **copy.deepcopy(per_dataset.get("config") or {})}
    train = {**(raw.get("train") or {}), **(section.get("train") or {}), **(per_dataset.get("train") or {}),
             **(train_overrides or {})}
    TrainBudget.from_dict(train)  # validates the keys
    return Recipe(name, raw["family"], raw.get("description", ""), config, train)


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise UsageError(f"{where} must be a mapping of keys to values")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {where}; allowed keys: {', '.join(sorted(allowed))}")
