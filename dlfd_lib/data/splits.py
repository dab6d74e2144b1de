"""The one data object every dataset produces: :class:`UnlearningSplits`.

Machine unlearning needs five views of a dataset:

* ``train``  – everything the original model was trained on (retain + forget),
* ``retain`` – the training images we are allowed to keep (D_r),
* ``forget`` – the training images of the people who asked to be forgotten (D_f),
* ``val``    – held-out images for model selection,
* ``test``   – held-out images for the final numbers (the "unseen" set of the MIA).

Every dataset (the synthetic faces, MUFAC, RAF-DB, any image folder) builds an
``UnlearningSplits``; models, training, unlearning and metrics only ever see this object.

Images are held as uint8 CHW tensors (in memory) or as file paths decoded to uint8 CHW tensors
on access; the same two transforms (training augmentation of the paper, plain evaluation) then
turn them into normalised float tensors.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

SPLIT_NAMES = ("train", "retain", "forget", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------
class LazyTransform:
    """A transform that builds its torchvision pipeline on first use.

    Every split carries its per-image transforms, but the in-memory batch path
    (:mod:`dlfd_lib.data.batches`) never calls them, and importing torchvision costs ~5 s
    (it pulls in torch's compiler). Picklable (for ``num_workers > 0``): the built pipeline is
    dropped and rebuilt in the worker."""

    def __init__(self, build: Callable[..., Callable], *args):
        self.build, self.args, self._fn = build, args, None

    def __call__(self, img):
        if self._fn is None:
            self._fn = self.build(*self.args)
        return self._fn(img)

    def __getstate__(self):
        return {"build": self.build, "args": self.args, "_fn": None}

    def __repr__(self) -> str:
        return f"LazyTransform({self.build.__name__}{self.args})"


def eval_pipeline(image_size: int, mean: tuple, std: tuple) -> Callable:
    from torchvision.transforms import v2
    return v2.Compose([
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def train_pipeline(image_size: int, mean: tuple, std: tuple) -> Callable:
    from torchvision.transforms import v2
    return v2.Compose([
        v2.Resize((image_size, image_size), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, shear=10, scale=(0.8, 1.2)),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """uint8 CHW tensor -> resized, normalised float tensor (no randomness)."""
    return LazyTransform(eval_pipeline, image_size, tuple(mean), tuple(std))


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """The paper's augmentation: horizontal flip, affine (shear 10, scale 0.8-1.2),
    rotation 10 degrees and colour jitter 0.2, then normalisation."""
    return LazyTransform(train_pipeline, image_size, tuple(mean), tuple(std))


# --------------------------------------------------------------------------------------------
# image sources
# --------------------------------------------------------------------------------------------
class ImageSource:
    """Where the pixels of one split come from: ``len`` and ``get(i) -> uint8 CHW tensor``."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def get(self, i: int) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def subset(self, idx: np.ndarray) -> "ImageSource":  # pragma: no cover - interface
        raise NotImplementedError

    def digest(self) -> str:  # pragma: no cover - interface
        """A hex digest that changes when any image changes (see the subclasses)."""
        raise NotImplementedError


class TensorSource(ImageSource):
    """Images already in memory as a uint8 tensor of shape (N, 3, H, W)."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"TensorSource needs uint8 images of shape (N, 3, H, W); got "
                             f"{tuple(images.shape)} {images.dtype}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def get(self, i: int) -> torch.Tensor:
        return self.images[i]

    def subset(self, idx: np.ndarray) -> "TensorSource":
        return TensorSource(self.images[torch.tensor(np.asarray(idx), dtype=torch.long)])  # copies: idx may be read-only

    def digest(self) -> str:
        """SHA-1 of the pixel bytes, computed once per state of the tensor (torch counts its
        in-place changes in ``_version``, so an edited image is hashed again)."""
        key = (self.images.data_ptr(), tuple(self.images.shape), self.images._version)
        cached = getattr(self, "_digest", None)
        if cached is None or cached[0] != key:
            data = self.images.detach().cpu().contiguous().numpy()
            self._digest = (key, hashlib.sha1(memoryview(data).cast("B")).hexdigest())
        return self._digest[1]


class FileSource(ImageSource):
    """Images on disk, decoded on access to uint8 RGB (grayscale is repeated to 3 channels)."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> torch.Tensor:
        # Pillow, not torchvision.io: torchvision deprecated its decoders in 0.29
        from PIL import Image
        path = self.paths[i]
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))  # (H, W, 3) uint8
            return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
        except Exception as exc:  # Pillow's errors do not always name the file
            raise RuntimeError(f"could not read image {path}: {exc}. Check that the file exists "
                               f"and is a valid JPEG/PNG, or remove it from the dataset.") from exc

    def subset(self, idx: np.ndarray) -> "FileSource":
        return FileSource([self.paths[int(i)] for i in idx])

    def digest(self) -> str:
        """SHA-1 of every file's path, size and modification time (one ``stat`` per image, no
        decoding: a few milliseconds per thousand images), so that a replaced, edited or
        re-exported image changes it; a missing file counts as its own state."""
        h = hashlib.sha1()
        for p in self.paths:
            try:
                st = os.stat(p)
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}\0missing\n".encode())
        return h.hexdigest()


