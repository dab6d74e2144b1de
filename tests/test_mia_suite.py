"""Tests of the membership-inference suite in dlfd_lib.attacks: the four per-sample scores,
mia_attack (accuracy, AUC, TPR at 1 % FPR), mia_suite, evaluate(attacks=True), attack_table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dlfd_lib import attacks as A
from dlfd_lib import metrics as M
from dlfd_lib.data.splits import SplitDataset, TensorSource, UnlearningSplits, eval_transform


def _null_tol(n_per_side: int, test_size: float = 0.3) -> float:
    """Three standard errors of one held-out fold's accuracy at chance (the fold mean is
    tighter than this): sqrt(0.25 / n_heldout)."""
    n_heldout = 2 * n_per_side * test_size
    return 3.0 * math.sqrt(0.25 / n_heldout)


def _logits(n, margin, classes=4, seed=0):
    """Random logits whose true class gets an extra ``margin`` (larger = more confident)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    z = rng.normal(0.0, 1.0, (n, classes))
    z[np.arange(n), labels] += margin
    return z, labels


# --------------------------------------------------------------------------------------------
# per-sample scores
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [2, 3, 7])
def test_scores_of_uniform_prediction(c):
    z = np.zeros((2, c))
    y = np.array([0, c - 1])
    s = A.attack_scores(z, y)
    assert set(s) == set(A.ATTACKS)
    np.testing.assert_allclose(s["loss"], -math.log(c))
    np.testing.assert_allclose(s["confidence"], 1.0 / c)
    np.testing.assert_allclose(s["entropy"], -math.log(c))        # H(uniform) = log C
    mentr = (1 - 1 / c) * math.log(c) - (c - 1) * (1 / c) * math.log(1 - 1 / c)
    np.testing.assert_allclose(s["mentr"], -mentr)


def test_scores_of_confident_logits():
    z = np.array([[10.0, 0.0, 0.0]])
    p0 = math.exp(10) / (math.exp(10) + 2)
    s = A.attack_scores(z, np.array([0]))
    assert s["confidence"][0] == pytest.approx(p0, rel=1e-12)
    assert s["loss"][0] == pytest.approx(math.log(p0), rel=1e-9)
    # the same logits with the wrong label: low confidence, and Mentr punishes it
    w = A.attack_scores(z, np.array([1]))
    assert w["confidence"][0] == pytest.approx(1 / (math.exp(10) + 2), rel=1e-9)
    assert w["entropy"][0] == pytest.approx(s["entropy"][0])     # entropy ignores the label
    assert w["mentr"][0] < s["mentr"][0] - 5


def test_mentr_matches_direct_formula():
    z, y = _logits(50, 1.0, classes=5, seed=3)
    p = torch.softmax(torch.from_numpy(z), dim=1).numpy()
    direct = []
    for pi, yi in zip(p, y):
        v = -(1 - pi[yi]) * np.log(pi[yi])
        v -= sum(pi[i] * np.log(1 - pi[i]) for i in range(len(pi)) if i != yi)
        direct.append(v)
    s = A.attack_scores(z, y)
    np.testing.assert_allclose(-s["mentr"], direct, rtol=1e-10)
    np.testing.assert_allclose(s["entropy"], (p * np.log(p)).sum(1), rtol=1e-10)
    np.testing.assert_allclose(s["confidence"], p[np.arange(len(y)), y], rtol=1e-12)


def test_scores_stay_finite_when_softmax_saturates():
    z = np.array([[800.0, 0.0, 0.0], [0.0, 900.0, 0.0]])
    s = A.attack_scores(z, np.array([0, 0]))
    for v in s.values():
        assert np.all(np.isfinite(v))
    assert s["mentr"][1] == pytest.approx(-(900 + 900 - math.log(2)), rel=1e-9)


