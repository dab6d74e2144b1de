"""Teaching code of notebook 03 (dlfd_lib.teach): Sinkhorn from scratch against POT and the kit's
own OT distance, and the traced DLFD perturbation against the kit's Perturbation."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dlfd_lib import plots, teach, widgets  # noqa: E402
from dlfd_lib.model import build_model  # noqa: E402
from dlfd_lib.inference import features_of  # noqa: E402
from dlfd_lib.unlearn.dlfd import Perturbation, valid_range  # noqa: E402
from dlfd_lib.unlearn.ot import cosine_cost, ot_distance, sinkhorn_plan  # noqa: E402
from helpers import tiny_splits  # noqa: E402


@pytest.fixture(scope="module")
def toy():
    x, y = teach.point_clouds(n=6, m=8, seed=3)
    return x, y, teach.sq_euclidean_cost(x, y)


def test_cost_matrix_is_the_squared_distance(toy):
    x, y, c = toy
    raw = teach.sq_euclidean_cost(x, y, normalise=False)
    assert raw.shape == (6, 8)
    np.testing.assert_allclose(raw[2, 5], ((x[2] - y[5]) ** 2).sum())
    np.testing.assert_allclose(c, raw / raw.max())


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.02])
def test_sinkhorn_plan_has_the_weights_as_marginals(toy, eps):
    *_, c = toy
    a = np.array([0.1, 0.2, 0.1, 0.3, 0.2, 0.1])
    b = np.full(8, 1 / 8)
    r = teach.sinkhorn(c, a, b, eps=eps, n_iter=500)
    np.testing.assert_allclose(r.plan.sum(1), a, atol=1e-12)  # exact after the last f-update
    np.testing.assert_allclose(r.plan.sum(0), b, atol=1e-6)
    assert (r.plan >= 0).all()
    assert r.marginal_error[-1] < 1e-6 and r.marginal_error[-1] <= r.marginal_error[0]
    assert r.cost == pytest.approx((r.plan * c).sum())
    # the regularised objective is <T, C> - eps * H(T), H(T) = -sum T (log T - 1)
    h = -(r.plan * (np.log(r.plan) - 1)).sum()
    assert r.objective == pytest.approx(r.cost - eps * h)


@pytest.mark.parametrize("eps,n_iter", [(0.5, 10), (0.05, 50), (0.01, 50)])
def test_sinkhorn_equals_pot_iterate_for_iterate(toy, eps, n_iter):
    *_, c = toy
    mine = teach.sinkhorn(c, eps=eps, n_iter=n_iter)
    plan, cost = teach.pot_sinkhorn(c, eps=eps, n_iter=n_iter)
    np.testing.assert_allclose(mine.plan, plan, rtol=1e-9, atol=1e-14)
    assert mine.cost == pytest.approx(cost, rel=1e-10)


def test_sinkhorn_cost_tends_to_exact_ot_as_eps_shrinks(toy):
    *_, c = toy
    _, exact = teach.exact_ot(c)
    gaps = [teach.sinkhorn(c, eps=e, n_iter=4000).cost - exact for e in (0.5, 0.1, 0.01, 0.002)]
    assert all(g >= -1e-9 for g in gaps)  # the exact plan has the least transport cost
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3 < gaps[0]


def test_sinkhorn_on_cosine_costs_is_dlfd_distance():
    g = torch.Generator().manual_seed(0)
    f_r, f_f = torch.randn(8, 5, generator=g), torch.randn(6, 5, generator=g)
    c = cosine_cost(f_r, f_f).double().numpy()
    mine = teach.sinkhorn(c, eps=0.01, n_iter=50)
    kit = float(ot_distance(f_r, f_f, reg=0.01, max_iter=50, backend="torch"))
    assert mine.cost == pytest.approx(kit, rel=1e-5)
    kit_plan = sinkhorn_plan(cosine_cost(f_r, f_f).double(), 0.01, 50, backend="torch").numpy()
    np.testing.assert_allclose(mine.plan, kit_plan, atol=1e-9)


def test_sinkhorn_rejects_bad_input(toy):
    *_, c = toy
    with pytest.raises(ValueError, match="eps > 0"):
        teach.sinkhorn(c, eps=0)
    with pytest.raises(ValueError, match="equal mass"):
        teach.sinkhorn(c, a=np.ones(6), b=np.full(8, 1 / 8))


@pytest.fixture(scope="module")
def batch():
    splits = tiny_splits()
    torch.manual_seed(0)
    model = build_model(splits.num_classes)
    x, y, x_f, y_f = teach.step_batches(splits, size=6, seed=0)
    return splits, model, x, y, x_f


def test_step_batches_are_seeded_images_of_each_split(batch):
    splits, _, x, y, x_f = batch
    a = teach.step_batches(splits, size=6, seed=0)
    b = teach.step_batches(splits, size=6, seed=1)
    assert x.shape == (6, 3, 32, 32) and x_f.shape == (6, 3, 32, 32) and y.dtype == torch.long
    assert torch.equal(a[0], x) and not torch.equal(b[0], x)
    assert set(y.tolist()) <= set(splits.labels("retain").tolist())


def test_trace_ends_where_the_kits_perturbation_ends(batch):
    splits, model, x, y, x_f = batch
    kw = dict(K=4, alpha=0.2, w_f=3.0, w_t=0.5)
    t = teach.trace_perturbation(model, x, y, x_f, mean=splits.mean, std=splits.std, **kw)
    model.eval()
    with torch.no_grad():
        ff = features_of(model, x_f, "logits")[0].float()
    lo, hi = valid_range(splits.mean, splits.std, torch.device("cpu"))
    pert = Perturbation(K=4, alpha=0.2, w_f=3.0, lo=lo, hi=hi, amp=False)
    x_star, dist, ce = pert(model, x, y, ff, 0.5)
    torch.testing.assert_close(t.x_star, x_star, rtol=0, atol=0)
    assert len(t.distance) == len(t.ce) == len(t.acc) == 5
    with torch.no_grad():
        clean_ot = float(ot_distance(features_of(model, x, "logits")[0], ff))
    assert t.distance[0] == pytest.approx(clean_ot, rel=1e-5)
    # the perturbed image stays a valid image, and every pixel moved by at most K * alpha
    assert (t.x_star >= lo - 1e-6).all() and (t.x_star <= hi + 1e-6).all()
    assert float(t.delta.abs().max()) <= 4 * 0.2 + 1e-5


def test_distancing_alone_raises_the_ot_distance_and_ce_alone_lowers_the_loss(batch):
    splits, model, x, y, x_f = batch
    common = dict(mean=splits.mean, std=splits.std, K=6, alpha=0.1)
    push = teach.trace_perturbation(model, x, y, x_f, w_f=3.0, w_t=0.0, **common)
    assert push.distance[-1] > push.distance[0] + 1e-3
    keep = teach.trace_perturbation(model, x, y, x_f, w_f=0.0, w_t=1.0, **common)
    assert keep.ce[-1] < keep.ce[0]
    assert keep.distance[0] == pytest.approx(push.distance[0])
    nothing = teach.trace_perturbation(model, x, y, x_f, w_f=0.0, w_t=0.0, **common)
    assert torch.equal(nothing.x_star, nothing.x)  # zero objective: sign(0) = 0, delta stays 0
    zero = teach.trace_perturbation(model, x, y, x_f, w_f=3.0, w_t=0.0, **{**common, "K": 0})
    assert len(zero.distance) == 1 and torch.equal(zero.x_star, zero.x)


def test_feature_plane_and_sweep(batch):
    splits, model, x, y, x_f = batch
    t = teach.trace_perturbation(model, x, y, x_f, mean=splits.mean, std=splits.std, K=2, alpha=0.2)
    plane = teach.feature_plane(t)
    assert plane["clean"].shape == (6, 2) and plane["forget"].shape == (6, 2) and plane["perturbed"].shape == (6, 2)
    # the axes are centred on the clean + forget features
    np.testing.assert_allclose(np.concatenate([plane["clean"], plane["forget"]]).mean(0), 0, atol=1e-6)
    table = teach.sweep_step(model, x, y, x_f, {"a": {}, "no OT": {"w_f": 0.0, "w_t": 0.0}},
                             mean=splits.mean, std=splits.std, K=2, alpha=0.2)
    assert list(table.index) == ["a", "no OT"]
    assert table.loc["no OT", "mean |δ| (pixels)"] == 0 and table.loc["a", "mean |δ| (pixels)"] > 0


def test_ot_figures_have_their_panels(toy):
    x, y, c = toy
    r = {e: teach.sinkhorn(c, eps=e, n_iter=30) for e in (0.5, 0.05)}
    fig = plots.plot_ot_problem(x, y, c, r[0.05].plan)
    assert len(fig.axes) >= 3 and len(fig.axes[0].collections) == 2
    plt.close(fig)
    fig = plots.plot_plans_over_eps(c, {e: v.plan for e, v in r.items()}, exact=teach.exact_ot(c))
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["ε = 0.5", "ε = 0.05", "ε = 0 (exact, ot.emd)"]
    plt.close(fig)
    fig = plots.plot_sinkhorn_convergence(r, exact_cost=teach.exact_ot(c)[1])
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 3
    plt.close(fig)


def test_dlfd_step_explorer_reruns_the_step_the_sliders_say(batch, monkeypatch):
    splits, model, x, y, x_f = batch
    drawn = []
    real_plot = plots.plot_dlfd_step

    def spy(trace, *a, **kw):
        drawn.append(dict(trace.params))
        return real_plot(trace, *a, **kw)

    monkeypatch.setattr(plots, "plot_dlfd_step", spy)
    box = widgets.dlfd_step_explorer(model, x, y, x_f, splits.mean, splits.std, splits.class_names,
                                     K=2, alpha=0.1, w_f=3.0, w_t=0.5, n_show=3)
    assert drawn[-1]["K"] == 2 and len(box.trace.distance) == 3
    box.controls["K"].value = 3
    box.controls["w_t"].value = 0.0
    box.controls["alpha"].value = 0.2
    box.controls["w_f"].value = 0.0
    assert {k: drawn[-1][k] for k in ("K", "alpha", "w_f", "w_t")} == {"K": 3, "alpha": 0.2, "w_f": 0.0, "w_t": 0.0}
    assert torch.equal(box.trace.x_star, box.trace.x)  # w_f = w_t = 0: nothing to follow
    assert "accuracy" in box.summary and len(box.cache) == 5
    n = len(drawn)
    box.controls["w_f"].value = 3.0  # back to a setting seen before: drawn again, not re-run
    assert len(drawn) == n + 1 and len(box.cache) == 5
