"""Trade-off fronts: utility against forgetting, each method swept over its strength.

The paper claims a better *trade-off* between utility and forgetting, so the kit tests it as one:
each method runs at several strengths (its declared ``strength`` knob, the other
hyperparameters at their tuned values) on the evaluation seeds, and every setting becomes one
point (mean over seeds): **test accuracy** (higher is better) against
**|MIA − MIA of the retrained model|** (lower is better). A method's **Pareto front** is its
points that no other point of the same method beats on both axes.

:func:`front_leaders` reads the fronts the way a user picks a method: for a forgetting budget
("my MIA may be at most g away from the retrained model's"), which method reaches the highest
test accuracy within it? :func:`describe_fronts` turns that into sentences (computed, so a
notebook can print them for whatever the numbers are).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["pareto_front", "mark_fronts", "front_leaders", "describe_fronts"]


def pareto_front(points: pd.DataFrame, x: str = "abs_mia_gap", y: str = "test_acc") -> pd.DataFrame:
    """The rows of ``points`` not dominated by another row (lower ``x`` and higher ``y`` are
    better; a row is dominated when another is at least as good on both and better on one),
    sorted by ``x``."""
    if points.empty:
        return points.copy()
    xs, ys = points[x].to_numpy(dtype=float), points[y].to_numpy(dtype=float)
    keep = []
    for i in range(len(points)):
        dominated = np.any((xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i])))
        keep.append(not dominated)
    return points[np.array(keep)].sort_values(x)


def mark_fronts(points: pd.DataFrame, by: str = "model", x: str = "abs_mia_gap", y: str = "test_acc") -> pd.DataFrame:
    """``points`` with a boolean ``on_front`` column: on the Pareto front of its own ``by`` group."""
    out = points.copy()
    out["on_front"] = False
    for _, group in points.groupby(by, sort=False):
        out.loc[pareto_front(group, x, y).index, "on_front"] = True
    return out


def front_leaders(points: pd.DataFrame, by: str = "model", x: str = "abs_mia_gap", y: str = "test_acc",
                  budgets: Sequence[float] | None = None) -> pd.DataFrame:
    """For each forgetting budget g (default: every distinct ``x`` of a front point), the best
    ``y`` each method reaches with ``x <= g``, the leader and its margin over the runner-up.

    Columns: ``budget``, ``leader``, ``best`` (its ``y``), ``runner_up``, ``margin``; methods with
    no point within the budget do not compete there."""
    marked = mark_fronts(points, by, x, y)
    front = marked[marked["on_front"]]
    if budgets is None:
        budgets = sorted(set(np.round(front[x].to_numpy(dtype=float), 6)))
    rows = []
    for g in budgets:
        within = front[front[x] <= g + 1e-12]
        if within.empty:
            continue
        best = within.groupby(by)[y].max().sort_values(ascending=False)
        rows.append({"budget": float(g), "leader": best.index[0], "best": float(best.iloc[0]),
                     "runner_up": best.index[1] if len(best) > 1 else None,
                     "margin": float(best.iloc[0] - best.iloc[1]) if len(best) > 1 else float("nan")})
    return pd.DataFrame(rows)


def describe_fronts(points: pd.DataFrame, by: str = "model", x: str = "abs_mia_gap", y: str = "test_acc",
                    noise: float | None = None) -> list[str]:
    """Sentences saying whose front dominates where, from :func:`front_leaders`: consecutive
    budgets with the same leader are merged into one range. ``noise`` (e.g. the seed sd of test
    accuracy) marks leads smaller than it as "within noise"."""
    leaders = front_leaders(points, by, x, y)
    if leaders.empty:
        return ["no front points to compare"]
    lines = []
    start = 0
    for i in range(1, len(leaders) + 1):
        if i == len(leaders) or leaders["leader"].iloc[i] != leaders["leader"].iloc[start]:
            seg = leaders.iloc[start:i]
            lo, hi = seg["budget"].iloc[0], seg["budget"].iloc[-1]
            who = seg["leader"].iloc[0]
            contested = seg[seg["margin"].notna()]
            rng = f"|MIA gap| ≤ {lo:.3f}" if lo == hi else f"|MIA gap| from {lo:.3f} to {hi:.3f}"
            if len(contested):
                closest = contested.loc[contested["margin"].idxmin()]
                margin = float(closest["margin"])
                tail = f"ahead of {closest['runner_up']} by at least {margin:.3f}"
                if noise is not None and margin < noise:
                    tail += f" (within the seed spread {noise:.3f}: cannot tell)"
            else:
                tail = "the only method with a point there"
            lines.append(f"{rng}: {who}'s front is highest (test accuracy up to "
                         f"{seg['best'].max():.3f}), {tail}")
            start = i
    return lines
