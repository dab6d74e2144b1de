"""One entry point for every dataset the notebooks can use: ``load_splits(dataset, ...)``.

Notebooks change dataset by changing only the ``dataset`` / ``data_root`` / ``task``
parameters:

=============  =========  ==========================================================
``dataset``    ``task``   ``data_root``
=============  =========  ==========================================================
"synthetic"    age/emotion optional cache folder of the generated faces
"mufac"        age        folder with custom_*_dataset.csv and *_images/ (MUFAC)
"rafdb"        emotion    folder with train/<class>/ and test/<class>/ (RAF-DB)
"folder"       any name   an image-folder tree or a CSV file (see :mod:`.folder`)
=============  =========  ==========================================================
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

from .errors import DatasetError, DatasetNotFoundError
from .hygiene import DEFAULT_THRESHOLD, maybe_drop_leaks
from .splits import UnlearningSplits

DATASETS = ("synthetic", "mufac", "rafdb", "folder")
REAL_DATASETS = ("mufac", "rafdb", "folder")
#: the size the paper trains at, used when a profile gives none
DEFAULT_IMAGE_SIZE = 128


def load_splits(dataset: str = "synthetic", task: str = "age", data_root: str | Path | None = None,
                profile: Mapping | None = None, seed: int = 0, **overrides) -> UnlearningSplits:
    """Build the :class:`UnlearningSplits` of ``dataset``.

    * ``"synthetic"`` – the embedded synthetic faces; sizes come from the profile's ``data``
      section (``profile``: a :class:`~dlfd_lib.profiles.Profile` or its settings dict;
      ``overrides`` win), the data are drawn from ``seed``; ``data_root`` (optional)
      is the cache folder.
    * ``"mufac"`` / ``"rafdb"`` / ``"folder"`` – files under ``data_root`` (required), read by
      :func:`~dlfd_lib.data.mufac.load_mufac`, :func:`~dlfd_lib.data.rafdb.load_rafdb` and
      :func:`~dlfd_lib.data.folder.load_folder`. Of the profile's ``data`` section only
      ``image_size`` is used (its other keys drive the synthetic generator); ``overrides``
      are passed on (e.g. ``split="identity"``, ``forget="forget.txt"``,
      ``verify_images=True``, ``image_size=64``).

    For every dataset ``drop_leaks=True`` then removes the retain/val/test images that
    duplicate a forget image (:func:`dlfd_lib.data.hygiene.drop_forget_leaks`, Hamming
    threshold ``hygiene_threshold`` on the perceptual hash, default 6) – here, once, for every
    loader.

    The split of a real dataset does not follow the run's ``seed``: it stays the paper's
    (seed 42 for RAF-DB's random split and for every other seeded choice) so that runs with
    different training seeds share one split; pass ``split_seed=`` to change it.
    """
    if dataset == "synthetic":
        data_cfg = dict((profile or {}).get("data", {}))
        data_cfg.update(overrides)
        drop_leaks = bool(data_cfg.pop("drop_leaks", False))
        threshold = data_cfg.pop("hygiene_threshold", DEFAULT_THRESHOLD)
        from .synthetic import make_synthetic_splits
        splits = make_synthetic_splits(task=task, seed=seed, cache_dir=data_root, **data_cfg)
        return maybe_drop_leaks(splits, drop_leaks, threshold, progress=False)
    if dataset not in REAL_DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; available: {DATASETS}")
    if data_root is None:
        raise DatasetNotFoundError(
            f"dataset {dataset!r} is read from files: set data_root to the folder of your copy "
            f"({_ROOT_HINT[dataset]}); the kit cannot download it")
    kwargs = dict(overrides)
    drop_leaks = bool(kwargs.pop("drop_leaks", False))
    threshold = kwargs.pop("hygiene_threshold", DEFAULT_THRESHOLD)
    kwargs.setdefault("image_size", (profile or {}).get("data", {}).get("image_size",
                                                                          DEFAULT_IMAGE_SIZE))
    if "split_seed" in kwargs:
        kwargs["seed"] = kwargs.pop("split_seed")
    if dataset == "mufac":
        from .mufac import load_mufac as loader
    elif dataset == "rafdb":
        from .rafdb import load_rafdb as loader
    else:
        from .folder import load_folder as loader
    options = list(loader_option_defaults(loader))
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(f"load_splits({dataset!r}) got unknown option(s) {unknown}; "
                        f"{loader.__name__} accepts {options} (and split_seed=, drop_leaks=, "
                        f"hygiene_threshold=)")
    splits = loader(data_root, task=task, **kwargs)
    return maybe_drop_leaks(splits, drop_leaks, threshold, progress=bool(kwargs.get("progress", False)))


def loader_option_defaults(loader) -> dict:
    """The keyword options a dataset loader takes, name -> default (the fields of its options
    dataclass, ``loader.options_class``, in place of its ``options`` and ``**settings``)."""
    import dataclasses
    out = {}
    for name, p in inspect.signature(loader).parameters.items():
        if name in ("data_root", "task") or p.kind is p.VAR_KEYWORD:
            continue
        if name == "options" and hasattr(loader, "options_class"):
            out.update({f.name: f.default for f in dataclasses.fields(loader.options_class)})
        else:
            out[name] = p.default
    return out


_ROOT_HINT = {
    "mufac": "the folder holding custom_train_dataset.csv and train_images/",
    "rafdb": "the folder holding train/<class>/ and test/<class>/",
    "folder": "an image-folder tree root/<class>/*.jpg, or a CSV file with path,label columns",
}
