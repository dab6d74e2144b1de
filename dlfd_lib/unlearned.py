"""Unlearned models kept in the checkpoint folder, so that a notebook (or a sweep, or
:func:`dlfd_lib.benchmark.run_benchmark`) finds the model another one made for the same original
checkpoint, data, seed, method and resolved hyperparameters instead of unlearning again.

:func:`unlearned_model` is get-or-compute; :func:`unlearned_path` names the file (a digest of the
resolved hyperparameters, not the label a notebook gave the run); :func:`save_unlearned` writes one
atomically with its hyperparameters, run record and history; :func:`find_unlearned` loads one back
only when every one of those matches.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import pandas as pd

from .data.splits import content_digest
from .model import save_checkpoint
from .profiles import Profile, profile_name
from .unlearn import method_defaults, unlearn
from .utils import resolve_device, to_jsonable

__all__ = ["unlearned_model", "unlearned_path", "save_unlearned", "find_unlearned", "slug"]


def unlearned_path(splits, profile: Profile | str, seed: int, ckpt_dir: str | Path, method: str,
                   hparams: dict) -> Path:
    """Where the unlearned model of ``method`` with the resolved ``hparams`` is kept, for one
    dataset, profile and seed: the file name carries a digest of the hyperparameters, so a
    notebook that runs the same method with the same settings finds the model another notebook
    saved, whatever label either gave it (notebook 05's "DLFD (paper)" is notebook 03's "dlfd")."""
    blob = json.dumps(to_jsonable(hparams), sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    return Path(ckpt_dir) / f"{splits.name}-{splits.task}-{profile_name(profile)}-seed{seed}-{slug(method)}-{digest}.pt"


def save_unlearned(result, splits, profile, seed, ckpt_dir, label, original_path) -> Path:
    path = unlearned_path(splits, profile, seed, ckpt_dir, result.info["method"], result.info.get("hparams", {}))
    save_checkpoint(result.model, path, meta={
        "method": result.info["method"], "label": label, "seed": seed, "original": Path(original_path).name,
        "data": content_digest(splits),
        "hparams": to_jsonable(result.info.get("hparams", {})), "seconds": float(result.info.get("seconds", float("nan"))),
        "info": to_jsonable(result.info), "history": to_jsonable(result.history.to_dict("records"))})
    return path


def find_unlearned(method: str, hparams: dict | None, original_path, splits, profile: Profile | str, seed: int,
                    ckpt_dir, device):
    """``(model, info)`` of a saved unlearned model made by ``method`` with ``hparams`` (resolved
    against the profile's defaults) from the same original checkpoint and data, or ``None``."""
    resolved = to_jsonable({**method_defaults(method, profile), **(hparams or {})})
    path = unlearned_path(splits, profile, seed, ckpt_dir, method, resolved)
    if not path.exists():
        return None
    model, meta = _load_reusable(path, splits.num_classes, device)
    if not (model is not None and meta.get("method") == method and meta.get("original") == Path(original_path).name
            and meta.get("hparams") == resolved and meta.get("data") == content_digest(splits)):
        return None
    model.eval()
    info = {**meta.get("info", {}), "method": method, "hparams": resolved, "seconds": meta.get("seconds"),
            "history": pd.DataFrame(meta.get("history", [])), "path": str(path), "reused": True}
    return model, info


def unlearned_model(method: str, original, original_path: str | Path, splits, profile: Profile | str, seed: int,
                    device="auto", ckpt_dir: str | Path = "checkpoints", hparams: dict | None = None,
                    label: str | None = None, progress: bool = True, force: bool = False, save: bool = True):
    """The model ``method`` makes from ``original``: loaded from ``ckpt_dir`` when a notebook (or
    an earlier call, or :func:`dlfd_lib.benchmark.run_benchmark`) saved one for the same original checkpoint, data,
    seed and resolved hyperparameters (unless ``force``), otherwise computed with
    :func:`dlfd_lib.unlearn.unlearn` and saved (unless ``save`` is False). (Unlearning is deterministic for a seed on the CPU, so the reused model is the
    one the call would compute.)

    Returns ``(model, info)``; ``info`` has ``method``, ``hparams``, ``seconds`` (of the run that
    made the model), ``history`` (DataFrame), ``path`` (where saved) and ``reused``.
    """

    if not force:
        found = find_unlearned(method, hparams, original_path, splits, profile, seed, ckpt_dir, device)
        if found is not None:
            return found
    result = unlearn(method, original, splits, profile=profile, device=device, seed=seed,
                     progress=progress, **(hparams or {}))
    info = {**result.info, "history": result.history, "reused": False}
    if save:
        info["path"] = str(save_unlearned(result, splits, profile, seed, ckpt_dir, label or method, original_path))
    return result.model, info


def _load_reusable(path: Path, num_classes: int, device):
    """``load_checkpoint`` for a cache lookup: a checkpoint with non-finite weights (written by
    an older kit from a diverged run) is reported and recomputed instead of reused."""
    from .model import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(path, num_classes=num_classes, device=resolve_device(device))
    except CheckpointError as err:
        if "non-finite" not in str(err):
            raise
        warnings.warn(f"{err} It is computed again.", stacklevel=3)
        return None, {}


def slug(label: str) -> str:
    """A file-name-safe form of a variant label ("released: clamp [0,1]" -> "released-clamp-0-1")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-") or "variant"
