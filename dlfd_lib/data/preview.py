"""Contact sheets of a dataset: one row per person or one row per class.

They work for any :class:`~dlfd_lib.data.splits.UnlearningSplits` (the images are taken from
the split's source, so no normalisation has to be undone); the synthetic faces use them to
show that identities stay consistent while the task cues change.
"""
from __future__ import annotations

import numpy as np

from .splits import UnlearningSplits

__all__ = ["identity_sheet", "class_sheet"]


def _pixels(dataset, i: int) -> np.ndarray:
    """The i-th image of a split as an HWC float array in [0, 1], de-normalised."""
    img = dataset.source.get(int(i))
    if img.dtype.is_floating_point:  # a source that already holds normalised floats
        return np.clip(img.permute(1, 2, 0).numpy(), 0, 1)
    return img.permute(1, 2, 0).numpy().astype(np.float32) / 255.0


def _grid(rows: list[tuple[str, list[tuple[int, str]]]], dataset, title: str, cols: int,
          cell: float = 1.1):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols + 1.2, cell * len(rows) + 0.5),
                             squeeze=False)
    for r, (row_name, items) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(items):
                idx, caption = items[c]
                ax.imshow(_pixels(dataset, idx), interpolation="nearest")
                ax.set_title(caption, fontsize=6, pad=2)
        axes[r, 0].set_ylabel(row_name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def identity_sheet(splits: UnlearningSplits, n_ids: int = 6, per_id: int = 6,
                   split: str = "train", seed: int = 0):
    """One row per person (the first ``n_ids`` people, in a seeded random choice), with up to
    ``per_id`` of their images sorted by label; each image is captioned with its class."""
    data = splits.split(split)
    if data.identities is None:
        raise ValueError(f"split {split!r} of {splits.name!r} has no identities to group by")
    rng = np.random.default_rng(seed)
    people = np.unique(data.identities)
    people = rng.permutation(people)[:n_ids]
    rows = []
    for pid in people:
        idx = np.flatnonzero(data.identities == pid)
        idx = idx[np.argsort(data.labels[idx], kind="stable")]
        if len(idx) > per_id:  # spread the shown images over the person's labels
            idx = idx[np.linspace(0, len(idx) - 1, per_id).round().astype(int)]
        rows.append((f"id {pid}", [(i, splits.class_names[data.labels[i]]) for i in idx]))
    return _grid(rows, data, f"{splits.name} {split}: one row per identity", per_id)


def class_sheet(splits: UnlearningSplits, per_class: int = 6, split: str = "train",
                seed: int = 0):
    """One row per class with ``per_class`` random images of it, captioned with the person."""
    data = splits.split(split)
    rng = np.random.default_rng(seed)
    rows = []
    for k, name in enumerate(splits.class_names):
        idx = np.flatnonzero(data.labels == k)
        idx = rng.permutation(idx)[:per_class]
        ids = data.identities
        rows.append((name, [(i, "" if ids is None else f"id {ids[i]}") for i in idx]))
    return _grid(rows, data, f"{splits.name} {split}: one row per class", per_class)
