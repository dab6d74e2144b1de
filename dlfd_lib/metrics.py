"""Evaluation metrics of the DLFD paper: accuracy, MIA, forgetting score and NoMUS.

Definitions (Choi & Na, AAAI 2025, following the MUFAC/MUCAC benchmark of the same authors):

* **Accuracy** – top-1 (and top-2) accuracy; the headline number is *test* accuracy, and the
  retain / forget / validation accuracies are reported beside it.
* **MIA** (membership-inference attack accuracy) – a logistic regression on a single feature,
  the per-sample cross-entropy loss, is trained to tell *members* (forget images, label 1)
  from *non-members* (unseen test images, label 0). Its accuracy is the mean over 10
  stratified shuffle splits. A model that has truly forgotten D_f gives forget losses that
  look like unseen losses, so the attack is at chance: MIA ≈ 0.5.
* **Forgetting score** FS = |MIA − 0.5| (0 is best).
* **NoMUS** (Normalised Machine Unlearning Score) = λ·Acc + (1 − λ)·(1 − 2·FS) with λ = 0.5
  and Acc the test accuracy; it lies in [0, 1], higher is better. Example (the paper's DLFD
  row on MUFAC): Acc .6197, MIA .5279 → FS .0279 → NoMUS .7819.

Where the parts live: the forward passes and accuracy in :mod:`dlfd_lib.inference`, the attacks
(:func:`~dlfd_lib.attacks.mia`, its balancing and standardising, and the four-attack suite) in
:mod:`dlfd_lib.attacks`; this module holds the scores (FS, NoMUS), :func:`evaluate`, which
puts them together for one model, and the tables and files of the results.

The paper's advice holds here too: the right MIA target is the *retrained* model's value,
not exactly 0.5; report both (``forgetting_score(mia, target=...)`` measures the distance to
any target).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .attacks import ATTACK_METRICS, ATTACKS, mia, mia_suite
from .inference import accuracy, place_model, predict
from .utils import atomic_write_bytes, check_named_results, save_json

__all__ = ["forgetting_score", "nomus", "evaluate", "metrics_table", "named_table", "save_metrics",
           "TABLE_COLUMNS", "is_scalar"]


def forgetting_score(mia_value: float, target: float = 0.5) -> float:
    """FS = |MIA − target|; the paper uses target = 0.5. Pass the retrained model's MIA as
    ``target`` to measure the distance to the gold standard instead."""
    return float(abs(float(mia_value) - float(target)))


def nomus(acc: float, fs: float, lam: float = 0.5) -> float:
    """NoMUS = lam·acc + (1 − lam)·(1 − 2·fs) (the paper uses lam = 0.5 and test accuracy)."""
    return float(lam * float(acc) + (1.0 - lam) * (1.0 - 2.0 * float(fs)))


# --------------------------------------------------------------------------------------------
# one model, all splits
# --------------------------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, splits, device: str | torch.device | None = "auto",
             batch_size: int = 256, seed: int = 0,
             splits_to_eval: Sequence[str] = ("retain", "forget", "val", "test"),
             amp: bool = False, return_losses: bool = False,
             attacks: bool | Sequence[str] = False, **mia_kwargs) -> dict:
    """All of the paper's numbers for one model on one :class:`UnlearningSplits`.

    Runs in float32 by default (``amp=False``): bf16 logits round the small per-sample losses
    of memorised images coarsely, and those losses are exactly what the attack reads.

    For each split in ``splits_to_eval``: ``<split>_acc``, ``<split>_top2`` and
    ``<split>_loss`` (mean cross-entropy), computed on the un-augmented, unshuffled view.
    Then the balanced MIA forget-vs-test (``mia``, ``mia_sd``, ``mia_auc``, ``mia_n``),
    ``fs`` = |mia − 0.5| and ``nomus`` from the *test* accuracy. The forget and test passes
    always run (the MIA needs them) even if they are not in ``splits_to_eval``; their
    accuracies are then not reported.

    The model is moved to ``device`` (``"auto"``: CUDA if available; ``None``: leave it where
    it is) and its train/eval flags are restored afterwards. ``mia_kwargs`` go to :func:`mia`
    (e.g. ``n_splits``, ``test_size``, ``balance``). All values are plain Python floats, except
    ``"losses"`` – ``{split: float32 array of per-sample losses}`` – when ``return_losses``.

    ``attacks=True`` (or a subset of :data:`ATTACKS`) also runs the attack suite on the same
    forget/test logits (no extra forward pass) with the same seed and ``mia_kwargs``, adding
    ``mia_<attack>_acc``, ``mia_<attack>_auc`` and ``mia_<attack>_tpr1`` (TPR at 1 % FPR, see
    :func:`mia_attack`) for ``<attack>`` in ``loss``, ``confidence``, ``entropy``, ``mentr``.
    The other keys are unchanged. (``mia_loss_*`` is the paper's attack recomputed from the
    float64 log-softmax instead of the float32 losses; where float32 rounds the tiny losses of
    memorised images to ties, ``mia_loss_auc`` can differ slightly from ``mia_auc``.)
    """
    dev = place_model(model, device)

    names = list(dict.fromkeys(splits_to_eval))
    needed = list(dict.fromkeys(names + ["forget", "test"]))
    preds = {}
    for name in needed:
        loader = splits.loader(name, batch_size=batch_size, augment=False, shuffle=False)
        preds[name] = predict(model, loader, dev, amp=amp)

    out: dict = {}
    for name in names:
        p = preds[name]
        out[f"{name}_acc"] = accuracy(p["logits"], p["labels"], k=1)
        out[f"{name}_top2"] = accuracy(p["logits"], p["labels"], k=2)
        out[f"{name}_loss"] = float(np.mean(p["losses"], dtype=np.float64))

    attack = mia(preds["forget"]["losses"], preds["test"]["losses"], seed=seed, **mia_kwargs)
    out["mia"] = attack["mia"]
    out["mia_sd"] = attack["mia_sd"]
    out["mia_auc"] = attack["auc"]
    out["mia_n"] = float(attack["n"])
    out["fs"] = forgetting_score(attack["mia"])
    test_acc = out.get("test_acc")
    if test_acc is None:
        test_acc = accuracy(preds["test"]["logits"], preds["test"]["labels"], k=1)
    out["nomus"] = nomus(test_acc, out["fs"])
    if attacks is not False and attacks is not None:
        chosen = (ATTACKS if attacks is True else (attacks,) if isinstance(attacks, str)
                  else tuple(attacks))
        if not chosen:
            raise ValueError(f"attacks is empty; pass attacks=True or some of {list(ATTACKS)}")
        table = mia_suite(preds["forget"]["logits"], preds["forget"]["labels"],
                          preds["test"]["logits"], preds["test"]["labels"], seed=seed,
                          attacks=chosen, **mia_kwargs)
        for a in chosen:
            for short, col in ATTACK_METRICS.items():
                out[f"mia_{a}_{short}"] = float(table.loc[a, col])
    if return_losses:
        out["losses"] = {name: preds[name]["losses"] for name in needed}
    return out


# --------------------------------------------------------------------------------------------
# tables and files
# --------------------------------------------------------------------------------------------
#: Column order of :func:`metrics_table`: utility first, then forgetting, then the score.
TABLE_COLUMNS = (
    "test_acc", "test_top2", "retain_acc", "forget_acc", "val_acc",
    "mia", "mia_sd", "mia_auc", "fs", "nomus",
    "retain_top2", "forget_top2", "val_top2",
    "retain_loss", "forget_loss", "val_loss", "test_loss",
)


def is_scalar(v) -> bool:
    """Is ``v`` a number that belongs in a table (an int or float, not a bool)?"""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def metrics_table(results: Mapping[str, Mapping], columns: Sequence[str] | None = None):
    """A ``pandas.DataFrame`` with one row per model and float metric columns.

    ``columns=None`` uses :data:`TABLE_COLUMNS` (those present in any result), then any
    other scalar metrics in first-seen order; non-scalar entries such as ``"losses"`` are
    left out. Missing values are NaN.
    """
    check_named_results(results)
    return named_table(results, TABLE_COLUMNS, columns)


def named_table(results: Mapping[str, Mapping], preferred: Sequence[str], columns: Sequence[str] | None = None):
    """``{model: {name: value}}`` as a float ``pandas.DataFrame`` indexed by ``model``: the
    ``columns`` given, or else those of ``preferred`` present in any result followed by every
    other scalar entry in first-seen order (non-scalars are left out, missing values are NaN)."""
    import pandas as pd

    if columns is None:
        present = {k for r in results.values() for k, v in r.items() if is_scalar(v)}
        columns = [c for c in preferred if c in present]
        for r in results.values():
            for k, v in r.items():
                if is_scalar(v) and k not in columns:
                    columns.append(k)
    rows = {name: {c: float(r[c]) if c in r and is_scalar(r[c]) else np.nan for c in columns}
            for name, r in results.items()}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(columns)).astype(float)
    df.index.name = "model"
    return df


def save_metrics(results: Mapping[str, Mapping], path: str | Path,
                 include_losses: bool = False) -> tuple[Path, Path]:
    """Write ``results`` ({model name: metrics}) as JSON at ``path`` and the
    :func:`metrics_table` as CSV beside it (same name, ``.csv``). Both writes are atomic.
    A path without a suffix gets ``.json``.
    Per-sample ``"losses"`` arrays are dropped from the JSON unless ``include_losses``.
    Returns ``(json_path, csv_path)``."""
    check_named_results(results)
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".json")
    if path.suffix.lower() == ".csv":
        raise ValueError(f"save_metrics writes JSON at path and a CSV beside it; give a .json "
                         f"path, not {path}")
    data = {name: {k: v for k, v in r.items() if include_losses or k != "losses"}
            for name, r in results.items()}
    json_path = save_json(data, path)
    csv_path = path.with_suffix(".csv")
    table = metrics_table(results)
    atomic_write_bytes(csv_path, lambda tmp: table.to_csv(tmp))
    return json_path, csv_path
