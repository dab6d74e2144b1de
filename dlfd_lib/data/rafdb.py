"""RAF-DB (Real-world Affective Faces, basic emotions), the paper's emotion benchmark.

Layout, as the paper used it (class folders, one per emotion)::

    data_root/
        train/1/ ... train/7/      (12,271 images in the usual release)
        test/1/  ... test/7/       (3,068 images)

The released folders are named 1-7 for Surprise, Fear, Disgust, Happiness, Sadness, Anger,
Neutral; they become classes 0-6 with those names. Folders named after the emotions (any
case) are put in the same RAF-DB order; any other folder names are used as they are, sorted.
train and test must hold the same class folders.

Splits, as the authors: 10 % of train is held out for validation, the rest is split at random
into 70 % retain / 30 % forget (not by identity: RAF-DB has no identity labels, so
``identities`` are ``None``), all with one seeded generator (seed 42 by default); the test
folder is the test split. Images are turned to 3-channel grayscale, resized to 128 and
normalised with mean = std = 0.5, as the paper.

Every split gets its own transform. The authors' loader built all splits on one shared dataset
object, so the transform assigned last (the test one) silently applied everywhere and the
training images were never augmented; here each split stores its evaluation transform and
:meth:`UnlearningSplits.dataset` (``augment=True``) builds a fresh augmented view. Their loader
also reseeded Python's global random generator; this one uses a private
``numpy.random.Generator``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import (HALF_MEAN, HALF_STD, assemble_splits, check_files_exist,
                     check_fraction, check_image_size, check_task, class_folders,
                     require_dir, verify_image_files)
from .errors import DatasetError
from .splits import UnlearningSplits

__all__ = ["load_rafdb", "RAFDB_CLASSES"]

#: classes 0-6 = the released folders 1-7
RAFDB_CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
_LAYOUT_FIX = ("data_root must be the folder that holds train/<class>/ and test/<class>/ "
               "(RAF-DB's class folders 1-7).")


def load_rafdb(data_root: str | Path, task: str = "emotion", seed: int = 42,
               val_frac: float = 0.1, forget_frac: float = 0.3, image_size: int = 128,
               grayscale: bool = True, verify_images: bool = False,
               progress: bool = False) -> UnlearningSplits:
    """Load RAF-DB from ``data_root`` (``train/<class>/``, ``test/<class>/``).

    Parameters
    ----------
    data_root : folder holding ``train/`` and ``test/``.
    task : must be ``"emotion"``.
    seed : seeds the validation hold-out and the retain/forget split (the paper: 42).
    val_frac : share of train held out for validation (the paper: 0.1).
    forget_frac : share of the remaining training images forgotten (the paper: 0.3).
    image_size : side the images are resized to (the paper: 128).
    grayscale : convert to 3-channel grayscale first (the paper does); ``False`` keeps colour.
    verify_images : decode every image once at load time (slow); existence is always checked.
    progress : progress bars for ``verify_images``.

    Returns
    -------
    UnlearningSplits named ``"rafdb"`` (mean = std = 0.5, no identities); ``info`` records the
    class folders, the seed and the split sizes.
    """
    check_task(task, "emotion", "rafdb")
    image_size = check_image_size(image_size)
    val_frac = check_fraction("val_frac", val_frac)
    forget_frac = check_fraction("forget_frac", forget_frac)
    root = require_dir(data_root, "RAF-DB data_root", _LAYOUT_FIX)
    found = {}
    skipped: list[Path] = []
    for name in ("train", "test"):
        folder = require_dir(root / name, f"RAF-DB {name} folder", _LAYOUT_FIX)
        found[name], extra = class_folders(folder)
        skipped += extra
        if not found[name]:
            raise DatasetError(f"RAF-DB {name} folder {folder} has no class sub-folders: expected "
                               f"{name}/1 ... {name}/7 (or one folder per emotion)")
    if set(found["train"]) != set(found["test"]):
        only_train = sorted(set(found["train"]) - set(found["test"]))
        only_test = sorted(set(found["test"]) - set(found["train"]))
        raise DatasetError(f"RAF-DB train and test in {root} hold different class folders: only in "
                           f"train/: {only_train}, only in test/: {only_test}. Both must hold the "
                           f"same classes (1-7); add or rename the folders.")
    folders = list(found["train"])
    class_names, folder_label = _class_names(folders)

    def flatten(name: str) -> tuple[list[Path], np.ndarray]:
        paths, labels = [], []
        for folder in folders:
            paths += found[name][folder]
            labels += [folder_label[folder]] * len(found[name][folder])
        return paths, np.asarray(labels, np.int64)

    train_paths, train_labels = flatten("train")
    test_paths, test_labels = flatten("test")
    for name, paths in (("train", train_paths), ("test", test_paths)):
        if not paths:
            raise DatasetError(f"RAF-DB {name} folder {root / name} holds no images "
                               f"(.jpg, .jpeg, .png, .webp) in its class folders")
        check_files_exist(paths, f"{root / name}", "Check the files' permissions and links.")
        if verify_images:
            verify_image_files(paths, str(root / name), progress)

    # the paper's split: one seeded permutation -> val | retain | forget
    n = len(train_paths)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = int(round(val_frac * n))
    rest = perm[n_val:]
    n_forget = int(round(forget_frac * len(rest)))
    idx = {"val": np.sort(perm[:n_val]), "retain": np.sort(rest[:len(rest) - n_forget]),
           "forget": np.sort(rest[len(rest) - n_forget:])}
    parts = {k: ([train_paths[i] for i in v], train_labels[v], None) for k, v in idx.items()}
    parts["test"] = (test_paths, test_labels, None)
    info = {"dataset": "rafdb", "data_root": str(root), "seed": int(seed),
            "val_frac": val_frac, "forget_frac": forget_frac,
            "split_rule": (f"train/ shuffled with seed {seed}: {n_val} validation, then "
                           f"{len(rest) - n_forget} retain / {n_forget} forget; test = test/"),
            "class_folders": {f: class_names[folder_label[f]] for f in folders},
            "skipped_files": [str(p) for p in skipped[:20]], "n_skipped_files": len(skipped),
            "forget_identities": None, "notes": []}
    fix = {"val": "Raise val_frac or add training images.",
           "forget": "Raise forget_frac or add training images.",
           "retain": "Lower forget_frac / val_frac or add training images.",
           "test": f"Put images into the class folders of {root / 'test'}."}
    splits = assemble_splits("rafdb", "emotion", class_names, parts, image_size, HALF_MEAN,
                             HALF_STD, grayscale=grayscale, info=info, empty_fix=fix)
    return splits


def _class_names(folders: list[str]) -> tuple[list[str], dict[str, int]]:
    """Class names and the label of each folder: numeric folders 1-7 and folders named after the
    emotions follow RAF-DB's order; other names are sorted."""
    if all(f.isdigit() and 1 <= int(f) <= len(RAFDB_CLASSES) for f in folders):
        numbers = [int(f) for f in folders]
        if len(set(numbers)) != len(numbers):  # '1' and '01'
            raise DatasetError(f"RAF-DB class folders {folders} name the same class twice")
        return list(RAFDB_CLASSES), {f: int(f) - 1 for f in folders}
    lowered = [f.lower() for f in folders]
    if set(lowered) == set(RAFDB_CLASSES) and len(set(lowered)) == len(lowered):
        return list(RAFDB_CLASSES), {f: RAFDB_CLASSES.index(f.lower()) for f in folders}
    names = sorted(folders)
    return names, {f: names.index(f) for f in folders}
