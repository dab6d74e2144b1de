"""Summaries over seeds and gaps to the retrained model."""
import numpy as np
import pandas as pd
import pytest

from dlfd_lib.benchmark import format_mean_sd, save_benchmark, summarize


def _rows():
    return pd.DataFrame([
        {"seed": 0, "model": "original", "test_acc": 0.60, "fs": 0.20},
        {"seed": 0, "model": "retrained", "test_acc": 0.58, "fs": 0.05},
        {"seed": 0, "model": "dlfd", "test_acc": 0.62, "fs": 0.03},
        {"seed": 1, "model": "original", "test_acc": 0.70, "fs": 0.10},
        {"seed": 1, "model": "retrained", "test_acc": 0.66, "fs": 0.07},
        {"seed": 1, "model": "dlfd", "test_acc": 0.60, "fs": 0.01},
    ])


def test_summary_means_sds_and_per_seed_gaps():
    s = summarize(_rows())
    assert list(s.index) == ["original", "retrained", "dlfd"]
    assert s.loc["dlfd", "test_acc"] == pytest.approx(0.61)
    assert s.loc["dlfd", "test_acc_sd"] == pytest.approx(np.std([0.62, 0.60], ddof=1))
    # gap = mean over seeds of (dlfd - retrained) = ((0.62-0.58) + (0.60-0.66)) / 2
    assert s.loc["dlfd", "test_acc_gap"] == pytest.approx(-0.01)
    assert s.loc["retrained", "fs_gap"] == 0.0
    assert (s["n_seeds"] == 2).all()
    table = format_mean_sd(s, columns=["test_acc", "fs"])
    assert table.loc["dlfd", "test_acc"] == "0.610 (0.014)"


def test_save_benchmark_writes_three_files(tmp_path):
    rows = _rows()
    paths = save_benchmark(rows, summarize(rows), tmp_path, "t", extra={"seeds": [0, 1]})
    assert all(p.exists() for p in paths)
    assert len(pd.read_csv(paths[0])) == 6
