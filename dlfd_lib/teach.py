"""Teaching code for notebook 03's *DLFD step by step*: entropic optimal transport written out
in a few lines, and one DLFD perturbation of one retain batch traced step by step.

Nothing here is used by the unlearning loop itself. :func:`sinkhorn` is the textbook
log-domain Sinkhorn in NumPy, written to be read next to its equations (DLFD's own distance is
:func:`dlfd_lib.unlearn.ot.ot_distance`, through POT); the tests check that both give the same
plan and the same ``<T, C>``. :func:`trace_perturbation` runs exactly the K signed-gradient steps
of :class:`dlfd_lib.unlearn.dlfd.Perturbation` (it calls its ``grad``) and keeps what happens at
every step, so a notebook can show the images, δ, the distance and the cross-entropy, and the
features before and after.

Entropic OT between two discrete distributions ``a`` (n weights) and ``b`` (m weights) with a
cost matrix ``C`` (n, m), regularisation ε > 0 (Cuturi 2013; Peyré & Cuturi, *Computational
Optimal Transport*, 2019):

    T_ε = argmin_{T >= 0, T 1 = a, T^T 1 = b} <T, C> - ε H(T),   H(T) = -Σ_ij T_ij (log T_ij - 1)

Its solution has the form T_ij = exp((f_i + g_j - C_ij) / ε); Sinkhorn alternates the two
marginal constraints on the potentials, in the log domain (stable for small ε):

    g_j <- ε log b_j - ε LSE_i((f_i - C_ij) / ε),   f_i <- ε log a_i - ε LSE_j((g_j - C_ij) / ε)

The same updates with u = f/ε, v = g/ε and the log kernel -C/ε are what
:mod:`dlfd_lib.unlearn.ot` and POT's ``method="sinkhorn_log"`` run (v first, then u, from zero).
DLFD's distance is the transport cost of the entropic plan, ``<T_ε, C>`` (POT's ``sinkhorn2``),
with the cosine cost, uniform weights, ε = 0.01 and 50 iterations.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .inference import features_of
from .unlearn.dlfd import Perturbation, valid_range
from .unlearn.ot import mean_feature_distance, ot_distance

__all__ = ["point_clouds", "sq_euclidean_cost", "SinkhornResult", "sinkhorn", "exact_ot",
           "pot_sinkhorn", "step_batches", "StepTrace", "StepSettings", "trace_perturbation", "feature_plane",
           "sweep_step", "to_pixels"]


# ---------------------------------------------------------------------------------------------
# optimal transport on toy point clouds
# ---------------------------------------------------------------------------------------------
def point_clouds(n: int = 7, m: int = 9, seed: int = 0, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Two small 2-D point clouds: ``x`` (n, 2) around the origin, ``y`` (m, 2) around
    (shift, 0.5) and stretched, so the transport plan is not a trivial matching."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.6, size=(n, 2))
    y = rng.normal(0.0, 1.0, size=(m, 2)) * np.array([0.5, 1.2]) + np.array([shift, 0.5])
    return x, y


def sq_euclidean_cost(x: np.ndarray, y: np.ndarray, normalise: bool = True) -> np.ndarray:
    """C_ij = ||x_i - y_j||^2 (n, m); ``normalise`` divides by max(C) so that C lies in [0, 1]
    and ε is read on the same scale as DLFD's cosine cost (which lies in [0, 2])."""
    c = ((np.asarray(x, float)[:, None, :] - np.asarray(y, float)[None, :, :]) ** 2).sum(-1)
    return c / c.max() if normalise and c.max() > 0 else c


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    """log Σ exp along ``axis``, stable (the max is taken out first)."""
    mx = a.max(axis=axis, keepdims=True)
    return (mx + np.log(np.exp(a - mx).sum(axis=axis, keepdims=True))).squeeze(axis)


