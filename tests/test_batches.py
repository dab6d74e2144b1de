"""The in-memory, batch-augmented data path (dlfd_lib.data.batches) against the per-image one."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dlfd_lib.data import batches as B
from dlfd_lib.data.splits import (IMAGENET_MEAN, IMAGENET_STD, FileSource, SplitDataset,
                                  UnlearningSplits, eval_transform)


def test_eval_batches_equal_the_per_image_transform(splits):
    fast = splits.loader("val", batch_size=5, shuffle=False)
    slow = splits.loader("val", batch_size=5, shuffle=False, in_memory=False)
    assert isinstance(fast, B.BatchLoader) and isinstance(slow, DataLoader)
    assert len(fast) == len(slow) == 3
    for (xf, yf), (xs, ys) in zip(fast, slow):
        assert xf.dtype == torch.float32 and xf.shape == xs.shape
        torch.testing.assert_close(xf, xs, atol=1e-5, rtol=0)
        assert torch.equal(yf, ys)


def test_file_images_are_decoded_once_and_resized_like_the_transform(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):  # 40 px files read at 32 px: the resize happens once, antialiased
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    tf = eval_transform(32, IMAGENET_MEAN, IMAGENET_STD)
    ds = SplitDataset(FileSource(paths), np.arange(6) % 2, tf, identities=np.arange(6))
    u8 = B.materialise(ds, 32)
    assert u8.shape == (6, 3, 32, 32) and u8.dtype == torch.uint8
    assert B.materialise(ds, 32) is u8  # cached on the split
    x, _ = next(iter(B.BatchLoader(u8, ds.labels, 6, IMAGENET_MEAN, IMAGENET_STD)))
    torch.testing.assert_close(x, torch.stack([ds[i][0] for i in range(6)]), atol=1e-5, rtol=0)


def test_train_cache_is_retain_then_forget(splits):
    train = splits.images_uint8("train")
    assert torch.equal(train, torch.cat([splits.images_uint8("retain"), splits.images_uint8("forget")]))
    assert splits.images_uint8("train") is train


def test_shuffle_is_a_seeded_permutation_per_epoch(splits):
    n = len(splits.retain)
    loader = splits.loader("retain", batch_size=8, shuffle=True, seed=3)
    assert len(loader) == -(-n // 8)
    u8 = splits.images_uint8("retain")
    ref = (u8.float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def order(epoch_batches):
        x = torch.cat([b[0] for b in epoch_batches])
        # find each row of x among the reference images
        d = torch.cdist(x.flatten(1), ref.flatten(1))
        return d.argmin(1).tolist(), float(d.min(1).values.max())

    e1, e2 = list(loader), list(loader)
    o1, err1 = order(e1)
    o2, err2 = order(e2)
    assert err1 < 1e-3 and err2 < 1e-3
    assert sorted(o1) == list(range(n)) and sorted(o2) == list(range(n))  # each image once
    assert o1 != o2 and o1 != list(range(n))                               # reshuffled each epoch
    again = splits.loader("retain", batch_size=8, shuffle=True, seed=3)
    assert order(list(again))[0] == o1                                     # same seed, same order
    assert order(list(splits.loader("retain", batch_size=8, shuffle=True, seed=4)))[0] != o1
    dropped = splits.loader("retain", batch_size=8, shuffle=True, seed=3, drop_last=True)
    assert len(dropped) == n // 8 and all(len(y) == 8 for _, y in dropped)


def _gray_splits(n=256, size=32, value=128):
    imgs = torch.full((n, 3, size, size), value, dtype=torch.uint8)
    imgs[:, :, : size // 2, : size // 4] = 255  # a bright block in the top-left corner
    tf = eval_transform(size, IMAGENET_MEAN, IMAGENET_STD)
    from dlfd_lib.data.splits import TensorSource

    def make(k, off):
        return SplitDataset(TensorSource(imgs[:k].clone()), np.arange(k) % 2, tf, identities=np.arange(k) + off)
    return UnlearningSplits("gray", "age", ["a", "b"], make(n, 0), make(8, 10**4), make(8, 2 * 10**4),
                            make(8, 3 * 10**4), size)


def _unnormalise(x):
    return x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def test_augmentation_has_per_image_parameters_in_the_papers_ranges():
    s = _gray_splits()
    x, _ = next(iter(s.loader("retain", batch_size=256, augment=True, seed=0)))
    x = _unnormalise(x)
    assert x.shape == (256, 3, 32, 32)
    # colour jitter: a grey patch below the centre, which no flip, rotation, shear or scale in the
    # paper's ranges reaches with the block or the black fill, keeps its grey up to brightness
    # 0.8-1.2 (and contrast 0.8-1.2 towards the image mean, a shift of < 0.02 here)
    centre = x[:, :, 20:24, 12:20].mean(dim=(1, 2, 3))
    base = 128 / 255
    assert float(centre.min()) >= 0.8 * base - 0.02 and float(centre.max()) <= 1.2 * base + 0.02
    assert float(centre.min()) < 0.93 * base and float(centre.max()) > 1.07 * base  # jitter is on
    # flip: the bright block lands left in about half of the images, right in the others
    left = x[:, :, :, :16].mean(dim=(1, 2, 3)) > x[:, :, :, 16:].mean(dim=(1, 2, 3))
    assert 0.35 < float(left.float().mean()) < 0.65
    # affine: every image is moved differently (rotation, shear, scale), none stays the plain image
    plain = _unnormalise(next(iter(s.loader("retain", batch_size=256)))[0])
    moved = (x - plain).abs().flatten(1).mean(1)
    assert float((moved > 1e-3).float().mean()) > 0.95
    distinct = torch.unique(x.flatten(1).round(decimals=3), dim=0)
    assert len(distinct) > 250  # per-image parameters, not one draw per batch


def test_augmentation_is_seeded_and_leaves_the_global_rng_alone(splits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = [x for x, _ in splits.loader("retain", batch_size=16, augment=True, seed=5)]
    assert torch.equal(torch.rand(3), expected)
    b = [x for x, _ in splits.loader("retain", batch_size=16, augment=True, seed=5)]
    c = [x for x, _ in splits.loader("retain", batch_size=16, augment=True, seed=6)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_large_splits_stream_and_bad_batch_size(splits, monkeypatch):
    monkeypatch.setattr(B, "MAX_IN_MEMORY_BYTES", 100)
    assert isinstance(splits.loader("val", batch_size=4), DataLoader)
    with pytest.raises(MemoryError, match="MAX_IN_MEMORY_BYTES"):
        B.materialise(splits.val.subset(np.arange(4)), 32)
    monkeypatch.undo()
    assert isinstance(splits.loader("val", batch_size=4, num_workers=1), DataLoader)
    with pytest.raises(ValueError, match="batch_size"):
        B.BatchLoader(splits.images_uint8("val"), splits.val.labels, 0, IMAGENET_MEAN, IMAGENET_STD)
