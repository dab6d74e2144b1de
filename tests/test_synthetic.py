"""Tests of the synthetic face generator (dlfd_lib.data.synthetic) and its preview sheets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlfd_lib.data import UnlearningSplits, class_sheet, identity_sheet, make_synthetic_splits
from dlfd_lib.data.synthetic import AGE_CLASSES, DEFAULT_KNOBS, EMOTION_CLASSES

SMALL = dict(image_size=32, n_train_ids=20, imgs_per_id=6, n_val_ids=4, n_test_ids=4,
             cache_dir=False)


@pytest.fixture(scope="module")
def age_small() -> UnlearningSplits:
    return make_synthetic_splits(task="age", seed=0, **SMALL)


def _all_arrays(s: UnlearningSplits):
    out = {}
    for name in ("retain", "forget", "val", "test"):
        d = s.split(name)
        out[name] = (d.source.images, d.labels, d.identities)
    return out


# --------------------------------------------------------------------------------------------
# the object and its shapes
# --------------------------------------------------------------------------------------------
def test_returns_unlearning_splits_with_images_and_ground_truth(age_small):
    s = age_small
    assert isinstance(s, UnlearningSplits)
    assert s.name == "synthetic" and s.task == "age" and s.image_size == 32
    assert s.class_names == AGE_CLASSES and s.num_classes == 8
    for name in ("train", "retain", "forget", "val", "test"):
        d = s.split(name)
        imgs = d.source.images
        assert imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, 32, 32)
        assert len(d.labels) == len(d.identities) == imgs.shape[0] > 0
        assert d.labels.min() >= 0 and d.labels.max() < 8
    x, y = s.test[0]  # the evaluation transform gives normalised float images
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and isinstance(y, int)
    assert len(s.train) == len(s.retain) + len(s.forget)
    assert s.info["seed"] == 0 and s.info["image_size"] == 32
    for knob, value in DEFAULT_KNOBS.items():
        assert s.info[knob] == value


def test_images_are_not_blank(age_small):
    imgs = age_small.train.source.images.float()
    assert imgs.std() > 20  # faces, backgrounds and clothes, not a constant image
    per_image = imgs.flatten(1).std(1)
    assert (per_image > 5).all()


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_data():
    a = _all_arrays(make_synthetic_splits(seed=3, **SMALL))
    b = _all_arrays(make_synthetic_splits(seed=3, **SMALL))
    for name in a:
        assert torch.equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])
        np.testing.assert_array_equal(a[name][2], b[name][2])


def test_different_seed_gives_different_data(age_small):
    other = make_synthetic_splits(seed=1, **SMALL)
    a, b = age_small.train.source.images, other.train.source.images
    assert a.shape != b.shape or not torch.equal(a, b)
    assert not torch.equal(a[0], b[0])
    assert not torch.equal(age_small.test.source.images[0], other.test.source.images[0])


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
def test_splits_are_identity_disjoint(age_small):
    ids = {name: set(age_small.identities(name).tolist())
           for name in ("train", "retain", "forget", "val", "test")}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert not ids["retain"] & ids["forget"]
    assert ids["retain"] | ids["forget"] == ids["train"]
    assert len(ids["train"]) == 20 and len(ids["val"]) == 4 and len(ids["test"]) == 4


def test_forget_is_whole_people_and_about_forget_frac():
    s = make_synthetic_splits(task="age", image_size=16, n_train_ids=60, imgs_per_id=6,
                              n_val_ids=2, n_test_ids=2, forget_frac=0.2, seed=5, cache_dir=False)
    forget_ids = set(s.forget.identities.tolist())
    assert forget_ids == set(s.info["forget_identities"])
    # every image of a forgotten person is in the forget set, none in retain
    train_ids = s.train.identities
    for pid in forget_ids:
        assert (s.forget.identities == pid).sum() == (train_ids == pid).sum()
    assert len(s.forget) / len(s.train) == pytest.approx(0.2, abs=0.04)


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, n_classes", [("age", 8), ("emotion", 7)])
def test_every_class_present_and_roughly_balanced(task, n_classes):
    s = make_synthetic_splits(task=task, image_size=16, n_train_ids=80, imgs_per_id=6,
                              n_val_ids=2, n_test_ids=2, seed=2, cache_dir=False)
    counts = np.bincount(s.train.labels, minlength=n_classes)
    assert len(counts) == n_classes and (counts > 0).all()
    assert counts.max() < 3 * counts.min()
    assert s.class_names == (AGE_CLASSES if task == "age" else EMOTION_CLASSES)


@pytest.mark.parametrize("task", ["age", "emotion"])
def test_labels_vary_within_identities(task):
    s = make_synthetic_splits(task=task, seed=4, **SMALL)
    tr = s.train
    n_labels = [len(np.unique(tr.labels[tr.identities == pid])) for pid in np.unique(tr.identities)]
    assert np.mean(np.array(n_labels) > 1) > 0.8


def test_age_labels_stay_near_the_persons_base_age(age_small):
    tr = age_small.train
    for pid in np.unique(tr.identities):
        lab = tr.labels[tr.identities == pid]
        assert lab.max() - lab.min() <= 2 * DEFAULT_KNOBS["label_spread"]


# --------------------------------------------------------------------------------------------
# caching
# --------------------------------------------------------------------------------------------
def test_cache_round_trip_equals_fresh(tmp_path):
    kw = dict(SMALL, cache_dir=tmp_path)
    first = make_synthetic_splits(task="emotion", seed=7, **kw)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    cached = make_synthetic_splits(task="emotion", seed=7, **kw)
    fresh = make_synthetic_splits(task="emotion", seed=7, **SMALL)
    for other in (cached, fresh):
        a, b = _all_arrays(first), _all_arrays(other)
        for name in a:
            assert torch.equal(a[name][0], b[name][0])
            np.testing.assert_array_equal(a[name][1], b[name][1])
            np.testing.assert_array_equal(a[name][2], b[name][2])
        assert other.info == first.info
    # another parameter gets another file, and no temporary files are left behind
    make_synthetic_splits(task="emotion", seed=7, noise_sd=0.0, **kw)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_damaged_cache_is_regenerated(tmp_path):
    kw = dict(SMALL, cache_dir=tmp_path)
    first = make_synthetic_splits(seed=8, **kw)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a numpy file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = make_synthetic_splits(seed=8, **kw)
    assert torch.equal(first.test.source.images, again.test.source.images)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DLFD_CACHE", str(tmp_path))
    make_synthetic_splits(seed=9, **dict(SMALL, cache_dir=None))
    assert len(list((tmp_path / "synthetic").glob("*.npz"))) == 1


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------
def test_bad_task_is_a_clear_error():
    with pytest.raises(ValueError, match="age.*emotion"):
        make_synthetic_splits(task="gender", **SMALL)


@pytest.mark.parametrize("size", [8, 15, 129, 256, 32.0, "64", True])
def test_bad_image_size_is_a_clear_error(size):
    kw = dict(SMALL)
    kw["image_size"] = size
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_splits(**kw)


def test_bad_knobs_and_counts_are_clear_errors():
    with pytest.raises(TypeError, match="identity_offset_sd"):
        make_synthetic_splits(identity_ofset_sd=0.3, **SMALL)
    with pytest.raises(ValueError, match="forget_frac"):
        make_synthetic_splits(forget_frac=1.5, **SMALL)
    with pytest.raises(ValueError, match="noise_sd"):
        make_synthetic_splits(noise_sd=-1, **SMALL)
    kw = dict(SMALL, n_train_ids=1)
    with pytest.raises(ValueError, match="n_train_ids"):
        make_synthetic_splits(**kw)


@pytest.mark.parametrize("size", [16, 47, 128])
def test_odd_and_extreme_sizes_render(size):
    s = make_synthetic_splits(image_size=size, n_train_ids=3, imgs_per_id=2, n_val_ids=1,
                              n_test_ids=1, cache_dir=False)
    assert s.train.source.images.shape[-2:] == (size, size)


def test_knobs_change_the_data():
    base = make_synthetic_splits(seed=0, **SMALL)
    quiet = make_synthetic_splits(seed=0, noise_sd=0.0, **SMALL)
    assert base.info["noise_sd"] != quiet.info["noise_sd"]
    assert not torch.equal(base.test.source.images, quiet.test.source.images)
    np.testing.assert_array_equal(base.test.labels, quiet.test.labels)


# --------------------------------------------------------------------------------------------
# preview sheets
# --------------------------------------------------------------------------------------------
def test_preview_sheets(age_small):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = identity_sheet(age_small, n_ids=3, per_id=4)
    assert len(fig.axes) == 12
    plt.close(fig)
    fig = class_sheet(age_small, per_class=3, split="test")
    assert len(fig.axes) == 8 * 3
    plt.close(fig)