@dataclass
class SinkhornResult:
    """What :func:`sinkhorn` found: the plan, the potentials and the course of the iterations.

    ``marginal_error[k]`` is ||T^(k) 1 - a||_1 + ||T^(k)T 1 - b||_1 after iteration k+1 (after the
    u-update the row sums are exact, so it is the column error), ``transport_cost[k]`` the
    ``<T^(k), C>`` of that iterate. ``cost`` is the final ``<T, C>`` (DLFD's distance) and
    ``objective`` the regularised value ``<T, C> - ε H(T)``.
    """

    plan: np.ndarray
    f: np.ndarray
    g: np.ndarray
    eps: float
    cost: float
    objective: float
    marginal_error: list[float] = field(default_factory=list)
    transport_cost: list[float] = field(default_factory=list)


def sinkhorn(cost: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None,
             eps: float = 0.01, n_iter: int = 50) -> SinkhornResult:
    """Log-domain Sinkhorn: ``n_iter`` alternating updates of the potentials (g, then f),
    starting from f = g = 0, for weights ``a`` (n,) and ``b`` (m,) (uniform when None). The
    same iterations as POT's ``ot.sinkhorn(..., method="sinkhorn_log", stopThr=0)`` and the
    kit's :func:`dlfd_lib.unlearn.ot.sinkhorn_plan`, in float64."""
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or not eps > 0 or n_iter < 1:
        raise ValueError(f"sinkhorn needs a 2-D cost, eps > 0 and n_iter >= 1; got shape {c.shape}, "
                         f"eps={eps}, n_iter={n_iter}")
    n, m = c.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a, np.float64)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b, np.float64)
    if a.shape != (n,) or b.shape != (m,) or not np.isclose(a.sum(), b.sum()):
        raise ValueError(f"weights must have shapes ({n},) and ({m},) and equal mass; got "
                         f"{a.shape}, {b.shape}, sums {a.sum():.4f} and {b.sum():.4f}")
    f, g = np.zeros(n), np.zeros(m)
    errors, costs = [], []

    def plan_of(f, g):
        return np.exp((f[:, None] + g[None, :] - c) / eps)  # (n, m)

    for _ in range(n_iter):
        g = eps * np.log(b) - eps * _lse((f[:, None] - c) / eps, axis=0)  # columns sum to b
        f = eps * np.log(a) - eps * _lse((g[None, :] - c) / eps, axis=1)  # rows sum to a
        t = plan_of(f, g)
        errors.append(float(np.abs(t.sum(1) - a).sum() + np.abs(t.sum(0) - b).sum()))
        costs.append(float((t * c).sum()))
    t = plan_of(f, g)
    entropy = float(-(t * (np.log(np.maximum(t, 1e-300)) - 1.0)).sum())
    tc = float((t * c).sum())
    return SinkhornResult(t, f, g, eps, tc, tc - eps * entropy, errors, costs)


def exact_ot(cost: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None
             ) -> tuple[np.ndarray, float]:
    """Unregularised OT (a linear programme) through POT: (plan, min <T, C>)."""
    import ot

    c = np.asarray(cost, np.float64)
    n, m = c.shape
    a = np.full(n, 1.0 / n) if a is None else np.asarray(a, np.float64)
    b = np.full(m, 1.0 / m) if b is None else np.asarray(b, np.float64)
    plan = ot.emd(a, b, c)
    return plan, float((plan * c).sum())


def pot_sinkhorn(cost: np.ndarray, eps: float = 0.01, n_iter: int = 50) -> tuple[np.ndarray, float]:
    """POT's answer for the same problem as :func:`sinkhorn` (uniform weights, log domain, exactly
    ``n_iter`` iterations): (plan, <T, C>)."""
    import ot

    c = np.asarray(cost, np.float64)
    n, m = c.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    plan = ot.sinkhorn(a, b, c, eps, method="sinkhorn_log", numItermax=n_iter, stopThr=0.0, warn=False)
    return plan, float((plan * c).sum())