# --------------------------------------------------------------------------------------------
# one split
# --------------------------------------------------------------------------------------------
class SplitDataset(Dataset):
    """A split as a torch Dataset returning ``(image, label)`` with a given transform."""

    def __init__(self, source: ImageSource, labels: np.ndarray, transform: Callable,
                 identities: np.ndarray | None = None):
        if len(source) != len(labels):
            raise ValueError(f"{len(source)} images but {len(labels)} labels")
        self.source = source
        self.labels = np.asarray(labels, dtype=np.int64)
        self.identities = None if identities is None else np.asarray(identities)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.source.get(i)), int(self.labels[i])

    def with_transform(self, transform: Callable) -> "SplitDataset":
        return SplitDataset(self.source, self.labels, transform, self.identities)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "SplitDataset":
        idx = np.asarray(idx, dtype=np.int64)
        ids = None if self.identities is None else self.identities[idx]
        return SplitDataset(self.source.subset(idx), self.labels[idx], self.transform, ids)


# --------------------------------------------------------------------------------------------
# the five splits
# --------------------------------------------------------------------------------------------
@dataclass
class UnlearningSplits:
    """train = retain + forget, val and test, sharing class names, image size and normalisation.

    Each split is stored once with the evaluation transform; :meth:`loader` hands out the
    augmented training view or the plain evaluation view of any split.
    """

    name: str
    task: str
    class_names: list[str]
    retain: SplitDataset
    forget: SplitDataset
    val: SplitDataset
    test: SplitDataset
    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in ("retain", "forget", "val", "test"):
            if len(getattr(self, split)) == 0:
                raise ValueError(f"the {split} split of dataset {self.name!r} is empty: check the "
                                 f"data root and the forget list / split fractions")
        for split in ("retain", "forget", "val", "test"):
            labels = getattr(self, split).labels
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"{split} labels of {self.name!r} fall outside 0..{self.num_classes - 1} "
                                 f"({self.num_classes} classes: {self.class_names})")
        self._train = _concat(self.retain, self.forget)

    # ---- basic facts -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train(self) -> SplitDataset:
        return self._train

    def split(self, name: str) -> SplitDataset:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; choose one of {SPLIT_NAMES}")
        return self.train if name == "train" else getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLIT_NAMES}

    def identities(self, name: str) -> np.ndarray | None:
        return self.split(name).identities

    def labels(self, name: str) -> np.ndarray:
        return self.split(name).labels

    # ---- transforms and loaders -------------------------------------------------------------
    def transform(self, augment: bool) -> Callable:
        make = train_transform if augment else eval_transform
        return make(self.image_size, self.mean, self.std)

    def dataset(self, name: str, augment: bool = False) -> SplitDataset:
        """The split with the training augmentation (``augment=True``) or without."""
        base = self.split(name)
        return base.with_transform(self.transform(augment)) if augment else base

    def images_uint8(self, name: str) -> torch.Tensor:
        """The split's images as one uint8 (N, 3, S, S) tensor at the splits' image size, decoded
        and resized once, then cached (train = retain + forget shares their caches)."""
        from .batches import materialise
        if name == "train":
            cache = self._train.__dict__.setdefault("_uint8_cache", {})
            if self.image_size not in cache:
                cache[self.image_size] = torch.cat([self.images_uint8("retain"),
                                                    self.images_uint8("forget")])
            return cache[self.image_size]
        return materialise(self.split(name), self.image_size, progress=True)

    def loader(self, name: str, batch_size: int = 64, augment: bool = False,
               shuffle: bool | None = None, seed: int = 0, num_workers: int = 0,
               drop_last: bool = False, device: str | torch.device | None = None,
               in_memory: bool | None = None):
        """Batches ``(images, labels)`` of one split. Shuffling (default: on when augmenting) and
        the augmentation are seeded by ``seed``.

        By default the split is decoded once into memory and batches are cut (and augmented a
        whole batch at a time, per-image parameters) from it: a :class:`~.batches.BatchLoader`,
        built on ``device`` (default CPU). ``num_workers > 0``, or a split too large for
        :data:`~.batches.MAX_IN_MEMORY_BYTES`, streams images through a torch ``DataLoader`` with
        the per-image transforms instead; ``in_memory`` forces one path or the other."""
        from . import batches
        shuffle = augment if shuffle is None else shuffle
        split = self.split(name)
        fits = len(split) * 3 * self.image_size ** 2 <= batches.MAX_IN_MEMORY_BYTES
        if in_memory is None:
            in_memory = num_workers == 0 and fits
        if in_memory:
            return batches.BatchLoader(self.images_uint8(name), split.labels, batch_size, self.mean,
                                       self.std, shuffle=shuffle, augment=augment, seed=seed,
                                       drop_last=drop_last, device=device)
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self.dataset(name, augment), batch_size=batch_size, shuffle=shuffle,
                          generator=gen, num_workers=num_workers, drop_last=drop_last,
                          persistent_workers=num_workers > 0)

    def summary(self) -> "pandas.DataFrame":  # noqa: F821
        import pandas as pd
        rows = []
        for s in SPLIT_NAMES:
            d = self.split(s)
            ids = d.identities
            rows.append({"split": s, "images": len(d),
                         "identities": int(len(np.unique(ids))) if ids is not None else None,
                         **{c: int((d.labels == k).sum()) for k, c in enumerate(self.class_names)}})
        return pd.DataFrame(rows).set_index("split")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return (f"UnlearningSplits({self.name!r}, task={self.task!r}, classes={self.num_classes}, "
                f"{self.image_size}px, {sizes})")


