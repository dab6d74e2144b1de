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
notebook can print them for whatever the numbers are). :func:`hypervolume` sums a whole front up
as one number, the way multi-objective unlearning work scores trade-offs (e.g. CUP, arXiv
2510.19226): the area that the front dominates in the plane of test accuracy against
1 − |MIA − MIA of the retrained model|, above the reference point :data:`HV_REFERENCE` (test
accuracy 0, closeness 0.5, i.e. an MIA gap of 0.5, the worst possible). Larger is better; a
front that is better everywhere has a larger hypervolume, and one point alone scores its
rectangle.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .stats import fmt_num

__all__ = ["pareto_front", "mark_fronts", "front_leaders", "describe_fronts", "hypervolume",
           "HV_REFERENCE", "hypervolumes"]

#: The hypervolume's reference point: (|MIA − MIA retrained|, test accuracy) = (0.5, 0.0), i.e.
#: closeness 1 − gap = 0.5 and accuracy 0: worse than any model on both axes.
HV_REFERENCE = (0.5, 0.0)


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
    no point within the budget do not compete there.

    The default budgets are the front points' own ``x`` values, unrounded: a budget rounded to
    fewer decimals than a point's gap would fall just below it and drop that point – a method's
    own configured point among them – from the comparison at its own budget."""
    marked = mark_fronts(points, by, x, y)
    front = marked[marked["on_front"]]
    if budgets is None:
        budgets = np.unique(front[x].to_numpy(dtype=float))
    rows = []
    for g in budgets:
        within = front[front[x] <= g]
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
    front_pts = mark_fronts(points, by, x, y)
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
                tail = (f"level with {closest['runner_up']} where they come closest" if margin == 0 else
                        f"ahead of {closest['runner_up']} by at least {fmt_num(margin)}")
                if noise is not None and margin < noise:
                    tail += f" (within the seed spread {noise:.3f}: cannot tell)"
            else:
                tail = "the only method with a point there"
            top = float(seg["best"].max())
            lines.append(f"{rng}: {who}'s front is highest (test accuracy up to {top:.3f}"
                         f"{_which_point(front_pts, by, who, y, top)}), {tail}")
            start = i
    return lines


def _which_point(points: pd.DataFrame, by: str, who: str, y: str, value: float) -> str:
    """", its configured point" / ", a swept strength, not its configured point" for the point of
    ``who`` with ``y == value`` – so a sentence about a front's best never passes a sweep point off
    as the method's own setting; "" when the points carry no ``setting`` column."""
    if "setting" not in points:
        return ""
    hit = points[(points[by] == who) & np.isclose(points[y].to_numpy(dtype=float), value)]
    if hit.empty:
        return ""
    return ", its configured point" if (hit["setting"] == "tuned").any() else ", a swept strength, not its configured point"


def hypervolume(points: pd.DataFrame, x: str = "abs_mia_gap", y: str = "test_acc",
                ref: tuple[float, float] = HV_REFERENCE) -> float:
    """The area dominated by ``points`` (lower ``x``, higher ``y``) and bounded by ``ref`` =
    (x_ref, y_ref): the union of the rectangles [x_i, x_ref] x [y_ref, y_i]. Points beyond the
    reference on either axis add nothing; no points give 0."""
    xs = points[x].to_numpy(dtype=float)
    ys = points[y].to_numpy(dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs < ref[0]) & (ys > ref[1])
    xs, ys = xs[keep], ys[keep]
    if not len(xs):
        return 0.0
    order = np.lexsort((-ys, xs))  # by x ascending, the best y first among equal x
    area, best_y = 0.0, ref[1]
    for i, idx in enumerate(order):
        if ys[idx] <= best_y:
            continue  # dominated by a point with smaller x
        x_next = ref[0]
        for j in order[i + 1:]:
            if ys[j] > ys[idx]:
                x_next = xs[j]
                break
        # the strip from this point's x to where a higher point starts, at this point's height
        area += (x_next - xs[idx]) * (ys[idx] - ref[1])
        best_y = ys[idx]
    return float(area)


def hypervolumes(rows: pd.DataFrame, by: str = "model", x: str = "abs_mia_gap", y: str = "test_acc",
                 ref: tuple[float, float] = HV_REFERENCE) -> pd.DataFrame:
    """One row per seed and ``by`` group: the :func:`hypervolume` of that group's points on that
    seed (``rows`` has a ``seed`` column: every setting run on the seed), and how many points."""
    out = []
    for (seed, group), part in rows.groupby(["seed", by], sort=False):
        out.append({"seed": seed, by: group, "hypervolume": hypervolume(part, x, y, ref),
                    "n_points": len(part)})
    return pd.DataFrame(out)
