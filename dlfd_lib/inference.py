"""Model inference: one home for running a model over data.

* :func:`predict` – logits, labels and per-sample cross-entropy losses of a loader (eval mode,
  no grad, train/eval flags restored), what every metric and attack reads;
* :func:`accuracy` – top-k accuracy of logits;
* :func:`features_of` – features and logits of one batch, with gradients (DLFD's step);
* :func:`extract_features` / :func:`extract_all` – one feature pass per split at a
  :data:`~dlfd_lib.model.FEATURE_LAYERS` layer (features, logits, labels, identities), what the
  correlation-collapse measures (:mod:`dlfd_lib.collapse`) and the feature maps
  (:mod:`dlfd_lib.embedding`) read;
* :func:`model_device` / :func:`place_model` – where a model runs.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .model import FEATURE_LAYERS
from .utils import autocast, resolve_device, to_device

__all__ = ["predict", "accuracy", "features_of", "extract_features", "extract_all", "model_device", "place_model",
           "FeatureDict"]

#: What :func:`extract_features` returns: dict(features=float32 [N, D], logits=float32 [N, C],
#: labels=int64 [N], identities=array [N] or None).
FeatureDict = dict


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (else first buffer; a model with neither: the CPU)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def place_model(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run ``model`` on: where it is (``device=None``), or ``device`` resolved
    (``"auto"``: CUDA if available), moving the model there if it is elsewhere."""
    if device is None:
        return model_device(model)
    dev = resolve_device(device)
    if model_device(model) != dev:
        model.to(dev)
    return dev