def content_digest(splits: "UnlearningSplits") -> dict[str, str]:
    """One hex digest per split (retain, forget, val, test) of its labels, identities and
    images (:meth:`ImageSource.digest`): it changes when a label, an identity, the membership
    of a split or the content of an image changes. Keys the checkpoint caches of
    :func:`dlfd_lib.train.train_or_load` and :func:`dlfd_lib.unlearned.unlearned_model`."""
    out = {}
    for name in ("retain", "forget", "val", "test"):
        d = splits.split(name)
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(d.labels, dtype=np.int64).tobytes())
        if d.identities is not None:
            h.update("\0".join(map(str, d.identities.tolist())).encode())
        else:
            h.update(b"no identities")
        h.update(d.source.digest().encode())
        out[name] = h.hexdigest()[:16]
    return out


def _concat(a: SplitDataset, b: SplitDataset) -> SplitDataset:
    """Concatenate two splits that share a transform (used for train = retain + forget)."""
    if isinstance(a.source, TensorSource) and isinstance(b.source, TensorSource):
        source: ImageSource = TensorSource(torch.cat([a.source.images, b.source.images]))
    elif isinstance(a.source, FileSource) and isinstance(b.source, FileSource):
        source = FileSource(a.source.paths + b.source.paths)
    else:
        raise TypeError(f"cannot join a {type(a.source).__name__} and a {type(b.source).__name__}: "
                        f"retain and forget must come from the same kind of image source")
    ids = None
    if a.identities is not None and b.identities is not None:
        ids = np.concatenate([a.identities, b.identities])
    return SplitDataset(source, np.concatenate([a.labels, b.labels]), a.transform, ids)