def test_scores_reject_bad_input():
    z, y = _logits(10, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        A.attack_scores(np.where(np.arange(40).reshape(10, 4) == 5, np.nan, z), y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        A.attack_scores(np.where(np.arange(40).reshape(10, 4) == 5, np.inf, z), y)
    with pytest.raises(ValueError, match="0..3"):
        A.attack_scores(z, y + 4)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        A.attack_scores(z, y[:5])
    with pytest.raises(ValueError, match="unknown attack"):
        A.attack_scores(z, y, attacks=("loss", "gradient"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        A.mia_attack(np.r_[np.ones(20), np.nan], np.ones(20))


# --------------------------------------------------------------------------------------------
# mia_attack
# --------------------------------------------------------------------------------------------
def test_identical_distributions_are_chance_for_every_attack():
    n = 500
    mem = _logits(n, 1.5, seed=1)
    non = _logits(n, 1.5, seed=2)
    df = A.mia_suite(*mem, *non, seed=0)
    assert list(df.index) == list(A.ATTACKS) and df.index.name == "attack"
    tol = _null_tol(n)
    for a in A.ATTACKS:
        assert abs(df.loc[a, "acc"] - 0.5) < tol, a
        assert abs(df.loc[a, "auc"] - 0.5) < tol, a
        assert 0.0 <= df.loc[a, "tpr_at_1fpr"] < 0.1, a
        assert df.loc[a, "n"] == n


def test_perfectly_separated_scores():
    rng = np.random.default_rng(0)
    mem, non = rng.uniform(5, 6, 300), rng.uniform(0, 1, 300)
    for m, x in ((mem, non), (-mem, -non)):         # either direction is learned
        r = A.mia_attack(m, x, seed=0)
        assert r["acc"] == 1.0 and r["auc"] == 1.0 and r["tpr_at_1fpr"] == 1.0
        assert r["acc_sd"] == 0.0 and r["n"] == 300


def test_members_more_confident_gives_auc_above_half():
    mem = _logits(400, 3.0, seed=4)                  # members: larger true-class margin
    non = _logits(400, 1.0, seed=5)
    s_mem, s_non = A.attack_scores(*mem), A.attack_scores(*non)
    from sklearn.metrics import roc_auc_score
    y = np.r_[np.ones(400), np.zeros(400)]
    for a in A.ATTACKS:                              # raw scores: higher = more member-like
        assert roc_auc_score(y, np.r_[s_mem[a], s_non[a]]) > 0.7, a
    df = A.mia_suite(*mem, *non, seed=0)
    assert (df["auc"] > 0.7).all() and (df["acc"] > 0.6).all()


def test_balancing_unequal_sizes_is_still_chance():
    rng = np.random.default_rng(6)
    mem, non = rng.normal(0, 1, 300), rng.normal(0, 1, 3000)
    r = A.mia_attack(mem, non, seed=0)
    tol = _null_tol(300)
    assert abs(r["acc"] - 0.5) < tol and abs(r["auc"] - 0.5) < tol
    assert r["n"] == 300 and r["n_member"] == 300 and r["n_nonmember"] == 300
    naive = A.mia_attack(mem, non, seed=0, balance=False)
    assert naive["acc"] == pytest.approx(3000 / 3300, abs=0.02)   # the class-ratio floor


def test_mia_attack_is_deterministic_and_matches_mia():
    rng = np.random.default_rng(7)
    loss_m, loss_n = rng.exponential(0.5, 200), rng.exponential(1.0, 350)
    a = A.mia_attack(-loss_m, -loss_n, seed=3)
    assert a == A.mia_attack(-loss_m.copy(), -loss_n.copy(), seed=3)
    assert a != A.mia_attack(-loss_m, -loss_n, seed=4)
    ref = A.mia(loss_m, loss_n, seed=3)              # same balancing, folds and attack
    assert a["acc"] == pytest.approx(ref["mia"], abs=1e-12)
    assert a["acc_sd"] == pytest.approx(ref["mia_sd"], abs=1e-12)
    assert a["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert a["n"] == ref["n"] == 200


def test_tpr_at_low_fpr_definition():
    # 200 negatives at 0..199; 50 positives above every negative, 50 below all of them
    neg = np.arange(200.0)
    pos = np.r_[np.arange(50.0) + 1000, np.arange(50.0) - 1000]
    y = np.r_[np.ones(100), np.zeros(200)]
    assert A.tpr_at_fpr(y, np.r_[pos, neg]) == 0.5
    # move 2 negatives (1 %) above all positives: still allowed, TPR 0.5
    neg2 = neg.copy()
    neg2[:2] = 5000
    assert A.tpr_at_fpr(y, np.r_[pos, neg2]) == 0.5
    # 3 negatives on top (1.5 %): only the points before them count -> TPR 0
    neg3 = neg.copy()
    neg3[:3] = 5000
    assert A.tpr_at_fpr(y, np.r_[pos, neg3]) == 0.0
    # a small fold (50 negatives): one false positive is already 2 % FPR -> TPR at zero FPR
    y_small = np.r_[np.ones(10), np.zeros(50)]
    scores = np.r_[np.arange(10.0) + 100, np.arange(50.0)]
    assert A.tpr_at_fpr(y_small, scores) == 1.0
    scores[10] = 500                                   # one negative above all positives
    assert A.tpr_at_fpr(y_small, scores) == 0.0


# --------------------------------------------------------------------------------------------
# evaluate(attacks=True) and attack_table
# --------------------------------------------------------------------------------------------
def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g).numpy()
    return SplitDataset(TensorSource(images), labels, eval_transform(8, (0.5,) * 3, (0.5,) * 3))


@pytest.fixture(scope="module")
def splits():
    return UnlearningSplits(name="tiny", task="toy", class_names=["a", "b", "c"],
                            retain=_split(20, 0), forget=_split(30, 1), val=_split(10, 2),
                            test=_split(36, 3), image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))


def test_evaluate_with_attacks_adds_keys_and_keeps_the_rest(splits):
    plain = M.evaluate(_model(), splits, device="cpu", seed=0, n_splits=4)
    full = M.evaluate(_model(), splits, device="cpu", seed=0, n_splits=4, attacks=True)
    added = {f"mia_{a}_{m}" for a in A.ATTACKS for m in ("acc", "auc", "tpr1")}
    assert set(full) == set(plain) | added
    assert {k: full[k] for k in plain} == plain
    for k in added:
        assert isinstance(full[k], float) and 0.0 <= full[k] <= 1.0, k
    assert full["mia_loss_acc"] == pytest.approx(full["mia"], abs=0.02)
    some = M.evaluate(_model(), splits, device="cpu", seed=0, n_splits=4, attacks="mentr")
    assert {k for k in some if k.startswith("mia_mentr")} == {"mia_mentr_acc", "mia_mentr_auc",
                                                             "mia_mentr_tpr1"}
    assert "mia_loss_auc" not in some
    assert some["mia_mentr_auc"] == full["mia_mentr_auc"]
    table = M.metrics_table({"m": full})
    assert "mia_entropy_tpr1" in table.columns


def test_attack_table_gaps():
    def fake(shift):
        return {f"mia_{a}_{m}": 0.5 + shift + 0.01 * i
                for i, a in enumerate(A.ATTACKS) for m in ("acc", "auc", "tpr1")}
    results = {"retrained": fake(0.0), "dlfd": fake(0.05), "original": fake(0.2)}
    t = A.attack_table(results)
    assert isinstance(t, pd.DataFrame)
    assert t.index.names == ["model", "attack"] and len(t) == 3 * len(A.ATTACKS)
    assert list(t.columns) == ["acc", "acc_ref", "acc_gap", "auc", "auc_ref", "auc_gap",
                               "tpr1", "tpr1_ref", "tpr1_gap"]
    assert t.loc[("dlfd", "mentr"), "auc_gap"] == pytest.approx(0.05)
    assert t.loc[("original", "loss"), "acc_ref"] == pytest.approx(0.5)
    assert (t.loc["retrained", "acc_gap"] == 0).all()
    with pytest.raises(KeyError, match="reference"):
        A.attack_table(results, reference="nobody")
    with pytest.raises(KeyError, match="attacks=True"):
        A.attack_table({"retrained": fake(0.0), "bare": {"mia": 0.5}})
