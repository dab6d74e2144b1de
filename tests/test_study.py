"""The study object of the notebooks (dlfd_lib/study.py): data, reference models and unlearned
models are made once and shared with the benchmark through the checkpoint folder."""
import copy

import torch

from dlfd_lib.profiles import get_profile
from dlfd_lib.study import Study


def _tiny_profile():
    prof = copy.deepcopy(get_profile("smoke"))
    prof.data.update(n_train_ids=12, imgs_per_id=4, n_val_ids=4, n_test_ids=4)
    prof.train["epochs"] = 1
    return prof


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_study_makes_everything_once_and_shares_it_with_the_benchmark(tmp_path):
    kw = dict(seed=0, device="cpu", data_root=str(tmp_path / "cache"), checkpoint_dir=tmp_path / "ckpt",
              progress=False)
    study = Study(_tiny_profile(), **kw)
    assert study.profile.name == "smoke" and study.device == torch.device("cpu")
    assert study.tag == "synthetic-age-smoke-seed0" and study.seeds_tag([0, 2]) == "synthetic-age-smoke-seeds0-2"
    assert study.splits is study.splits  # loaded once
    models = study.models
    assert set(models) == {"original", "retrained"} and not study.metas["original"]["reused"]
    models["mine"] = models["original"]
    assert set(study.models) == {"original", "retrained"}  # a new dict each time
    hp = {"max_steps": 1}
    a, info_a = study.unlearned("finetune", hp)
    assert not info_a["reused"] and study.unlearned("finetune", hp)[0] is a  # kept in memory
    assert study.unlearned("finetune", {"max_steps": 2})[0] is not a  # other settings: another model

    again = Study(_tiny_profile(), **kw)  # a second notebook: everything comes from the checkpoints
    assert all(m["reused"] for m in again.metas.values())
    b, info_b = again.unlearned("finetune", hp)
    assert info_b["reused"] and _same_weights(a, b)
    bench = again.benchmark(methods=["finetune"], method_overrides={"finetune": hp})
    assert bench["infos"][(0, "finetune")]["reused"]  # the benchmark found the study's model
    assert list(bench["rows"]["model"]) == ["original", "retrained", "finetune"]
    # unlearned_models with overrides (a notebook at the verdict's tuned settings) gives the same models
    both = again.unlearned_models(["finetune"], verbose=False, overrides={"finetune": hp})
    assert _same_weights(both["finetune"], b)
    assert not _same_weights(again.unlearned_models(["finetune"], verbose=False, overrides={"finetune": {"max_steps": 2}})["finetune"], b)


def test_a_study_takes_a_profile_name():
    study = Study("quick", device="cpu")
    assert study.profile == get_profile("quick") and study.train_config.epochs == get_profile("quick").train["epochs"]
    assert repr(study) == "Study(profile='quick', seed=0, dataset='synthetic', task='age', device='cpu')"
