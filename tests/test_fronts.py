"""Issue 27: the front leaders count every front point at its own budget – a method's configured
point included – and the sentences about fronts never pass a sweep point off as the method's own."""
import numpy as np
import pandas as pd
import pytest

from dlfd_lib.fronts import describe_fronts, front_leaders, mark_fronts


def _own_points_counted(points: pd.DataFrame, leaders=front_leaders) -> None:
    """Every point on a method's own front must be counted at its own budget: alone on the plane,
    at budget = the point's gap, the method's best is that point's test accuracy."""
    marked = mark_fronts(points)
    for model, part in marked.groupby("model"):
        lead = leaders(part)
        for _, p in part[part["on_front"]].iterrows():
            at = lead[lead["budget"] >= p["abs_mia_gap"]]
            assert len(at), f"{model}'s front point at gap {p['abs_mia_gap']!r} has no budget reaching it"
            first = at.iloc[0]
            assert first["best"] == pytest.approx(p["test_acc"]), \
                f"{model}'s front point ({p['abs_mia_gap']!r}, {p['test_acc']}) was dropped at its own budget"


def _points(seed: int) -> pd.DataFrame:
    """Front points with gaps of many decimals, as the protocol writes them (means over seeds);
    one 'tuned' point per method, the rest 'sweep'."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in ("dlfd", "neggrad", "unsir"):
        for k in range(6):
            rows.append({"model": m, "setting": "tuned" if k == 0 else "sweep", "strength": float(k),
                         "abs_mia_gap": float(rng.uniform(0, 0.2)), "test_acc": float(rng.uniform(0.2, 0.7)),
                         "n_seeds": 5})
    return pd.DataFrame(rows)


def test_a_gap_with_more_than_six_decimals_is_not_dropped():
    # the case: DLFD's own point at gap 0.0022831 is its front's first point
    pts = pd.DataFrame([{"model": "dlfd", "setting": "tuned", "abs_mia_gap": 0.0022831, "test_acc": 0.245},
                        {"model": "dlfd", "setting": "sweep", "abs_mia_gap": 0.04, "test_acc": 0.607},
                        {"model": "neggrad", "setting": "tuned", "abs_mia_gap": 0.0022, "test_acc": 0.2}])
    lead = front_leaders(pts)
    first_dlfd = lead[np.isclose(lead["budget"], 0.0022831, rtol=0, atol=1e-12)]
    assert len(first_dlfd) == 1, lead
    assert first_dlfd.iloc[0]["leader"] == "dlfd" and first_dlfd.iloc[0]["best"] == pytest.approx(0.245)
    _own_points_counted(pts)


@pytest.mark.parametrize("seed", range(5))
def test_every_methods_own_points_are_on_their_front_and_counted(seed):
    pts = _points(seed)
    _own_points_counted(pts)
    # the configured ('tuned') point of every method, where it is on its front, is a budget of its own
    marked = mark_fronts(pts)
    budgets = set(front_leaders(pts)["budget"])
    for _, p in marked[(marked["setting"] == "tuned") & marked["on_front"]].iterrows():
        assert p["abs_mia_gap"] in budgets


def test_the_check_fails_on_a_dropped_point():
    # budgets rounded to 6 decimals (the old behaviour) drop a point whose gap has more: the check catches it
    pts = pd.DataFrame([{"model": "a", "abs_mia_gap": 0.0022831, "test_acc": 0.5},
                        {"model": "a", "abs_mia_gap": 0.03, "test_acc": 0.6}])

    def rounded(p):
        return front_leaders(p, budgets=sorted(set(np.round(p["abs_mia_gap"].to_numpy(), 6))))
    with pytest.raises(AssertionError, match="dropped"):
        _own_points_counted(pts, leaders=rounded)


def test_describe_fronts_says_whether_the_best_is_the_configured_point():
    pts = pd.DataFrame([{"model": "dlfd", "setting": "tuned", "abs_mia_gap": 0.01, "test_acc": 0.25},
                        {"model": "dlfd", "setting": "sweep", "abs_mia_gap": 0.05, "test_acc": 0.61},
                        {"model": "neggrad", "setting": "tuned", "abs_mia_gap": 0.02, "test_acc": 0.2}])
    text = describe_fronts(pts)
    assert "its configured point" in text[0]  # 0.25 at gap 0.01 is DLFD's configured point
    assert any("a swept strength, not its configured point" in t for t in text)
    # without a setting column the sentences stay as before
    assert "configured" not in " ".join(describe_fronts(pts.drop(columns="setting")))


def test_the_fronts_title_says_how_many_seeds_each_kind_of_point_is_over():
    import pandas as pd

    from dlfd_lib.plots import _seeds_words
    pts = pd.DataFrame({"setting": ["tuned", "sweep", "sweep"], "n_seeds": [5, 3, 3]})
    assert _seeds_words(pts) == "swept strengths: mean over 3 seeds, configured setting: 5"
    assert _seeds_words(pts.assign(n_seeds=5)) == "mean over 5 evaluation seeds"
    assert _seeds_words(pts.assign(n_seeds=1)) == "one seed"
    assert _seeds_words(pts.assign(n_seeds=[5, 1, 1])) == "swept strengths: one seed, configured setting: 5"
    assert _seeds_words(pts.assign(n_seeds=[5, 3, 2])) == "means over 2 to 5 seeds"


def test_unlearning_history_shades_plain_ce_from_the_batch_after_the_switch():
    """The switch fires at a monitor (after batch 9, 0-based, i.e. 10 batches trained); plain CE runs
    from the 11th batch on, so the band starts at 10 on the 'batches trained' axis, not at the next
    monitor (20), and the kept line sits at the kept state's batch count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlfd_lib.plots import plot_unlearning_history
    h = pd.DataFrame({"batch": [9, 19, 29], "mode": ["perturb", "plain", "plain"], "w_t": [0.0, 0.0, 0.0],
                      "val_acc": [0.5, 0.6, 0.7], "fs": [0.01, 0.02, 0.03], "ot": [1.0, None, None],
                      "ce": [1.0, 0.9, 0.8]})
    fig = plot_unlearning_history(h, selected_batch=9)
    ax = fig.axes[0]
    band = ax.patches[0]  # a Rectangle or a Polygon, depending on matplotlib's version
    xs = sorted({round(float(v[0]), 9) for v in band.get_patch_transform().transform(band.get_path().vertices)})
    assert xs == [10.0, 30.0]
    kept = [ln for ln in ax.lines if ln.get_label() == "kept checkpoint"][0]
    assert float(kept.get_xdata()[0]) == 10.0
    plt.close(fig)


def test_a_small_lead_is_written_with_its_digits_and_a_tie_as_level():
    base = [{"model": "a", "abs_mia_gap": 0.01, "test_acc": 0.6}]
    close = describe_fronts(pd.DataFrame(base + [{"model": "b", "abs_mia_gap": 0.01, "test_acc": 0.59962}]))
    assert "ahead of b by at least 0.00038" in close[0], close
    tie = describe_fronts(pd.DataFrame(base + [{"model": "b", "abs_mia_gap": 0.01, "test_acc": 0.6}]))
    assert "level with b" in tie[0] and "by at least" not in tie[0], tie
