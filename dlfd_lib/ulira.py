"""Per-example membership test against reference models (U-LiRA-style; optional, GPU-sized).

**Why.** The population attacks of :mod:`dlfd_lib.attacks` (Shokri et al. 2017; Yeom et al.
2018; Song & Mittal 2021) fit one threshold for all images. Some images are hard (low
confidence even when trained on) and some easy (high confidence even when never seen), so a
single threshold confuses "this image is easy" with "this image was memorised". The likelihood
ratio attack LiRA (Carlini et al. 2022, "Membership inference attacks from first principles")
calibrates *per example*: it trains reference ("shadow") models, records how each example
scores on models that did **not** train on it, and asks whether the target's score is
unusually high for *that* example. Hayes et al. (2024, "Inexact unlearning needs more careful
evaluations to avoid a false sense of privacy") carry this over to unlearning (U-LiRA): an
unlearned model should be indistinguishable, example by example, from models retrained without
the forget set.

**What is computed here.**

1. *References.* :func:`train_references` trains K models from scratch on the **retain set
   only** (``train_or_load(role="retrained", ...)``) with K different *training* seeds. In
   :func:`dlfd_lib.train.train_or_load` the seed sets the weight initialisation, the shuffling
   and the augmentation draws; the images are fixed by the ``splits`` object, so all K models
   see exactly the same retain images and none sees a forget or test image. Checkpoints go
   through ``train_or_load``'s cache, so a second call reuses them.
2. *Score.* For every forget and test example x, φ(x) = log(p_y / (1 − p_y)), the logit-scaled
   true-class confidence, computed stably from the logits as ``z_y − logsumexp_{j≠y} z_j``
   (:func:`logit_confidence`). LiRA uses this scaling because it makes the per-example score
   distribution close to Gaussian. Each model costs one fp32 forward pass over forget + test
   (:func:`dlfd_lib.inference.predict`).
3. *Per-example "out" Gaussians.* Over the K references, μ_out(x) and σ_out(x) (sample sd,
   ddof = 1). With few references (LiRA uses ~64+ shadows for per-example variances) the
   per-example sd is very noisy, so ``variance="global"`` uses one pooled sd for all examples
   (the square root of the mean per-example variance), as LiRA does with few shadow models;
   ``variance="auto"`` (default) picks ``"global"`` for K < 16 and ``"per_example"`` otherwise.
   Every sd is floored at ``min_sd`` so that identical references cannot divide by zero.
4. *Test statistic (offline LiRA).* For a target model, z = (φ_target(x) − μ_out(x)) / σ_out(x)
   and the one-sided p-value p = P(N(0, 1) > z); the score is −log p (higher = more
   member-like). With K "in" reference models (``in_models``) the *online* statistic
   log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out) is added. As "in" models one can pass original
   models (trained with the forget set) with other seeds, which asks "does the target look
   more like a model that trained on x than like one that did not?"; or, closest to Hayes et
   al.'s U-LiRA, the *unlearning method applied to K such originals*, which asks whether this
   method's outputs are distinguishable from retraining.
5. *Aggregate.* Forget examples are members (1), test examples non-members (0); the score is
   already the test statistic, so no attack is fitted: ROC-AUC, TPR at 1 % FPR (largest TPR on
   the ROC curve with FPR <= 0.01; with under 100 test examples that means zero false
   positives), and the share of examples with p < ``alpha`` (0.05) on forget and, as the
   calibration check, on test – about ``alpha`` if the references model the "out" world well.

**Sanity check.** Evaluate, as the target, a retrained model whose seed is *not* among the
references: it never saw the forget set, so AUC ≈ 0.5 and both shares ≈ 0.05. (The benchmark
trains its retrained model with the data seed, 0, 1, …; the default reference seeds start at
:data:`REFERENCE_SEED_BASE` = 1000 to stay clear of them.) An original model should give a
clearly higher forget share and AUC.

**Cost.** K full retrainings (plus K originals for the online variant). On the ``quick``
profile (64 px) one retraining takes ~200 s on 2 CPU cores, so K = 8 is ~27 minutes; on a GPU
at paper scale it is K × the retraining time. The forward passes are negligible next to that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .attacks import LOW_FPR, check_logits, tpr_at_fpr
from .inference import place_model, predict
from .train import TrainConfig, train_or_load

__all__ = [
    "REFERENCE_SEED_BASE", "VARIANCE_MODES", "logit_confidence", "model_scores",
    "train_references", "fit_gaussians", "ReferenceStats", "reference_stats",
    "ulira_scores", "ULiRAResult", "ulira", "ulira_many", "ulira_table",
]

#: first default training seed of the reference models (clear of the benchmark's seeds 0, 1, …)
REFERENCE_SEED_BASE = 1000
VARIANCE_MODES = ("auto", "per_example", "global")
#: below this many reference models ``variance="auto"`` pools one sd over all examples
AUTO_GLOBAL_BELOW = 16
#: the two splits the test compares: members (forget) and non-members (test)
SCORED_SPLITS = ("forget", "test")


# --------------------------------------------------------------------------------------------
# the score
# --------------------------------------------------------------------------------------------
def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ = log(p_y / (1 − p_y)) per sample, as ``z_y − logsumexp_{j≠y} z_j`` (float64, finite
    for any finite logits, even where p_y rounds to 0 or 1). NaN/Inf logits raise ValueError."""
    from scipy.special import logsumexp

    z, y = check_logits(logits, labels)
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - logsumexp(others, axis=1)


