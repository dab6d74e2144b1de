"""Shared test data: tiny, learnable UnlearningSplits built in memory."""
import contextlib
import os

import numpy as np
import torch

from dlfd_lib.data.splits import (IMAGENET_MEAN, IMAGENET_STD, SplitDataset, TensorSource,
                                  UnlearningSplits, eval_transform)


def tiny_splits(n_per_class=12, classes=3, size=32, n_small=12):
    """Dark random uint8 images with a bright bar whose colour and height give the class
    (learnable in a few steps); retain holds ``n_per_class * classes`` images, forget, val and
    test ``n_small`` each, with 4 images per identity."""
    g = torch.Generator().manual_seed(0)

    def make(n, offset):
        labels = np.arange(n) % classes
        imgs = torch.randint(0, 60, (n, 3, size, size), dtype=torch.uint8, generator=g)
        for i, c in enumerate(labels):
            imgs[i, c % 3, 4 + 8 * c: 12 + 8 * c, 4:28] = 250
        return SplitDataset(TensorSource(imgs), labels, eval_transform(size, IMAGENET_MEAN, IMAGENET_STD),
                            identities=np.arange(n) // 4 + offset)

    return UnlearningSplits("tiny", "age", [f"c{i}" for i in range(classes)],
                            make(n_per_class * classes, 0), make(n_small, 1000), make(n_small, 2000),
                            make(n_small, 3000), size)


@contextlib.contextmanager
def few_threads(n: int = 1):
    """Run small passes on ``n`` torch threads (faster than many on a shared, busy CPU), unless the
    suite runs at a fixed thread count (``DLFD_TEST_THREADS``, see conftest.py), which then wins."""
    before = torch.get_num_threads()
    if not os.environ.get("DLFD_TEST_THREADS", "").strip():
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
