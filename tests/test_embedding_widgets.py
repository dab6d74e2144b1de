"""Feature maps (notebook 04): the common reference set, relative coordinates, figures, explorer."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dlfd_lib import plots, widgets  # noqa: E402
from dlfd_lib.embedding import fit_umap, model_features, reference_images, relative_representation  # noqa: E402
from dlfd_lib.model import build_model  # noqa: E402


def test_reference_images_are_seeded_and_sized(splits):
    a = reference_images(splits, {"retain": 10, "forget": None, "test": 5}, seed=1)
    b = reference_images(splits, {"retain": 10, "forget": None, "test": 5}, seed=1)
    c = reference_images(splits, {"retain": 10, "forget": None, "test": 5}, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a[a.split == "retain"]["index"].equals(c[c.split == "retain"]["index"])
    assert a.groupby("split").size().to_dict() == {"forget": len(splits.forget), "retain": 10, "test": 5}
    assert (a["label"].to_numpy() == np.concatenate([splits.labels(s)[a[a.split == s]["index"]]
                                                     for s in ("retain", "forget", "test")])).all()
    with pytest.raises(ValueError, match="unknown split"):
        reference_images(splits, {"holdout": 3})


def test_relative_representation_ignores_rotation_and_scale():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((50, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))  # a random orthogonal matrix
    g = 3.7 * f @ q
    ra = relative_representation(f, f[:20])
    rb = relative_representation(g, g[:20])
    np.testing.assert_allclose(ra, rb, atol=1e-5)
    assert ra.shape == (50, 20) and np.abs(ra).max() <= 1 + 1e-6
    # an anchor is perfectly similar to itself
    np.testing.assert_allclose(np.diag(ra[:20]), 1.0, atol=1e-5)


def test_model_features_rows_follow_the_reference_table(splits):
    torch.manual_seed(0)
    model = build_model(splits.num_classes)
    ref = reference_images(splits, {"test": 6, "retain": 8}, seed=0)
    feats = model_features({"m": model}, splits, ref, device="cpu")["m"]
    assert feats.shape == (14, 128)
    row = ref.iloc[3]  # one image checked against a direct forward pass
    x = splits.split(row["split"])[int(row["index"])][0][None]
    model.eval()
    with torch.no_grad():
        direct = model.forward_features(x, "penultimate")[0][0].numpy()
    np.testing.assert_allclose(feats[3], direct, rtol=1e-4, atol=1e-5)


def test_fit_umap_rejects_bad_input_before_fitting():
    ref = pd.DataFrame({"split": ["retain"] * 4, "index": range(4), "label": 0, "class": "a", "identity": -1})
    with pytest.raises(KeyError, match="fit_on"):
        fit_umap({"a": np.zeros((4, 3))}, ref, fit_on="b")
    with pytest.raises(ValueError, match="one row per reference image"):
        fit_umap({"a": np.zeros((3, 3))}, ref)
    with pytest.raises(ValueError, match="align"):
        fit_umap({"a": np.zeros((4, 3))}, ref, align="procrustes")


def _fake_map():
    rng = np.random.default_rng(0)
    rows = []
    for model in ("original", "retrained", "dlfd"):
        for split, n in (("retain", 20), ("test", 10), ("forget", 8)):
            for i in range(n):
                rows.append({"model": model, "split": split, "index": i, "label": i % 3,
                             "class": "abc"[i % 3], "identity": i // 4 if split == "forget" else -1,
                             "x": rng.normal(), "y": rng.normal()})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("color_by", ["class", "split", "identity"])
def test_plot_embeddings_one_panel_per_model(color_by):
    fig = plots.plot_embeddings(_fake_map(), color_by=color_by, ncols=2)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["original", "retrained", "dlfd"]
    assert all(ax.collections for ax in visible)
    plt.close(fig)
    with pytest.raises(ValueError, match="color_by"):
        plots.plot_embeddings(_fake_map(), color_by="age")


def test_feature_explorer_redraws_what_the_controls_say(monkeypatch):
    calls = []

    def fake_plot(emb, color_by, models, splits, **kw):
        calls.append((color_by, list(models), list(splits)))
        return plt.figure()

    monkeypatch.setattr(plots, "plot_embeddings", fake_plot)
    box = widgets.feature_explorer(_fake_map(), compare_with="original")
    assert calls[-1] == ("class", ["retrained", "original"], ["retain", "test", "forget"])
    box.controls["model"].value = "dlfd"
    box.controls["colour"].value = "split"
    box.controls["splits"].value = ("forget",)
    box.controls["beside"].value = "(none)"
    assert calls[-1] == ("split", ["dlfd"], ["forget"])
    with pytest.raises(ValueError, match="at least one model"):
        widgets.feature_explorer(_fake_map().iloc[:0])


def test_plot_histories_and_concept():
    h = {"a": pd.DataFrame({"step": [0, 1, 2], "fs": [0.2, 0.1, 0.05]}),
         "b": pd.DataFrame({"step": [0, 2], "fs": [0.2, 0.15], "val_acc": [0.5, 0.6]})}
    fig = plots.plot_histories(h, metrics=("fs", "val_acc"), hlines={"fs": 0.05})
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[1].lines) == 1  # 2 runs + reference; 1 run
    plt.close(fig)
    fig = plots.plot_collapse_concept(seed=0)
    assert len(fig.axes) == 3
    plt.close(fig)


def test_import_umap_caches_umap_kernels_on_disk():
    """umap-learn declares its kernels without cache=True; import_umap switches numba's disk cache
    on for them, so the ~20-50 s compilation is paid once per environment, not once per process."""
    from numba.core.dispatcher import Dispatcher

    from dlfd_lib.embedding import import_umap
    umap = import_umap()
    kernels = [umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths,
               umap.layouts._nb_optimize_layout_euclidean_single_epoch]
    for k in kernels:
        assert isinstance(k, Dispatcher)
        assert type(k._cache).__name__ != "NullCache", f"{k.py_func.__name__} is not cached"
    # every module-level kernel of umap.umap_ and umap.layouts, not just those three
    for mod in (umap.umap_, umap.layouts):
        uncached = [n for n, o in vars(mod).items()
                    if isinstance(o, Dispatcher) and type(o._cache).__name__ == "NullCache"]
        assert not uncached, uncached
    assert import_umap() is umap


@pytest.mark.parametrize("name,n", [("tab10", 3), ("tab10", 12), ("tab20", 25)])
def test_color_palette_is_seaborns(name, n):
    """plots.color_palette stands in for seaborn.color_palette (seaborn is imported only for heatmaps)."""
    sns = pytest.importorskip("seaborn")
    assert plots.color_palette(name, n) == [tuple(map(float, c)) for c in sns.color_palette(name, n)]
