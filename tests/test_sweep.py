"""`dlfd sweep`: the protocol's plan at a notebook's sizes – run_benchmark's rows with the same
numbers, notebook 03's files, the models the notebooks reuse, a failed job reported and redone on
Ray, and a clear message without Ray. (The executors themselves: tests/test_plan.py.)"""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.xdist_group("ray")  # one worker, one Ray for the Ray tests

SEEDS = [0]
METHODS = ["neggrad", "finetune"]


def _profile():
    from dlfd_lib.profiles import get_profile
    prof = get_profile("smoke")
    prof["data"].update(n_train_ids=12, imgs_per_id=4, n_val_ids=4, n_test_ids=4)
    prof["train"]["epochs"] = 1
    return prof


def _spec(**kw):
    from dlfd_lib.sweep import SweepSpec
    return SweepSpec("smoke", seeds=kw.pop("seeds", SEEDS), methods=kw.pop("methods", METHODS), **kw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep-data")


@pytest.fixture(scope="module")
def sequential(data_root, tmp_path_factory):
    """run_benchmark's rows (the notebooks' path), at one torch thread like every sweep job here."""
    from dlfd_lib.benchmark import run_benchmark
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = run_benchmark(_profile(), SEEDS, methods=METHODS, device="cpu", progress=False,
                            ckpt_dir=tmp_path_factory.mktemp("seq-ckpt"), data_root=str(data_root))
    finally:
        torch.set_num_threads(before)
    return out["rows"]


def _same_numbers(a: pd.DataFrame, b: pd.DataFrame):
    """Every column of run_benchmark's rows, in its order, with the same values (``seconds``
    aside: wall time)."""
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.drop(columns="seconds").reset_index(drop=True),
                                  b.drop(columns="seconds").reset_index(drop=True), check_exact=True)


def test_a_sweep_is_the_protocols_plan_with_run_benchmarks_rows_and_files(sequential, data_root, tmp_path):
    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.sweep import run_sweep, sweep_tag
    kw = dict(profile=_profile(), ckpt_dir=tmp_path / "ckpt", device="cpu", use_ray=False, log=None)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", **kw)
        assert res["record"]["runner"] == "this process" and res["failed"] == {}
        _same_numbers(res["rows"], sequential)
        # notebook 03's files, and the store and tuning folders of the protocol's layout
        csv = tmp_path / "out" / f"03_benchmark_rows_{sweep_tag(_spec())}.csv"
        assert csv.is_file() and res["paths"][0] == csv
        assert len(list((tmp_path / "out" / "store").glob("eval-neggrad-*.json"))) == 1
        assert json.loads((tmp_path / "out" / "tuning" / "neggrad.json").read_text())["params"] == {}
        # the same command again runs nothing and gives the same rows
        again = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", **kw)
        assert again["ran"] == [] and json.loads((tmp_path / "out" / "sweep.json").read_text())["complete"]
        pd.testing.assert_frame_equal(again["rows"], res["rows"])
        # a notebook with the same checkpoint folder reuses the models the sweep kept
        nb = run_benchmark(_profile(), SEEDS, methods=METHODS, device="cpu", progress=False,
                           ckpt_dir=tmp_path / "ckpt", data_root=str(data_root))
        assert all(nb["infos"][(0, m)]["reused"] for m in METHODS)
        # and a sweep into another folder reuses them too: each row keeps the seconds of the run that
        # made its model (a model unlearned again would carry its own, new timing)
        other = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out-2", **kw)
        pd.testing.assert_frame_equal(other["rows"], res["rows"])
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
    import ray

    from dlfd_lib.executors import start_local_ray
    if not ray.is_initialized():
        start_local_ray(num_cpus=2, object_store_mb=100)
    yield ray


def test_on_ray_a_failed_job_is_reported_the_others_go_on_and_the_rerun_finishes(
        ray_local, sequential, data_root, tmp_path, monkeypatch):
    from dlfd_lib.sweep import FAULTS_ENV, run_sweep
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"evaluate/0/finetune": "raise"}))
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    kw = dict(profile=_profile(), ckpt_dir=tmp_path / "ckpt", device="cpu", retries=0)
    messages = []
    first = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", log=messages.append, **kw)
    assert first["rows"] is None and "Ray" in first["record"]["runner"]
    assert sorted(first["failed"]) == ["evaluate/0/finetune"]
    report = json.loads((tmp_path / "out" / "failures" / "evaluate_0_finetune.json").read_text())
    assert report["job"] == "evaluate/0/finetune" and "fault injected" in report["traceback"]
    assert "evaluate/0/neggrad" in first["ran"] and any("FAILED" in m for m in messages)
    second = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", log=None, **kw)  # the fault fired once
    assert second["failed"] == {} and not list((tmp_path / "out" / "failures").glob("*.json"))
    _same_numbers(second["rows"], sequential)  # Ray jobs at one thread, run_benchmark at one thread


def test_without_ray_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from dlfd_lib.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code = main(["sweep", "--profile", "smoke", "--seeds", "0", "--methods", "neggrad",
                 "--out", str(tmp_path / "cli"), "--ckpt-dir", str(tmp_path / "cli-ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[ray]'" in err and "--no-ray" in err
    assert not list((tmp_path / "cli-ckpt").glob("*.pt"))  # it stopped before any work
    code = main(["sweep", "--profile", "smoke", "--no-ray", "--trial-batch", "4", "--out", str(tmp_path / "tb")])
    assert code == 2 and "trial order" in capsys.readouterr().err


def test_a_results_folder_refuses_a_sweep_of_other_settings(tmp_path):
    from dlfd_lib.sweep import SweepSpec, run_sweep
    from dlfd_lib.utils import save_json
    spec = SweepSpec("smoke", seeds=[0], methods=["neggrad"])
    save_json({"context": {**spec.context(_profile()), "n_mia": 99}}, tmp_path / "sweep.json")
    with pytest.raises(ValueError, match="n_mia"):
        run_sweep(spec, tmp_path, profile=_profile(), use_ray=False, log=None)
    with pytest.raises(ValueError, match="both tuning and evaluation"):
        SweepSpec("smoke", seeds=[0], n_trials=2, tuning_seeds=[0])
    with pytest.raises(KeyError, match="unknown method"):
        SweepSpec("smoke", seeds=[0], methods=["nope"])
