"""One entry point for every dataset the notebooks can use: ``load_splits(dataset, ...)``.

Notebooks change dataset by changing only the ``dataset`` / ``data_root`` parameters.
"""
from __future__ import annotations

from pathlib import Path

from .splits import UnlearningSplits

DATASETS = ("synthetic",)


def load_splits(dataset: str = "synthetic", task: str = "age", data_root: str | Path | None = None,
                profile: dict | None = None, seed: int = 0, **overrides) -> UnlearningSplits:
    """Build the :class:`UnlearningSplits` of ``dataset``.

    * ``"synthetic"`` – the embedded synthetic faces; sizes come from the profile's ``data``
      section (``overrides`` win), the data are drawn from ``seed``; ``data_root`` (optional)
      is the cache folder.
    """
    data_cfg = dict((profile or {}).get("data", {}))
    data_cfg.update(overrides)
    if dataset == "synthetic":
        from .synthetic import make_synthetic_splits
        return make_synthetic_splits(task=task, seed=seed, cache_dir=data_root, **data_cfg)
    raise ValueError(f"unknown dataset {dataset!r}; available: {DATASETS}")
