"""2-D maps of feature distributions (UMAP) that can be compared across models.

The paper argues with pictures of feature space: after error-maximising unlearning the class
clusters smear together, after DLFD they stay apart while the forget images move. To draw such
pictures *fairly* for several models at once, every panel must live in one coordinate system:

1. :func:`reference_images` picks one fixed, seeded set of images – a subsample of retain,
   forget and test – shown for every model;
2. :func:`model_features` runs each model once over exactly those images (penultimate features
   by default, the 128-d input of the last Linear layer);
3. :func:`fit_umap` fits **one** UMAP reducer on a common reference set – one model's features
   (``fit_on="original"``, what notebook 04 uses) with the other models mapped through
   ``reducer.transform``, or the pooled features of every model (``fit_on=None``) – and
   returns one long table (model, split, class, identity, x, y) that the plots and the
   explorer (:mod:`dlfd_lib.widgets`) slice.

**Making different models' features comparable.** Two networks trained separately (the
original and the retrained model) have unrelated feature bases: unit 17 of one means nothing in
the other, and even an unlearned model drifts from its original. Pooling raw features would
give each model its own island of the map. So by default (``align="relative"``) every model's
features are first turned into *relative representations* (Moschella et al., ICLR 2023): each
image is described by its cosine similarities to a fixed set of **anchor images** (a seeded
subsample of the reference retain images), computed in that model's own feature space after
subtracting the model's mean anchor feature. These coordinates do not change under rotations,
reflections and rescalings of a model's feature space, so the same image has comparable
coordinates under every model, and one reducer can be fitted for all. ``align="none"`` pools the
raw features instead (only meaningful for models that share a basis, e.g. one original and its
unlearned copies).

Which reference set: fitting on the pooled coordinates lets every model shape the map, but
UMAP then tends to give each model an island of its own (seen on the quick profile, even after
alignment), so panels share axes without sharing a frame. Fitting on the original model and
transforming the others keeps one frame; each model is then drawn where its images'
neighbourhoods put them in the original's map.

Cost (measured on this 2-core machine): umap-learn compiles its numba kernels on the first call
in a process, ~20-50 s; later calls take seconds (~6 s for 5000 x 512). Most of umap-learn's
kernels are not declared ``cache=True`` (pynndescent's are), so :func:`import_umap` switches on
numba's on-disk cache for every module-level kernel of umap-learn before first use: the
compilation is then paid once per environment, and a later process (the next notebook, the
next test) loads the machine code from numba's cache (``__pycache__`` beside umap-learn's
sources, or ``NUMBA_CACHE_DIR``). A 400 x 64 cosine fit + transform: 19.4 s compiled afresh,
0.8 s from the cache. With ``random_state`` set, UMAP is deterministic but single-threaded.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

__all__ = ["reference_images", "model_features", "relative_representation", "fit_umap", "import_umap",
           "SPLIT_ORDER"]

#: splits drawn in the maps, in drawing order (test first, forget on top)
SPLIT_ORDER = ("retain", "test", "forget")


def reference_images(splits, sizes: Mapping[str, int | None] | None = None, seed: int = 0) -> pd.DataFrame:
    """The images every panel shows: a seeded subsample of each split (``None``: all of it).

    Returns one row per image: ``split``, ``index`` (into that split), ``label``, ``class``
    (the class name) and ``identity`` (or -1 when the dataset has none).
    """
    sizes = dict(sizes or {"retain": 800, "forget": None, "test": 400})
    bad = [s for s in sizes if s not in ("retain", "forget", "val", "test", "train")]
    if bad:
        raise ValueError(f"unknown split(s) {bad} in sizes; use retain, forget, val, test or train")
    rng = np.random.default_rng(seed)
    frames = []
    for split, size in sizes.items():
        n = len(splits.split(split))
        idx = np.arange(n) if size is None or size >= n else np.sort(rng.choice(n, size=size, replace=False))
        labels = splits.labels(split)[idx]
        ids = splits.identities(split)
        frames.append(pd.DataFrame({
            "split": split, "index": idx, "label": labels,
            "class": np.asarray(splits.class_names, dtype=object)[labels],
            "identity": ids[idx] if ids is not None else np.full(len(idx), -1),
        }))
    return pd.concat(frames, ignore_index=True)


def model_features(models: Mapping[str, torch.nn.Module], splits, ref: pd.DataFrame,
                   layer: str = "penultimate", device=None, batch_size: int = 256) -> dict[str, np.ndarray]:
    """``{model: float32 [len(ref), D]}``: each model's ``layer`` features of the images of
    ``ref`` (one eval-mode, no-grad pass per model and split; rows aligned with ``ref``)."""
    from .inference import extract_features

    out = {}
    for name, model in models.items():
        parts = []
        for split, rows in ref.groupby("split", sort=False):
            ds = splits.split(split).subset(rows["index"].to_numpy())
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
            parts.append((rows.index.to_numpy(), extract_features(model, loader, layer=layer, device=device)["features"]))
        feats = np.empty((len(ref), parts[0][1].shape[1]), dtype=np.float32)
        for pos, f in parts:
            feats[pos] = f
        out[name] = feats
    return out


def relative_representation(features: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``features`` [N, D] to every anchor row [M, D], after
    subtracting the anchors' mean from both: [N, M] coordinates that do not change under
    rotations, reflections and rescalings of the feature space (Moschella et al., ICLR 2023)."""
    centre = anchors.mean(axis=0, keepdims=True)
    f = features - centre
    a = anchors - centre
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    return (f @ a.T).astype(np.float32)


