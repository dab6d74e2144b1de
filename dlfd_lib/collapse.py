"""Correlation collapse, measured: how much task structure and identity information a model's
features still hold after unlearning, and how far they drifted from the original model.

**Correlation collapse** (Choi & Na, AAAI 2025). Error-maximising unlearning methods
(NegGrad, UNSIR, Bad Teacher, ...) push the loss on the forget images up. Forget and retain
images share the *task* features (what makes a face look 50 years old), so raising the forget
loss also breaks the link between those features and the true labels: utility drops and the
class clusters in feature space smear together. The paper names the effect and shows it with
feature-space pictures and loss histograms only; this module puts numbers on it, so that
methods can be compared in a table and watched over the course of unlearning.

Every measure is computed on the features of one layer of :class:`~dlfd_lib.model.FaceClassifier`
(``layer="penultimate"`` by default: the 128-d input of the last Linear; ``"backbone"`` and
``"logits"`` also work), from **one feature pass per split** (:func:`extract_features`,
:func:`extract_all`). What each measure shows, and where it moves under collapse:

* **Linear-probe accuracy** (:func:`linear_probe`; Alain & Bengio 2016, *Understanding
  intermediate layers using linear classifier probes*). A fresh multinomial logistic
  regression is fitted on the standardised *retain* features and their task labels, and
  scored on the *test* features (``probe_acc``) and the *forget* features
  (``probe_forget_acc``). It asks whether the task is still linearly readable from the
  features, whatever the model's own last layer does. **Falls under collapse**, towards the
  chance level ``probe_chance``. Good unlearning keeps it near the original's value: the task
  is not what should be forgotten.
* **Class separability** (:func:`class_separability`), on one split (test by default):
  the **silhouette** of the task labels (Rousseeuw 1987: for each image, (b − a) / max(a, b)
  with a its mean distance to its own class and b to the nearest other class; 1 = tight,
  well separated clusters, ≈ 0 = overlapping, < 0 = mixed up), and the **scatter ratio**
  trace(S_B) / trace(S_W) of between-class to within-class scatter (Fisher's criterion,
  Fisher 1936, in its trace form). Both **fall under collapse** (the paper's "clustered,
  indistinguishable features"). For features unrelated to the labels the scatter ratio is
  about (C − 1) / (N − C), so it depends on N: compare values computed on the same images.
* **Identity retention** (:func:`identity_knn`): leave-one-out k-nearest-neighbour identity
  accuracy among the forget images (cosine distance, k = 1 by default): is each forget image's
  nearest *other* forget image a photo of the same person? It asks whether the model still
  tells the forgotten people apart. The chance level ``identity_knn_chance`` is the expected
  accuracy of a random neighbour, mean over images of (n_i − 1) / (N − 1). A model that never
  saw those people (the retrained model) still separates them somewhat, because faces differ;
  **good forgetting moves the value towards the retrained model's value**, not to chance;
  collapse can push it below. Needs identity labels: datasets without them (RAF-DB) give NaN
  and a note.
* **Drift from the original model** (:func:`linear_cka`; Kornblith et al. 2019, *Similarity of
  neural network representations revisited*): linear centred kernel alignment between the
  unlearned and the original model's features of the same images, per split. 1 for identical
  features, invariant to orthogonal transforms and isotropic scaling, 0 for unrelated ones.
  **Drops with heavy drift.** The plain estimator is biased upwards when N is not much larger
  than the feature dimension (for independent random features it is about sqrt(D1·D2) / N
  when N ≫ D, and ≈ 0.4 for 100 images of 64-d features); ``debiased=True`` uses the
  unbiased HSIC estimator (Song et al. 2012), whose value for unrelated features is ≈ 0 at
  any N (it can then be slightly negative).

:func:`collapse_measures` computes all of them for one model, :func:`collapse_table` makes the
table of several models, and :class:`CollapseTracker` is a cheap callable, on fixed seeded
subsamples of a few hundred images, for curves over the course of unlearning (it fits the
``callback(model, step, final)`` of :func:`dlfd_lib.unlearn.unlearn`).

All measures are deterministic on the CPU for a given ``seed`` (subsamples use
``numpy.random.default_rng(seed)``; nothing here draws from torch's or NumPy's global random
streams, so a tracker inside a training loop does not change the run it watches).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .inference import FeatureDict, extract_all, extract_features
from .metrics import is_scalar, named_table

__all__ = [
    "linear_probe", "class_separability", "silhouette",
    "scatter_ratio", "identity_knn", "linear_cka", "collapse_measures", "collapse_table",
    "CollapseTracker", "CollapseConfig", "COLLAPSE_COLUMNS",
]

#: Column order of :func:`collapse_table` (those present; other scalar entries follow).
COLLAPSE_COLUMNS = (
    "probe_acc", "probe_forget_acc", "probe_chance",
    "silhouette", "scatter_ratio",
    "identity_knn_acc", "identity_knn_chance", "identity_knn_ref",
    "cka_to_original_retain", "cka_to_original_forget", "cka_to_original_test",
)

# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _matrix(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array [N, D] of features; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{what} holds {bad} NaN or infinite values: the model's features are not "
                         f"finite (a diverged unlearning run?)")
    return x


def _vector(y, n: int, what: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{what} has {len(y)} entries but the features have {n} rows: pass the "
                         f"labels of the same images, in the same order")
    return y


def _subsample(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """Sorted seeded subsample of range(n) of size min(n, max_samples)."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


