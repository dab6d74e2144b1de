"""Tests of dlfd_lib.collapse: the correlation-collapse measures on synthetic features with a
known answer, and a small end-to-end run on a tiny model."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dlfd_lib import collapse as K
from dlfd_lib import inference as I
from dlfd_lib.model import build_model

from helpers import few_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small passes and fits are faster on one thread than on a shared, busy CPU."""
    with few_threads(1):
        yield


# --------------------------------------------------------------------------------------------
# synthetic features
# --------------------------------------------------------------------------------------------
def _separable(n_per_class=100, classes=4, dim=16, noise=0.1, seed=0):
    """Class c sits at 10·e_c plus a little noise: linearly separable, tight, far apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centres = 10.0 * np.eye(classes, dim)
    return centres[y] + noise * rng.normal(size=(len(y), dim)), y


def _random(n=2000, classes=4, dim=16, seed=1):
    """Features independent of the (exactly balanced) labels."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)), np.arange(n) % classes


# --------------------------------------------------------------------------------------------
# linear probe
# --------------------------------------------------------------------------------------------
def test_probe_separable_features_is_perfect():
    xtr, ytr = _separable(seed=0)
    xte, yte = _separable(seed=5)
    r = K.linear_probe(xtr, ytr, {"test": (xte, yte), "forget": (xte[:40], yte[:40])})
    assert r["test_acc"] == 1.0 and r["forget_acc"] == 1.0 and r["train_acc"] == 1.0
    assert r["chance"] == pytest.approx(0.25) and r["converged"] == 1.0 and r["n_train"] == 400


def test_probe_random_features_is_chance():
    xtr, ytr = _random(seed=1)
    xte, yte = _random(seed=2)
    r = K.linear_probe(xtr, ytr, {"test": (xte, yte)})
    # the probe's answers are independent of the test labels, so its accuracy is
    # Binomial(2000, 0.25)/2000: sd = sqrt(.25·.75/2000) ≈ 0.0097; allow 4 sd
    assert abs(r["test_acc"] - 0.25) < 0.04
    assert r["chance"] == pytest.approx(0.25)


def test_probe_max_train_subsample_is_seeded_and_errors_are_clear():
    xtr, ytr = _random(seed=1)
    xte, yte = _random(seed=2)
    a = K.linear_probe(xtr, ytr, {"test": (xte, yte)}, max_train=300, seed=3)
    b = K.linear_probe(xtr, ytr, {"test": (xte, yte)}, max_train=300, seed=3)
    assert a == b and a["n_train"] == 300
    with pytest.raises(ValueError, match="single class"):
        K.linear_probe(xtr, np.zeros(len(xtr)))
    with pytest.raises(ValueError, match="train_labels"):
        K.linear_probe(xtr, ytr[:10])
    with pytest.raises(ValueError, match="same layer"):
        K.linear_probe(xtr, ytr, {"test": (xte[:, :8], yte)})
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        K.linear_probe(bad, ytr)


# --------------------------------------------------------------------------------------------
# separability
# --------------------------------------------------------------------------------------------
def test_separability_separable_vs_random():
    x, y = _separable()
    s = K.class_separability(x, y)
    assert s["silhouette"] > 0.9
    assert K.silhouette(x, y, metric="euclidean") > 0.9
    assert s["scatter_ratio"] > 100  # S_B = 400·75 = 30000, S_W ≈ 400·16·0.1² = 64

    xr, yr = _random()
    r = K.class_separability(xr, yr)
    assert abs(r["silhouette"]) < 0.05
    assert r["scatter_ratio_chance"] == pytest.approx(3 / 1996)
    assert r["scatter_ratio"] < 0.01  # ≈ (C − 1)/(N − C) = 0.0015
    assert 0.2 < r["scatter_ratio"] / r["scatter_ratio_chance"] < 5