def model_scores(model: torch.nn.Module, splits, which: Sequence[str] = SCORED_SPLITS,
                 batch_size: int = 256, device: str | torch.device | None = None
                 ) -> dict[str, np.ndarray]:
    """φ of every example of each split in ``which``: one fp32 forward pass per split
    (:func:`dlfd_lib.inference.predict` with ``amp=False``, unaugmented and unshuffled, so row i
    is example i of the split). ``device=None`` runs where the model is; otherwise the model
    is moved there."""
    dev = place_model(model, device)
    out = {}
    for name in which:
        loader = splits.loader(name, batch_size=batch_size, augment=False, shuffle=False)
        p = predict(model, loader, dev, amp=False)
        try:
            out[name] = logit_confidence(p["logits"], p["labels"])
        except ValueError as err:
            raise ValueError(f"split {name!r}: {err}") from None
    return out


# --------------------------------------------------------------------------------------------
# reference models
# --------------------------------------------------------------------------------------------
def _resolve_seeds(k: int, seeds: Sequence[int] | None) -> list[int]:
    if seeds is None:
        if k < 1:
            raise ValueError(f"k (number of reference models) must be >= 1, got {k}")
        return [REFERENCE_SEED_BASE + i for i in range(k)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != k:
        raise ValueError(f"seeds has {len(seeds)} entries but k={k}; give one seed per "
                         f"reference model (or seeds=None for {REFERENCE_SEED_BASE}, "
                         f"{REFERENCE_SEED_BASE + 1}, …)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a value; identical seeds give identical "
                         f"models, which carry no information about the spread")
    return seeds


def train_references(splits, cfg: TrainConfig, k: int, seeds: Sequence[int] | None = None,
                     device: str | torch.device = "auto", ckpt_dir: str | Path = "checkpoints",
                     role: str = "retrained", progress: bool = True, force: bool = False
                     ) -> list[torch.nn.Module]:
    """K reference models, trained (or reused from ``ckpt_dir``) with
    ``train_or_load(role, splits, cfg, seed=s)`` for each seed.

    ``role="retrained"`` (default) trains on the retain set only: the "out" references.
    ``role="original"`` trains on retain + forget: "in" references for the online statistic.
    ``seeds=None`` uses ``REFERENCE_SEED_BASE + i``; keep the target model's seed out of them.
    Only the training seed differs between the models; the data are those of ``splits``.
    """
    seeds = _resolve_seeds(k, seeds)
    models = []
    for s in seeds:
        model, _ = train_or_load(role, splits, cfg, seed=s, device=device, ckpt_dir=ckpt_dir,
                                 force=force, progress=progress)
        models.append(model)
    return models


def fit_gaussians(phi: np.ndarray, variance: str = "auto", min_sd: float = 1e-2
                  ) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-example Gaussian fit of a reference score matrix ``phi`` [K models, N examples].

    Returns ``(mu [N], sd [N], mode)``: mu is the per-example mean; sd the per-example sample
    sd (ddof = 1) for ``variance="per_example"``, or one pooled sd √(mean of the per-example
    variances) repeated for ``"global"``; ``"auto"`` is ``"global"`` for K < 16. Every sd is
    at least ``min_sd``. ``mode`` is the variance mode actually used.
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 2:
        raise ValueError(f"phi must be [K models, N examples]; got shape {phi.shape}")
    k, n = phi.shape
    if k < 2:
        raise ValueError(f"a Gaussian per example needs at least 2 reference models; got K={k} "
                         f"(train more with train_references(k=...))")
    if n == 0:
        raise ValueError("phi has no examples (0 columns)")
    if not np.all(np.isfinite(phi)):
        raise ValueError(f"{int((~np.isfinite(phi)).sum())} reference scores are NaN or infinite; "
                         f"a reference model's outputs are not finite")
    if variance not in VARIANCE_MODES:
        raise ValueError(f"variance={variance!r}: choose one of {VARIANCE_MODES}")
    if not min_sd > 0:
        raise ValueError(f"min_sd must be > 0, got {min_sd}")
    mode = ("global" if k < AUTO_GLOBAL_BELOW else "per_example") if variance == "auto" else variance
    mu = phi.mean(axis=0)
    var = phi.var(axis=0, ddof=1)
    if mode == "global":
        var = np.full(n, var.mean())
    sd = np.maximum(np.sqrt(var), min_sd)
    return mu, sd, mode


@dataclass
class ReferenceStats:
    """Reference scores and their per-example Gaussians, per split (``forget``, ``test``).

    ``phi[split]`` is the [K, N] score matrix, ``mu`` / ``sd`` the fitted [N] parameters,
    ``variance`` the mode used, ``k`` the number of models."""

    phi: dict[str, np.ndarray]
    mu: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]
    k: int
    variance: str
    min_sd: float

    @classmethod
    def from_scores(cls, phi: Mapping[str, np.ndarray], variance: str = "auto",
                    min_sd: float = 1e-2) -> "ReferenceStats":
        """Fit from precomputed score matrices ``{split: [K, N]}``. With ``variance="global"``
        one sd is pooled over the examples of *all* splits (every example is "out" for every
        reference, so they share one spread)."""
        if not phi:
            raise ValueError("phi is empty; give {split: [K, N] score matrix}")
        mats = {s: np.asarray(m, dtype=np.float64) for s, m in phi.items()}
        ks = {m.shape[0] if m.ndim == 2 else -1 for m in mats.values()}
        if len(ks) != 1:
            raise ValueError(f"every split's score matrix must be [K, N] with the same K; got "
                             f"shapes { {s: m.shape for s, m in mats.items()} }")
        names = list(mats)
        joined = np.concatenate([mats[s] for s in names], axis=1)
        mu_all, sd_all, mode = fit_gaussians(joined, variance, min_sd)
        mu, sd, start = {}, {}, 0
        for s in names:
            n = mats[s].shape[1]
            mu[s], sd[s] = mu_all[start:start + n], sd_all[start:start + n]
            start += n
        return cls(phi=mats, mu=mu, sd=sd, k=joined.shape[0], variance=mode, min_sd=min_sd)


