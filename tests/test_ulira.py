"""Tests of dlfd_lib.ulira: the logit-scaled score, per-example Gaussians, the offline and
online statistics on synthetic reference matrices, and a tiny end-to-end run with K=2."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlfd_lib import ulira as U
from dlfd_lib.profiles import PROFILES
from dlfd_lib.train import TrainConfig, train_or_load

from helpers import few_threads, tiny_splits


# --------------------------------------------------------------------------------------------
# the score
# --------------------------------------------------------------------------------------------
def test_logit_confidence_hand_values():
    z = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0]])
    y = np.array([0, 1, 0, 1])
    phi = U.logit_confidence(z, y)
    p = math.exp(2) / (math.exp(2) + 2)
    assert phi[0] == pytest.approx(math.log(p / (1 - p)), rel=1e-12)   # = 2 − log 2
    assert phi[1] == pytest.approx(math.log(0.5), rel=1e-12)           # 1/3 vs 2/3
    assert phi[2] == pytest.approx(1000.0 - math.log(2), rel=1e-12)    # finite where p_y = 1
    assert phi[3] == pytest.approx(-1000.0, rel=1e-9)                  # finite where p_y = 0
    with pytest.raises(ValueError, match="NaN or infinite"):
        U.logit_confidence(np.array([[np.nan, 0.0]]), np.array([0]))


# --------------------------------------------------------------------------------------------
# Gaussians and statistics on synthetic reference matrices
# --------------------------------------------------------------------------------------------
def test_fit_gaussians_recovers_known_parameters():
    rng = np.random.default_rng(0)
    n, k = 50, 4000
    mu = rng.normal(0, 3, n)
    sd = rng.uniform(0.5, 2.0, n)
    phi = rng.normal(mu, sd, (k, n))
    m, s, mode = U.fit_gaussians(phi, variance="auto")
    assert mode == "per_example"
    np.testing.assert_allclose(m, mu, atol=5 * 2.0 / math.sqrt(k))
    np.testing.assert_allclose(s, sd, rtol=0.06)


def test_fit_gaussians_global_and_floor():
    phi = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 9.0]])   # per-example var (ddof 1): 2, 0, 8
    m, s, mode = U.fit_gaussians(phi, variance="per_example", min_sd=0.1)
    np.testing.assert_allclose(m, [1.0, 1.0, 7.0])
    np.testing.assert_allclose(s, [math.sqrt(2), 0.1, math.sqrt(8)])
    m, s, mode = U.fit_gaussians(phi)                     # K=2 < 16: pooled
    assert mode == "global"
    np.testing.assert_allclose(s, math.sqrt((2 + 0 + 8) / 3))
    with pytest.raises(ValueError, match="at least 2"):
        U.fit_gaussians(phi[:1])
    with pytest.raises(ValueError, match="variance"):
        U.fit_gaussians(phi, variance="pooled")
    with pytest.raises(ValueError, match="NaN or infinite"):
        U.fit_gaussians(np.array([[0.0, np.inf], [1.0, 1.0]]))


def test_ulira_scores_numeric():
    mu_out, sd_out = np.array([0.0, 1.0, -2.0]), np.array([1.0, 2.0, 0.5])
    phi = mu_out + np.array([2.0, 0.0, -1.0]) * sd_out      # z = 2, 0, −1
    s = U.ulira_scores(phi, mu_out, sd_out)
    np.testing.assert_allclose(s["z"], [2.0, 0.0, -1.0])
    np.testing.assert_allclose(s["pvalue"], [0.022750131948179, 0.5, 0.841344746068543],
                               rtol=1e-10)
    np.testing.assert_allclose(s["score"], -np.log(s["pvalue"]), rtol=1e-10)
    # far tail: the p-value underflows to 0 but −log p stays finite
    far = U.ulira_scores(np.array([60.0]), np.array([0.0]), np.array([1.0]))
    mills = 1800 + math.log(60 * math.sqrt(2 * math.pi))   # −log sf(z) ≈ z²/2 + log(z √(2π))
    assert np.isfinite(far["score"][0]) and far["score"][0] == pytest.approx(mills, rel=1e-4)

    mu_in, sd_in = np.array([3.0, 3.0, 3.0]), np.array([1.0, 1.0, 1.0])
    s = U.ulira_scores(phi, mu_out, sd_out, mu_in, sd_in)

    def logpdf(x, m, sd):
        return -0.5 * ((x - m) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(s["llr"], logpdf(phi, mu_in, sd_in) - logpdf(phi, mu_out, sd_out),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="both"):
        U.ulira_scores(phi, mu_out, sd_out, mu_in=mu_in)
    with pytest.raises(ValueError, match="> 0"):
        U.ulira_scores(phi, mu_out, np.zeros(3))
    with pytest.raises(ValueError, match="one value per example"):
        U.ulira_scores(phi[:2], mu_out, sd_out)


def test_synthetic_calibration_and_power():
    """References and a target drawn from known per-example Gaussians: an "out" target gives
    ~5 % of p-values below 0.05 and AUC ~0.5; a target shifted up on the members is found."""
    rng = np.random.default_rng(1)
    n, k = 2000, 64
    mu = {s: rng.normal(0, 3, n) for s in ("forget", "test")}
    sd = {s: rng.uniform(0.5, 1.5, n) for s in ("forget", "test")}
    stats = U.ReferenceStats.from_scores(
        {s: rng.normal(mu[s], sd[s], (k, n)) for s in mu}, variance="per_example")
    assert stats.k == k and stats.variance == "per_example"

    def run(shift):
        target = {s: rng.normal(mu[s], sd[s]) + (shift * sd[s] if s == "forget" else 0)
                  for s in mu}
        out = {s: U.ulira_scores(target[s], stats.mu[s], stats.sd[s]) for s in mu}
        y = np.r_[np.ones(n), np.zeros(n)]
        auc = roc_auc_score(y, np.r_[out["forget"]["score"], out["test"]["score"]])
        return auc, {s: float((out[s]["pvalue"] < 0.05).mean()) for s in mu}

    auc, share = run(0.0)
    se = math.sqrt(0.05 * 0.95 / n)
    assert abs(auc - 0.5) < 0.04
    # K = 64 estimated parameters widen the t-like tails a little: allow 4 SE plus 1 %
    assert abs(share["forget"] - 0.05) < 4 * se + 0.01 and abs(share["test"] - 0.05) < 4 * se + 0.01
    auc, share = run(3.0)
    assert auc > 0.95 and share["forget"] > 0.8 and abs(share["test"] - 0.05) < 4 * se + 0.01

    # the global pooled sd is shared by both splits
    g = U.ReferenceStats.from_scores(stats.phi, variance="global")
    assert g.variance == "global"
    assert np.unique(np.r_[g.sd["forget"], g.sd["test"]]).size == 1
    pooled = math.sqrt(np.mean(np.r_[sd["forget"], sd["test"]] ** 2))
    assert g.sd["forget"][0] == pytest.approx(pooled, rel=0.05)


def test_reference_seeds():
    assert U._resolve_seeds(3, None) == [U.REFERENCE_SEED_BASE + i for i in range(3)]
    with pytest.raises(ValueError, match="one seed per"):
        U._resolve_seeds(3, [1, 2])
    with pytest.raises(ValueError, match="repeat"):
        U._resolve_seeds(2, [4, 4])


# --------------------------------------------------------------------------------------------
# end to end: K = 2 tiny reference models
# --------------------------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """Tiny models train 5-10x faster with one intra-op thread when the CPU cores are shared
    (OpenMP threads otherwise spin against other processes); the setting is restored after."""
    with few_threads(1):
        yield


def test_end_to_end_tiny(tmp_path, one_thread):
    splits = tiny_splits(n_per_class=4)                 # 12 retain, 12 forget, 12 test
    cfg = TrainConfig.from_profile({**PROFILES["smoke"], "train": {**PROFILES["smoke"]["train"],
                                                                   "epochs": 1}})
    refs = U.train_references(splits, cfg, k=2, device="cpu", ckpt_dir=tmp_path, progress=False)
    assert len(refs) == 2
    assert len(list(tmp_path.glob("*-retrained-seed100[01]-*.pt"))) == 2
    again = U.train_references(splits, cfg, k=2, device="cpu", ckpt_dir=tmp_path, progress=False)
    for a, b in zip(refs, again):                       # reused from the checkpoint cache
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    ins = U.train_references(splits, cfg, k=2, seeds=[11, 12], device="cpu", ckpt_dir=tmp_path,
                             role="original", progress=False)
    target, _ = train_or_load("retrained", splits, cfg, seed=7, device="cpu", ckpt_dir=tmp_path,
                              progress=False)

    out_stats = U.reference_stats(refs, splits, batch_size=64)
    assert out_stats.phi["forget"].shape == (2, 12) and out_stats.phi["test"].shape == (2, 12)
    assert out_stats.variance == "global"

    res = U.ulira(target, splits, refs, ins, batch_size=64)
    df = res.per_example
    assert isinstance(df, pd.DataFrame) and len(df) == 24
    assert list(df["split"].value_counts().sort_index()) == [12, 12]
    assert {"split", "index", "member", "phi", "mu_out", "sd_out", "z", "pvalue", "score",
            "mu_in", "sd_in", "llr"} <= set(df.columns)
    num = df.drop(columns=["split"]).to_numpy(dtype=float)
    assert np.all(np.isfinite(num))
    np.testing.assert_array_equal(df.loc[df["split"] == "test", "index"], np.arange(12))
    s = res.summary
    for key in ("auc", "tpr_at_1fpr", "forget_share_p", "test_share_p", "auc_online",
                "tpr_at_1fpr_online"):
        assert 0.0 <= s[key] <= 1.0, key
    assert s["k_out"] == 2 and s["k_in"] == 2 and s["n_forget"] == 12 and s["n_test"] == 12

    # several targets, references scored once; same numbers as the single call
    many = U.ulira_many({"retrained_seed7": target, "original_seed11": ins[0]}, splits,
                        out_stats, batch_size=64)
    table = U.ulira_table(many)
    assert list(table.index) == ["retrained_seed7", "original_seed11"]
    assert "llr" not in many["retrained_seed7"].per_example
    np.testing.assert_allclose(many["retrained_seed7"].per_example["score"], df["score"])
    assert table.loc["retrained_seed7", "auc"] == pytest.approx(s["auc"])