def test_scatter_ratio_hand_example_and_invariance():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    # means 1 and 11, grand mean 6: S_B = 2·25 + 2·25 = 100, S_W = 4·1 = 4
    assert K.scatter_ratio(x, y) == pytest.approx(25.0)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(2, 2)))
    assert K.scatter_ratio(3.0 * x @ q + 7.0, y) == pytest.approx(25.0)
    assert math.isnan(K.scatter_ratio(x, np.zeros(4)))
    assert math.isnan(K.silhouette(x, np.zeros(4)))


def test_silhouette_subsample_is_seeded():
    x, y = _random(n=1000)
    a = K.silhouette(x, y, max_samples=200, seed=4)
    assert a == K.silhouette(x, y, max_samples=200, seed=4)
    assert a != K.silhouette(x, y, max_samples=200, seed=5)


# --------------------------------------------------------------------------------------------
# identity kNN
# --------------------------------------------------------------------------------------------
def _faces(n_ids=100, per_id=10, dim=32, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), per_id)
    centres = rng.normal(size=(n_ids, dim))
    return centres[ids] + noise * rng.normal(size=(len(ids), dim)), ids


def test_identity_knn_centroid_plus_noise_is_perfect():
    x, ids = _faces()
    for k in (1, 3):
        for metric in ("cosine", "euclidean"):
            r = K.identity_knn(x, ids, k=k, metric=metric)
            assert r["acc"] == 1.0 and r["note"] == ""
    assert r["chance"] == pytest.approx(9 / 999) and r["n"] == 1000 and r["n_identities"] == 100


def test_identity_knn_random_features_is_chance():
    rng = np.random.default_rng(3)
    _, ids = _faces()
    r = K.identity_knn(rng.normal(size=(1000, 32)), ids)
    # chance 9/999 ≈ 0.009; a binomial sd over 1000 images is ≈ 0.003: allow 5 sd
    assert r["chance"] == pytest.approx(9 / 999)
    assert abs(r["acc"] - r["chance"]) < 0.015


def test_identity_knn_hand_example():
    # 1-d features: 0,1 and 10,11 and 20 (ids a, a, b, c, c)
    x = np.array([[0.0], [1.0], [10.0], [11.0], [20.0]])
    ids = np.array(["a", "a", "b", "c", "c"])
    r = K.identity_knn(x, ids, metric="euclidean")
    # neighbours: 0->1 (a ok), 1->0 (a ok), 10->11 (b vs c miss), 11->10 (miss), 20->11 (c ok)
    assert r["acc"] == pytest.approx(3 / 5)
    # chance: (1/4 + 1/4 + 0 + 1/4 + 1/4) / 5
    assert r["chance"] == pytest.approx(0.2)
    # k=3 with a tie (one vote each) goes to the nearest neighbour's identity
    r3 = K.identity_knn(np.array([[0.0], [1.0], [3.0], [7.0]]), np.array([0, 1, 2, 0]), k=3,
                        metric="euclidean")
    # image 0: neighbours 1 (id 1), 2 (id 2), 3 (id 0) -> tie -> id 1: miss; image 3: 2, 1, 0
    # -> tie -> id 2: miss; images 1 and 2 hold unique ids: miss
    assert r3["acc"] == 0.0


def test_identity_knn_without_identities_is_nan_with_note():
    r = K.identity_knn(np.zeros((5, 3)), None)
    assert math.isnan(r["acc"]) and math.isnan(r["chance"]) and "no identity labels" in r["note"]
    single = K.identity_knn(np.eye(4), np.arange(4))
    assert single["acc"] == 0.0 and single["chance"] == 0.0 and "single image" in single["note"]
    with pytest.raises(ValueError, match="metric"):
        K.identity_knn(np.eye(4), np.arange(4), metric="manhattan")


# --------------------------------------------------------------------------------------------
# CKA
# --------------------------------------------------------------------------------------------
def _hsic_unbiased_bruteforce(x, y):
    """Song et al. (2012) with explicit N×N Gram matrices, for checking the fast version."""
    n = len(x)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (np.trace(k @ l) + one @ k @ one * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def test_cka_identical_rotated_scaled_is_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))  # anisotropic
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    for debiased in (False, True):
        assert K.linear_cka(x, x, debiased=debiased) == pytest.approx(1.0)
        assert K.linear_cka(x, 3.7 * x @ q + 5.0, debiased=debiased) == pytest.approx(1.0)
    # a non-isotropic rescaling is not invariant
    assert K.linear_cka(x, x * np.linspace(0.1, 10, 16)) < 0.99


