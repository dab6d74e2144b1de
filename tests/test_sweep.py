"""Issue 17: `dlfd sweep` on Ray – the same rows as run_benchmark, resumable after a killed job,
and a clear message without Ray.

One local Ray with 2 CPUs serves the module (started once: it costs several seconds); every
sweep runs on the smallest data (the smoke profile shrunk further, one epoch) so that the file
stays within ~40 s on two cores. Jobs get one torch thread each, so the sequential reference runs
at one thread too (bitwise equality is asked for).
"""
from __future__ import annotations

import io
import json
import sys

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.xdist_group("ray_sweep")  # one worker, one Ray for the whole file

SEEDS = [0]
METHODS = ["neggrad", "finetune", "random_label"]


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
def ckpt_dir(tmp_path_factory):
    """One checkpoints folder for the module's Ray sweeps: the tuning test reuses the first
    test's reference models of seed 0 instead of training them again."""
    return tmp_path_factory.mktemp("sweep-ckpt")


@pytest.fixture(scope="module")
def sequential(data_root, tmp_path_factory):
    """run_benchmark's rows (the sequential path), at one torch thread like every Ray job."""
    from dlfd_lib.benchmark import run_benchmark
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = run_benchmark(_profile(), SEEDS, methods=METHODS, device="cpu", progress=False,
                            ckpt_dir=tmp_path_factory.mktemp("seq-ckpt"), data_root=str(data_root))
    finally:
        torch.set_num_threads(before)
    return out["rows"]


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
    from dlfd_lib.sweep import start_local_ray
    start_local_ray(num_cpus=2, object_store_mb=100)
    yield ray
    ray.shutdown()


def _same_numbers(a: pd.DataFrame, b: pd.DataFrame):
    """Every column of run_benchmark's rows, in its order, with the same values (``seconds``
    aside: wall time)."""
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.drop(columns="seconds").reset_index(drop=True),
                                  b.drop(columns="seconds").reset_index(drop=True), check_exact=True)


def test_a_ray_sweep_redoes_a_killed_job_reports_a_failed_one_and_gives_the_sequential_numbers(
        ray_local, sequential, data_root, ckpt_dir, tmp_path, monkeypatch):
    """One sweep on a local Ray with two workers: one job kills its own worker half-way, another
    raises, the third goes on. The rerun redoes exactly those two, and the rows (every one made
    by a Ray job at one thread) equal the in-process run_benchmark's, bitwise."""
    from dlfd_lib.sweep import FAULTS_ENV, run_sweep, sweep_tag
    faults = tmp_path / "faults.json"
    # NegGrad's job kills its own worker half-way (its model is saved, its row is not);
    # fine-tune's job raises at the same point; Random-Label's job is left alone
    faults.write_text(json.dumps({"row-seed0-neggrad": "exit", "row-seed0-finetune": "raise"}))
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    kw = dict(profile=_profile(), ckpt_dir=ckpt_dir, device="cpu", retries=0)
    before = {p.name for p in ckpt_dir.glob("*.pt")}
    messages = []
    first = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", log=messages.append, **kw)
    assert first["rows"] is None and "Ray" in first["record"]["runner"]
    assert sorted(first["failed"]) == ["row-seed0-finetune", "row-seed0-neggrad"]
    assert "fault injected into job row-seed0-finetune" in first["failed"]["row-seed0-finetune"]
    assert "Worker" in first["failed"]["row-seed0-neggrad"] or "died" in first["failed"]["row-seed0-neggrad"]
    # reported with its parameters and traceback, while the other jobs went on
    report = json.loads((tmp_path / "out" / "failures" / "row-seed0-finetune.json").read_text())
    assert report["job"] == "row-seed0-finetune" and 'File "' in report["traceback"]
    assert "RuntimeError: fault injected" in report["traceback"]
    assert report["params"]["seed"] == 0 and report["params"]["method"] == "finetune"
    assert any(m.startswith("FAILED row-seed0-neggrad") for m in messages)
    done = sorted(p.stem for p in (tmp_path / "out" / "jobs").glob("*.json"))
    assert done == ["ref-seed0-original", "ref-seed0-retrained", "row-seed0-random_label"]

    second = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", log=None, **kw)  # faults fired once
    assert second["failed"] == {} and second["ran"] == 2 and second["skipped"] == 3
    rows = second["rows"]
    assert not rows.duplicated(["seed", "model"]).any() and len(rows) == len(SEEDS) * (2 + len(METHODS))
    _same_numbers(rows, sequential)
    # the files notebook 03 writes, read back as a notebook would
    csv = tmp_path / "out" / f"03_benchmark_rows_{sweep_tag(_spec())}.csv"
    assert csv.is_file() and second["paths"][0] == csv
    _same_numbers(pd.read_csv(csv), pd.read_csv(io.StringIO(sequential.to_csv(index=False))))
    assert not list((tmp_path / "out" / "failures").glob("*.json"))
    leftovers = [p for p in tmp_path.rglob("*.tmp")] + [p for p in ckpt_dir.rglob("*.tmp")]
    assert leftovers == [], leftovers
    # each model trained or unlearned once, one file each; the cut-off jobs reused the models
    # they had saved before dying
    made = {p.name for p in ckpt_dir.glob("*.pt")} - before  # the module's first sweep: before is empty
    assert not before and len(made) == 2 * len(SEEDS) + len(SEEDS) * len(METHODS)
    for job in ("row-seed0-neggrad", "row-seed0-finetune"):
        assert json.loads((tmp_path / "out" / "jobs" / f"{job}.json").read_text())["result"]["reused"]
    # the same command again: nothing to do, the same rows
    again = run_sweep(_spec(data_root=str(data_root)), tmp_path / "out", log=None, **kw)
    assert again["ran"] == 0 and again["skipped"] == len(SEEDS) * (2 + len(METHODS))
    pd.testing.assert_frame_equal(again["rows"], rows)


