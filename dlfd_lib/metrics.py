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

**Why the two sides are balanced.** The forget set and the test set rarely have the same
size (MUFAC: 1,500 vs 1,504; RAF-DB: ~30 % of train vs 3,068 test). With unequal classes a
logistic regression that ignores the loss and always answers the majority side already scores
the majority share, so "chance" is no longer 0.5 and FS = |MIA − 0.5| is inflated by a number
that says nothing about the model. (The authors' released code does not balance; on RAF-DB
their retrained model's MIA of .5196 is exactly this class-ratio floor – see
``shared/reference/released-code-pitfalls.md``, item 4.) :func:`mia` therefore subsamples the
larger side, without replacement and with a seeded ``numpy`` generator, to the size of the
smaller one *before* the cross-validation, so 0.5 is chance again. ``balance=False`` gives the
unbalanced behaviour for comparison.

Two implementation choices the paper does not fix, both documented in :func:`mia`:

* the loss is standardised (mean 0, sd 1, fitted on each training fold) before the logistic
  regression. This is a monotone rescaling, so the attack is still a threshold on the loss;
  it only stops sklearn's default L2 penalty from flattening the fit when losses are tiny
  (an over-fitted model's member losses are often ~1e-3). ``standardize=False`` fits a plain
  logistic regression on the raw loss.
* the held-out fraction of each split is 0.3 (sklearn's default would be 0.1, which leaves
  only ~300 test samples for a 1,500-image forget set and gives noisier folds).

The paper's advice holds here too: the right MIA target is the *retrained* model's value,
not exactly 0.5; report both (``forgetting_score(mia, target=...)`` measures the distance to
any target).

**A stronger membership-inference suite** (beyond the paper). One loss-threshold attack can
miss a leak that another score shows, and an average accuracy hides whether a few forget
images are still recognisable with certainty. :func:`attack_scores` computes four classic
per-sample scores from the logits – the loss (Yeom et al. 2018, the paper's attack), the
true-class confidence, the prediction entropy and the modified entropy "Mentr" (Song & Mittal
2021; shadow-model attacks go back to Shokri et al. 2017) – and :func:`mia_attack` attacks each
one exactly like :func:`mia` (same balancing, folds and logistic regression; one shared helper),
reporting accuracy, ROC-AUC and the TPR at 1 % FPR that Carlini et al. (2022, "Membership
inference attacks from first principles") argue is the number that matters. :func:`mia_suite`
runs all four, ``evaluate(..., attacks=True)`` adds them as flat keys, and
:func:`attack_table` puts every model's numbers beside the retrained model's. The per-example,
reference-model test (U-LiRA, Hayes et al. 2024) lives in :mod:`dlfd_lib.ulira`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .utils import atomic_write_bytes, autocast, resolve_device, save_json, to_device

__all__ = [
    "predict", "accuracy", "mia", "forgetting_score", "nomus", "evaluate",
    "metrics_table", "save_metrics", "TABLE_COLUMNS",
    "ATTACKS", "ATTACK_METRICS", "LOW_FPR", "attack_scores", "mia_attack", "mia_suite",
    "attack_table",
]


# --------------------------------------------------------------------------------------------
# forward passes
# --------------------------------------------------------------------------------------------
def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


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
    device = _model_device(model) if device is None else resolve_device(device)
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


# --------------------------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------------------------
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
# membership inference
# --------------------------------------------------------------------------------------------
def _clean_values(x, what: str, kind: str = "losses") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{bad} of the {what} {kind} are NaN or infinite; the model's outputs "
                         f"are not finite (a diverged unlearning run?)")
    return x


def _clean_losses(x, what: str) -> np.ndarray:
    return _clean_values(x, what, "losses")


#: the false-positive rate at which :func:`mia_attack` reports the true-positive rate
LOW_FPR = 0.01


def _tpr_at_fpr(y_true: np.ndarray, member_score: np.ndarray, max_fpr: float = LOW_FPR) -> float:
    """The largest TPR among the points of the (full, non-interpolated) ROC curve of
    ``member_score`` whose FPR is <= ``max_fpr``. With fewer than ``1 / max_fpr`` negatives the
    only admissible points are those with no false positive at all."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, member_score, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def _balanced_cv_attack(mem: np.ndarray, non: np.ndarray, seed: int, n_splits: int,
                        test_size: float, balance: bool, standardize: bool,
                        kind: str = "losses") -> dict:
    """The machinery shared by :func:`mia` and :func:`mia_attack`: balance the two sides with
    ``default_rng(seed)``, then fit a logistic regression on the one-dimensional feature in each
    ``StratifiedShuffleSplit(n_splits, test_size, random_state=seed)`` fold and score the
    held-out part. Returns the per-fold accuracies, ROC-AUCs and TPRs at :data:`LOW_FPR` and the
    per-side counts after balancing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    min_side = 5
    if min(len(mem), len(non)) < min_side:
        raise ValueError(f"the MIA needs at least {min_side} member and {min_side} non-member "
                         f"{kind}; got {len(mem)} and {len(non)}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")

    rng = np.random.default_rng(seed)
    if balance and len(mem) != len(non):
        n = min(len(mem), len(non))
        if len(mem) > n:
            mem = mem[np.sort(rng.choice(len(mem), size=n, replace=False))]
        else:
            non = non[np.sort(rng.choice(len(non), size=n, replace=False))]

    x = np.concatenate([mem, non])[:, None]
    y = np.concatenate([np.ones(len(mem), dtype=np.int64), np.zeros(len(non), dtype=np.int64)])

    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    accs, aucs, tprs = [], [], []
    for train_idx, test_idx in cv.split(x, y):
        attack = (make_pipeline(StandardScaler(), LogisticRegression())
                  if standardize else LogisticRegression())
        attack.fit(x[train_idx], y[train_idx])
        accs.append(float(attack.score(x[test_idx], y[test_idx])))
        proba = attack.predict_proba(x[test_idx])[:, 1]
        aucs.append(float(roc_auc_score(y[test_idx], proba)))
        tprs.append(_tpr_at_fpr(y[test_idx], proba))
    return {"accs": accs, "aucs": aucs, "tprs": tprs,
            "n_member": int(len(mem)), "n_nonmember": int(len(non))}


def mia(member_losses: np.ndarray, nonmember_losses: np.ndarray, seed: int = 0,
        n_splits: int = 10, test_size: float = 0.3, balance: bool = True,
        standardize: bool = True) -> dict[str, float]:
    """Membership-inference attack on per-sample losses (the paper's MIA, balanced).

    Members (label 1) are the forget losses, non-members (label 0) the unseen/test losses.

    1. **Balance** (``balance=True``): the larger side is subsampled without replacement,
       with ``np.random.default_rng(seed)``, to the size of the smaller side, so that always
       guessing one side scores 0.5 and not the class ratio.
    2. **Attack**: a ``LogisticRegression`` on the loss (one feature; standardised on each
       training fold when ``standardize=True``, see the module docstring), evaluated with
       ``StratifiedShuffleSplit(n_splits, test_size, random_state=seed)``.
    3. **Scores**: ``mia`` = mean held-out accuracy over the folds, ``mia_sd`` = its standard
       deviation across folds (ddof = 0), ``auc`` = mean held-out ROC-AUC of the attack's predicted
       member probability. The AUC is threshold-free and so shows a leak even where the
       fitted threshold is poor; it is the AUC *of the trained attack*, so, like the
       accuracy, it is ~0.5 for indistinguishable losses (it can fall a little below 0.5
       when a fold's fit picks the wrong direction) and ~1.0 for separable ones.

    Returns ``dict(mia, mia_sd, auc, n, n_member, n_nonmember)``; ``n`` is the per-side count
    after balancing (the smaller side's size; with ``balance=False`` the sides keep their
    sizes, reported in ``n_member`` / ``n_nonmember``). Same inputs and seed → same numbers.
    :func:`mia_attack` runs the same attack on any per-sample score and adds TPR at 1 % FPR.
    """
    mem = _clean_losses(member_losses, "member")
    non = _clean_losses(nonmember_losses, "non-member")
    r = _balanced_cv_attack(mem, non, seed=seed, n_splits=n_splits, test_size=test_size,
                            balance=balance, standardize=standardize)
    return {
        "mia": float(np.mean(r["accs"])),
        "mia_sd": float(np.std(r["accs"])),
        "auc": float(np.mean(r["aucs"])),
        "n": int(min(r["n_member"], r["n_nonmember"])),
        "n_member": r["n_member"],
        "n_nonmember": r["n_nonmember"],
    }


# --------------------------------------------------------------------------------------------
# the attack suite: four per-sample scores, each attacked like the paper's MIA
# --------------------------------------------------------------------------------------------
#: the attacks of :func:`attack_scores` / :func:`mia_suite`, in table order
ATTACKS = ("loss", "confidence", "entropy", "mentr")
#: the per-attack numbers :func:`evaluate` adds (``mia_<attack>_<metric>``) and where they come from
ATTACK_METRICS = {"acc": "acc", "auc": "auc", "tpr1": "tpr_at_1fpr"}


def _check_logits(logits, labels, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """float64 logits [N, C] and int64 labels [N], or a ValueError that says what is wrong."""
    where = f" ({what})" if what else ""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or y.ndim != 1 or z.shape[0] != y.shape[0]:
        raise ValueError(f"logits must be [N, C] and labels [N]{where}; got {z.shape} and {y.shape}")
    if z.shape[0] == 0:
        raise ValueError(f"no samples{where}: logits has 0 rows")
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns){where}; got {z.shape[1]}")
    if not np.all(np.isfinite(z)):
        bad = int((~np.isfinite(z)).any(axis=1).sum())
        raise ValueError(f"{bad} of the {len(z)} logit rows{where} hold NaN or infinite values; "
                         f"the model's outputs are not finite (a diverged unlearning run?)")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels{where} must be integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels{where} must lie in 0..{z.shape[1] - 1} (one per logit column); "
                         f"got {y.min()}..{y.max()}")
    return z, y


def _log_softmax(z: np.ndarray) -> np.ndarray:
    from scipy.special import logsumexp
    return z - logsumexp(z, axis=1, keepdims=True)


def _log_one_minus_softmax(z: np.ndarray) -> np.ndarray:
    """log(1 − p_i) for every class, computed as logsumexp_{j≠i} z_j − logsumexp_j z_j, which
    stays exact where p_i rounds to 1 (where ``log1p(-p)`` would give −inf)."""
    from scipy.special import logsumexp
    lse = logsumexp(z, axis=1)
    out = np.empty_like(z)
    for i in range(z.shape[1]):
        others = z.copy()
        others[:, i] = -np.inf
        out[:, i] = logsumexp(others, axis=1) - lse
    return out


def attack_scores(logits: np.ndarray, labels: np.ndarray,
                  attacks: Sequence[str] = ATTACKS) -> dict[str, np.ndarray]:
    """Per-sample membership scores from logits and true labels (float64, computed stably).

    **Sign convention: higher = more member-like** for every score, so a raw score is also a
    threshold attack (its ROC-AUC for members vs non-members is > 0.5 when members score higher).
    With p = softmax(logits) and y the true label:

    * ``"loss"`` – ``log p_y`` = −cross-entropy (Yeom et al. 2018: members have low loss);
    * ``"confidence"`` – ``p_y``, the probability of the *true* class (Song & Mittal 2021);
    * ``"entropy"`` – ``Σ_i p_i log p_i`` = −H(p), the negated prediction entropy (Song &
      Mittal 2021; it ignores the label);
    * ``"mentr"`` – −Mentr with the modified entropy of Song & Mittal (2021)
      ``Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)``, which, unlike the entropy,
      is large for a confident *wrong* prediction.

    ``log(1 − p_i)`` is taken as ``logsumexp_{j≠i} z_j − logsumexp z`` so a saturated softmax
    gives finite scores. Logits with NaN/Inf raise ``ValueError``.
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    z, y = _check_logits(logits, labels)
    rows = np.arange(len(y))
    logp = _log_softmax(z)
    logp_y = logp[rows, y]
    out: dict[str, np.ndarray] = {}
    for name in attacks:
        if name == "loss":
            out[name] = logp_y.copy()
        elif name == "confidence":
            out[name] = np.exp(logp_y)
        elif name == "entropy":
            out[name] = np.sum(np.exp(logp) * logp, axis=1)
        else:  # mentr
            log1m = _log_one_minus_softmax(z)
            p = np.exp(logp)
            wrong = p * log1m
            wrong[rows, y] = 0.0
            mentr = -np.exp(log1m[rows, y]) * logp_y - wrong.sum(axis=1)
            out[name] = -mentr
    return out


def mia_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray, seed: int = 0,
               n_splits: int = 10, test_size: float = 0.3, balance: bool = True,
               standardize: bool = True) -> dict[str, float]:
    """The paper's balanced logistic-regression MIA (:func:`mia`) on any one-dimensional score.

    Members (forget, label 1) and non-members (test, label 0) are balanced by subsampling the
    larger side with ``np.random.default_rng(seed)``, then a logistic regression on the
    (standardised) score is evaluated on ``StratifiedShuffleSplit(n_splits, test_size,
    random_state=seed)`` folds – the very code path of :func:`mia`, so ``mia_attack(-loss_m,
    -loss_n)`` and ``mia(loss_m, loss_n)`` agree. The direction of the score does not matter
    (the regression learns it).

    Returns ``dict(acc, acc_sd, auc, tpr_at_1fpr, n, n_member, n_nonmember)``:

    * ``acc`` / ``acc_sd`` – mean / sd (ddof = 0) of the held-out accuracy over the folds;
    * ``auc`` – mean held-out ROC-AUC of the attack's member probability;
    * ``tpr_at_1fpr`` – on each held-out fold, the ROC curve of the attack's member probability
      (all thresholds, no interpolation) is taken and its largest TPR among the points with
      FPR <= 0.01 is kept; the value is the mean over folds. It measures whether the attack is
      confident about *some* members at almost no cost in false alarms (Carlini et al. 2022).
      **Small folds:** with fewer than 100 non-members in a held-out fold, 1 % FPR admits no
      false positive at all, so the number is the TPR at zero FPR; it is then coarse and
      noisy (e.g. 30 % held out of 150 balanced pairs = 45 non-members per fold). Ties in the
      score count against the attack (a tied member/non-member pair adds a false positive).
    * ``n`` – per-side count after balancing.
    """
    mem = _clean_values(member_scores, "member", "scores")
    non = _clean_values(nonmember_scores, "non-member", "scores")
    r = _balanced_cv_attack(mem, non, seed=seed, n_splits=n_splits, test_size=test_size,
                            balance=balance, standardize=standardize, kind="scores")
    return {
        "acc": float(np.mean(r["accs"])),
        "acc_sd": float(np.std(r["accs"])),
        "auc": float(np.mean(r["aucs"])),
        "tpr_at_1fpr": float(np.mean(r["tprs"])),
        "n": int(min(r["n_member"], r["n_nonmember"])),
        "n_member": r["n_member"],
        "n_nonmember": r["n_nonmember"],
    }


def mia_suite(member_logits: np.ndarray, member_labels: np.ndarray,
              nonmember_logits: np.ndarray, nonmember_labels: np.ndarray, seed: int = 0,
              attacks: Sequence[str] = ATTACKS, **attack_kwargs):
    """Run every attack of :func:`attack_scores` with :func:`mia_attack` (same seed, same
    balanced subsample and folds for all of them).

    Returns a ``pandas.DataFrame`` indexed by ``attack`` with columns ``acc``, ``acc_sd``,
    ``auc``, ``tpr_at_1fpr``, ``n``, ``n_member``, ``n_nonmember``. ``attack_kwargs`` go to
    :func:`mia_attack` (``n_splits``, ``test_size``, ``balance``, ``standardize``).
    """
    import pandas as pd

    if not attacks:
        raise ValueError(f"attacks is empty; choose some of {list(ATTACKS)}")
    mem = attack_scores(member_logits, member_labels, attacks)
    non = attack_scores(nonmember_logits, nonmember_labels, attacks)
    rows = {name: mia_attack(mem[name], non[name], seed=seed, **attack_kwargs) for name in attacks}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "attack"
    return df


def attack_table(results: Mapping[str, Mapping], reference: str = "retrained",
                 attacks: Sequence[str] = ATTACKS,
                 metrics: Sequence[str] = tuple(ATTACK_METRICS)):
    """Each model's attack numbers beside the reference (retrained) model's, for notebook 03.

    ``results`` is ``{model name: evaluate(..., attacks=True)}``. Returns a long
    ``pandas.DataFrame`` indexed by ``(model, attack)`` with, for each metric ``m`` in
    ``metrics`` (``acc``, ``auc``, ``tpr1``): ``m`` (the model's value), ``m_ref`` (the
    reference model's value for the same attack) and ``m_gap`` = ``m − m_ref``. A gap near 0
    means the attack sees the model as it sees a model that never trained on the forget set –
    the right target, rather than 0.5.
    """
    import pandas as pd

    _check_named(results)
    if reference not in results:
        raise KeyError(f"reference model {reference!r} is not among the results "
                       f"{list(results)}; pass reference=<one of them>")
    bad = [m for m in metrics if m not in ATTACK_METRICS]
    if bad:
        raise ValueError(f"unknown attack metric(s) {bad}; choose from {list(ATTACK_METRICS)}")
    ref = results[reference]
    rows = []
    for name, r in results.items():
        for a in attacks:
            row: dict = {"model": name, "attack": a}
            for m in metrics:
                key = f"mia_{a}_{m}"
                for who, src in ((name, r), (reference, ref)):
                    if key not in src:
                        raise KeyError(f"{who!r} has no {key!r}; evaluate it with "
                                       f"evaluate(..., attacks=True)")
                row[m] = float(r[key])
                row[f"{m}_ref"] = float(ref[key])
                row[f"{m}_gap"] = row[m] - row[f"{m}_ref"]
            rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "attack"])


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


def _scalar(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_named(results) -> None:
    if not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values()):
        raise TypeError("expected {model name: metrics dict}, e.g. {'original': evaluate(...)}; "
                        "wrap a single result as {'name': result}")


def metrics_table(results: Mapping[str, Mapping], columns: Sequence[str] | None = None):
    """A ``pandas.DataFrame`` with one row per model and float metric columns.

    ``columns=None`` uses :data:`TABLE_COLUMNS` (those present in any result), then any
    other scalar metrics in first-seen order; non-scalar entries such as ``"losses"`` are
    left out. Missing values are NaN.
    """
    _check_named(results)
    return named_table(results, TABLE_COLUMNS, columns)


def named_table(results: Mapping[str, Mapping], preferred: Sequence[str], columns: Sequence[str] | None = None):
    """``{model: {name: value}}`` as a float ``pandas.DataFrame`` indexed by ``model``: the
    ``columns`` given, or else those of ``preferred`` present in any result followed by every
    other scalar entry in first-seen order (non-scalars are left out, missing values are NaN)."""
    import pandas as pd

    if columns is None:
        present = {k for r in results.values() for k, v in r.items() if _scalar(v)}
        columns = [c for c in preferred if c in present]
        for r in results.values():
            for k, v in r.items():
                if _scalar(v) and k not in columns:
                    columns.append(k)
    rows = {name: {c: float(r[c]) if c in r and _scalar(r[c]) else np.nan for c in columns}
            for name, r in results.items()}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(columns)).astype(float)
    df.index.name = "model"
    return df


def place_model(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to run ``model`` on: where it is (``device=None``), or ``device`` resolved
    (``"auto"``: CUDA if available), moving the model there if it is elsewhere."""
    if device is None:
        return _model_device(model)
    dev = resolve_device(device)
    if _model_device(model) != dev:
        model.to(dev)
    return dev


def save_metrics(results: Mapping[str, Mapping], path: str | Path,
                 include_losses: bool = False) -> tuple[Path, Path]:
    """Write ``results`` ({model name: metrics}) as JSON at ``path`` and the
    :func:`metrics_table` as CSV beside it (same name, ``.csv``). Both writes are atomic.
    A path without a suffix gets ``.json``.
    Per-sample ``"losses"`` arrays are dropped from the JSON unless ``include_losses``.
    Returns ``(json_path, csv_path)``."""
    _check_named(results)
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
