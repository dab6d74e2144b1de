"""Membership-inference attacks: the paper's balanced loss attack and a stronger suite.

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

from typing import Mapping, Sequence

import numpy as np

from .utils import check_named_results

__all__ = ["mia", "LOW_FPR", "tpr_at_fpr", "ATTACKS", "ATTACK_METRICS", "check_logits", "attack_scores",
           "mia_attack", "mia_suite", "attack_table"]


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


def tpr_at_fpr(y_true: np.ndarray, member_score: np.ndarray, max_fpr: float = LOW_FPR) -> float:
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
        tprs.append(tpr_at_fpr(y[test_idx], proba))
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


def check_logits(logits, labels, what: str = "") -> tuple[np.ndarray, np.ndarray]:
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
    z, y = check_logits(logits, labels)
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

    check_named_results(results)
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
