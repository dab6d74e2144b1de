"""Issue 15: split discipline, the tuner, paired statistics, fronts and the resumable protocol."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dlfd_lib.data.splits import SplitDataset
from dlfd_lib.data.view import (MethodSplits, TestSplitAccessError, method_view, tuning_validation,
                                validation_halves)
from dlfd_lib.fronts import describe_fronts, front_leaders, mark_fronts, pareto_front
from dlfd_lib.attacks import mia
from dlfd_lib.inference import predict
from dlfd_lib.stats import (add_reference_gaps, avg_gap, mia_sampling_sd, paired_bootstrap,
                            paired_table, verdict)
from dlfd_lib.unlearn import available_methods, register, unlearn
from dlfd_lib.unlearn import registry as registry_mod
from dlfd_lib.unlearn.dlfd import DLFDMonitor

ROOT = Path(__file__).resolve().parents[1]


class _Tripwire:
    """An image source that records every read (the test split of a poisoned dataset)."""

    def __init__(self, n, size):
        self.n, self.size, self.reads = n, size, 0

    def __len__(self):
        return self.n

    def get(self, i):
        self.reads += 1
        return torch.zeros(3, self.size, self.size, dtype=torch.uint8)

    def subset(self, idx):
        self.reads += 1
        return self


# ---------------------------------------------------------------------------------------------
# split discipline
def test_view_refuses_every_way_to_the_test_split(splits):
    view = method_view(splits)
    for reach in (lambda v: v.test, lambda v: v.split("test"), lambda v: v.dataset("test"),
                  lambda v: v.loader("test"), lambda v: v.labels("test"), lambda v: v.identities("test")):
        with pytest.raises(TestSplitAccessError, match="final evaluation"):
            reach(view)
    assert "test" not in view.sizes() and "test" not in view.summary().index
    with pytest.raises(AttributeError):
        view.full
    with pytest.raises(AttributeError, match="read-only"):
        view.test = None
    # what a method needs is there, with the monitor half of the validation people as val
    assert len(view.retain) == len(splits.retain) and view.num_classes == splits.num_classes
    assert view.val is not splits.val and 0 < len(view.val) < len(splits.val)
    assert isinstance(method_view(view), MethodSplits)


def test_validation_halves_are_disjoint_whole_people_and_cover_val(splits):
    halves = validation_halves(splits)
    mon, tune = halves["monitor"], halves["tune"]
    assert len(np.intersect1d(mon, tune)) == 0 and sorted(np.r_[mon, tune]) == list(range(len(splits.val)))
    ids = splits.val.identities
    assert not set(ids[mon]) & set(ids[tune]), "a person is in both halves"
    assert len(tuning_validation(splits)) == len(tune)
    assert set(method_view(splits).val.identities) == set(ids[mon])


def test_the_registry_hands_methods_a_view_without_test(splits, model):
    seen = {}

    @dataclasses.dataclass
    class PeekHparams:
        look: bool = True

    @register("_peek_at_test", PeekHparams)
    def peek(model, splits, hp, *, device, seed, progress):
        seen["type"] = type(splits)
        if hp.look:
            splits.test
        return [], {}

    try:
        with pytest.raises(TestSplitAccessError, match="must not read it"):
            unlearn("_peek_at_test", model, splits, device="cpu", progress=False)
        assert seen["type"] is MethodSplits
    finally:
        registry_mod._METHODS.pop("_peek_at_test", None)


def test_no_registered_method_reads_the_test_split(splits, model):
    """Every registered method runs (smoke settings) on data whose test split records reads; any
    read – through the view (TestSplitAccessError) or around it (the tripwire) – fails."""
    trip = _Tripwire(len(splits.test), splits.image_size)
    poisoned = type(splits)(splits.name, splits.task, splits.class_names, splits.retain, splits.forget,
                            splits.val, SplitDataset(trip, splits.test.labels, splits.test.transform,
                                                     splits.test.identities), splits.image_size)
    from dlfd_lib.unlearn import get_method
    for name in available_methods():
        if name.startswith("_"):
            continue
        hp = get_method(name).hparams  # the shortest run each method allows
        caps = {k: v for k, v in {"max_steps": 2, "epochs": 1}.items() if k in hp}
        unlearn(name, model, poisoned, profile="smoke", device="cpu", seed=0, progress=False, **caps)
    assert trip.reads == 0


def test_dlfd_monitor_reads_forget_vs_validation_balanced_and_seeded(splits, model):
    view = method_view(splits)
    # 12 forget vs 8 validation images: balancing matters (on this model 0.26 balanced, 0.60 not)
    mon = DLFDMonitor(view, size=None, val_size=None, batch_size=64, seed=0, device=torch.device("cpu"), amp=False)
    got = mon(model)
    f = predict(model, torch.utils.data.DataLoader(view.forget, batch_size=64), "cpu", amp=False)["losses"]
    v = predict(model, torch.utils.data.DataLoader(view.val, batch_size=64), "cpu", amp=False)
    want = mia(f[mon.forget_idx], v["losses"][mon.mia_val_idx], seed=0, balance=True)
    unbalanced = mia(f[mon.forget_idx], v["losses"][mon.mia_val_idx], seed=0, balance=False)
    assert abs(want["mia"] - unbalanced["mia"]) > 0.1  # the check below can tell the two apart
    assert got["mia"] == pytest.approx(want["mia"], abs=1e-9)
    assert len(mon.forget_idx) == len(view.forget) and len(mon.mia_val_idx) == len(view.val) == 8
    small = DLFDMonitor(view, size=6, val_size=None, batch_size=64, seed=3, device=torch.device("cpu"), amp=False)
    assert len(small.forget_idx) == 6 and len(small.mia_val_idx) == 6  # fixed seeded subsamples
    assert small.mia_val_idx.max() < len(view.val)  # indices into the monitor half, not the test split
    # the released monitor: all forget vs all (method-visible) validation, unbalanced, random_state 0
    rel = DLFDMonitor(view, size=8, val_size=None, batch_size=64, seed=3, device=torch.device("cpu"),
                      unbalanced=True, amp=False)
    want = mia(f, v["losses"], seed=0, balance=False)
    assert rel(model)["mia"] == pytest.approx(want["mia"], abs=1e-9)
    assert rel(model) == rel(model), "the released monitor is deterministic"


# ---------------------------------------------------------------------------------------------
# statistics
def test_avg_gap_and_reference_gaps():
    rows = pd.DataFrame([
        {"seed": 0, "model": "retrained", "retain_acc": .9, "forget_acc": .6, "test_acc": .6, "mia": .55},
        {"seed": 0, "model": "m", "retain_acc": .8, "forget_acc": .7, "test_acc": .5, "mia": .50},
        {"seed": 1, "model": "retrained", "retain_acc": .9, "forget_acc": .6, "test_acc": .6, "mia": .60},
        {"seed": 1, "model": "m", "retain_acc": .9, "forget_acc": .6, "test_acc": .6, "mia": .50}])
    out = add_reference_gaps(rows)
    m = out[out.model == "m"].set_index("seed")
    assert m.loc[0, "avg_gap"] == pytest.approx((.1 + .1 + .1 + .05) / 4)
    assert m.loc[1, "avg_gap"] == pytest.approx(.1 / 4) and m.loc[1, "abs_mia_gap"] == pytest.approx(.1)
    assert (out[out.model == "retrained"]["avg_gap"] == 0).all()
    with pytest.raises(ValueError, match="seed"):
        add_reference_gaps(rows[rows.model == "m"].assign(model="x").pipe(
            lambda r: pd.concat([r, rows.iloc[[0]]])))
    with pytest.raises(KeyError, match="missing"):
        avg_gap({"test_acc": 1}, {"test_acc": 1})


def test_paired_bootstrap_and_verdicts():
    clear = paired_bootstrap([0.05, 0.06, 0.04, 0.05, 0.07], seed=1)
    assert 0.04 <= clear["lo"] < clear["mean"] < clear["hi"] <= 0.07
    assert verdict(clear["lo"], clear["hi"], higher_is_better=True) == "better"
    assert verdict(clear["lo"], clear["hi"], higher_is_better=False) == "worse"
    mixed = paired_bootstrap([0.05, -0.06, 0.04, -0.05, 0.01], seed=1)
    assert mixed["lo"] < 0 < mixed["hi"] and verdict(mixed["lo"], mixed["hi"], True) == "cannot tell"
    one = paired_bootstrap([0.3])
    assert verdict(one["lo"], one["hi"], True) == "cannot tell"
    assert paired_bootstrap([0.1, 0.2, 0.3], seed=4) == paired_bootstrap([0.1, 0.2, 0.3], seed=4)


def test_paired_t_interval_and_p_match_scipy():
    from scipy import stats as st
    from dlfd_lib.stats import paired_t
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 8):
        a, b = rng.normal(0.6, 0.05, n), rng.normal(0.58, 0.05, n)
        t = paired_t(a - b)
        ref = st.ttest_rel(a, b)
        lo, hi = st.t.interval(0.95, df=n - 1, loc=np.mean(a - b), scale=st.sem(a - b))
        assert t["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert (t["lo"], t["hi"]) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
        assert t["n"] == n
    # 5 seeds: the t interval is wider than the percentile bootstrap's (the reason it decides)
    d = [0.02, 0.05, -0.01, 0.04, 0.03]
    t, b = paired_t(d), paired_bootstrap(d, seed=0)
    assert t["lo"] < b["lo"] and t["hi"] > b["hi"]
    assert np.isnan(paired_t([0.1])["lo"]) and paired_t([0.1])["n"] == 1


def test_holm_adjustment_by_hand_and_by_its_definition():
    from dlfd_lib.stats import holm
    # textbook: p = .01, .04, .03, .005 (m = 4) -> sorted .005 .01 .03 .04 -> x4 x3 x2 x1
    # = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.2, np.nan, 0.9, 0.5])  # NaN is no comparison: m = 3
    assert np.isnan(got[1]) and got[[0, 2, 3]] == pytest.approx([0.6, 1.0, 1.0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.uniform(0, 0.2, 7)
        order = np.argsort(p)
        m = len(p)
        ref = np.empty(m)
        for i, idx in enumerate(order):
            ref[idx] = min(1.0, max((m - j) * p[order[j]] for j in range(i + 1)))
        assert holm(p) == pytest.approx(ref)
        assert (holm(p) >= p).all()


def test_paired_table_pairs_by_seed():
    # the seed effect (+0.2 per seed) dominates the spread; the pairs differ by exactly +0.01
    rows = pd.DataFrame([{"seed": s, "model": m, "test_acc": 0.2 * s + (0.01 if m == "a" else 0.0)}
                         for s in range(5) for m in ("dlfd", "a")])
    t = paired_table(rows, metrics=("test_acc",), n_boot=2000).set_index("model")
    assert t.loc["a", "diff"] == pytest.approx(0.01) and t.loc["a", "verdict"] == "better"
    assert t.loc["a", "n_seeds"] == 5
    # the t interval decides; the bootstrap interval and Holm's p sit beside it
    assert {"boot_lo", "boot_hi", "p", "p_holm"} <= set(t.columns)
    rows2 = pd.DataFrame([{"seed": s, "model": m, "test_acc": 0.2 * s + off + 0.01 * ((s * 7 + k) % 3)}
                          for s in range(5) for k, (m, off) in enumerate((("dlfd", 0), ("a", 0.02), ("b", 0.0)))])
    t2 = paired_table(rows2, metrics=("test_acc",), n_boot=2000).set_index("model")
    from dlfd_lib.stats import holm
    assert list(t2["p_holm"]) == pytest.approx(list(holm(t2["p"].to_numpy())))
    assert (t2["p_holm"] >= t2["p"]).all()
    with pytest.raises(KeyError, match="baseline"):
        paired_table(rows, baseline="nope")


def test_mia_sampling_sd_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small = mia_sampling_sd(rng.normal(0.0, 1, 60), rng.normal(0.3, 1, 60), n_boot=20, seed=0)
    large = mia_sampling_sd(rng.normal(0.0, 1, 960), rng.normal(0.3, 1, 960), n_boot=20, seed=0)
    assert 0.02 < small and large < small / 2


# ---------------------------------------------------------------------------------------------
# fronts
def test_hypervolume_by_hand():
    from dlfd_lib.fronts import HV_REFERENCE, hypervolume, hypervolumes
    assert HV_REFERENCE == (0.5, 0.0)
    one = pd.DataFrame({"abs_mia_gap": [0.1], "test_acc": [0.6]})
    assert hypervolume(one) == pytest.approx(0.4 * 0.6)
    # two front points and a dominated one: 0.4*0.5 + (0.5-0.2)*(0.6-0.5) ... as strips:
    # x in [0.1, 0.2): height 0.5; x in [0.2, 0.5): height 0.6
    pts = pd.DataFrame({"abs_mia_gap": [0.2, 0.1, 0.3], "test_acc": [0.6, 0.5, 0.4]})
    assert hypervolume(pts) == pytest.approx(0.1 * 0.5 + 0.3 * 0.6)
    # a better point anywhere can only add area; points beyond the reference add none
    more = pd.concat([pts, pd.DataFrame({"abs_mia_gap": [0.05], "test_acc": [0.55]})])
    assert hypervolume(more) > hypervolume(pts)
    beyond = pd.concat([pts, pd.DataFrame({"abs_mia_gap": [0.6, 0.0], "test_acc": [0.9, -0.1]})])
    assert hypervolume(beyond) == pytest.approx(hypervolume(pts))
    assert hypervolume(pts.iloc[:0]) == 0.0
    rows = pd.concat([pts.assign(seed=0, model="a"), one.assign(seed=0, model="b"), one.assign(seed=1, model="a")])
    hv = hypervolumes(rows).set_index(["seed", "model"])
    assert hv.loc[(0, "a"), "hypervolume"] == pytest.approx(hypervolume(pts))
    assert hv.loc[(1, "a"), "n_points"] == 1 and len(hv) == 3


def test_pareto_fronts_and_leaders():
    pts = pd.DataFrame([
        {"model": "a", "abs_mia_gap": 0.01, "test_acc": 0.50}, {"model": "a", "abs_mia_gap": 0.05, "test_acc": 0.60},
        {"model": "a", "abs_mia_gap": 0.06, "test_acc": 0.55},  # dominated by a's second point
        {"model": "b", "abs_mia_gap": 0.02, "test_acc": 0.58}, {"model": "b", "abs_mia_gap": 0.10, "test_acc": 0.70}])
    front = pareto_front(pts[pts.model == "a"])
    assert list(front["test_acc"]) == [0.50, 0.60]
    marked = mark_fronts(pts)
    assert list(marked["on_front"]) == [True, True, False, True, True]
    lead = front_leaders(pts).set_index("budget")
    assert lead.loc[0.01, "leader"] == "a" and lead.loc[0.02, "leader"] == "b"
    assert lead.loc[0.05, "leader"] == "a" and lead.loc[0.1, "leader"] == "b"
    text = describe_fronts(pts)
    assert len(text) == 4 and text[0].startswith("|MIA gap| ≤ 0.010: a's front")
    assert "b's front" in text[1] and "ahead of a by at least 0.080" in text[1]


# ---------------------------------------------------------------------------------------------
# the protocol end to end (smoke profile, tiny data) and its resumption
def _tiny_profile():
    from dlfd_lib.profiles import get_profile
    prof = get_profile("smoke")
    prof["data"].update({"n_train_ids": 12, "imgs_per_id": 4, "n_val_ids": 4, "n_test_ids": 4, "image_size": 32})
    prof["train"].update({"epochs": 1})
    return prof


def test_protocol_end_to_end_and_second_run_reuses_everything(tmp_path, monkeypatch):
    from dlfd_lib import protocol as proto
    from dlfd_lib.protocol import ProtocolConfig, run_protocol

    monkeypatch.setenv("DLFD_CACHE", str(tmp_path / "cache"))
    import dlfd_lib.unlearn.dlfd as dlfd_mod
    monkeypatch.setattr(dlfd_mod, "ABLATIONS", {k: dlfd_mod.ABLATIONS[k] for k in
                                                ("DLFD (paper)", "no perturbation (K = 0)", "no OT term")})
    cfg = ProtocolConfig(tuning_seeds=[7], eval_seeds=[0, 1], n_trials=2, n_strengths=1, mia_boot=2,
                         n_mia=1, n_boot=500, methods=["dlfd", "neggrad"],
                         fixed={"dlfd": {"max_steps": 2}, "neggrad": {"max_steps": 2}}, collapse=True,
                         ablations=True, ulira_k=2)
    kw = dict(config=cfg, device="cpu", ckpt_dir=tmp_path / "ckpt", progress=False, log=None)
    stages = []
    r = run_protocol(_tiny_profile(), tmp_path / "out", on_stage=stages.append, **kw)
    rows = r["rows"]
    # provenance: every stage handed over and timed; every store entry says where it was computed
    assert stages == ["references seed 7", "tune dlfd", "tune neggrad", "evaluate seed 0", "evaluate seed 1",
                      "ablations seed 0", "ablations seed 1", "per-example test seed 0", "statistics"]
    timed = json.loads((tmp_path / "out" / "stages.json").read_text())
    assert [t["stage"] for t in timed] == stages[:-1] and all(t["seconds"] > 0 for t in timed)
    entry = json.loads(next((tmp_path / "out" / "store").glob("eval-dlfd-*.json")).read_text())
    prov = entry["provenance"]
    assert prov["precision"] == "float32" and prov["torch"] == torch.__version__ and prov["cpu"]
    assert entry["key"]["numbers"] == proto.NUMBERS_VERSION and "git" in prov and "cpu_flags" in prov
    # the fronts as one number per front seed and method, paired against DLFD
    hv = r["hypervolume"]
    assert sorted(map(tuple, hv[["seed", "model"]].to_numpy().tolist())) == [(0, "dlfd"), (0, "neggrad"), (1, "dlfd"), (1, "neggrad")]
    assert (hv["hypervolume"] >= 0).all() and (hv["n_points"] >= 2).all()
    assert list(r["hypervolume_paired"]["model"]) == ["neggrad"]
    # the ablations: every variant on every evaluation seed, on top of DLFD's tuned setting; the
    # paper's row is the tuned DLFD's own evaluation, and the others are paired against it
    ab = r["ablations"]
    assert sorted(map(tuple, ab[~ab["model"].isin(["original", "retrained"])][["seed", "model"]].to_numpy().tolist())) == \
        sorted((s, m) for s in (0, 1) for m in ("DLFD (paper)", "no perturbation (K = 0)", "no OT term"))
    paper = ab[ab["model"] == "DLFD (paper)"].set_index("seed")["test_acc"]
    assert paper.to_dict() == rows[rows["model"] == "dlfd"].set_index("seed")["test_acc"].to_dict()
    assert set(r["ablations_paired"]["model"]) == {"no perturbation (K = 0)", "no OT term"}
    # the per-example test of every model on the first evaluation seed
    assert {"original", "retrained", "dlfd", "neggrad"} <= set(r["ulira"]["model"])
    assert len(list((tmp_path / "ckpt").glob("*-retrained-seed100[01]-*.pt"))) == 2  # its K = 2 references
    assert set(rows["model"]) == {"original", "retrained", "dlfd", "neggrad"}
    assert sorted(set(rows["seed"])) == [0, 1] and 7 not in set(rows["seed"])  # tuning seed never evaluated
    assert {"avg_gap", "abs_mia_gap", "mia_sampling_sd", "nomus"} <= set(rows.columns)
    tuned = json.loads((tmp_path / "out" / "tuning" / "dlfd.json").read_text())
    assert tuned["n_trials"] == 2 and tuned["params"]["threshold_mode"] == "relative"
    assert (tmp_path / "out" / "tuning" / "dlfd.journal").exists()
    assert set(r["paired"]["model"]) == {"neggrad"}  # the methods only: one Holm family per metric
    assert set(r["paired"]["verdict"]) <= {"better", "worse", "cannot tell"}
    pts = r["points"]
    assert set(pts["model"]) == {"dlfd", "neggrad"} and pts["on_front"].any()
    assert (pts.groupby("model").size() >= 2).all() and r["fronts_text"]
    # collapse measures: every reference and every method at its tuned setting, on every seed
    col = r["collapse"]
    assert sorted(map(tuple, col[["seed", "model"]].to_numpy().tolist())) == sorted(
        (s, m) for s in (0, 1) for m in ("original", "retrained", "dlfd", "neggrad"))
    orig = col[col["model"] == "original"]
    assert np.allclose(orig["cka_to_original_test"], 1.0, atol=1e-6)  # CKA of a model to itself
    assert (col[col["model"] != "original"]["cka_to_original_test"] < 1 - 1e-6).all()
    assert set(r["collapse_paired"]["metric"]) == {"probe_acc", "silhouette"}
    assert set(r["collapse_paired"]["model"]) == {"neggrad"}
    assert (tmp_path / "out" / "collapse.csv").exists()
    n_files = len(list((tmp_path / "out" / "store").glob("*.json")))

    # a second invocation: no unlearning, no training, no trial is run again
    calls = []
    import dlfd_lib.unlearn as unlearn_mod
    monkeypatch.setattr(unlearn_mod, "unlearn", lambda *a, **k: calls.append(a) or pytest.fail("recomputed"))
    import dlfd_lib.train as train_mod
    monkeypatch.setattr(train_mod, "train_model", lambda *a, **k: pytest.fail("retrained a reference"))
    again = run_protocol(_tiny_profile(), tmp_path / "out", **kw)
    assert not calls and len(list((tmp_path / "out" / "store").glob("*.json"))) == n_files
    assert json.loads((tmp_path / "out" / "stages.json").read_text()) == timed  # nothing computed, nothing timed
    pd.testing.assert_frame_equal(again["rows"], rows)
    pd.testing.assert_frame_equal(again["collapse"], col)
    pd.testing.assert_frame_equal(again["ablations"], ab)
    pd.testing.assert_frame_equal(again["ulira"], r["ulira"])
    assert again["tuned"] == r["tuned"]

    # the store alone is enough: without the checkpoints (a store copied to another machine)
    # nothing is trained, loaded or recomputed either
    import shutil
    shutil.rmtree(tmp_path / "ckpt")
    monkeypatch.setattr(train_mod, "train_or_load", lambda *a, **k: pytest.fail("needed the reference models"))
    third = run_protocol(_tiny_profile(), tmp_path / "out", **kw)
    assert not calls and not (tmp_path / "ckpt").exists()
    pd.testing.assert_frame_equal(third["rows"], rows)
    assert third["tuned"] == r["tuned"]

    # the README's tables are written from these files, and carry the run's own numbers
    import importlib.util
    spec = importlib.util.spec_from_file_location("protocol_report", ROOT / "benchmarks" / "protocol_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    summary_md = report.summary_table(rows)
    d = rows[rows["model"] == "dlfd"]["test_acc"]
    dlfd_line = next(line for line in summary_md.splitlines() if line.startswith("| **DLFD** |"))
    assert f"{d.mean():.3f} ({d.std(ddof=1):.3f})" in dlfd_line.split(" | ")[3]
    paired_md = report.paired_markdown(r["paired"])
    p = r["paired"].set_index(["model", "metric"]).loc[("neggrad", "abs_mia_gap")]
    ng_line = next(line for line in paired_md.splitlines() if line.startswith("| NegGrad |"))
    from dlfd_lib.report import _verdict
    assert f"{p['diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}] {_verdict(p)}, p_Holm {report._p(p['p_holm'])}" \
        == ng_line.split(" | ")[2]
    collapse_md = report.collapse_markdown(col)
    c = col[col["model"] == "neggrad"]["probe_acc"]
    ng_line = next(line for line in collapse_md.splitlines() if line.startswith("| NegGrad |"))
    assert ng_line.split(" | ")[1] == f"{c.mean():.3f} ({c.std(ddof=1):.3f})"
    with pytest.raises(SystemExit, match="protocol.json"):
        report.main(["--out-dir", str(tmp_path / "nothing-here")])


def test_protocol_config_rejects_overlapping_seeds():
    from dlfd_lib.protocol import ProtocolConfig, strength_values
    with pytest.raises(ValueError, match="both tuning and evaluation"):
        ProtocolConfig(tuning_seeds=[0], eval_seeds=[0, 1])
    with pytest.raises(KeyError, match="unknown protocol setting"):
        ProtocolConfig.from_profile({"protocol": {"n_trails": 3}})
    assert strength_values("dlfd", 3) == [0.9, 0.5, 0.3] and strength_values("dlfd", 0) == []


def test_the_protocol_command_gives_the_verdict_tables_for_your_own_folder(tmp_path, monkeypatch, capsys):
    """`benchmarks/unlearning_quality.py --dataset folder --data-root ... --data-options ...` runs
    the whole protocol on an image-folder tree (people in the file names) and writes the same
    files as on the synthetic faces; the report reads them back."""
    import importlib.util
    from test_datasets_real import make_tree

    monkeypatch.setenv("DLFD_CACHE", str(tmp_path / "cache"))
    make_tree(tmp_path / "faces", people=20, per_person=4)

    def load(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    out = tmp_path / "verdict"
    options = {"identity_regex": r"/(p\d+)_", "val_frac": 0.2, "test_frac": 0.2, "image_size": 32}
    load("unlearning_quality").main([
        "--profile", "smoke", "--dataset", "folder", "--data-root", str(tmp_path / "faces"),
        "--data-options", json.dumps(options), "--task", "animals", "--methods", "dlfd", "neggrad",
        "--trials", "1", "--seeds", "0", "1", "--strengths", "1", "--device", "cpu",
        "--ckpt-dir", str(tmp_path / "ckpt"), "--out-dir", str(out)])
    run = json.loads((out / "protocol.json").read_text())
    assert run["dataset"] == "folder" and run["task"] == "animals"
    rows = pd.DataFrame(run["rows"])
    assert set(rows["model"]) == {"original", "retrained", "dlfd", "neggrad"} and sorted(set(rows["seed"])) == [0, 1]
    assert (rows["test_acc"].between(0, 1)).all()
    # the checkpoints name the folder dataset, not the synthetic faces
    assert all("folder" in p.name or "animals" in p.name for p in (tmp_path / "ckpt").glob("*.pt"))
    capsys.readouterr()
    load("protocol_report").main(["--out-dir", str(out)])
    assert "| **DLFD** |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        load("unlearning_quality").main(["--data-options", "not json", "--out-dir", str(out)])


def test_a_resumed_tuning_study_adds_nothing_to_its_journal(tmp_path):
    """Resuming a finished study loads it: the journal (committed with the verdict) is unchanged,
    the trials are the same; a RUNNING trial of a cut-off run is marked failed."""
    from optuna.trial import TrialState

    from dlfd_lib.tuning import open_study
    space = {"lr": (1e-3, 1e-1, "log")}
    study = open_study(tmp_path, "toy", space)
    for v in (0.3, 0.6):
        t = study.ask()
        study.tell(t, v)
    cut = study.ask()  # left RUNNING, as by a killed run
    journal = tmp_path / "toy.journal"
    before = journal.read_bytes()
    again = open_study(tmp_path, "toy", space)
    assert [t.value for t in again.get_trials(states=(TrialState.COMPLETE,))] == [0.3, 0.6]
    assert again.trials[cut.number].state == TrialState.FAIL
    after = journal.read_bytes()
    assert after.startswith(before) and b'"op_code":0' not in after[len(before):]  # no second "create study"
    third = open_study(tmp_path, "toy", space)
    assert journal.read_bytes() == after and len(third.trials) == 3