def test_cka_independent_features_small_and_debiased_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 24))
    assert K.linear_cka(a, b) < 0.05  # ≈ sqrt(16·24)/2000 ≈ 0.01
    assert abs(K.linear_cka(a, b, debiased=True)) < 0.02
    # few images, many dimensions: the plain estimator's floor is large, the debiased one not
    a, b = rng.normal(size=(100, 64)), rng.normal(size=(100, 64))
    assert K.linear_cka(a, b) > 0.3  # ≈ N·D²/(N²D + N·D²) = 0.39
    assert abs(K.linear_cka(a, b, debiased=True)) < 0.1


def test_cka_matches_bruteforce_and_edge_cases():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=(30, 3))
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = _hsic_unbiased_bruteforce(xc, yc) / np.sqrt(
        _hsic_unbiased_bruteforce(xc, xc) * _hsic_unbiased_bruteforce(yc, yc))
    assert K.linear_cka(x, y, debiased=True) == pytest.approx(want, rel=1e-9)
    plain = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert K.linear_cka(x, y) == pytest.approx(plain, rel=1e-9)
    assert K.linear_cka(np.ones((10, 3)), x[:10]) == 0.0  # a dead layer shares nothing
    assert math.isnan(K.linear_cka(np.ones((10, 3)), np.zeros((10, 2))))
    with pytest.raises(ValueError, match="same images"):
        K.linear_cka(x, y[:20])


# --------------------------------------------------------------------------------------------
# end to end on a tiny model
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(splits):
    torch.manual_seed(0)
    a = build_model(splits.num_classes)
    torch.manual_seed(1)
    b = build_model(splits.num_classes)
    return a, b


