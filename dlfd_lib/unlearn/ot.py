"""Distances between two batches of features: entropic optimal transport (DLFD's distance)
and the distance between batch means (an ablation).

DLFD (Choi & Na, AAAI 2025, arXiv 2409.14747, step 1) pushes the feature distribution of
perturbed retain images away from that of a forget batch, measuring the gap with entropic OT:

    OT(mu, nu) = min_{T in Pi(mu, nu)} <T, C> - eps * H(T),   mu, nu uniform over the batches,
    C_ij = max(0, 1 - cos(a_i, b_j)),  eps = 0.01,  log-domain Sinkhorn, up to 50 iterations.

:func:`ot_distance` returns ``<T, C>`` for the Sinkhorn plan ``T`` (what POT's ``sinkhorn2``
returns: the transport cost of the entropic plan, without the entropy term). It is a scalar,
differentiable with respect to both feature batches.

Three solvers (``backend``), all running the same log-domain Sinkhorn updates
(``v = log b - LSE_i(-C/eps + u)``, ``u = log a - LSE_j(-C/eps + v)``, from u = v = 0):

* ``"pot"`` (default): ``ot.sinkhorn2(a, b, C, reg, method="sinkhorn_log", numItermax,
  stopThr, warn=False)`` on torch tensors. POT's torch backend runs the iterations as torch
  operations, so autograd differentiates through the unrolled loop.
* ``"torch"``: the same updates in a plain loop of exactly ``max_iter`` iterations, written here
  (no early stop, no host sync).
* ``"scaling"``: the same iterations written as matrix scaling, ``v = b / K^T u``,
  ``u = a / K v`` with ``K = exp(-C/eps)``, in float64 (equal to the log-domain iterates in exact
  arithmetic; float64 holds e^-200, the smallest kernel entry for cosine costs and eps = 0.01).
  Two kernels per half-iteration instead of about eight; fixed iterations, no sync. For
  ``cost_bound / reg > 300`` (eps below ~0.0067 with cosine costs) it falls back to ``"torch"``.

Two gradients (``grad``):

* ``"autodiff"`` (default): backpropagate through every Sinkhorn iteration (d<T(C), C>/dC).
* ``"envelope"``: solve without autograd and return ``<T.detach(), C>``: the gradient with
  respect to C is the plan T, which is the exact gradient of the *regularised* objective above
  at convergence (Danskin's / the envelope theorem). No backward pass through the iterations.

With ``stop_thr=0`` all backends and both gradients agree to float rounding (tested).

Findings about POT 0.9.7's torch backend, measured for this kit (``benchmarks/dlfd_speed.py``):

* Gradients flow to both inputs through ``sinkhorn2(method="sinkhorn_log")``, finite for
  ``reg=0.01`` with cosine costs in [0, 2].
* Its defaults (``numItermax=1000``, ``stopThr=1e-9``) would iterate far too long; with 50
  iterations at ``reg=0.01`` it rarely reaches a small ``stopThr`` and would warn at every call
  ("Sinkhorn did not converge"): the kit passes ``warn=False`` (and silences UserWarnings).
* Every 10th iteration POT computes the marginal error and compares it with ``stopThr`` in
  Python (``if err < stopThr``): on CUDA a host-device sync, 5 per 50-iteration call, whatever
  ``stopThr`` is (``stopThr=0`` only means it never stops early; the comparison, hence the sync,
  stays). Conversely, on nearly constant features (an untrained model) it stops after one
  iteration, so timings on random models flatter POT (the benchmark forces all iterations).
* The cost is not the arithmetic (the matrices are 32 x 32) but the number of tiny operations,
  each paying dispatch (CPU) or launch (GPU) overhead. Forward + backward of one 32 x 8 call,
  all 50 iterations: CPU (this 2-core machine, 1 thread): pot/autodiff ~4.8 ms, torch/autodiff
  ~4 ms, scaling/autodiff ~2.3 ms, pot/envelope ~2.1 ms, torch/envelope ~1.7 ms,
  scaling/envelope ~0.55 ms. H100: pot/autodiff 22.9 ms, torch/autodiff 18.6 ms (POT's syncs and
  error checks cost ~4 ms a call there), pot/envelope 11.8 ms, torch/envelope 9.4 ms (scaling not
  measured on the GPU yet; it launches about a quarter of the kernels). On an H100 one DLFD
  delta-step of ResNet18 at 128 px, batch 32, costs ~12 ms without OT, so the default OT
  (pot/autodiff) more than doubles it; on the CPU OT is ~8 % of a delta-step.

:func:`mean_feature_distance` (cosine distance between the two batch means) is the cheap
alternative used by the ablations: it compares only first moments of the distributions.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

__all__ = ["cosine_cost", "ot_distance", "sinkhorn_plan", "mean_feature_distance",
           "OT_BACKENDS", "OT_GRADS"]

OT_BACKENDS = ("pot", "torch", "scaling")
#: The cosine cost lies in [0, 2]: the "scaling" backend needs max(C) / reg below this bound
#: for float64 (e^-300 ~ 1e-130; potentials and products stay far inside float64's range).
_SCALING_MAX_EXPONENT = 300.0
OT_GRADS = ("autodiff", "envelope")


def _fp32(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"feature batches must be 2-D (batch, dim); got shape {tuple(x.shape)}")
    return x.float()


def cosine_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C_ij = max(0, 1 - cos(x_i, y_j)) for x (n, d) and y (m, d) -> (n, m), in float32 even
    inside an autocast region (bf16 cosines would be too coarse for eps = 0.01)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        xn = F.normalize(_fp32(x), dim=1)  # (n, d)
        yn = F.normalize(_fp32(y), dim=1)  # (m, d)
        return (1.0 - xn @ yn.T).clamp_min(0.0)  # (n, m)


def _torch_sinkhorn_log(cost: torch.Tensor, reg: float, max_iter: int) -> torch.Tensor:
    """Log-domain Sinkhorn with uniform marginals, exactly ``max_iter`` iterations, no host
    sync; returns the plan T (n, m)."""
    n, m = cost.shape
    log_a = torch.full((n,), -math.log(n), device=cost.device, dtype=cost.dtype)
    log_b = torch.full((m,), -math.log(m), device=cost.device, dtype=cost.dtype)
    kern = -cost / reg  # (n, m) log Gibbs kernel
    u = torch.zeros(n, device=cost.device, dtype=cost.dtype)
    v = torch.zeros(m, device=cost.device, dtype=cost.dtype)
    for _ in range(max_iter):
        v = log_b - torch.logsumexp(kern + u[:, None], dim=0)  # (m,)
        u = log_a - torch.logsumexp(kern + v[None, :], dim=1)  # (n,)
    return torch.exp(kern + u[:, None] + v[None, :])  # (n, m)


def _torch_sinkhorn_scaling(cost: torch.Tensor, reg: float, max_iter: int) -> torch.Tensor:
    """The same iterations as :func:`_torch_sinkhorn_log` written as matrix scaling
    (v = b / K^T u, u = a / K v with the Gibbs kernel K = exp(-C/reg)) in float64: two kernels
    per half-iteration instead of about eight. Exact in exact arithmetic; numerically safe only
    while max(C)/reg stays below ``_SCALING_MAX_EXPONENT`` (the caller checks)."""
    n, m = cost.shape
    gibbs = torch.exp(-cost.double() / reg)  # (n, m), entries in [e^-200, 1] for C <= 2, reg 0.01
    u = torch.ones(n, device=cost.device, dtype=torch.float64)
    v = torch.ones(m, device=cost.device, dtype=torch.float64)
    for _ in range(max_iter):
        v = (1.0 / m) / (gibbs.T @ u)  # (m,)
        u = (1.0 / n) / (gibbs @ v)  # (n,)
    return (u[:, None] * gibbs * v[None, :]).to(cost.dtype)  # (n, m)


def _pot_sinkhorn(cost: torch.Tensor, reg: float, max_iter: int, stop_thr: float,
                  value: bool) -> torch.Tensor:
    import ot  # POT; imported lazily (it is a heavy import)

    n, m = cost.shape
    a = torch.full((n,), 1.0 / n, device=cost.device, dtype=cost.dtype)
    b = torch.full((m,), 1.0 / m, device=cost.device, dtype=cost.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # belt and braces besides warn=False
        if value:
            return ot.sinkhorn2(a, b, cost, reg, method="sinkhorn_log", numItermax=max_iter,
                                stopThr=stop_thr, warn=False)
        return ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=max_iter,
                           stopThr=stop_thr, warn=False)


def sinkhorn_plan(cost: torch.Tensor, reg: float = 0.01, max_iter: int = 50,
                  stop_thr: float = 1e-6, backend: str = "pot", cost_bound: float = 2.0
                  ) -> torch.Tensor:
    """The entropic OT plan T (n, m) for a cost matrix with uniform marginals. ``cost_bound``
    is an upper bound of the costs (2 for the cosine cost); the ``"scaling"`` backend falls
    back to the log-domain loop when ``cost_bound / reg`` is too large for float64."""
    if backend not in OT_BACKENDS:
        raise ValueError(f"unknown OT backend {backend!r}; choose one of {OT_BACKENDS}")
    if backend == "pot":
        return _pot_sinkhorn(cost, reg, max_iter, stop_thr, value=False)
    if backend == "scaling" and cost_bound / reg <= _SCALING_MAX_EXPONENT:
        return _torch_sinkhorn_scaling(cost, reg, max_iter)
    return _torch_sinkhorn_log(cost, reg, max_iter)


def ot_distance(x: torch.Tensor, y: torch.Tensor, reg: float = 0.01, max_iter: int = 50,
                stop_thr: float = 1e-6, backend: str = "pot", grad: str = "autodiff"
                ) -> torch.Tensor:
    """Entropic OT distance ``<T, C>`` between feature batches x (n, d) and y (m, d) with the
    cosine cost :func:`cosine_cost` and uniform marginals; a float32 scalar tensor,
    differentiable with respect to x and y.

    ``reg`` is the entropic regularisation eps (the paper: 0.01), ``max_iter`` the Sinkhorn
    iterations (the paper: up to 50), ``stop_thr`` POT's marginal-error threshold (checked every
    10 iterations; ignored by ``backend="torch"``, which always runs ``max_iter``). ``backend``
    and ``grad`` are explained in the module docstring.
    """
    if backend not in OT_BACKENDS:
        raise ValueError(f"unknown OT backend {backend!r}; choose one of {OT_BACKENDS}")
    if grad not in OT_GRADS:
        raise ValueError(f"unknown OT gradient mode {grad!r}; choose one of {OT_GRADS}")
    if not reg > 0 or max_iter < 1:
        raise ValueError(f"ot_distance needs reg > 0 and max_iter >= 1; got reg={reg}, max_iter={max_iter}")
    cost = cosine_cost(x, y)  # (n, m) float32
    with torch.autocast(device_type=cost.device.type, enabled=False):
        if grad == "envelope":
            with torch.no_grad():
                plan = sinkhorn_plan(cost.detach(), reg, max_iter, stop_thr, backend)
            return (plan * cost).sum()
        if backend == "pot":
            return _pot_sinkhorn(cost, reg, max_iter, stop_thr, value=True)
        return (sinkhorn_plan(cost, reg, max_iter, stop_thr, backend) * cost).sum()


def mean_feature_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max(0, 1 - cos(mean(x), mean(y))): the cosine distance between the two batch means, a
    float32 scalar differentiable with respect to both (the first-moment ablation of OT)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        mx = _fp32(x).mean(0)
        my = _fp32(y).mean(0)
        return (1.0 - F.cosine_similarity(mx, my, dim=0)).clamp_min(0.0)