# ---------------------------------------------------------------------------------------------
# one DLFD perturbation, traced
# ---------------------------------------------------------------------------------------------
def step_batches(splits, size: int = 8, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One seeded retain batch and one forget batch of ``size`` images each, as the model sees
    them (eval transform, normalised): (x_r, y_r, x_f, y_f)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in ("retain", "forget"):
        ds = splits.dataset(name)
        idx = np.sort(rng.choice(len(ds), size=min(size, len(ds)), replace=False))
        xs, ys = zip(*(ds[int(i)] for i in idx))
        out += [torch.stack(xs), torch.as_tensor(np.asarray(ys), dtype=torch.long)]
    return tuple(out)


@dataclass
class StepTrace:
    """One DLFD perturbation of one retain batch, step by step.

    ``distance[k]``, ``ce[k]`` and ``acc[k]`` are the feature distance to the forget batch, the
    cross-entropy and the batch accuracy *after k steps* (k = 0 is the clean batch, k = K the
    batch the SGD step would train on). ``x`` and ``x_star`` are normalised images (B, 3, H, W),
    ``delta = x_star - x`` (after the projection into the valid pixel range). ``feats_clean``,
    ``feats_star`` (B, d) and ``forget_feats`` (m, d) are the features the distance compares.
    """

    x: torch.Tensor
    x_star: torch.Tensor
    y: torch.Tensor
    distance: np.ndarray
    ce: np.ndarray
    acc: np.ndarray
    feats_clean: np.ndarray
    feats_star: np.ndarray
    forget_feats: np.ndarray
    pred_clean: np.ndarray
    pred_star: np.ndarray
    params: dict

    @property
    def delta(self) -> torch.Tensor:
        return self.x_star - self.x


@dataclass(frozen=True)
class StepSettings:
    """One DLFD perturbation's hyperparameters: ``K`` δ-steps of size ``alpha`` (normalised pixel
    units), the OT weight ``w_f`` and the retain weight ``w_t``, an optional L∞ bound ``eps``, the
    ``feature_layer`` and the ``distance`` (``"ot"`` or ``"mean"``)."""

    K: int = 15
    alpha: float = 0.4
    w_f: float = 3.0
    w_t: float = 0.0
    eps: float | None = None
    feature_layer: str = "logits"
    distance: str = "ot"

    def updated(self, overrides: dict, where: str) -> "StepSettings":
        known = set(self.__dataclass_fields__)
        bad = sorted(set(overrides) - known)
        if bad:
            raise TypeError(f"{where}: unknown setting(s) {bad}; StepSettings has {sorted(known)}")
        return replace(self, **overrides) if overrides else self


def trace_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_f: torch.Tensor | None = None,
                       *, settings: StepSettings | None = None, mean=(0.485, 0.456, 0.406),
                       std=(0.229, 0.224, 0.225), amp: bool = False, forget_feats: torch.Tensor | None = None,
                       **overrides) -> StepTrace:
    """The K δ-steps of DLFD on retain batch ``(x, y)`` against forget batch ``x_f`` (or its
    precomputed ``forget_feats``), with the model in eval mode as in the DLFD loop, and what
    each step did.

    It builds the kit's :class:`~dlfd_lib.unlearn.dlfd.Perturbation` and applies its update
    δ ← clip(δ + α·sign(∇_δ[w_f·OT − w_t·CE])) step by step, so the final ``x_star`` is the one
    ``Perturbation.__call__`` returns (tested); one extra forward pass measures the batch after
    the last step. ``mean``/``std`` are the data's normalisation (``splits.mean``, ``splits.std``);
    ``alpha`` and ``eps`` are in normalised pixel units, as in DLFD. The model is left in eval mode.
    The hyperparameters: ``settings`` (:class:`StepSettings`), or its fields by name on top of it
    (``K=``, ``alpha=``, ``w_f=``, ``w_t=``, ``eps=``, ``feature_layer=``, ``distance=``).
    """
    st = (settings or StepSettings()).updated(overrides, "trace_perturbation")
    K, alpha, w_f, w_t, eps, feature_layer, distance = (st.K, st.alpha, st.w_f, st.w_t, st.eps, st.feature_layer,
                                                        st.distance)
    if K < 0:
        raise ValueError(f"K must be >= 0; got {K}")
    if distance not in ("ot", "mean"):
        raise ValueError(f"distance={distance!r}: choose 'ot' or 'mean'")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    model.eval()
    if forget_feats is None:
        if x_f is None:
            raise ValueError("trace_perturbation needs the forget batch x_f or its forget_feats")
        with torch.no_grad():
            forget_feats = features_of(model, x_f.to(device), feature_layer)[0].float()
    forget_feats = forget_feats.to(device).float()
    lo, hi = valid_range(mean, std, device)
    dist_fn = ot_distance if distance == "ot" else mean_feature_distance
    pert = Perturbation(K=K, alpha=alpha, w_f=w_f, lo=lo, hi=hi, eps=eps, feature_layer=feature_layer,
                        distance=dist_fn, amp=amp)

    def measure(delta):
        with torch.no_grad():
            feats, logits = features_of(model, pert.inputs(x, delta), feature_layer)
            return (float(dist_fn(feats.float(), forget_feats)), float(F.cross_entropy(logits.float(), y)),
                    float((logits.argmax(1) == y).float().mean()), feats.float().cpu().numpy(),
                    logits.argmax(1).cpu().numpy())

    delta = torch.zeros_like(x)
    d0, ce0, acc0, feats_clean, pred_clean = measure(delta)
    dists, ces, accs = [d0], [ce0], [acc0]
    for _ in range(K):  # the update of Perturbation.__call__, one step at a time
        g, _, _ = pert.grad(model, x, y, delta, forget_feats, w_t)
        with torch.no_grad():
            delta = delta + alpha * torch.sign(g)
            if eps is not None:
                delta = delta.clamp(-eps, eps)
            delta = torch.clamp(x + delta, lo, hi) - x
        d, ce, acc, feats_star, pred_star = measure(delta)
        dists.append(d), ces.append(ce), accs.append(acc)
    if K == 0:
        feats_star, pred_star = feats_clean, pred_clean
    params = {"K": K, "alpha": alpha, "w_f": w_f, "w_t": w_t, "eps": eps, "feature_layer": feature_layer,
              "distance": distance}
    return StepTrace(x.detach().cpu(), pert.inputs(x, delta).detach().cpu(), y.cpu(), np.array(dists),
                     np.array(ces), np.array(accs), feats_clean, feats_star,
                     forget_feats.cpu().numpy(), pred_clean, pred_star, params)