#: umap-learn modules whose module-level numba kernels get numba's on-disk cache
_UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.distances", "umap.sparse", "umap.utils", "umap.spectral")


def import_umap():
    """``import umap``, with numba's on-disk cache switched on for umap-learn's kernels.

    Caching is what numba's ``cache=True`` does; calling ``enable_caching()`` on a dispatcher
    before its first compilation is the same thing for functions declared without it. Returns
    the ``umap`` module; cheap after the first call.
    """
    import importlib

    import umap
    from numba.core.dispatcher import Dispatcher

    for name in _UMAP_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a umap-learn release without that module
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and type(obj._cache).__name__ == "NullCache":
                obj.enable_caching()
    return umap


def fit_umap(features: Mapping[str, np.ndarray], ref: pd.DataFrame, fit_on: str | None = None,
             align: str = "relative", n_anchors: int = 256, n_neighbors: int = 15, min_dist: float = 0.1,
             metric: str = "cosine", seed: int = 0, models: Sequence[str] | None = None) -> pd.DataFrame:
    """One UMAP reducer for all models; returns the long table of 2-D points.

    ``align="relative"`` (default) first maps each model's features to relative coordinates
    against ``n_anchors`` seeded anchor images drawn from the retain rows of ``ref`` (all rows
    if there are no retain rows); ``"none"`` uses the raw features (see the module docstring).
    ``fit_on=None`` fits on the stacked coordinates of every model (rows of ``ref`` × models)
    and reads each model's points off the fitted embedding; ``fit_on=<model>`` fits on that
    model and maps every other model through ``transform``. Columns: ``model``, the columns of
    ``ref``, ``x`` and ``y``.
    """
    umap = import_umap()

    models = list(features) if models is None else list(models)
    missing = [m for m in models if m not in features]
    if missing:
        raise KeyError(f"no features for model(s) {missing}; have {list(features)}")
    if fit_on is not None and fit_on not in features:
        raise KeyError(f"fit_on={fit_on!r}: no such model; have {list(features)}")
    for m in models:
        if len(features[m]) != len(ref) or not np.all(np.isfinite(features[m])):
            raise ValueError(f"features of {m!r} must be finite and have one row per reference image "
                             f"({len(ref)}); got shape {features[m].shape}")
    if align not in ("relative", "none"):
        raise ValueError(f"align={align!r}: choose 'relative' (comparable across models) or 'none'")
    if align == "relative":
        pool = np.flatnonzero(ref["split"].to_numpy() == "retain")
        pool = pool if len(pool) else np.arange(len(ref))
        anchors = np.sort(np.random.default_rng(seed).choice(pool, size=min(n_anchors, len(pool)), replace=False))
        features = {m: relative_representation(features[m], features[m][anchors]) for m in models}
    n_neighbors = max(2, min(n_neighbors, len(ref) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed)
    if fit_on is None:
        xy = reducer.fit_transform(np.concatenate([features[m] for m in models]))
        points = {m: xy[i * len(ref):(i + 1) * len(ref)] for i, m in enumerate(models)}
    else:
        points = {fit_on: reducer.fit_transform(features[fit_on])}
        for m in models:
            if m != fit_on:
                points[m] = reducer.transform(features[m])
    frames = [ref.assign(model=m, x=points[m][:, 0], y=points[m][:, 1]) for m in models]
    table = pd.concat(frames, ignore_index=True)
    return table[["model"] + list(ref.columns) + ["x", "y"]]
