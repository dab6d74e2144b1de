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


def test_unlearned_model_is_reused_only_for_the_same_settings(tmp_path):
    import torch

    from dlfd_lib.benchmark import unlearned_model
    from dlfd_lib.model import build_model, save_checkpoint
    from helpers import tiny_splits

    splits = tiny_splits()
    torch.manual_seed(0)
    original = build_model(splits.num_classes)
    save_checkpoint(original, tmp_path / "orig.pt")
    kw = dict(splits=splits, profile="smoke", seed=0, device="cpu", ckpt_dir=tmp_path, progress=False)
    a, info_a = unlearned_model("neggrad", original, tmp_path / "orig.pt", **kw)
    b, info_b = unlearned_model("neggrad", original, tmp_path / "orig.pt", **kw)
    assert not info_a["reused"] and info_b["reused"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    _, info_c = unlearned_model("neggrad", original, tmp_path / "orig.pt", hparams={"lr": 0.02}, **kw)
    assert not info_c["reused"]  # other hyperparameters: computed again
    save_checkpoint(original, tmp_path / "other.pt")
    _, info_d = unlearned_model("neggrad", original, tmp_path / "other.pt", hparams={"lr": 0.02}, **kw)
    assert not info_d["reused"]  # another original checkpoint: computed again


def test_ablation_variants_are_valid_dlfd_settings():
    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.unlearned import slug as _slug
    from dlfd_lib.unlearn import method_defaults
    from dlfd_lib.unlearn.dlfd import ABLATIONS, ablation_variants

    valid = set(method_defaults("dlfd", "quick"))
    variants = ablation_variants(base={"K": 3})
    assert list(variants) == list(ABLATIONS)
    for label, v in variants.items():
        assert v["method"] == "dlfd" and set(v["hparams"]) <= valid, label
        assert v["hparams"]["K"] == 3 or "K" in ABLATIONS[label][1]
    assert variants["no OT term"]["hparams"]["w_f"] == 0.0
    assert len({_slug(k) for k in variants}) == len(variants)  # distinct checkpoint names
    with pytest.raises(KeyError, match="unknown ablation"):
        ablation_variants(["no OT"])
    with pytest.raises(ValueError, match="clash"):
        run_benchmark("smoke", [0], variants={"original": {"method": "dlfd"}})


def test_run_benchmark_reuses_what_a_notebook_saved_whatever_its_label(tmp_path):
    """Notebook 05's "DLFD (paper)" is notebook 03's "dlfd": same original, data, seed and resolved
    hyperparameters, so the second benchmark loads the saved model instead of unlearning again
    and reports the same numbers; other hyperparameters are unlearned afresh."""
    import copy

    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.profiles import get_profile

    prof = copy.deepcopy(get_profile("smoke"))
    prof["data"].update(n_train_ids=12, imgs_per_id=4, n_val_ids=4, n_test_ids=4)
    prof["train"]["epochs"] = 1
    kw = dict(dataset="synthetic", task="age", device="cpu", ckpt_dir=tmp_path, progress=False,
              data_root=str(tmp_path / "cache"))
    first = run_benchmark(prof, [0], methods=["dlfd", "neggrad"], save_models=True, **kw)
    assert not first["infos"][(0, "dlfd")]["reused"]
    second = run_benchmark(prof, [0], variants={
        "DLFD (paper)": {"method": "dlfd"}, "DLFD K=1": {"method": "dlfd", "hparams": {"K": 1}}}, **kw)
    assert second["infos"][(0, "DLFD (paper)")]["reused"]
    assert not second["infos"][(0, "DLFD K=1")]["reused"]
    a = first["rows"].set_index("model").loc["dlfd"]
    b = second["rows"].set_index("model").loc["DLFD (paper)"]
    for col in ("retain_acc", "forget_acc", "test_acc", "mia", "fs", "nomus", "seconds"):
        assert a[col] == b[col], col
    pd.testing.assert_frame_equal(first["histories"][(0, "dlfd")].reset_index(drop=True),
                                  second["histories"][(0, "DLFD (paper)")].reset_index(drop=True),
                                  check_dtype=False)
    assert second["infos"][(0, "DLFD (paper)")].get("switch_step", None) == first["infos"][(0, "dlfd")].get("switch_step", None)
    third = run_benchmark(prof, [0], methods=["dlfd"], reuse=False, **kw)
    assert not third["infos"][(0, "dlfd")]["reused"]


def test_run_benchmark_is_the_plan_in_this_process_and_hands_back_the_models_it_evaluated(tmp_path):
    """run_benchmark's rows come from the plan's store; the models, splits and per-sample losses it
    hands back are the ones that were evaluated (an independent evaluate() gives the same row and
    losses bitwise), on_models sees every seed's models once, in order, and a job's error is raised
    as it happened (not wrapped)."""
    import copy

    import numpy as np

    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.metrics import evaluate
    from dlfd_lib.profiles import get_profile

    prof = copy.deepcopy(get_profile("smoke"))
    prof["data"].update(n_train_ids=12, imgs_per_id=4, n_val_ids=4, n_test_ids=4)
    prof["train"]["epochs"] = 1
    kw = dict(dataset="synthetic", task="age", device="cpu", ckpt_dir=tmp_path, progress=False,
              data_root=str(tmp_path / "cache"))
    variants = {"ft": {"method": "finetune"}, "ft 2 steps": {"method": "finetune", "hparams": {"max_steps": 2}}}
    seen = []
    bench = run_benchmark(prof, [0, 1], variants=variants, keep_losses_for=1,
                          on_models=lambda seed, splits, models: seen.append((seed, list(models))), **kw)
    names = ["original", "retrained", "ft", "ft 2 steps"]
    assert seen == [(0, names), (1, names)]
    from dlfd_lib import plan
    assert not plan._SEEDS  # the plan's per-process references are dropped: only the kept seed's models live on
    rows = bench["rows"]
    assert list(zip(rows["seed"], rows["model"])) == [(s, n) for s in (0, 1) for n in names]
    assert set(bench["infos"]) == set(bench["histories"]) == {(s, v) for s in (0, 1) for v in variants}
    assert list(bench["models"]) == list(bench["losses"]) == names
    assert bench["infos"][(1, "ft 2 steps")]["hparams"]["max_steps"] == 2
    for name in names:
        again = evaluate(bench["models"][name], bench["splits"], device="cpu", seed=1, return_losses=True)
        losses = again.pop("losses")
        row = rows[(rows["seed"] == 1) & (rows["model"] == name)].iloc[0]
        for col, value in again.items():
            assert row[col] == value or (np.isnan(row[col]) and np.isnan(value)), (name, col)
        for split, arr in losses.items():
            np.testing.assert_array_equal(bench["losses"][name][split], arr)
    with pytest.raises(TypeError, match="no_such_knob"):
        run_benchmark(prof, [0], variants={"bad": {"method": "finetune", "hparams": {"no_such_knob": 1}}}, **kw)