def feature_plane(trace: StepTrace) -> dict[str, np.ndarray]:
    """2-D coordinates of the clean, perturbed and forget features for one picture: the features
    are L2-normalised (DLFD's cost is the cosine distance, blind to length), and projected on
    the first two principal axes of the clean and forget features together (the perturbed
    batch is drawn in the same axes). Returns {"clean", "perturbed", "forget"} -> (n, 2)."""
    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    clean, star, forget = unit(trace.feats_clean), unit(trace.feats_star), unit(trace.forget_feats)
    ref = np.concatenate([clean, forget])
    centre = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - centre, full_matrices=False)
    axes = vt[:2].T  # (d, 2)
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    return {"clean": (clean - centre) @ axes, "perturbed": (star - centre) @ axes,
            "forget": (forget - centre) @ axes}


def sweep_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_f: torch.Tensor,
               settings: dict[str, dict], **common) -> "pandas.DataFrame":  # noqa: F821
    """One :func:`trace_perturbation` per row of ``settings`` ({label: overrides of ``common``}):
    a table of the distance and CE before and after the K steps, the batch accuracy after,
    and the mean |δ| in [0, 1] pixel units."""
    import pandas as pd

    rows = {}
    std = torch.tensor(common.get("std", (0.229, 0.224, 0.225))).view(1, -1, 1, 1)
    for label, over in settings.items():
        t = trace_perturbation(model, x, y, x_f, **{**common, **over})
        rows[label] = {"w_f": t.params["w_f"], "w_t": t.params["w_t"], "alpha": t.params["alpha"],
                       "K": t.params["K"], "distance before": t.distance[0], "distance after": t.distance[-1],
                       "CE before": t.ce[0], "CE after": t.ce[-1], "accuracy after": t.acc[-1],
                       "mean |δ| (pixels)": float((t.delta * std).abs().mean())}
    return pd.DataFrame(rows).T


def to_pixels(x: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised images (B, 3, H, W) back to displayable pixels (B, H, W, 3) in [0, 1]."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.detach().cpu().float() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()
