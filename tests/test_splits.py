"""The UnlearningSplits object every dataset produces."""
import numpy as np
import pytest
import torch

from dlfd_lib.data.splits import (IMAGENET_MEAN, IMAGENET_STD, SplitDataset, TensorSource,
                                  UnlearningSplits, eval_transform)

from helpers import tiny_splits


def test_train_is_retain_plus_forget_with_identities():
    s = tiny_splits()
    assert s.sizes() == {"train": 48, "retain": 36, "forget": 12, "val": 12, "test": 12}
    assert np.array_equal(s.labels("train"), np.concatenate([s.labels("retain"), s.labels("forget")]))
    assert len(s.identities("train")) == 48
    assert list(s.summary().index) == ["train", "retain", "forget", "val", "test"]
    with pytest.raises(KeyError, match="unknown split"):
        s.split("holdout")


def test_augmented_view_is_random_and_evaluation_view_is_not():
    s = tiny_splits()
    plain = s.dataset("retain", augment=False)
    aug = s.dataset("retain", augment=True)
    torch.testing.assert_close(plain[0][0], plain[0][0])
    torch.manual_seed(0)
    a, b = aug[0][0], aug[0][0]
    assert not torch.equal(a, b), "training augmentation must change the image"
    assert not torch.equal(a, plain[0][0])
    assert a.shape == plain[0][0].shape == (3, 32, 32) and a.dtype == torch.float32
    # the stored split keeps the evaluation transform
    torch.testing.assert_close(s.retain[0][0], plain[0][0])


def test_seeded_shuffling_is_reproducible():
    s = tiny_splits()
    first = [y.tolist() for _, y in s.loader("retain", batch_size=8, shuffle=True, seed=3)]
    again = [y.tolist() for _, y in s.loader("retain", batch_size=8, shuffle=True, seed=3)]
    assert first == again


def test_bad_splits_are_explained():
    img = TensorSource(torch.zeros(4, 3, 8, 8, dtype=torch.uint8))
    tf = eval_transform(8, IMAGENET_MEAN, IMAGENET_STD)
    ok = SplitDataset(img, np.array([0, 1, 0, 1]), tf)
    empty = SplitDataset(img.subset(np.array([], dtype=np.int64)), np.array([], dtype=np.int64), tf)
    with pytest.raises(ValueError, match="forget split .* is empty"):
        UnlearningSplits("x", "age", ["a", "b"], ok, empty, ok, ok, 8)
    bad = SplitDataset(img, np.array([0, 1, 2, 1]), tf)
    with pytest.raises(ValueError, match="test labels .* outside 0..1"):
        UnlearningSplits("x", "age", ["a", "b"], ok, ok, ok, bad, 8)
    with pytest.raises(ValueError, match="uint8 images of shape"):
        TensorSource(torch.zeros(2, 8, 8))