def test_without_ray_the_command_says_how_to_install_it_and_no_ray_still_runs(sequential, data_root, tmp_path,
                                                                               monkeypatch, capsys):
    from dlfd_lib.cli import main
    from dlfd_lib.sweep import run_sweep
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code = main(["sweep", "--profile", "smoke", "--seeds", "0", "--methods", "neggrad",
                 "--out", str(tmp_path / "cli"), "--ckpt-dir", str(tmp_path / "cli-ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[ray]'" in err and "--no-ray" in err
    assert not list((tmp_path / "cli-ckpt").glob("*.pt"))  # it stopped before any work
    # the sequential path needs no Ray: one method, the same numbers as run_benchmark's
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_sweep(_spec(methods=["neggrad"], data_root=str(data_root)), tmp_path / "out", profile=_profile(),
                        ckpt_dir=tmp_path / "ckpt", device="cpu", use_ray=False, log=None)
    finally:
        torch.set_num_threads(before)
    assert res["record"]["runner"] == "this process"
    _same_numbers(res["rows"], sequential[sequential["model"].isin(["original", "retrained", "neggrad"])])


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


def test_the_protocols_optuna_tuning_runs_through_the_sweep_with_the_same_trials(ray_local, data_root, ckpt_dir,
                                                                                 tmp_path):
    """Two trials of one study asked at once and run as parallel Ray jobs: the same trials,
    scores and chosen setting as the protocol's sequential tuner (both are TPE's seeded start-up
    trials), written in the protocol's layout; the rows then use the chosen setting."""
    from dlfd_lib.protocol import ProtocolConfig, run_protocol
    from dlfd_lib.sweep import run_sweep
    from dlfd_lib.unlearn import method_defaults
    spec = _spec(seeds=[0], methods=["neggrad"], n_trials=2, tuning_seeds=[100], n_mia=1, trial_batch=2,
                 data_root=str(data_root))
    res = run_sweep(spec, tmp_path / "sweep", profile=_profile(), ckpt_dir=ckpt_dir, device="cpu", log=None)
    assert res["failed"] == {} and res["rows"] is not None
    assert len(list((tmp_path / "sweep" / "store").glob("tune-neggrad-*.json"))) == 2
    cfg = ProtocolConfig(tuning_seeds=[100], eval_seeds=[0], n_trials=2, n_strengths=0, mia_boot=0, n_mia=1,
                         methods=["neggrad"], n_boot=100)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the same reference models (same checkpoints folder), its own store: every trial recomputed
        run_protocol(_profile(), tmp_path / "protocol", cfg, data_root=str(data_root), device="cpu",
                     ckpt_dir=ckpt_dir, progress=False, log=None)
    finally:
        torch.set_num_threads(before)
    ours = json.loads((tmp_path / "sweep" / "tuning" / "neggrad.json").read_text())
    theirs = json.loads((tmp_path / "protocol" / "tuning" / "neggrad.json").read_text())
    assert ours["trials"] == theirs["trials"] and ours["params"] == theirs["params"] == res["tuned"]["neggrad"]
    key = json.loads((tmp_path / "sweep" / "jobs" / "row-seed0-neggrad.json").read_text())["key"]
    assert key["hparams"] == json.loads(json.dumps({**method_defaults("neggrad", "smoke"), **ours["params"]}))
