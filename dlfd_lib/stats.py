"""Paired statistics for "does method A beat method B?", and scores referenced to the retrained model.

Why paired: on the kit's data one seed's sd of NoMUS is ~0.05 while the methods' means lie
within ~0.02, so comparing means over seeds cannot separate them. But every method of one seed
starts from the *same* original model on the *same* data, so most of the seed-to-seed spread is
shared; the per-seed difference ``method − DLFD`` removes it.

* :func:`add_reference_gaps` – per row, the gap to the retrained model *of the same seed*:
  ``abs_mia_gap`` = |MIA − MIA_retrained| and **Avg. Gap** (SalUn, Fan et al. ICLR 2024) = the mean
  absolute difference to the retrained model over retain, forget and test accuracy and MIA.
  NoMUS stays (the paper's score); it rewards MIA → 0.5 rather than closeness to the retrained
  model (the authors' MUFAC table puts DLFD's NoMUS above the retrained model's), so it cannot
  be the only score.
* :func:`paired_t` – mean of per-seed differences, its Student-t 95 % interval (n − 1 degrees of
  freedom) and the two-sided p-value of "no difference"; :func:`verdict` reads the interval:
  ``better`` / ``worse`` when it excludes 0, ``cannot tell`` otherwise (and always with fewer
  than 2 seeds). With 5 seeds a percentile bootstrap interval is too narrow (it ignores the
  uncertainty of the sd), so the calls rest on the t interval.
* :func:`paired_bootstrap` – the percentile bootstrap interval of the same mean (resampling the
  seeds, seeded), shown beside the t interval.
* :func:`holm` – Holm's step-down adjustment of a family of p-values, so that a reader sees how
  many comparisons one metric's table makes.
* :func:`paired_table` – every method against a baseline (DLFD) on every paired metric.
* :func:`mia_sampling_sd` – the attack's own sampling sd: the MIA recomputed on bootstrap
  resamples of the forget and test losses (fresh CV folds each time). It says how much of a
  method's MIA is noise of the finite evaluation sets; more validation/test people shrink it at
  evaluation cost only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["AVG_GAP_METRICS", "PAIRED_METRICS", "HIGHER_IS_BETTER", "avg_gap", "add_reference_gaps",
           "paired_bootstrap", "paired_t", "holm", "verdict", "paired_table", "mia_sampling_sd"]

#: The metrics whose absolute gaps to the retrained model make up Avg. Gap.
AVG_GAP_METRICS = ("retain_acc", "forget_acc", "test_acc", "mia")
#: The metrics :func:`paired_table` compares, and whether higher is better for each.
HIGHER_IS_BETTER = {"test_acc": True, "nomus": True, "avg_gap": False, "abs_mia_gap": False,
                    "retain_acc": True, "fs": False, "seconds": False,
                    # correlation collapse (dlfd_lib.collapse): higher = features still carry the task
                    "probe_acc": True, "silhouette": True,
                    # a trade-off front's area (dlfd_lib.fronts.hypervolume)
                    "hypervolume": True}
PAIRED_METRICS = ("test_acc", "abs_mia_gap", "avg_gap", "nomus")


def avg_gap(row, reference, metrics: Sequence[str] = AVG_GAP_METRICS) -> float:
    """Mean over ``metrics`` of |row[m] − reference[m]| (SalUn's Avg. Gap; 0 = the retrained model)."""
    missing = [m for m in metrics if m not in row or m not in reference]
    if missing:
        raise KeyError(f"avg_gap needs {list(metrics)}; missing {missing} (evaluate the model on the "
                       f"retain, forget and test splits)")
    return float(np.mean([abs(float(row[m]) - float(reference[m])) for m in metrics]))


def add_reference_gaps(rows: pd.DataFrame, reference: str = "retrained") -> pd.DataFrame:
    """``rows`` (one per seed and model, columns ``seed``, ``model`` and the metrics) with
    ``abs_mia_gap`` and ``avg_gap`` added, each against the ``reference`` row of the same seed."""
    if "seed" not in rows or "model" not in rows:
        raise KeyError("rows need 'seed' and 'model' columns")
    out = rows.copy()
    refs = rows[rows["model"] == reference].drop_duplicates("seed").set_index("seed")
    missing = sorted(set(rows["seed"]) - set(refs.index))
    if missing:
        raise ValueError(f"no {reference!r} row for seed(s) {missing}: the gaps need the retrained "
                         f"model of the same seed")
    out["abs_mia_gap"] = [abs(float(r["mia"]) - float(refs.loc[r["seed"], "mia"])) for _, r in rows.iterrows()]
    out["avg_gap"] = [avg_gap(r, refs.loc[r["seed"]]) for _, r in rows.iterrows()]
    return out


def paired_bootstrap(diffs: Sequence[float], n_boot: int = 10000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of the per-seed differences ``diffs`` and a percentile bootstrap interval of it
    (resampling the seeds with replacement, ``np.random.default_rng(seed)``).

    Returns ``dict(mean, lo, hi, n)``; with fewer than 2 differences ``lo``/``hi`` are NaN."""
    d = np.asarray([float(x) for x in diffs], dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    if n < 2:
        return {"mean": float(d.mean()), "lo": float("nan"), "hi": float("nan"), "n": n}
    if not 0 < level < 1:
        raise ValueError(f"level={level}: give a coverage in (0, 1), e.g. 0.95")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    a = (1 - level) / 2
    return {"mean": float(d.mean()), "lo": float(np.quantile(means, a)),
            "hi": float(np.quantile(means, 1 - a)), "n": n}


def paired_t(diffs: Sequence[float], level: float = 0.95) -> dict:
    """Mean of the per-seed differences ``diffs``, its Student-t interval (n − 1 degrees of
    freedom, standard error sd / sqrt(n)) and the two-sided p-value of a zero mean.

    Returns ``dict(mean, lo, hi, p, n)``; with fewer than 2 differences ``lo``/``hi``/``p`` are
    NaN. All differences equal: the interval is that value and p is 0 (or 1 at 0)."""
    from scipy import stats as st
    if not 0 < level < 1:
        raise ValueError(f"level={level}: give a coverage in (0, 1), e.g. 0.95")
    d = np.asarray([float(x) for x in diffs], dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "n": n}
    se = float(d.std(ddof=1)) / np.sqrt(n)
    if se == 0:
        return {"mean": mean, "lo": mean, "hi": mean, "p": 1.0 if mean == 0 else 0.0, "n": n}
    half = float(st.t.ppf(0.5 + level / 2, df=n - 1)) * se
    p = float(2 * st.t.sf(abs(mean) / se, df=n - 1))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "p": p, "n": n}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and does not count
    as a comparison): sort the m p-values, multiply the i-th smallest by (m − i + 1), carry the
    running maximum, cap at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def verdict(lo: float, hi: float, higher_is_better: bool) -> str:
    """``"better"`` / ``"worse"`` (for the first of the two compared models) when the interval of
    ``first − second`` excludes 0, ``"cannot tell"`` when it contains 0 or is undefined."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "cannot tell"
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "cannot tell"


def paired_table(rows: pd.DataFrame, baseline: str = "dlfd", metrics: Sequence[str] = PAIRED_METRICS,
                 n_boot: int = 10000, seed: int = 0, level: float = 0.95,
                 models: Sequence[str] | None = None) -> pd.DataFrame:
    """Every model against ``baseline``, paired by seed: one row per (model, metric) with the
    mean of ``model − baseline`` over the seeds both have (``diff``), its Student-t interval
    (``lo``, ``hi``; :func:`paired_t`), the percentile bootstrap interval beside it (``boot_lo``,
    ``boot_hi``), the two-sided p-value (``p``) and its Holm adjustment across the models of that
    metric (``p_holm``), the number of seeds and the verdict *for the model* on the t interval
    (``better`` = the model beats the baseline on that metric). Rows without the baseline's seed
    are left out of that pair."""
    if baseline not in set(rows["model"]):
        raise KeyError(f"baseline {baseline!r} is not among the models {sorted(set(rows['model']))}")
    unknown = [m for m in metrics if m not in HIGHER_IS_BETTER]
    if unknown:
        raise KeyError(f"paired_table: no direction known for {unknown}; known: {sorted(HIGHER_IS_BETTER)}")
    base = rows[rows["model"] == baseline].drop_duplicates("seed").set_index("seed")
    order = models if models is not None else [m for m in dict.fromkeys(rows["model"]) if m != baseline]
    out = []
    for model in order:
        mine = rows[rows["model"] == model].drop_duplicates("seed").set_index("seed")
        common = sorted(set(mine.index) & set(base.index))
        for metric in metrics:
            if metric not in rows:
                continue
            diffs = (mine.loc[common, metric] - base.loc[common, metric]).to_numpy(dtype=float)
            b = paired_bootstrap(diffs, n_boot=n_boot, seed=seed, level=level)
            t = paired_t(diffs, level=level)
            out.append({"model": model, "metric": metric, "diff": t["mean"], "lo": t["lo"], "hi": t["hi"],
                        "boot_lo": b["lo"], "boot_hi": b["hi"], "p": t["p"], "n_seeds": t["n"],
                        "verdict": verdict(t["lo"], t["hi"], HIGHER_IS_BETTER[metric])})
    table = pd.DataFrame(out)
    if len(table):
        table["p_holm"] = np.nan
        for metric, idx in table.groupby("metric", sort=False).groups.items():
            table.loc[idx, "p_holm"] = holm(table.loc[idx, "p"].to_numpy())
        cols = ["model", "metric", "diff", "lo", "hi", "boot_lo", "boot_hi", "p", "p_holm", "n_seeds", "verdict"]
        table = table[cols]
    return table


def mia_sampling_sd(member_losses, nonmember_losses, n_boot: int = 30, seed: int = 0,
                    balance: bool = True) -> float:
    """The sd of the paper's MIA (:func:`dlfd_lib.attacks.mia`) over ``n_boot`` bootstrap
    resamples of the member and non-member losses (each replicate with its own balancing and
    CV seed): the attack's own sampling noise at these set sizes. ``balance=False``: the
    unbalanced attack (the released DLFD monitor's)."""
    from .attacks import mia
    mem = np.asarray(member_losses, dtype=np.float64)
    non = np.asarray(nonmember_losses, dtype=np.float64)
    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot}: give at least 2 resamples")
    rng = np.random.default_rng(seed)
    vals = []
    for b in range(int(n_boot)):
        m = mem[rng.integers(0, len(mem), len(mem))]
        u = non[rng.integers(0, len(non), len(non))]
        vals.append(mia(m, u, seed=int(rng.integers(2**31 - 1)), balance=balance)["mia"])
    return float(np.std(vals, ddof=1))


def fmt_num(x, digits: int = 3, sign: bool = False) -> str:
    """``x`` with ``digits`` decimals (``sign``: always with its sign), except that a non-zero value
    these decimals would show as 0 gets as many as its first two significant digits need
    (0.00041 → ``0.00041``, not ``0.000``): an interval's end written ``+0.000`` would otherwise
    read as touching zero when it lies on one side of it. Exact zeros and non-finite values are
    written as they are."""
    import math
    x = float(x)
    d = digits
    if math.isfinite(x) and x != 0 and round(abs(x), digits) == 0:
        d = max(digits, 1 - math.floor(math.log10(abs(x))))
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def identical_on_every_seed(row) -> bool:
    """A row of :func:`paired_table` whose difference is exactly zero on every seed (mean and both
    interval ends 0): the two settings made the same models, which no interval can "not tell"."""
    return all(float(row.get(k, float("nan"))) == 0.0 for k in ("diff", "lo", "hi"))