def reference_stats(models: Sequence[torch.nn.Module], splits,
                    which: Sequence[str] = SCORED_SPLITS, batch_size: int = 256,
                    device: str | torch.device | None = None, variance: str = "auto",
                    min_sd: float = 1e-2) -> ReferenceStats:
    """Score ``splits``' forget and test examples with every reference model (one forward
    pass each) and fit the per-example Gaussians (:func:`fit_gaussians`). Compute this once
    and pass it to :func:`ulira` / :func:`ulira_many` for many targets."""
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"reference_stats needs at least 2 models; got {len(models)}")
    per_model = [model_scores(m, splits, which, batch_size, device) for m in models]
    phi = {s: np.stack([p[s] for p in per_model]) for s in which}
    return ReferenceStats.from_scores(phi, variance=variance, min_sd=min_sd)


# --------------------------------------------------------------------------------------------
# the test statistic
# --------------------------------------------------------------------------------------------
def ulira_scores(phi: np.ndarray, mu_out: np.ndarray, sd_out: np.ndarray,
                 mu_in: np.ndarray | None = None, sd_in: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Per-example statistics of target scores ``phi`` against fitted Gaussians.

    * ``z`` = (φ − μ_out) / σ_out;
    * ``pvalue`` = P(N(0, 1) > z), one-sided: small when the target is *more* confident on x
      than the references that never saw x;
    * ``score`` = −log(pvalue) (offline LiRA; computed with ``logsf``, so it stays finite
      far in the tail); higher = more member-like;
    * with ``mu_in``/``sd_in``: ``llr`` = log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out)
      (online LiRA); > 0 where the target looks more like an "in" model.
    """
    from scipy.stats import norm

    arrays = {"phi": phi, "mu_out": mu_out, "sd_out": sd_out}
    if (mu_in is None) != (sd_in is None):
        raise ValueError("give both mu_in and sd_in (the online statistic) or neither")
    if mu_in is not None:
        arrays.update(mu_in=mu_in, sd_in=sd_in)
    arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in arrays.items()}
    n = {k: len(v) for k, v in arrays.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"phi and the Gaussian parameters must have one value per example; "
                         f"got lengths {n}")
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{k} holds {int((~np.isfinite(v)).sum())} NaN or infinite values")
    for k in ("sd_out", "sd_in"):
        if k in arrays and not np.all(arrays[k] > 0):
            raise ValueError(f"{k} must be > 0 everywhere (floor it, e.g. fit_gaussians(min_sd=...))")
    z = (arrays["phi"] - arrays["mu_out"]) / arrays["sd_out"]
    out = {"z": z, "pvalue": norm.sf(z), "score": -norm.logsf(z)}
    if mu_in is not None:
        out["llr"] = (norm.logpdf(arrays["phi"], arrays["mu_in"], arrays["sd_in"])
                      - norm.logpdf(arrays["phi"], arrays["mu_out"], arrays["sd_out"]))
    return out


@dataclass
class ULiRAResult:
    """Per-example table and summary of one target model.

    ``per_example`` has one row per forget and test example: ``split``, ``index`` (position in
    the split), ``member`` (1 forget, 0 test), ``phi``, ``mu_out``, ``sd_out``, ``z``,
    ``pvalue``, ``score`` (= −log p) and, online, ``mu_in``, ``sd_in``, ``llr``. ``summary``:
    ``auc`` and ``tpr_at_1fpr`` of ``score`` (forget vs test), ``forget_share_p`` and
    ``test_share_p`` (share with p < alpha), ``mean_z_forget``, ``mean_z_test``, ``n_forget``,
    ``n_test``, ``k_out``, ``k_in``, ``alpha``, and online ``auc_online`` /
    ``tpr_at_1fpr_online`` of ``llr``."""

    per_example: Any  # pandas.DataFrame
    summary: dict[str, float | int | str] = field(default_factory=dict)


def _as_stats(refs, splits, batch_size, device, variance, min_sd) -> ReferenceStats:
    if isinstance(refs, ReferenceStats):
        return refs
    return reference_stats(list(refs), splits, SCORED_SPLITS, batch_size, device, variance, min_sd)


def _summary(df, alpha: float, has_in: bool) -> dict:
    from sklearn.metrics import roc_auc_score

    y = df["member"].to_numpy()
    forget, test = df[df["member"] == 1], df[df["member"] == 0]
    s = {
        "auc": float(roc_auc_score(y, df["score"])),
        "tpr_at_1fpr": tpr_at_fpr(y, df["score"].to_numpy(), LOW_FPR),
        "forget_share_p": float((forget["pvalue"] < alpha).mean()),
        "test_share_p": float((test["pvalue"] < alpha).mean()),
        "mean_z_forget": float(forget["z"].mean()),
        "mean_z_test": float(test["z"].mean()),
        "n_forget": int(len(forget)),
        "n_test": int(len(test)),
        "alpha": float(alpha),
    }
    if has_in:
        s["auc_online"] = float(roc_auc_score(y, df["llr"]))
        s["tpr_at_1fpr_online"] = tpr_at_fpr(y, df["llr"].to_numpy(), LOW_FPR)
    return s


def ulira(target_model: torch.nn.Module, splits,
          out_models: Sequence[torch.nn.Module] | ReferenceStats,
          in_models: Sequence[torch.nn.Module] | ReferenceStats | None = None,
          batch_size: int = 256, device: str | torch.device | None = None,
          variance: str = "auto", min_sd: float = 1e-2, alpha: float = 0.05) -> ULiRAResult:
    """The per-example test of one target (unlearned) model against reference models.

    ``out_models`` are models that never saw the forget set (from :func:`train_references`),
    or their precomputed :func:`reference_stats`; ``in_models`` likewise for the optional
    online statistic. The target gets one fp32 forward pass over forget + test. ``variance``
    and ``min_sd`` (see :func:`fit_gaussians`) apply where models are given; precomputed
    stats keep their own. See the module docstring for the method and :class:`ULiRAResult`
    for the output.
    """
    import pandas as pd

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    out = _as_stats(out_models, splits, batch_size, device, variance, min_sd)
    inn = None if in_models is None else _as_stats(in_models, splits, batch_size, device,
                                                   variance, min_sd)
    target = model_scores(target_model, splits, SCORED_SPLITS, batch_size, device)
    frames = []
    for member, name in ((1, "forget"), (0, "test")):
        for stats, what in ((out, "out"), (inn, "in")):
            if stats is not None and (name not in stats.mu or
                                      len(stats.mu[name]) != len(target[name])):
                raise ValueError(f"the {what} reference stats do not match split {name!r} "
                                 f"of these splits ({len(target[name])} examples); compute "
                                 f"them with reference_stats(models, splits) on the same splits")
        extra = {} if inn is None else {"mu_in": inn.mu[name], "sd_in": inn.sd[name]}
        stat = ulira_scores(target[name], out.mu[name], out.sd[name], **extra)
        cols = {"split": name, "index": np.arange(len(target[name])), "member": member,
                "phi": target[name], "mu_out": out.mu[name], "sd_out": out.sd[name],
                "z": stat["z"], "pvalue": stat["pvalue"], "score": stat["score"]}
        if inn is not None:
            cols.update(mu_in=inn.mu[name], sd_in=inn.sd[name], llr=stat["llr"])
        frames.append(pd.DataFrame(cols))
    df = pd.concat(frames, ignore_index=True)
    summary = _summary(df, alpha, inn is not None)
    summary.update(k_out=out.k, k_in=0 if inn is None else inn.k, variance=out.variance)
    return ULiRAResult(per_example=df, summary=summary)


def ulira_many(targets: Mapping[str, torch.nn.Module], splits,
               out_models: Sequence[torch.nn.Module] | ReferenceStats,
               in_models: Sequence[torch.nn.Module] | ReferenceStats | None = None,
               batch_size: int = 256, device: str | torch.device | None = None,
               variance: str = "auto", min_sd: float = 1e-2, alpha: float = 0.05
               ) -> dict[str, ULiRAResult]:
    """:func:`ulira` for several targets ``{name: model}`` (e.g. every unlearning method plus
    a held-out-seed retrained model as the sanity check); the references are scored once."""
    if not isinstance(targets, Mapping) or not targets:
        raise TypeError("targets must be a non-empty {name: model} mapping")
    out = _as_stats(out_models, splits, batch_size, device, variance, min_sd)
    inn = None if in_models is None else _as_stats(in_models, splits, batch_size, device,
                                                   variance, min_sd)
    return {name: ulira(model, splits, out, inn, batch_size=batch_size, device=device,
                        alpha=alpha) for name, model in targets.items()}


def ulira_table(results: Mapping[str, ULiRAResult]):
    """One row per target with the :class:`ULiRAResult` summaries (a ``pandas.DataFrame``
    indexed by ``model``)."""
    import pandas as pd

    if not isinstance(results, Mapping) or not all(isinstance(r, ULiRAResult)
                                                   for r in results.values()):
        raise TypeError("expected {model name: ULiRAResult}, e.g. ulira_many(...)")
    df = pd.DataFrame.from_dict({k: r.summary for k, r in results.items()}, orient="index")
    df.index.name = "model"
    return df
