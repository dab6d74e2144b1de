"""What an unlearning method may see of the data: :class:`MethodSplits`, a view without the test split.

The test split is read once, by the final evaluation (:func:`dlfd_lib.metrics.evaluate`).
Nothing that selects a checkpoint, switches a phase, stops early or tunes may read it, so the
registry (:func:`dlfd_lib.unlearn.unlearn`) hands every method a :class:`MethodSplits` instead
of the full :class:`~dlfd_lib.data.splits.UnlearningSplits`: ``retain``, ``forget`` and a
**monitor half** of the validation split are there; ``test`` is not, and any way of reaching it
(``.test``, ``split("test")``, ``dataset("test")``, ``loader("test")``, ``labels("test")``,
``identities("test")``) raises :class:`TestSplitAccessError`, which says why.

**How the validation split is shared** (:func:`validation_halves`). Two consumers read
validation data: a method's own monitoring (DLFD's forgetting score, forget vs validation, and
its validation accuracy) and the hyperparameter tuner of :mod:`dlfd_lib.tuning`. If both read
the same images, a method that selects its checkpoint on validation data (DLFD) would have its
tuning score computed on the very images its selection was optimised on – an optimistic score
that only DLFD gets. So the validation split is cut, once and deterministically, into two
disjoint halves *by person* (whole identities; alternate people in sorted-identity order, or
alternate images where a dataset has no identities):

* ``"monitor"`` – what methods see as ``val`` (this view);
* ``"tune"``    – what the tuner's objective reads (:func:`tuning_validation`), never a method.

Both halves hold unseen people, so both are valid non-member sets for a membership attack.
"""
from __future__ import annotations

import numpy as np

from .splits import SPLIT_NAMES, SplitDataset, UnlearningSplits

__all__ = ["MethodSplits", "TestSplitAccessError", "validation_halves", "tuning_validation",
           "method_view"]

VAL_HALVES = ("monitor", "tune")


class TestSplitAccessError(RuntimeError):
    """An unlearning method (or anything handed a :class:`MethodSplits`) tried to read the test split."""

    __test__ = False  # not a pytest test class despite its name


_WHY = ("the test split is read once, by the final evaluation (dlfd_lib.metrics.evaluate); an "
        "unlearning method must not read it, since anything it selects, switches or stops on "
        "would then be chosen on the number the benchmark reports. Use the validation split "
        "(splits.val, the monitor half of the validation people) for monitoring and selection.")


def validation_halves(splits: UnlearningSplits) -> dict[str, np.ndarray]:
    """Indices into ``splits.val`` of the ``"monitor"`` and ``"tune"`` halves (sorted, disjoint,
    together all of val). People are sorted by identity and dealt alternately (the first to
    ``"monitor"``), so each half has whole people; without identities, images are dealt
    alternately. Deterministic: no seed, so every run and every seed of a dataset agree."""
    n = len(splits.val)
    if n < 2:
        raise ValueError(f"the validation split of {splits.name!r} has {n} image(s); the kit needs "
                         f"at least 2 (one per half: method monitoring and tuning), give more "
                         f"validation people")
    ids = splits.val.identities
    if ids is None or len(np.unique(ids)) < 2:
        pos = np.arange(n)
        take = pos % 2 == 0
    else:
        people = np.unique(ids)  # sorted
        monitor_people = people[0::2]
        take = np.isin(ids, monitor_people)
    return {"monitor": np.flatnonzero(take), "tune": np.flatnonzero(~take)}


def _val_half(splits: UnlearningSplits, half: str) -> SplitDataset:
    if half not in VAL_HALVES:
        raise ValueError(f"half={half!r}: choose one of {VAL_HALVES}")
    cache = splits.__dict__.setdefault("_val_halves", {})
    if half not in cache:
        idx = validation_halves(splits)[half]
        cache[half] = splits.val.subset(idx)
    return cache[half]


def tuning_validation(splits: UnlearningSplits) -> SplitDataset:
    """The ``"tune"`` half of the validation split: what the tuner's objective reads (no method
    ever sees it)."""
    return _val_half(splits, "tune")


class MethodSplits:
    """A read-only view of an :class:`UnlearningSplits` for unlearning methods.

    Same interface as the full splits (``retain``, ``forget``, ``train``, ``val``,
    ``dataset()``, ``loader()``, ``labels()``, ``identities()``, ``sizes()``, ``num_classes``,
    ``mean``, ``std``, ``image_size``, ...), except that ``val`` is the ``"monitor"`` half of the
    validation people (:func:`validation_halves`) and the test split raises
    :class:`TestSplitAccessError`. Built by :func:`method_view`; :attr:`full` is deliberately not
    offered (the underlying object is kept private).
    """

    __slots__ = ("_splits", "_val")

    def __init__(self, splits: UnlearningSplits):
        if isinstance(splits, MethodSplits):
            splits = splits._splits
        object.__setattr__(self, "_splits", splits)
        object.__setattr__(self, "_val", _val_half(splits, "monitor"))

    # ---- the split names ------------------------------------------------------------------
    @staticmethod
    def _refuse(what: str):
        raise TestSplitAccessError(f"{what}: {_WHY}")

    @property
    def test(self):
        self._refuse("splits.test")

    @property
    def val(self) -> SplitDataset:
        return self._val

    def split(self, name: str) -> SplitDataset:
        if name == "test":
            self._refuse("splits.split('test')")
        if name == "val":
            return self._val
        return self._splits.split(name)

    def dataset(self, name: str, augment: bool = False) -> SplitDataset:
        base = self.split(name)
        return base.with_transform(self._splits.transform(augment)) if augment else base

    def loader(self, name: str, batch_size: int = 64, augment: bool = False,
               shuffle: bool | None = None, seed: int = 0, num_workers: int = 0,
               drop_last: bool = False):
        import torch
        from torch.utils.data import DataLoader
        shuffle = augment if shuffle is None else shuffle
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self.dataset(name, augment), batch_size=batch_size, shuffle=shuffle,
                          generator=gen, num_workers=num_workers, drop_last=drop_last,
                          persistent_workers=num_workers > 0)

    def labels(self, name: str) -> np.ndarray:
        return self.split(name).labels

    def identities(self, name: str):
        return self.split(name).identities

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLIT_NAMES if s != "test"}

    def summary(self):
        return self._splits.summary().drop(index="test")

    # ---- everything else is the full object's (class names, image size, normalisation, ...)
    def __getattr__(self, name: str):
        if name in ("_splits", "_val"):
            raise AttributeError(name)
        if name in ("full", "_train"):
            raise AttributeError(f"MethodSplits has no {name!r}: a method sees retain, forget and "
                                 f"the monitor half of val only")
        return getattr(self._splits, name)

    def __setattr__(self, name, value):
        raise AttributeError(f"MethodSplits is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"MethodSplits({self._splits.name!r}, {sizes}; no test split)"


def method_view(splits) -> MethodSplits:
    """``splits`` as a method sees it (a :class:`MethodSplits`; an existing view is unwrapped and
    rewrapped, so nesting is harmless)."""
    return MethodSplits(splits)