def test_extract_features_restores_modes_and_shapes(splits, models):
    model = models[0]
    model.train()
    model.features[2].eval()  # a mixed state must come back as it was
    before = [m.training for m in model.modules()]
    f = I.extract_features(model, splits, "forget")
    assert [m.training for m in model.modules()] == before
    assert f["features"].shape == (12, 128) and f["features"].dtype == np.float32
    assert f["logits"].shape == (12, 3) and f["labels"].tolist() == splits.labels("forget").tolist()
    assert f["identities"].tolist() == splits.identities("forget").tolist()
    sub = I.extract_features(model, splits, "forget", indices=[3, 0], layer="backbone")
    assert sub["features"].shape == (2, 512) and sub["identities"].tolist() == [1000, 1000]
    np.testing.assert_allclose(sub["logits"][1], f["logits"][0], rtol=1e-4, atol=1e-5)
    plain = I.extract_features(model, splits.loader("forget", batch_size=5), layer="logits")
    assert plain["identities"] is None
    np.testing.assert_allclose(plain["features"], f["logits"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="split"):
        I.extract_features(model, splits)
    with pytest.raises(TypeError, match="forward_features"):
        I.extract_features(nn.Sequential(nn.Flatten(), nn.LazyLinear(3)), splits, "forget")
    model.eval()


@pytest.fixture(scope="module")
def feats(splits, models):
    return I.extract_all(models[0], splits), I.extract_all(models[1], splits)


def test_collapse_measures_end_to_end(splits, models, feats):
    model, other = models
    fa, fb = feats
    r = K.collapse_measures(model, splits, reference=other, original=fa, return_features=True)
    for key in K.COLLAPSE_COLUMNS:
        assert key in r and isinstance(r[key], float), key
    for split in ("retain", "forget", "test"):
        assert r[f"cka_to_original_{split}"] == pytest.approx(1.0)  # itself
        np.testing.assert_array_equal(r["features"][split]["features"], fa[split]["features"])
    assert 0.0 <= r["probe_acc"] <= 1.0 and -1.0 <= r["silhouette"] <= 1.0
    assert r["identity_knn_chance"] == pytest.approx(3 / 11)  # 3 ids of 4 images among 12
    assert all(isinstance(n, str) for n in r["notes"])

    # the original as a model gives the same numbers as its precomputed features
    again = K.collapse_measures(None, splits, features=fb, original=model)
    from_feats = K.collapse_measures(None, splits, features=fb, original=fa)
    assert again == from_feats  # and the measures are deterministic
    assert again["cka_to_original_test"] < 1.0
    # the reference as a model, as a result dict or as features
    ref = K.collapse_measures(None, splits, features=fb)
    assert r["identity_knn_ref"] == ref["identity_knn_acc"]
    assert K.collapse_measures(None, splits, reference=ref, features=fa)["identity_knn_ref"] == \
        K.collapse_measures(None, splits, reference=fb, features=fa)["identity_knn_ref"] == \
        ref["identity_knn_acc"]

    table = K.collapse_table({"a": r, "b": again})
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["a", "b"]
    assert list(table.columns[:2]) == ["probe_acc", "probe_forget_acc"]
    assert "notes" not in table.columns and "features" not in table.columns
    assert math.isnan(table.loc["b", "identity_knn_ref"])
    with pytest.raises(TypeError, match="model name"):
        K.collapse_table(r)
    with pytest.raises(ValueError, match="model or precomputed"):
        K.collapse_measures(None, splits)
    with pytest.raises(KeyError, match="val"):
        K.collapse_measures(None, splits, features=fa, separability_split="val")


def test_collapse_measures_without_identities(splits, feats):
    fa = dict(feats[0])
    fa["forget"] = {**fa["forget"], "identities": None}
    r = K.collapse_measures(None, splits, features=fa)
    assert math.isnan(r["identity_knn_acc"]) and math.isnan(r["identity_knn_chance"])
    assert any("no identity labels" in n for n in r["notes"])


def test_tracker_records_and_leaves_the_run_alone(splits, models, feats):
    model, other = models
    tracker = K.CollapseTracker(splits, original=other, every=2, max_samples=8)
    assert len(tracker.indices["retain"]) == 8 and len(tracker.indices["forget"]) == 8
    # forget is subsampled by whole identities (4 images each)
    ids = splits.identities("forget")[tracker.indices["forget"]]
    assert all(np.sum(ids == i) == 4 for i in np.unique(ids))
    model.train()
    rng_before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    out = [tracker(model, step) for step in range(2)]
    final = tracker(model, 1, final=True, loss=0.5)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert all(m.training for m in model.modules())
    assert out[0] is not None and out[1] is None and final["final"]
    df = tracker.to_frame()
    assert list(df["step"]) == [0, 1] and list(df["final"]) == [False, True]
    assert df["loss"].iloc[-1] == 0.5
    for col in ("probe_acc", "silhouette", "scatter_ratio", "identity_knn_acc",
                "cka_to_original_retain", "cka_to_original_forget", "cka_to_original_test"):
        assert col in df.columns
    # the same model gives the same record; precomputed full-split originals give the same CKA
    assert df.drop(columns=["seconds", "step", "final", "loss"]).iloc[0].equals(
        df.drop(columns=["seconds", "step", "final", "loss"]).iloc[1])
    t2 = K.CollapseTracker(splits, original=feats[1], every=2, max_samples=8)
    rec = t2(model, 0)
    assert rec["cka_to_original_test"] == pytest.approx(out[0]["cka_to_original_test"], rel=1e-5)
    # a diverged model is recorded as NaNs, not an error that would stop the watched run
    broken = build_model(splits.num_classes)
    with torch.no_grad():
        broken.features[3].weight.fill_(float("nan"))
    rec = t2(broken, 2, final=True)
    assert math.isnan(rec["probe_acc"]) and math.isnan(rec["cka_to_original_test"])
    assert "non-finite" in rec["note"] and len(t2.records) == 2
    with pytest.raises(ValueError, match="every"):
        K.CollapseTracker(splits, every=0)
    model.eval()
