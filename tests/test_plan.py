"""The protocol as one plan of jobs (dlfd_lib.plan) and its two executors (dlfd_lib.executors):
the plan's shape, the same store entries bit for bit in-process and on Ray, and faults: a failed
job reported while the others go on, a killed worker's job redone, a stopped plan continued."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlfd_lib.plan import FAULTS_ENV, PlanContext, build_plan

pytestmark = pytest.mark.xdist_group("ray")  # one Ray per xdist worker: keep the Ray tests together


def _tiny_profile():
    from dlfd_lib.profiles import get_profile
    prof = get_profile("smoke")
    prof["data"].update({"n_train_ids": 12, "imgs_per_id": 4, "n_val_ids": 4, "n_test_ids": 4, "image_size": 32})
    prof["train"].update({"epochs": 1})
    return prof


def _config(**kw):
    from dlfd_lib.protocol import ProtocolConfig
    base = dict(tuning_seeds=[7], eval_seeds=[0], n_trials=1, n_strengths=1, mia_boot=2, n_mia=1, n_boot=200,
                methods=["dlfd", "neggrad"], fixed={"dlfd": {"max_steps": 2}, "neggrad": {"max_steps": 2}})
    return ProtocolConfig(**{**base, **kw})


def test_the_plan_lists_every_job_once_after_the_jobs_it_needs():
    cfg = _config(eval_seeds=[0, 1], ablations=True, ulira_k=2, collapse=True)
    jobs = build_plan(PlanContext(_tiny_profile(), cfg, "unused"))
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    kinds = {}
    for j in jobs:
        kinds[j.kind] = kinds.get(j.kind, 0) + 1
    from dlfd_lib.unlearn.dlfd import ABLATIONS
    n_variants = sum(1 for _, over in ABLATIONS.values() if over)
    assert kinds == {"reference": 6, "tune": 2, "reference_eval": 2, "evaluate": 4, "ablation": 2 * n_variants,
                     "ulira": 1}
    seen = set()
    for j in jobs:  # plan order is a topological order: one worker runs it front to back
        assert set(j.deps) <= seen, (j.id, j.deps)
        seen.add(j.id)
    by_id = {j.id: j for j in jobs}
    assert set(by_id["evaluate/1/dlfd"].deps) == {"reference/1/original", "reference/1/retrained", "tune/dlfd"}
    assert set(by_id["tune/neggrad"].deps) == {"reference/7/original", "reference/7/retrained"}
    assert {"tune/dlfd", "tune/neggrad", "reference/0/retrained"} <= set(by_id["ulira/0"].deps)
    # settings from an earlier tuning: no tune jobs and no tuning seed's references
    cfg0 = _config(n_trials=0, tuned_from="somewhere")
    assert {j.kind for j in build_plan(PlanContext(_tiny_profile(), cfg0, "unused"))} == \
        {"reference", "reference_eval", "evaluate"}


def _store_values(folder: Path) -> dict:
    """Every store entry's key and value, without its provenance and wall times (where and how
    long it ran)."""
    out = {}
    for p in sorted((folder / "store").glob("*.json")):
        data = json.loads(p.read_text())
        value = data["value"]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "seconds"}
        out[p.name] = (data["key"], value)
    return out


@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
    import ray

    from dlfd_lib.executors import start_local_ray
    if not ray.is_initialized():  # the sweep tests may have started it in this worker already
        start_local_ray(num_cpus=2, object_store_mb=100)
    yield ray


def _run(tmp_path, name, executor=None, faults=None, monkeypatch=None):
    from dlfd_lib.protocol import run_protocol
    if faults is not None:
        spec = tmp_path / f"{name}-faults.json"
        spec.write_text(json.dumps(faults))
        monkeypatch.setenv(FAULTS_ENV, str(spec))
    elif monkeypatch is not None:
        monkeypatch.delenv(FAULTS_ENV, raising=False)
    return run_protocol(_tiny_profile(), tmp_path / name, _config(), device="cpu", ckpt_dir=tmp_path / f"{name}-ckpt",
                        progress=False, log=None, executor=executor)


def test_in_process_and_on_ray_the_same_entries_bitwise_and_faults_as_promised(ray_local, tmp_path, monkeypatch):
    from dlfd_lib.executors import RayExecutor
    monkeypatch.setenv("DLFD_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # in this process, at one thread; a job that fails is reported, the others go on, and the
        # same call continues from the store
        with pytest.raises(RuntimeError, match="evaluate/0/neggrad") as err:
            _run(tmp_path, "local", faults={"evaluate/0/neggrad": "raise"}, monkeypatch=monkeypatch)
        assert "run the same command again" in str(err.value)
        assert (tmp_path / "local" / "failures" / "evaluate_0_neggrad.json").is_file()
        assert list((tmp_path / "local" / "store").glob("eval-dlfd-*.json"))  # the others went on
        local = _run(tmp_path, "local", monkeypatch=monkeypatch)
        assert not (tmp_path / "local" / "failures" / "evaluate_0_neggrad.json").exists()
    finally:
        torch.set_num_threads(before)
    # on Ray, one thread per job: a job whose worker is killed is redone by Ray, one that raises is
    # reported while the others go on; the same call continues
    ex = RayExecutor(cpus_per_job=1, retries=1)
    faults = {"evaluate/0/dlfd": "exit", "evaluate/0/neggrad": "raise"}
    with pytest.raises(RuntimeError, match="evaluate/0/neggrad") as err:
        _run(tmp_path, "ray", executor=ex, faults=faults, monkeypatch=monkeypatch)
    assert (tmp_path / "ray-faults.json.evaluate_0_dlfd.fired").is_file()  # its worker was killed ...
    assert "evaluate/0/dlfd" not in str(err.value).split("First traceback")[0]  # ... and the job redone
    on_ray = _run(tmp_path, "ray", executor=ex, monkeypatch=monkeypatch)
    # the same store entries (key and value, bit for bit), the same tuning, the same tables
    assert _store_values(tmp_path / "ray") == _store_values(tmp_path / "local")
    assert on_ray["tuned"] == local["tuned"]
    cols = [c for c in local["rows"].columns if c != "seconds"]
    assert local["rows"][cols].equals(on_ray["rows"][cols])
    assert local["paired"].equals(on_ray["paired"])
    assert json.loads((tmp_path / "ray" / "tuning" / "dlfd.json").read_text())["trials"] == \
        json.loads((tmp_path / "local" / "tuning" / "dlfd.json").read_text())["trials"]