# --------------------------------------------------------------------------------------------
# forward passes
# --------------------------------------------------------------------------------------------
def predict(model: torch.nn.Module, loader: Iterable, device: str | torch.device | None = None,
            amp: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader`` and collect logits, labels and per-sample losses.

    ``loader`` yields ``(images, labels)`` batches; ``model(images)`` returns logits. The pass
    runs in eval mode under ``torch.no_grad()`` and, with ``amp=True``, bf16 autocast; logits
    are cast to float32 before the cross-entropy. ``device=None`` uses the device the model's
    parameters are on (the model itself is not moved). Every submodule's train/eval flag is
    restored afterwards, so calling this in the middle of training changes nothing.

    Returns ``dict(logits=float32 [N, C], labels=int64 [N], losses=float32 [N])``.
    """
    device = model_device(model) if device is None else resolve_device(device)
    modes = [(m, m.training) for m in model.modules()]
    logits_all, labels_all, losses_all = [], [], []
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = batch[0], batch[1]
                x = to_device(x, device)
                y = torch.as_tensor(y).to(device=device, dtype=torch.long)
                with autocast(device, enabled=amp):
                    out = model(x)
                out = out.float()
                loss = F.cross_entropy(out, y, reduction="none")
                logits_all.append(out.cpu())
                labels_all.append(y.cpu())
                losses_all.append(loss.cpu())
    finally:
        for m, was_training in modes:
            m.training = was_training
    if not logits_all:
        raise ValueError("predict() got an empty loader: the split has no images")
    return {
        "logits": torch.cat(logits_all).numpy().astype(np.float32, copy=False),
        "labels": torch.cat(labels_all).numpy().astype(np.int64, copy=False),
        "losses": torch.cat(losses_all).numpy().astype(np.float32, copy=False),
    }


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k accuracy: the share of samples whose true label is among the k largest logits.

    ``k`` at least the number of classes counts every sample as correct. Exact ties between
    logits at the k-th place are broken arbitrarily (rare with float logits).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"accuracy needs logits [N, C] and labels [N]; got {logits.shape} "
                         f"and {labels.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("accuracy of an empty set is undefined")
    if k >= c:
        return 1.0
    topk = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean())


# --------------------------------------------------------------------------------------------
# feature passes
# --------------------------------------------------------------------------------------------
def _loader_for(splits, split: str, batch_size: int, indices: np.ndarray | None):
    """An unshuffled, un-augmented loader over ``split`` (or the rows ``indices`` of it). The
    loader carries its own seeded generator, so iterating it draws nothing from torch's global
    random stream."""
    if indices is None:
        return splits.loader(split, batch_size=batch_size, augment=False, shuffle=False)
    from torch.utils.data import DataLoader
    ds = splits.dataset(split, augment=False).subset(np.asarray(indices, dtype=np.int64))
    return DataLoader(ds, batch_size=batch_size, shuffle=False,
                      generator=torch.Generator().manual_seed(0))


def features_of(model: torch.nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of one forward pass of a batch (gradients kept: DLFD differentiates
    through it); ``layer="logits"`` gives the logits twice."""
    if layer == "logits":
        logits = model(x)
        return logits, logits
    return model.forward_features(x, layer)


def extract_features(model: torch.nn.Module, splits_or_loader, split: str | None = None,
                     layer: str = "penultimate", device: str | torch.device | None = None,
                     batch_size: int = 256, amp: bool = False,
                     indices: Sequence[int] | np.ndarray | None = None) -> FeatureDict:
    """One no-grad, eval-mode pass of ``model`` over one split; returns its features.

    ``splits_or_loader`` is an :class:`~dlfd_lib.data.splits.UnlearningSplits` (then ``split``
    names the split, and ``indices`` optionally picks rows of it, in the given order) or any
    iterable of ``(images, labels)`` batches (then identities are unknown). The model must
    have ``forward_features(x, layer) -> (features, logits)`` like
    :class:`~dlfd_lib.model.FaceClassifier`; for ``layer="logits"`` a plain ``model(x)`` is
    enough. ``device=None`` runs where the model's parameters are (the model is not moved);
    ``amp=True`` uses bf16 autocast (features are returned in float32 either way). Every
    submodule's train/eval flag is restored afterwards, as in :func:`predict`.

    Returns ``dict(features=float32 [N, D], logits=float32 [N, C], labels=int64 [N],
    identities=array [N] or None)``.
    """
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"layer={layer!r} is not a feature layer; choose one of {FEATURE_LAYERS}")
    identities = None
    if hasattr(splits_or_loader, "loader") and hasattr(splits_or_loader, "identities"):
        if split is None:
            raise ValueError("extract_features got an UnlearningSplits but no split name: pass "
                             "split='retain', 'forget', 'val' or 'test'")
        loader = _loader_for(splits_or_loader, split, batch_size, None if indices is None
                             else np.asarray(indices))
        ids = splits_or_loader.identities(split)
        if ids is not None:
            identities = np.asarray(ids)
            if indices is not None:
                identities = identities[np.asarray(indices, dtype=np.int64)]
    else:
        if split is not None or indices is not None:
            raise ValueError("split= and indices= only apply when an UnlearningSplits is passed; "
                             "a loader is read as it is")
        loader = splits_or_loader
    use_ff = hasattr(model, "forward_features")
    if not use_ff and layer != "logits":
        raise TypeError(f"{type(model).__name__} has no forward_features(x, layer), so layer={layer!r} "
                        f"cannot be read; use a dlfd_lib.model.FaceClassifier or layer='logits'")

    dev = model_device(model) if device is None else resolve_device(device)
    modes = [(m, m.training) for m in model.modules()]
    feats, logits, labels = [], [], []
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x = to_device(batch[0], dev)
                with autocast(dev, enabled=amp):
                    if use_ff:
                        f, out = model.forward_features(x, layer)
                    else:
                        out = model(x)
                        f = out
                feats.append(f.float().cpu())
                logits.append(out.float().cpu())
                labels.append(torch.as_tensor(batch[1]).long().cpu())
    finally:
        for m, was_training in modes:
            m.training = was_training
    if not feats:
        raise ValueError(f"extract_features got no images{'' if split is None else f' in split {split!r}'}: "
                         f"the split or loader is empty")
    return {
        "features": torch.cat(feats).numpy().astype(np.float32, copy=False),
        "logits": torch.cat(logits).numpy().astype(np.float32, copy=False),
        "labels": torch.cat(labels).numpy().astype(np.int64, copy=False),
        "identities": identities,
    }


def extract_all(model: torch.nn.Module, splits, names: Sequence[str] = ("retain", "forget", "test"),
                layer: str = "penultimate", device: str | torch.device | None = None,
                batch_size: int = 256, amp: bool = False) -> dict[str, FeatureDict]:
    """:func:`extract_features` for each split in ``names``: ``{split: feature dict}``. One pass
    per split serves every measure (and can be passed as ``features=`` / ``original=`` to
    :func:`collapse_measures`)."""
    return {name: extract_features(model, splits, name, layer=layer, device=device,
                                   batch_size=batch_size, amp=amp)
            for name in dict.fromkeys(names)}