# --------------------------------------------------------------------------------------------
# linear probe
# --------------------------------------------------------------------------------------------
def linear_probe(train_features, train_labels,
                 eval_sets: Mapping[str, tuple[Any, Any]] | None = None, *, C: float = 1.0,
                 max_iter: int = 2000, max_train: int | None = None, seed: int = 0) -> dict[str, float]:
    """Task-label linear probe (Alain & Bengio 2016).

    A multinomial ``LogisticRegression`` (lbfgs, L2 with inverse strength ``C``) is fitted on
    the standardised ``train_features`` (the scaler is fitted on them too), optionally on a
    seeded subsample of ``max_train`` rows, and scored on each ``eval_sets[name] = (features,
    labels)``.

    Returns ``{"<name>_acc": accuracy for each eval set, "train_acc", "chance", "n_train",
    "converged"}``. ``chance`` is the score of a probe that learnt nothing and always answers
    the most common training class, taken on the first eval set (1/C for balanced classes).
    ``converged`` is 1.0, or 0.0 if lbfgs stopped at ``max_iter`` (then raise it).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = _matrix(train_features, "train_features")
    y = _vector(train_labels, len(x), "train_labels").astype(np.int64)
    idx = _subsample(len(x), max_train, seed)
    x, y = x[idx], y[idx]
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"the probe's training labels hold a single class ({classes.tolist()}): "
                         f"a probe needs at least two classes; use more training images or a "
                         f"larger max_train")
    scaler = StandardScaler().fit(x)
    probe = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(scaler.transform(x), y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    out: dict[str, float] = {"train_acc": float(probe.score(scaler.transform(x), y))}
    majority = classes[np.argmax([(y == c).sum() for c in classes])]
    chance = np.nan
    for name, (fx, fy) in (eval_sets or {}).items():
        fx = _matrix(fx, f"eval_sets[{name!r}] features")
        fy = _vector(fy, len(fx), f"eval_sets[{name!r}] labels").astype(np.int64)
        if fx.shape[1] != x.shape[1]:
            raise ValueError(f"eval_sets[{name!r}] has {fx.shape[1]}-d features but the probe was "
                             f"trained on {x.shape[1]}-d ones: use the same layer for both")
        out[f"{name}_acc"] = float(probe.score(scaler.transform(fx), fy)) if len(fx) else np.nan
        if np.isnan(chance) and len(fy):
            chance = float(np.mean(fy == majority))
    out["chance"] = chance
    out["n_train"] = float(len(x))
    out["converged"] = float(converged)
    return out


# --------------------------------------------------------------------------------------------
# class separability
# --------------------------------------------------------------------------------------------
def silhouette(features, labels, metric: str = "cosine", max_samples: int | None = 2000,
               seed: int = 0) -> float:
    """Mean silhouette of the ``labels`` clusters (Rousseeuw 1987), in [−1, 1].

    ``metric`` is ``"cosine"`` or ``"euclidean"`` (any metric sklearn accepts). The cost is
    O(N²), so at most ``max_samples`` rows (a seeded subsample) are used. NaN when fewer than
    two classes are present or every image is its own class."""
    from sklearn.metrics import silhouette_score

    x = _matrix(features, "features")
    y = _vector(labels, len(x), "labels")
    idx = _subsample(len(x), max_samples, seed)
    x, y = x[idx], y[idx]
    n_labels = len(np.unique(y))
    if n_labels < 2 or n_labels >= len(y):
        return float("nan")
    return float(silhouette_score(x, y, metric=metric))


def scatter_ratio(features, labels) -> float:
    """Fisher's criterion in trace form: trace(S_B) / trace(S_W), with
    S_B = Σ_c n_c (μ_c − μ)(μ_c − μ)ᵀ and S_W = Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ.

    0 when the class means coincide, large for tight, distant classes; for features unrelated
    to the labels it is about (C − 1) / (N − C). Invariant to rotations, translations and
    isotropic scaling of the features. ``inf`` when every class is a single point (and the
    means differ); NaN with fewer than two classes."""
    x = _matrix(features, "features")
    y = _vector(labels, len(x), "labels")
    classes, inv = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        return float("nan")
    counts = np.bincount(inv).astype(np.float64)
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, inv, x)
    means /= counts[:, None]
    between = float((counts * ((means - x.mean(axis=0)) ** 2).sum(axis=1)).sum())
    within = float(((x - means[inv]) ** 2).sum())
    if within == 0.0:
        return float("inf") if between > 0 else float("nan")
    return between / within


def class_separability(features, labels, metric: str = "cosine", max_samples: int | None = 2000,
                       seed: int = 0) -> dict[str, float]:
    """Silhouette (on ≤ ``max_samples`` seeded rows) and scatter ratio (on all rows) of the
    task-label clusters, plus the scatter ratio expected for unrelated labels,
    ``scatter_ratio_chance`` = (C − 1) / (N − C) (its mean under a random relabelling)."""
    x = _matrix(features, "features")
    y = _vector(labels, len(x), "labels")
    c = len(np.unique(y))
    return {
        "silhouette": silhouette(x, y, metric=metric, max_samples=max_samples, seed=seed),
        "scatter_ratio": scatter_ratio(x, y),
        "scatter_ratio_chance": float((c - 1) / (len(y) - c)) if len(y) > c else float("nan"),
        "n": float(len(y)),
    }


# --------------------------------------------------------------------------------------------
# identity retention
# --------------------------------------------------------------------------------------------
def _neighbour_order(x: np.ndarray, k: int, metric: str, block: int = 1024) -> np.ndarray:
    """For each row, the indices of its k nearest *other* rows, nearest first (ties: lower index)."""
    n = len(x)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        z = x / np.where(norms > 0, norms, 1.0)  # a zero vector is at distance 1 from everything
        sq = None
    elif metric == "euclidean":
        z = x
        sq = (x ** 2).sum(axis=1)
    else:
        raise ValueError(f"metric={metric!r}; the identity kNN supports 'cosine' or 'euclidean'")
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sim = z[start:stop] @ z.T
        d = (1.0 - sim) if sq is None else (sq[start:stop, None] + sq[None, :] - 2.0 * sim)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf  # leave one out
        out[start:stop] = np.argsort(d, axis=1, kind="stable")[:, :k]
    return out


def identity_knn(features, identities, k: int = 1, metric: str = "cosine") -> dict[str, Any]:
    """Leave-one-out k-NN identity accuracy: for each image, do its ``k`` nearest other images
    (majority vote; a tie goes to the identity of the nearest tied neighbour) show the same
    person?

    Returns ``dict(acc, chance, n, n_identities, note)``. ``chance`` is the expected accuracy of
    one random other image as the neighbour: the mean over images of (n_i − 1) / (N − 1), with
    n_i the number of images of that image's person (it is the exact chance level for k = 1).
    Images whose person has no other image can never be matched and count as misses. Without
    identities (``identities=None``, e.g. RAF-DB) or with fewer than two images, ``acc`` and
    ``chance`` are NaN and ``note`` says why; otherwise ``note`` is empty.
    """
    if identities is None:
        return {"acc": float("nan"), "chance": float("nan"), "n": 0.0, "n_identities": 0.0,
                "note": "no identity labels for these images (the dataset has none, e.g. RAF-DB): "
                        "identity retention cannot be measured"}
    x = _matrix(features, "features")
    ids = _vector(identities, len(x), "identities")
    n = len(x)
    if n < 2:
        return {"acc": float("nan"), "chance": float("nan"), "n": float(n), "n_identities": float(n),
                "note": f"identity kNN needs at least 2 images, got {n}"}
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, n - 1)
    _, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    chance = float(np.mean((counts[inv] - 1) / (n - 1)))
    nbrs = _neighbour_order(x, k, metric)
    if k == 1:
        pred = inv[nbrs[:, 0]]
    else:
        pred = np.empty(n, dtype=np.int64)
        for i, row in enumerate(inv[nbrs]):
            vals, first, votes = np.unique(row, return_index=True, return_counts=True)
            best = votes == votes.max()
            pred[i] = vals[best][np.argmin(first[best])]
    note = "" if (counts > 1).any() else \
        "every identity has a single image here, so no neighbour can match: the value is 0 by construction"
    return {"acc": float(np.mean(pred == inv)), "chance": chance, "n": float(n),
            "n_identities": float(len(counts)), "note": note}


# --------------------------------------------------------------------------------------------
# CKA
# --------------------------------------------------------------------------------------------
def _hsic_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased HSIC estimator (Song et al. 2012) for linear kernels K = XXᵀ, L = YYᵀ, computed
    in feature space (no N×N matrices)."""
    n = len(x)
    dk, dl = (x * x).sum(axis=1), (y * y).sum(axis=1)
    trace_kl = float(((x.T @ y) ** 2).sum() - (dk * dl).sum())  # Σ_{i≠j} K_ij L_ij
    k1 = x @ x.sum(axis=0) - dk  # (K with zero diagonal) · 1
    l1 = y @ y.sum(axis=0) - dl
    return (trace_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) between two feature matrices of the *same* images,
    ``x`` [N, D1] and ``y`` [N, D2] (the dimensions may differ).

    CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) on column-centred features: 1 for identical
    features, invariant to orthogonal transforms, isotropic scaling and translation of either
    side. The plain estimator is biased upwards at small N (for independent features about
    sqrt(D1·D2) / N when N ≫ D, and already ≈ 0.4 for 100 images of 64-d features);
    ``debiased=True`` replaces each HSIC by its unbiased estimate (Song et al. 2012; needs
    N ≥ 4), which is ≈ 0 for independent features at any N.

    A constant feature matrix (e.g. a dead layer) shares nothing with the other side: the
    value is 0.0 then, and NaN when both sides are constant.
    """
    x = _matrix(x, "x")
    y = _matrix(y, "y")
    if len(x) != len(y):
        raise ValueError(f"linear_cka compares features of the same images, but x has {len(x)} rows "
                         f"and y {len(y)}: pass both models' features of one split, in one order")
    n = len(x)
    if n < (4 if debiased else 2):
        raise ValueError(f"linear_cka needs at least {4 if debiased else 2} images, got {n}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    # scale each side to unit Frobenius norm first: CKA is scale invariant, and this keeps the
    # fourth powers below inside the float range for any feature magnitude
    sx, sy = np.linalg.norm(x), np.linalg.norm(y)
    if sx == 0.0 or sy == 0.0:
        return float("nan") if sx == sy else 0.0
    x, y = x / sx, y / sy
    if debiased:
        xy, xx, yy = _hsic_unbiased(x, y), _hsic_unbiased(x, x), _hsic_unbiased(y, y)
    else:
        xy = float(((x.T @ y) ** 2).sum())
        xx = float(((x.T @ x) ** 2).sum())
        yy = float(((y.T @ y) ** 2).sum())
    if xx <= 0.0 or yy <= 0.0:
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


# --------------------------------------------------------------------------------------------
# everything for one model
# --------------------------------------------------------------------------------------------
def _check_feature_dict(obj, what: str) -> FeatureDict:
    if not isinstance(obj, Mapping) or "features" not in obj or "labels" not in obj:
        raise TypeError(f"{what} must be a feature dict from extract_features (keys 'features', "
                        f"'labels', 'identities'); got {type(obj).__name__}")
    return obj  # type: ignore[return-value]


def _is_module(obj) -> bool:
    return isinstance(obj, torch.nn.Module)


@dataclass(frozen=True)
class CollapseConfig:
    """How :func:`collapse_measures` and :class:`CollapseTracker` measure (every field can also be
    passed to them by name): the feature ``layer``; the splits ``names`` whose CKA to the original
    is measured; the probe fitted on ``probe_train`` and scored on ``probe_eval`` (``probe_C``,
    ``probe_max_iter``, at most ``max_train`` training images); the class separability on
    ``separability_split`` (``metric``, at most ``max_samples`` images); the identity ``k``-NN;
    ``cka_debiased``; the feature pass's ``batch_size`` and ``amp``."""

    layer: str = "penultimate"
    names: Sequence[str] = ("retain", "forget", "test")
    probe_train: str = "retain"
    probe_eval: Sequence[str] = ("test", "forget")
    separability_split: str = "test"
    metric: str = "cosine"
    max_samples: int | None = 2000
    max_train: int | None = None
    probe_C: float = 1.0
    probe_max_iter: int = 2000
    k: int = 1
    cka_debiased: bool = False
    batch_size: int = 256
    amp: bool = False

    def updated(self, settings: Mapping[str, Any], where: str = "collapse_measures") -> "CollapseConfig":
        """This config with ``settings`` (field name -> value) replaced; an unknown name raises,
        listing the valid ones."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(settings) - known)
        if bad:
            raise TypeError(f"{where}: unknown setting(s) {bad}; CollapseConfig has {sorted(known)}")
        return replace(self, **settings) if settings else self


def collapse_measures(model: torch.nn.Module | None, splits, reference=None, original=None, *,
                      features: Mapping[str, FeatureDict] | None = None, config: CollapseConfig | None = None,
                      seed: int = 0, device: str | torch.device | None = None, return_features: bool = False,
                      **settings) -> dict[str, Any]:
    """All correlation-collapse measures of one model, from one feature pass per split.

    ``model`` is read with :func:`extract_features` on the splits ``names`` (plus any split the
    measures need); pass ``features=`` (an :func:`extract_all` result) to reuse a pass, and
    then ``model`` may be None. Keys of the result (plain floats):

    * ``probe_acc`` / ``probe_forget_acc`` – probe fitted on ``probe_train`` (retain), scored on
      test / forget (each split ``s`` of ``probe_eval`` other than test gives ``probe_<s>_acc``);
      ``probe_chance`` – always answering the majority training class, on the first split of
      ``probe_eval``.
    * ``silhouette`` (``metric``, ≤ ``max_samples`` seeded images) and ``scatter_ratio`` of
      the task labels on ``separability_split``.
    * ``identity_knn_acc`` / ``identity_knn_chance`` – leave-one-out ``k``-NN identity accuracy
      among the forget images (``metric``), NaN without identities (see ``notes``).
    * ``identity_knn_ref`` – the same for ``reference`` (the retrained model: a model, its
      :func:`extract_all` features, or its earlier ``collapse_measures`` result), if given.
    * ``cka_to_original_<split>`` for each split in ``names`` – linear CKA to ``original``
      (a model, or its :func:`extract_all` features on the same splits, to avoid recomputing
      them), if given; ``cka_debiased`` picks the unbiased estimator.

    Also ``notes`` (a list of strings; empty when all is well) and, with
    ``return_features``, ``features`` ({split: feature dict}); :func:`collapse_table` skips both.
    How it measures: ``config`` (:class:`CollapseConfig`), or its fields by name (``layer=``,
    ``max_samples=``, ...) on top of it.
    """
    cfg = (config or CollapseConfig()).updated(settings)
    layer, names, probe_train, probe_eval = cfg.layer, cfg.names, cfg.probe_train, cfg.probe_eval
    separability_split, metric, max_samples, k = cfg.separability_split, cfg.metric, cfg.max_samples, cfg.k
    probe_C, probe_max_iter, max_train, cka_debiased = cfg.probe_C, cfg.probe_max_iter, cfg.max_train, cfg.cka_debiased
    batch_size, amp = cfg.batch_size, cfg.amp
    if features is None and model is None:
        raise ValueError("collapse_measures needs a model or precomputed features=: pass the model "
                         "(its features are extracted) or features=extract_all(model, splits)")
    if len(probe_eval) < 1:
        raise ValueError("probe_eval must name at least one split to score the probe on, e.g. ('test',)")
    pass_kw = dict(layer=layer, device=device, batch_size=batch_size, amp=amp)
    needed = list(dict.fromkeys([*names, probe_train, *probe_eval, separability_split, "forget"]))
    feats: dict[str, FeatureDict] = dict(features or {})
    for name in needed:
        if name not in feats:
            if model is None:
                raise KeyError(f"features= has no split {name!r} and no model was given to extract it: "
                               f"add {name!r} to extract_all(..., names=...)")
            feats[name] = extract_features(model, splits, name, **pass_kw)
        _check_feature_dict(feats[name], f"features[{name!r}]")

    out: dict[str, Any] = {}
    notes: list[str] = []

    # linear probe
    probe = linear_probe(feats[probe_train]["features"], feats[probe_train]["labels"],
                         {n: (feats[n]["features"], feats[n]["labels"]) for n in probe_eval},
                         C=probe_C, max_iter=probe_max_iter, max_train=max_train, seed=seed)
    for n in dict.fromkeys(probe_eval):
        out["probe_acc" if n == "test" else f"probe_{n}_acc"] = probe[f"{n}_acc"]
    out["probe_chance"] = probe["chance"]
    if not probe["converged"]:
        notes.append(f"the linear probe did not converge in {probe_max_iter} iterations: raise "
                     f"probe_max_iter")

    # separability
    sep = feats[separability_split]
    s = class_separability(sep["features"], sep["labels"], metric=metric,
                           max_samples=max_samples, seed=seed)
    out["silhouette"] = s["silhouette"]
    out["scatter_ratio"] = s["scatter_ratio"]

    # identity retention on the forget set
    fg = feats["forget"]
    knn = identity_knn(fg["features"], fg.get("identities"), k=k, metric=metric)
    out["identity_knn_acc"] = knn["acc"]
    out["identity_knn_chance"] = knn["chance"]
    if knn["note"]:
        notes.append(f"identity kNN: {knn['note']}")
    if reference is not None:
        out["identity_knn_ref"] = _reference_knn(reference, splits, k=k, metric=metric, **pass_kw)

    # drift from the original model
    if original is not None:
        for name in dict.fromkeys(names):
            if _is_module(original):
                ref = extract_features(original, splits, name, **pass_kw)
            else:
                if not isinstance(original, Mapping) or name not in original:
                    raise KeyError(f"original= has no features for split {name!r}: pass the original "
                                   f"model, or extract_all(original_model, splits, names={tuple(names)!r})")
                ref = _check_feature_dict(original[name], f"original[{name!r}]")
            if len(ref["features"]) != len(feats[name]["features"]):
                raise ValueError(f"original[{name!r}] holds {len(ref['features'])} images but the model's "
                                 f"{name} features hold {len(feats[name]['features'])}: extract both on "
                                 f"the same splits")
            out[f"cka_to_original_{name}"] = linear_cka(feats[name]["features"], ref["features"],
                                                        debiased=cka_debiased)
    out["notes"] = notes
    if return_features:
        out["features"] = feats
    return out


def _reference_knn(reference, splits, *, k: int, metric: str, **pass_kw) -> float:
    """The identity kNN accuracy of the reference (retrained) model, from a model, its features
    or an earlier collapse_measures result."""
    if _is_module(reference):
        fg = extract_features(reference, splits, "forget", **pass_kw)
    elif isinstance(reference, Mapping) and "identity_knn_acc" in reference:
        return float(reference["identity_knn_acc"])
    elif isinstance(reference, Mapping) and "forget" in reference:
        fg = _check_feature_dict(reference["forget"], "reference['forget']")
    else:
        raise TypeError("reference= must be the retrained model, its extract_all(...) features "
                        "(with a 'forget' entry) or its collapse_measures(...) result")
    return identity_knn(fg["features"], fg.get("identities"), k=k, metric=metric)["acc"]


def collapse_table(results: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None):
    """A ``pandas.DataFrame`` with one row per model (``{name: collapse_measures(...)}``) and
    float columns in :data:`COLLAPSE_COLUMNS` order (those present), then any other scalar
    entries; ``notes`` and ``features`` are left out, missing values are NaN."""
    if not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values()):
        raise TypeError("collapse_table expects {model name: collapse_measures(...) dict}, e.g. "
                        "{'original': r0, 'neggrad': r1}; wrap a single result as {'name': result}")
    return named_table(results, COLLAPSE_COLUMNS, columns)


# --------------------------------------------------------------------------------------------
# curves over the course of unlearning
# --------------------------------------------------------------------------------------------
def _identity_subsample(ids: np.ndarray | None, n: int, max_samples: int, seed: int) -> np.ndarray:
    """Whole identities in seeded random order until ``max_samples`` images are reached (so the
    identity kNN keeps every photo of each chosen person); plain rows when there are no ids."""
    if ids is None or n <= max_samples:
        return _subsample(n, max_samples, seed)
    uniq = np.unique(ids)
    order = np.random.default_rng(seed).permutation(len(uniq))
    chosen, total = [], 0
    for j in order:
        rows = np.flatnonzero(ids == uniq[j])
        if chosen and total + len(rows) > max_samples:
            continue
        chosen.append(rows)
        total += len(rows)
        if total >= max_samples:
            break
    return np.sort(np.concatenate(chosen))


class CollapseTracker:
    """Collapse measures on fixed, seeded subsamples, as a callable for training-loop hooks.

    ``tracker(model, step, final=False, **extra)`` measures ``model`` on at most
    ``max_samples`` images of each split in ``names`` (chosen once, at construction; forget
    images are taken as whole identities so the identity kNN stays meaningful), appends a
    record ``{step, final, seconds, probe_acc, probe_forget_acc, silhouette, scatter_ratio,
    identity_knn_acc, cka_to_original_<split>..., **extra}`` to :attr:`records` and returns
    it. Only every ``every``-th call measures (the others return None), except ``final=True``
    calls, which always do. It fits :func:`dlfd_lib.unlearn.unlearn`'s
    ``callback(model, step, final)``::

        tracker = CollapseTracker(splits, original=original_model, max_samples=300)
        res = unlearn("neggrad", original_model, splits, callback=tracker, callback_every=5)
        tracker.to_frame().plot(x="step", y=["probe_acc", "cka_to_original_test"])

    ``original`` (a model, or its :func:`extract_all` features of the *full* splits, or of
    exactly these subsamples) gives the CKA columns; its subsample features are computed once
    here. ``cka_debiased`` defaults to True because the plain CKA of a few hundred images of
    128-d features has a large floor (≈ D / N). The model's train/eval flags are restored and
    no global random stream is used, so watching does not change the watched run; a model
    whose features are no longer finite (a diverging run) gets a row of NaNs and a ``note``
    instead of an error.
    """

    #: the tracker's own defaults on top of :class:`CollapseConfig`'s
    DEFAULTS = CollapseConfig(cka_debiased=True, probe_max_iter=500)

    def __init__(self, splits, original=None, every: int = 1, max_samples: int = 256, *,
                 config: CollapseConfig | None = None, seed: int = 0, device: str | torch.device | None = None,
                 **settings):
        cfg = (config or self.DEFAULTS).updated(settings, where="CollapseTracker")
        names, layer, batch_size, amp = cfg.names, cfg.layer, cfg.batch_size, cfg.amp
        self.config = cfg  # the measures' settings (metric, k, CKA, probe) are read from here
        if every < 1:
            raise ValueError(f"every={every}: give a call count >= 1 (1 measures at every call)")
        if max_samples < 8:
            raise ValueError(f"max_samples={max_samples} is too small for the measures; use >= 8 "
                             f"(a few hundred keeps each call cheap)")
        self.splits = splits
        self.every, self.max_samples, self.layer = every, max_samples, layer
        self.names = list(dict.fromkeys([*names, "retain", "forget", "test"]))
        self.seed = seed
        self.device, self.batch_size, self.amp = device, batch_size, amp
        self.records: list[dict[str, Any]] = []
        self._calls = 0
        self.indices: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.names):
            n = len(splits.labels(name))
            ids = splits.identities(name) if name == "forget" else None
            self.indices[name] = _identity_subsample(None if ids is None else np.asarray(ids), n,
                                                     max_samples, seed + i)
        self.original_features: dict[str, FeatureDict] | None = None
        if original is not None:
            self.original_features = {name: self._original_for(original, name)
                                      for name in self.names}

    def _extract(self, model: torch.nn.Module, name: str) -> FeatureDict:
        return extract_features(model, self.splits, name, layer=self.layer, device=self.device,
                                batch_size=self.batch_size, amp=self.amp, indices=self.indices[name])

    def _original_for(self, original, name: str) -> FeatureDict:
        if _is_module(original):
            return self._extract(original, name)
        if not isinstance(original, Mapping) or name not in original:
            raise KeyError(f"original= has no features for split {name!r}: pass the original model "
                           f"or extract_all(original_model, splits, names={tuple(self.names)!r})")
        d = _check_feature_dict(original[name], f"original[{name!r}]")
        idx = self.indices[name]
        full = len(self.splits.labels(name))
        if len(d["features"]) == full:
            return {key: (np.asarray(v)[idx] if isinstance(v, np.ndarray) and len(v) == full else v)
                    for key, v in d.items()}
        if len(d["features"]) == len(idx):
            return dict(d)
        raise ValueError(f"original[{name!r}] holds {len(d['features'])} images; expected the full "
                         f"{name} split ({full}) or this tracker's subsample ({len(idx)})")

    def __call__(self, model: torch.nn.Module, step: int, final: bool = False,
                 **extra: Any) -> dict[str, Any] | None:
        self._calls += 1
        if not final and (self._calls - 1) % self.every != 0:
            return None
        t0 = time.perf_counter()
        feats = {name: self._extract(model, name) for name in self.names}
        record: dict[str, Any] = {"step": int(step), "final": bool(final)}
        bad = [name for name, f in feats.items() if not np.all(np.isfinite(f["features"]))]
        if bad:
            # a diverging run is itself worth a point on the curve: record NaNs, do not stop it
            record.update({c: float("nan") for c in self._columns()})
            record["note"] = f"non-finite features on {', '.join(bad)} (the model diverged)"
        else:
            r = collapse_measures(None, self.splits, original=self.original_features, features=feats,
                                  config=self.config, names=self.names if self.original_features else (),
                                  max_samples=None, seed=self.seed)
            record.update({key: v for key, v in r.items() if is_scalar(v)})
        record["seconds"] = time.perf_counter() - t0
        record.update(extra)
        self.records.append(record)
        return record

    def _columns(self) -> list[str]:
        cols = [c for c in COLLAPSE_COLUMNS if not c.startswith(("cka_", "identity_knn_ref"))]
        if self.original_features:
            cols += [f"cka_to_original_{name}" for name in self.names]
        return cols

    def to_frame(self):
        """The records as a ``pandas.DataFrame``, one row per measured call, in call order."""
        import pandas as pd
        return pd.DataFrame(self.records)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.indices.items())
        return (f"CollapseTracker(every={self.every}, {sizes}, original="
                f"{'yes' if self.original_features else 'no'}, records={len(self.records)})")
