"""Faults a user runs into, each with the message or the behaviour the kit promises (issue 12).

Non-finite unlearning, checkpoints that must not be used, stale temporary files and
permissions, data fingerprints that force a retrain, paths outside the data root, parameter
validation, and the notebook runner's timeouts and interruptions.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_splits  # noqa: E402

from dlfd_lib.model import CheckpointError, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from dlfd_lib.unlearn import available_methods, unlearn  # noqa: E402
from dlfd_lib.utils import atomic_write_bytes, save_json  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return tiny_splits()


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return build_model(tiny.num_classes)


# ------------------------------------------------------------------ 4. non-finite unlearning

#: a learning rate far past divergence for every method (UNSIR has two)
DIVERGING = {"unsir": {"impair_lr": 1e12, "repair_lr": 1e12}}


@pytest.mark.parametrize("method", available_methods())
def test_every_method_stops_with_floating_point_error_naming_it_and_the_step(method, tiny, model):
    hp = DIVERGING.get(method, {"lr": 1e12})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError) as err:
        unlearn(method, model, tiny, profile="smoke", device="cpu", progress=False, **hp)
    msg = str(err.value)
    assert f"unlearning method {method!r}" in msg, msg
    assert "step" in msg, msg
    if method == "salun":
        assert "random-label" not in msg.lower(), msg
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nonfinite_weights_are_never_saved_and_never_loaded(tmp_path, model):
    bad = build_model(3)
    with torch.no_grad():
        bad.features[6].weight[0, 0] = float("nan")
    path = tmp_path / "bad.pt"
    with pytest.raises(FloatingPointError, match="not finite"):
        save_checkpoint(bad, path)
    assert not path.exists() and not list(tmp_path.iterdir())
    # a file written some other way (an older kit) is refused on loading, with the reason
    state = {k: v.clone() for k, v in bad.state_dict().items()}
    torch.save({"format": "dlfd-kit-checkpoint/1", "state_dict": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match="non-finite weights.*features.6.weight"):
        load_checkpoint(path)
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(tmp_path / "plain.pt")


# ------------------------------------------------------------------ 2. data fingerprints

def _image(seed: int, size: int = 32):
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _folder_csv(root: Path) -> tuple[Path, list[dict]]:
    """A CSV dataset: 10 people x 3 photos, 2 classes, people 8 and 9 held out as val / test."""
    import pandas as pd
    rows = []
    for person in range(10):
        for k in range(3):
            rel = f"img/p{person}_{k}.png"
            (root / "img").mkdir(parents=True, exist_ok=True)
            _image(person * 10 + k).save(root / rel)
            split = "val" if person == 8 else "test" if person == 9 else "train"
            rows.append({"path": rel, "label": str((person + k) % 2), "identity": f"p{person}",
                         "split": split})
    csv = root / "faces.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, rows


def _write_rows(csv: Path, rows: list[dict]) -> None:
    import pandas as pd
    pd.DataFrame(rows).to_csv(csv, index=False)


def test_a_changed_label_image_or_forget_entry_forces_a_retrain(tmp_path):
    from dlfd_lib.data import load_folder
    from dlfd_lib.train import TrainConfig, train_or_load
    csv, rows = _folder_csv(tmp_path / "data")
    cfg = TrainConfig(epochs=1, batch_size=16, amp=False, augment=False)
    ckpts = tmp_path / "ckpt"

    def run(forget=("p0",)):
        splits = load_folder(csv, forget=list(forget), image_size=32)
        return train_or_load("retrained", splits, cfg, seed=0, device="cpu", ckpt_dir=ckpts,
                             progress=False)[1]

    assert run()["reused"] is False
    assert run()["reused"] is True          # same data: the checkpoint is reused
    # one label flipped in the CSV
    rows[3]["label"] = "1" if rows[3]["label"] == "0" else "0"
    _write_rows(csv, rows)
    assert run()["reused"] is False
    assert run()["reused"] is True
    # one image replaced by a black one (same name, same size on disk is not required)
    from PIL import Image
    target = tmp_path / "data" / rows[4]["path"]
    before = target.stat()
    Image.new("RGB", (32, 32)).save(target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert run()["reused"] is False
    assert run()["reused"] is True
    # one more person in the forget list
    assert run(("p0", "p1"))["reused"] is False
    assert run(("p0", "p1"))["reused"] is True


def test_a_reused_unlearned_model_must_come_from_the_same_data(tmp_path, tiny, model):
    from dlfd_lib.benchmark import unlearned_model
    from dlfd_lib.data.splits import SplitDataset, UnlearningSplits
    orig = tmp_path / "orig.pt"
    save_checkpoint(model, orig)
    kw = dict(profile_name="smoke", seed=0, device="cpu", ckpt_dir=tmp_path, progress=False,
              hparams={"max_steps": 1})
    assert unlearned_model("finetune", model, orig, tiny, **kw)[1]["reused"] is False
    assert unlearned_model("finetune", model, orig, tiny, **kw)[1]["reused"] is True
    labels = tiny.forget.labels.copy()
    labels[0] = (labels[0] + 1) % tiny.num_classes
    forget = SplitDataset(tiny.forget.source, labels, tiny.forget.transform, tiny.forget.identities)
    other = UnlearningSplits(tiny.name, tiny.task, tiny.class_names, tiny.retain, forget, tiny.val,
                             tiny.test, tiny.image_size)
    assert unlearned_model("finetune", model, orig, other, **kw)[1]["reused"] is False


def test_image_digest_follows_in_place_edits_and_file_changes(tmp_path, tiny):
    from dlfd_lib.data.splits import FileSource, TensorSource, content_digest
    src = TensorSource(tiny.retain.source.images.clone())
    d0 = src.digest()
    assert src.digest() == d0
    src.images[0, 0, 0, 0] += 1
    assert src.digest() != d0
    p = tmp_path / "a.png"
    _image(0).save(p)
    fs = FileSource([p])
    f0 = fs.digest()
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fs.digest() != f0
    assert set(content_digest(tiny)) == {"retain", "forget", "val", "test"}


# ------------------------------------------------------------------ 5. paths outside the root

def test_csv_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    from dlfd_lib.data import DatasetError, load_folder, load_splits
    csv, rows = _folder_csv(tmp_path / "data")
    outside = tmp_path / "outside.png"
    _image(99).save(outside)
    rows[0]["path"] = "../outside.png"
    rows[1]["path"] = str(outside)
    _write_rows(csv, rows)
    with pytest.raises(DatasetError) as err:
        load_folder(csv, forget=["p0"], image_size=32)
    msg = str(err.value)
    assert "2 of 30 image paths" in msg and "outside the image root" in msg
    assert "'../outside.png' (line 2)" in msg and "(line 3)" in msg
    assert "allow_absolute_paths=True" in msg
    s = load_splits("folder", task="x", data_root=str(csv), allow_absolute_paths=True,
                    forget=["p0"], image_size=32)
    assert outside in s.forget.source.paths


def test_mufac_paths_outside_data_root_are_refused(tmp_path):
    import pandas as pd
    from dlfd_lib.data import DatasetError, load_mufac
    root = tmp_path / "MUFAC"
    for split, fam in (("train", 1), ("val", 801), ("test", 851)):
        recs = []
        for f in range(fam, fam + (6 if split == "train" else 2)):
            for k in range(3):
                name = f"F{f:04d}_AGE_D_18_a{k}.png"
                (root / f"{split}_images").mkdir(parents=True, exist_ok=True)
                _image(f * 10 + k).save(root / f"{split}_images" / name)
                recs.append({"image_path": name, "age_class": "abcdefgh"[(f + k) % 8]})
        pd.DataFrame(recs).to_csv(root / f"custom_{split}_dataset.csv", index=False)
    assert len(load_mufac(root, forget_size=3, image_size=32).forget) == 3
    train = pd.read_csv(root / "custom_train_dataset.csv")
    outside = tmp_path / "F0999_outside.png"
    _image(5).save(outside)
    train.loc[4, "image_path"] = "../../F0999_outside.png"
    train.loc[5, "image_path"] = "/etc/hostname"
    train.to_csv(root / "custom_train_dataset.csv", index=False)
    with pytest.raises(DatasetError, match=r"2 of 18 image paths.*outside the MUFAC data_root.*"
                                           r"'\.\./\.\./F0999_outside\.png' \(line 6\).*"
                                           r"'/etc/hostname' \(line 7\).*allow_absolute_paths"):
        load_mufac(root, forget_size=3, image_size=32)
