"""Profiles: one name picks the sizes of everything.

``PROFILES`` is the single home of the data sizes, the training recipe, the evaluation batch
size, the analysis sizes, the notebook cell timeout and the protocol's sizes of each profile
(``smoke`` for the tests, ``quick`` for the CPU demo, ``paper`` for the authors' recipe on a
GPU). :func:`get_profile` returns one of them as a :class:`Profile`, the one object that
travels through the kit: its ``name`` picks the unlearning methods' presets
(:func:`dlfd_lib.unlearn.method_defaults`) and names the checkpoints, its sections size
everything else. A :class:`Profile` reads like the settings dict it was built from
(``profile["train"]["epochs"]``, ``profile.get("data", {})``) as well as by attribute
(``profile.train["epochs"]``).

The per-method hyperparameters are not here: each method's dataclass holds its own presets per
profile (``PRESETS`` in ``dlfd_lib/unlearn/<method>.py``), checked against :data:`PROFILE_NAMES`.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Iterator

from .optim import SGD_DEFAULTS

__all__ = ["PROFILES", "PROFILE_NAMES", "Profile", "get_profile", "profile_name"]

# data.*  -> dlfd_lib.data.load_splits (synthetic: make_synthetic_splits keyword arguments)
# train.* -> dlfd_lib.train.TrainConfig.from_profile (warmup_frac applies to onecycle only)
# analysis.* -> notebooks 02, 04 and 05: umap_sizes (images per split in the feature maps, None:
#   all), track_every / track_size (optimiser steps between, and images per split in, the
#   correlation-collapse measurements along a run), ulira_k (reference models of the per-example
#   membership test)
# cell_timeout_s -> run_notebooks: the longest one notebook cell may run before the run stops
#   with a message naming the cell (a hang never lasts forever); `dlfd run --cell-timeout`
# protocol.* -> dlfd_lib.protocol.ProtocolConfig (tuning seeds, evaluation seeds, Optuna trials per
#   method, points per trade-off front, attack bootstrap resamples; see README "The protocol")
_COMMON_DATA = {"forget_frac": 0.15}
_COMMON_TRAIN = {"weight_decay": SGD_DEFAULTS.weight_decay, "momentum": SGD_DEFAULTS.momentum}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "tests: tiny data, a few seconds per notebook",
        "data": {"image_size": 32, "n_train_ids": 24, "imgs_per_id": 6,
                 "n_val_ids": 6, "n_test_ids": 6, "pose_sd": 1.0, "light_sd": 1.0,
                 "identity_offset_sd": 0.35, **_COMMON_DATA},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "onecycle",
                  "warmup_frac": 0.25, "augment": True, **_COMMON_TRAIN},
        "eval_batch_size": 64,
        "cell_timeout_s": 1200,
        "analysis": {"umap_sizes": {"retain": 48, "forget": None, "test": 24},
                     "track_every": 2, "track_size": 32, "ulira_k": 2},
        "protocol": {"tuning_seeds": [100], "eval_seeds": [0, 1], "n_trials": 2, "n_strengths": 2,
                     "n_front_seeds": None, "mia_boot": 5, "n_mia": 1, "n_boot": 2000},
    },
    "quick": {
        "description": "the laptop profile: 2 CPU cores in float32 run all five notebooks and the whole "
                       "verdict protocol (README: Profiles)",
        # 32 px: 1.6-2x the training and ~5x the evaluation throughput of 64 px on a 2-core CPU
        # (benchmarks/train_speed.py). 200 training people of whom a fifth (40 people, ~320
        # images) are forgotten, 80 validation people (the DLFD monitor's half: ~320 images) and
        # 80 test people: with the MUFAC share (15 %) of 160 people the forget set held 24
        # people, too few for the forget people to look like unseen people to the retrained
        # model on every seed (its forget-test accuracy gap reached 0.11-0.15 on 2 of 5 seeds)
        # and for a steady original MIA (0.58 on one seed). Training without augmentation: at
        # 32 px the augmented recipe needs 2-3x the epochs to memorise its training people
        # (train acc 0.60 after 30 epochs), while 20 un-augmented one-cycle epochs reach train
        # acc >= 0.9, test ~0.6 and a MUFAC-like original MIA (benchmarks/synthetic_quality.py;
        # the paper profile keeps the authors' augmented recipe and the 15 % forget share)
        "data": {"image_size": 32, "n_train_ids": 200, "imgs_per_id": 8,
                 "n_val_ids": 80, "n_test_ids": 80, "pose_sd": 0.5, "light_sd": 0.5,
                 "identity_offset_sd": 0.3, **_COMMON_DATA, "forget_frac": 0.2},
        "train": {"epochs": 20, "batch_size": 64, "lr": 0.03, "schedule": "onecycle",
                  "warmup_frac": 0.25, "augment": False, **_COMMON_TRAIN},
        "eval_batch_size": 256,
        "cell_timeout_s": 3600,
        "analysis": {"umap_sizes": {"retain": 600, "forget": None, "test": None},
                     "track_every": 5, "track_size": 300, "ulira_k": 4},
        # sized for 2 CPU cores in float32 (benchmarks/protocol_cost.py): one tuning seed, 4
        # trials per method, fronts of 3 strengths (+ the tuned point) on the first 3 evaluation
        # seeds
        "protocol": {"tuning_seeds": [100], "eval_seeds": [0, 1, 2, 3, 4], "n_trials": 4,
                     "n_strengths": 3, "n_front_seeds": 3, "mia_boot": 20, "n_mia": 3,
                     "n_boot": 10000},
    },
    "paper": {
        "description": "the authors' recipe on a GPU: 128 px, 100 epochs",
        # the generator's defaults (calibrated for 60-100 epochs on a GPU)
        "data": {"image_size": 128, "n_train_ids": 300, "imgs_per_id": 34,
                 "n_val_ids": 50, "n_test_ids": 50, "pose_sd": 1.0, "light_sd": 1.0,
                 "identity_offset_sd": 0.35, **_COMMON_DATA},
        "train": {"epochs": 100, "batch_size": 32, "lr": 0.01, "schedule": "cosine",
                  "warmup_frac": 0.0, "augment": True, **_COMMON_TRAIN},
        "eval_batch_size": 256,
        "cell_timeout_s": 43200,
        "analysis": {"umap_sizes": {"retain": 2000, "forget": 1000, "test": 1000},
                     "track_every": 20, "track_size": 1000, "ulira_k": 8},
        "protocol": {"tuning_seeds": [100, 101], "eval_seeds": [0, 1, 2, 3, 4], "n_trials": 20,
                     "n_strengths": 5, "n_front_seeds": None, "mia_boot": 50, "n_mia": 3,
                     "n_boot": 10000},
    },
}


#: the names of the profiles, in order
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)


@dataclass(eq=False)
class Profile(Mapping):
    """The settings of one profile and its name (see :data:`PROFILES` for what each section
    drives). Edit a copy freely (``profile.train["epochs"] = 1``): :data:`PROFILES` stays as it
    is, and the ``name`` still picks the methods' presets. Compares equal to its settings dict;
    iterating over it yields the section names (``name`` is not a section)."""

    name: str
    description: str
    data: dict[str, Any]
    train: dict[str, Any]
    eval_batch_size: int
    cell_timeout_s: float | None
    analysis: dict[str, Any]
    protocol: dict[str, Any]

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        """The settings' keys: every field but ``name``."""
        return tuple(f.name for f in fields(cls) if f.name != "name")

    def __getitem__(self, key: str) -> Any:
        if key not in self.sections():
            raise KeyError(f"profile {self.name!r} has no setting {key!r}; its settings are "
                           f"{', '.join(self.sections())}")
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sections())

    def __len__(self) -> int:
        return len(self.sections())

    def as_dict(self) -> dict[str, Any]:
        """A deep copy of the settings as a plain dict (the form of :data:`PROFILES`' entries,
        for JSON)."""
        return copy.deepcopy({k: getattr(self, k) for k in self.sections()})


def get_profile(name: str | Profile) -> Profile:
    """The :class:`Profile` called ``name``, a deep copy of its :data:`PROFILES` entry (edit it
    freely; :data:`PROFILES` stays). A :class:`Profile` passed in is returned as it is."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return Profile(name=name, **copy.deepcopy(PROFILES[name]))


def profile_name(profile: str | Profile) -> str:
    """The name of ``profile`` (a :class:`Profile` or a profile's name), checked."""
    name = profile.name if isinstance(profile, Profile) else profile
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return name
