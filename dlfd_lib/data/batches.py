"""Batches straight from memory: each split decoded once to a uint8 tensor, augmented a whole
batch at a time.

The per-image path (a torch ``DataLoader`` calling torchvision transforms on one image at a time,
in the training process) decodes every file and draws every augmentation one image at a time, at
every epoch: on two CPU cores that costs more than the network, and on a GPU it would starve the
device. Here a split is decoded and resized once (:func:`materialise`, cached on the split), and
:class:`BatchLoader` slices batches out of that tensor. With ``augment=True`` the paper's
augmentation – horizontal flip, affine (rotation 10°, x-shear 10°, scale 0.8–1.2, nearest
resampling and black fill, as torchvision's ``RandomAffine`` defaults) and colour jitter 0.2
(brightness, contrast, saturation) – runs on the whole batch with *per-image* random parameters,
through kornia's batched augmentations, on the device the batch is headed for.

Randomness: the order of the images and the augmentation parameters come from the loader's own
seeded ``torch.Generator``, never from the global RNG, so a run is repeatable and the model's own
random draws (initialisation, dropout) do not depend on how the data were augmented.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

# A split larger than this (bytes of uint8 pixels) is streamed image by image instead.
MAX_IN_MEMORY_BYTES = 4 * 2**30


def materialise(split, image_size: int, progress: bool = False) -> torch.Tensor:
    """All images of ``split`` (a :class:`~.splits.SplitDataset`, whose ``source`` gives uint8
    images by index; this module imports nothing from ``splits``) as one uint8 tensor
    (N, 3, image_size, image_size), decoded and resized once (antialiased, rounded to uint8 as the per-image transform does) and cached on the
    split. Raises ``MemoryError`` with advice when the split would not fit ``MAX_IN_MEMORY_BYTES``."""
    cache = split.__dict__.setdefault("_uint8_cache", {})
    if image_size in cache:
        return cache[image_size]
    n = len(split)
    need = n * 3 * image_size * image_size
    if need > MAX_IN_MEMORY_BYTES:
        raise MemoryError(f"{n} images at {image_size} px need {need / 2**30:.1f} GiB in memory, "
                          f"above dlfd_lib.data.batches.MAX_IN_MEMORY_BYTES "
                          f"({MAX_IN_MEMORY_BYTES / 2**30:.1f} GiB); raise it, or stream the images "
                          f"with splits.loader(..., num_workers=N)")
    src = split.source
    held = getattr(src, "images", None)  # a TensorSource holds them all already
    if isinstance(held, torch.Tensor) and held.dtype == torch.uint8 and tuple(held.shape[2:]) == (image_size, image_size):
        out = held
    else:
        out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
        from tqdm.auto import tqdm
        for i in tqdm(range(n), desc=f"decoding {n} images", disable=not progress or n < 500,
                      leave=False):
            img = src.get(i)
            if tuple(img.shape[1:]) != (image_size, image_size):
                from torchvision.transforms.v2 import functional as TF  # only here: ~5 s import
                img = TF.resize(img, [image_size, image_size], antialias=True)
            out[i] = img
    cache[image_size] = out
    return out


class BatchAugment:
    """The paper's training augmentation on a float batch in [0, 1], per-image parameters, drawn
    from ``generator`` (kornia's batched augmentations under a forked, seeded RNG)."""

    def __init__(self):
        import kornia.augmentation as K

        self.ops = torch.nn.Sequential(
            K.RandomHorizontalFlip(p=0.5),
            K.RandomAffine(degrees=10.0, shear=10.0, scale=(0.8, 1.2), p=1.0,
                           resample="nearest", padding_mode="zeros"),
            K.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, p=1.0),
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.ops(x)


class BatchLoader:
    """Iterates ``(images, labels)`` batches of one split like a ``DataLoader`` would – float32,
    normalised, shape (B, 3, S, S); int64 labels – from an in-memory uint8 tensor.

    ``shuffle`` draws a new order every epoch from the loader's generator; ``drop_last`` drops a
    short last batch; ``augment`` applies :class:`BatchAugment`; ``device`` (default CPU) is where
    the batch is built and augmented (pass the training device on a GPU).
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], shuffle: bool = False,
                 augment: bool = False, seed: int = 0, drop_last: bool = False,
                 device: str | torch.device | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: give a positive integer")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.augment = BatchAugment() if augment else None
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images[idx].to(self.device, non_blocking=True).float().div_(255.0)
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield (x - self.mean) / self.std, self.labels[idx].to(self.device, non_blocking=True)
