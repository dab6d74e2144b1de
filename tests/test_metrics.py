"""Tests of the paper's metrics: accuracy and predict (dlfd_lib.inference), the balanced MIA
(dlfd_lib.attacks), FS, NoMUS and evaluate (dlfd_lib.metrics)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dlfd_lib import attacks as A
from dlfd_lib import inference as I
from dlfd_lib import metrics as M
from dlfd_lib.data.splits import SplitDataset, TensorSource, UnlearningSplits, eval_transform


# --------------------------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------------------------
def test_accuracy_top1_top2_hand_example():
    logits = np.array([
        [3.0, 2.0, 1.0],   # label 0: top1 yes
        [3.0, 2.0, 1.0],   # label 1: top1 no, top2 yes
        [3.0, 2.0, 1.0],   # label 2: top1 no, top2 no
        [0.1, 0.2, 0.9],   # label 2: top1 yes
    ], dtype=np.float32)
    labels = np.array([0, 1, 2, 2])
    assert I.accuracy(logits, labels) == pytest.approx(0.5)
    assert I.accuracy(logits, labels, k=2) == pytest.approx(0.75)
    assert I.accuracy(logits, labels, k=3) == 1.0
    assert I.accuracy(logits, labels, k=10) == 1.0
    assert isinstance(I.accuracy(logits, labels), float)
    with pytest.raises(ValueError):
        I.accuracy(logits, labels[:3])
    with pytest.raises(ValueError):
        I.accuracy(logits, labels, k=0)


# --------------------------------------------------------------------------------------------
# MIA
# --------------------------------------------------------------------------------------------
def _same(n_mem, n_non, seed=1):
    rng = np.random.default_rng(seed)
    return rng.exponential(1.0, n_mem), rng.exponential(1.0, n_non)


def _separated(n_mem, n_non, seed=2):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.05, n_mem), rng.normal(2.0, 0.4, n_non).clip(0.2)


def test_mia_identical_distributions_is_chance():
    mem, non = _same(600, 600)
    r = A.mia(mem, non, seed=0)
    assert abs(r["mia"] - 0.5) < 0.05
    assert abs(r["auc"] - 0.5) < 0.05
    assert r["n"] == 600 and r["n_member"] == 600 and r["n_nonmember"] == 600
    assert 0.0 <= r["mia_sd"] < 0.1


def test_mia_separated_distributions_is_near_one():
    mem, non = _separated(500, 500)
    r = A.mia(mem, non, seed=0)
    assert r["mia"] > 0.95
    assert r["auc"] > 0.95


def test_mia_balancing_removes_class_ratio_floor():
    # few members, ten times as many non-members, same loss distribution (1:10 as 200 vs 2000;
    # 400 per side keeps the balanced estimate's fold-to-fold noise well inside the tolerance)
    mem, non = _same(400, 4000)
    balanced = A.mia(mem, non, seed=0)
    assert abs(balanced["mia"] - 0.5) < 0.05
    assert abs(balanced["auc"] - 0.5) < 0.07
    assert balanced["n"] == 400 and balanced["n_member"] == 400 and balanced["n_nonmember"] == 400

    naive = A.mia(mem, non, seed=0, balance=False)
    # the unbalanced attack "wins" by always answering "non-member": the majority share ~0.91
    assert naive["mia"] == pytest.approx(4000 / 4400, abs=0.02)
    assert naive["n_member"] == 400 and naive["n_nonmember"] == 4000
    # ... while its threshold-free AUC still says there is nothing to find
    assert abs(naive["auc"] - 0.5) < 0.07

    # the same with the majority on the member side (e.g. 1500 forget vs 300 test)
    mem, non = _same(1500, 300, seed=3)
    assert abs(A.mia(mem, non, seed=0)["mia"] - 0.5) < 0.05
    assert A.mia(mem, non, seed=0, balance=False)["mia"] == pytest.approx(1500 / 1800, abs=0.02)


def test_mia_balanced_separated_unequal_sizes():
    mem, non = _separated(300, 1500)
    r = A.mia(mem, non, seed=0)
    assert r["mia"] > 0.95 and r["auc"] > 0.95 and r["n"] == 300


def test_mia_is_deterministic_for_a_seed():
    mem, non = _same(300, 900, seed=5)
    a = A.mia(mem, non, seed=7)
    b = A.mia(mem.copy(), non.copy(), seed=7)
    assert a == b
    c = A.mia(mem, non, seed=8)
    assert c != a                          # another seed draws another subsample / folds


def test_mia_standardize_handles_tiny_losses():
    # an over-fitted model: all losses tiny, members ten times smaller than non-members
    rng = np.random.default_rng(0)
    mem, non = rng.exponential(1e-4, 400), rng.exponential(1e-3, 400)
    std = A.mia(mem, non, seed=0)
    raw = A.mia(mem, non, seed=0, standardize=False)
    assert std["mia"] > 0.65
    assert raw["mia"] < std["mia"]         # L2 penalty flattens the fit on raw tiny losses


def test_mia_rejects_bad_input():
    with pytest.raises(ValueError, match="at least"):
        A.mia(np.ones(3), np.ones(100))
    with pytest.raises(ValueError, match="NaN or infinite"):
        A.mia(np.r_[np.ones(20), np.nan], np.ones(20))


# --------------------------------------------------------------------------------------------
# FS and NoMUS
# --------------------------------------------------------------------------------------------
def test_forgetting_score():
    assert M.forgetting_score(0.5) == 0.0
    assert M.forgetting_score(0.5279) == pytest.approx(0.0279, abs=1e-12)
    assert M.forgetting_score(0.4751) == pytest.approx(0.0249, abs=1e-12)   # below 0.5
    assert M.forgetting_score(0.56, target=0.5548) == pytest.approx(0.0052, abs=1e-12)


@pytest.mark.parametrize("acc, mia_value, fs, score", [
    (0.6197, 0.5279, 0.0279, 0.7819),   # DLFD, MUFAC (paper's table)
    (0.6330, 0.6924, 0.1924, 0.6241),   # Original
    (0.6084, 0.5548, 0.0548, 0.7494),   # Retrained
    (0.4116, 0.4751, 0.0249, 0.6809),   # NegGrad
])
def test_nomus_matches_paper_table(acc, mia_value, fs, score):
    got_fs = M.forgetting_score(mia_value)
    assert got_fs == pytest.approx(fs, abs=1e-9)
    assert M.nomus(acc, got_fs) == pytest.approx(score, abs=1e-4)


def test_nomus_formula_and_range():
    assert M.nomus(1.0, 0.0) == 1.0
    assert M.nomus(0.0, 0.5) == 0.0
    assert M.nomus(0.8, 0.1, lam=1.0) == pytest.approx(0.8)
    assert M.nomus(0.8, 0.1, lam=0.0) == pytest.approx(0.8)
    assert M.nomus(0.6, 0.2, lam=0.25) == pytest.approx(0.25 * 0.6 + 0.75 * 0.6)


# --------------------------------------------------------------------------------------------
# predict / evaluate on a tiny model and tiny fake splits
# --------------------------------------------------------------------------------------------
NUM_CLASSES = 3


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g).numpy()
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return SplitDataset(TensorSource(images), labels, eval_transform(8, mean, std))


@pytest.fixture(scope="module")
def splits():
    return UnlearningSplits(
        name="tiny", task="toy", class_names=["a", "b", "c"],
        retain=_split(40, 0), forget=_split(30, 1), val=_split(20, 2), test=_split(36, 3),
        image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 8 * 8, NUM_CLASSES))


def test_predict_shapes_losses_and_mode_restore(splits):
    model = _model()
    model.train()
    model[1].eval()                        # a mixed-mode model must come back mixed
    loader = splits.loader("test", batch_size=16)
    p = I.predict(model, loader, "cpu", amp=False)
    assert model.training and model[0].training and not model[1].training and model[2].training
    assert p["logits"].shape == (36, NUM_CLASSES) and p["logits"].dtype == np.float32
    assert p["labels"].shape == (36,) and p["losses"].shape == (36,)
    np.testing.assert_array_equal(p["labels"], splits.labels("test"))
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(p["logits"]), torch.from_numpy(p["labels"]), reduction="none").numpy()
    np.testing.assert_allclose(p["losses"], expected, rtol=1e-5, atol=1e-6)
    # dropout was off: a second pass gives the same logits
    q = I.predict(model, loader, "cpu", amp=False)
    np.testing.assert_array_equal(p["logits"], q["logits"])

    model.eval()
    r = I.predict(model, loader, None, amp=True)     # bf16 autocast path, model's device
    assert not model.training
    assert r["logits"].dtype == np.float32
    np.testing.assert_allclose(r["logits"], p["logits"], atol=0.1)


def test_evaluate_keys_ranges_and_consistency(splits):
    model = _model()
    model.train()
    res = M.evaluate(model, splits, device="cpu", batch_size=16, seed=0, return_losses=True,
                     n_splits=5)
    assert model.training
    for s in ("retain", "forget", "val", "test"):
        for key in (f"{s}_acc", f"{s}_top2"):
            assert isinstance(res[key], float) and 0.0 <= res[key] <= 1.0
        assert res[f"{s}_top2"] >= res[f"{s}_acc"]
        assert res[f"{s}_loss"] > 0
    for key in ("mia", "mia_auc"):
        assert isinstance(res[key], float) and 0.0 <= res[key] <= 1.0
    assert isinstance(res["mia_sd"], float) and res["mia_sd"] >= 0
    assert res["mia_n"] == 30.0                       # balanced: min(forget 30, test 36)
    assert res["fs"] == pytest.approx(abs(res["mia"] - 0.5))
    assert 0.0 <= res["fs"] <= 0.5
    assert res["nomus"] == pytest.approx(0.5 * res["test_acc"] + 0.5 * (1 - 2 * res["fs"]))
    assert set(res["losses"]) == {"retain", "forget", "val", "test"}
    assert res["losses"]["forget"].shape == (30,)
    assert all(isinstance(v, float) for k, v in res.items() if k != "losses")

    # deterministic, and no losses unless asked
    again = M.evaluate(model, splits, device="cpu", batch_size=16, seed=0, n_splits=5)
    assert "losses" not in again
    assert {k: v for k, v in res.items() if k != "losses"} == again


def test_evaluate_subset_of_splits_still_gives_mia(splits):
    res = M.evaluate(_model(), splits, device="cpu", splits_to_eval=("retain",), n_splits=3)
    assert "retain_acc" in res and "test_acc" not in res and "forget_acc" not in res
    assert {"mia", "mia_sd", "mia_auc", "fs", "nomus"} <= set(res)


def test_metrics_table_and_save(tmp_path, splits):
    res = M.evaluate(_model(), splits, device="cpu", n_splits=3, return_losses=True)
    results = {"original": res, "other": {**res, "test_acc": 0.1}}
    df = M.metrics_table(results)
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["original", "other"]
    assert list(df.columns[:2]) == ["test_acc", "test_top2"]
    assert {"mia", "mia_auc", "fs", "nomus"} <= set(df.columns)
    assert "losses" not in df.columns
    assert all(dt == np.float64 for dt in df.dtypes)
    assert df.loc["other", "test_acc"] == pytest.approx(0.1)

    json_path, csv_path = M.save_metrics(results, tmp_path / "out" / "metrics.json")
    assert json_path.exists() and csv_path == tmp_path / "out" / "metrics.csv"
    data = json.loads(json_path.read_text())
    assert set(data) == {"original", "other"} and "losses" not in data["original"]
    assert data["original"]["nomus"] == pytest.approx(res["nomus"])
    back = pd.read_csv(csv_path, index_col=0)
    pd.testing.assert_frame_equal(back, df, check_names=False)

    with pytest.raises(TypeError):
        M.metrics_table(res)                # a single result must be wrapped in {name: ...}
