"""MUFAC (Machine Unlearning for Facial Age Classifier), the paper's age benchmark.

MUFAC holds 128x128 photos of Korean families, labelled with 8 age classes
(a 0-6, b 7-12, c 13-19, d 20-30, e 31-45, f 46-55, g 56-66, h 67-80). It cannot be downloaded
here: users bring their own copy, laid out as published::

    data_root/
        custom_train_dataset.csv    columns include image_path, age_class (10,025 rows)
        custom_val_dataset.csv      (1,539 rows)
        custom_test_dataset.csv     (1,504 rows)
        train_images/  val_images/  test_images/

``image_path`` is a file name inside the matching image folder (a path that already starts
with the folder, or an absolute path inside ``data_root``, works too; a path that leads outside
``data_root`` is refused unless ``allow_absolute_paths=True``) and ``age_class`` a letter a-h (the integers
0-7 are accepted as well). File names start with the family id, e.g. ``F0001_AGE_D_18_a1.jpg``;
that id is the image's identity (a leading ``F<digits>`` token of the file name, or else of a
parent folder). The families of train, val and test are disjoint (F0001-F0299 train,
F0801-F0850 val, F0851-F0900 test).

Two ways to choose the forget set:

* ``split="paper"`` – as the authors: the first ``forget_size`` (1,500) training rows in CSV
  order are forgotten, the other 8,525 retained. The CSV is sorted by family, so this forgets
  whole families except, possibly, the last one, which may be cut in two.
* ``split="identity"`` – whole families picked at random (seeded) until their images come
  closest to ``forget_frac`` of the training set (default: the paper's share,
  ``forget_size / n_train``), so that no forgotten person stays in the retain set.

Validation and test are the published CSVs. Images are normalised with ImageNet mean/std and
transformed as in the paper (see :func:`~dlfd_lib.data.splits.train_transform`). MUFAC is known
to contain over 250 identical image pairs, some across forget and retain: ``drop_leaks=True``
(or :mod:`dlfd_lib.data.hygiene`) removes the retain/val/test copies of forget images.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from .common import (assemble_splits, check_files_exist, check_fraction,
                     check_inside_root,
                     check_image_size, check_task, csv_rows, pick_groups,
                     read_table, require_dir, require_file, verify_image_files)
from .errors import DatasetError
from .splits import IMAGENET_MEAN, IMAGENET_STD, UnlearningSplits

__all__ = ["load_mufac", "MUFAC_CLASSES", "MUFAC_FILES", "family_id"]

MUFAC_CLASSES = ["a (0-6)", "b (7-12)", "c (13-19)", "d (20-30)", "e (31-45)", "f (46-55)",
                 "g (56-66)", "h (67-80)"]
#: split -> (CSV file, image folder) of the published layout
MUFAC_FILES = {"train": ("custom_train_dataset.csv", "train_images"),
               "val": ("custom_val_dataset.csv", "val_images"),
               "test": ("custom_test_dataset.csv", "test_images")}
_LETTERS = "abcdefgh"
_FAMILY = re.compile(r"^(F\d+)", re.IGNORECASE)
_LAYOUT_FIX = ("data_root must be the folder that holds custom_train_dataset.csv, "
               "custom_val_dataset.csv, custom_test_dataset.csv and the folders train_images/, "
               "val_images/, test_images/ (MUFAC's published layout).")


def family_id(rel_path: str | Path) -> str | None:
    """The family id (``'F0001'``) of an image path: a leading ``F<digits>`` token of the file
    name, else of the nearest parent folder that has one; ``None`` if there is none."""
    parts = Path(str(rel_path).replace("\\", "/")).parts
    for part in reversed(parts):
        m = _FAMILY.match(part)
        if m:
            return m.group(1).upper()
    return None


def load_mufac(data_root: str | Path, task: str = "age", split: str = "paper",
               forget_size: int = 1500, forget_frac: float | None = None, seed: int = 42,
               image_size: int = 128, verify_images: bool = False, progress: bool = False,
               allow_absolute_paths: bool = False) -> UnlearningSplits:
    """Load MUFAC from ``data_root`` (the published layout, see the module docstring).

    Parameters
    ----------
    data_root : folder holding the three CSV files and the three image folders.
    task : must be ``"age"`` (MUFAC has no other labels).
    split : ``"paper"`` (forget = the first ``forget_size`` training rows in CSV order) or
        ``"identity"`` (forget = all images of a seeded random subset of families).
    forget_size : rows forgotten by the paper split (the paper: 1,500 of 10,025).
    forget_frac : share of the training images forgotten by the identity split; ``None`` takes
        the paper's share ``forget_size / n_train`` (about 0.15).
    seed : seeds the identity split (the paper split has no randomness).
    image_size : side the images are resized to (the paper: 128).
    verify_images : decode every image once at load time (slow) so that a broken file is
        reported now rather than during training; existence is always checked.
    progress : progress bars for ``verify_images``.
    allow_absolute_paths : accept ``image_path`` entries that lead outside ``data_root`` (an
        absolute path elsewhere, or ``../``); refused by default, so that a CSV cannot make the
        kit read arbitrary files.

    Returns
    -------
    UnlearningSplits named ``"mufac"`` with family ids (``'F0001'``) as identities (``None`` if
    some file names carry no family id; ``info["notes"]`` says so) and ``info`` recording the
    layout, the split rule and its parameters.
    """
    check_task(task, "age", "mufac")
    image_size = check_image_size(image_size)
    if split not in ("paper", "identity"):
        raise DatasetError(f"split={split!r} is not a MUFAC split: use 'paper' (first "
                           f"forget_size training rows, as the authors) or 'identity' (whole "
                           f"families at random)")
    root = require_dir(data_root, "MUFAC data_root", _LAYOUT_FIX)
    notes: list[str] = []
    tables = {name: _read_split(root, name, verify_images, progress, allow_absolute_paths)
              for name in MUFAC_FILES}

    # identities: family ids, all or nothing
    all_ids = [fid for name in MUFAC_FILES for fid in tables[name]["ids"]]
    has_ids = all(fid is not None for fid in all_ids)
    if not has_ids:
        lacking = [(name, p) for name in MUFAC_FILES
                   for p, fid in zip(tables[name]["rel"], tables[name]["ids"]) if fid is None]
        note = (f"{len(lacking)} image paths carry no family id (a leading 'F<digits>' token in "
                f"the file or folder name), e.g. {lacking[0][1]!r} in {MUFAC_FILES[lacking[0][0]][0]}; "
                f"identities are therefore None for every split")
        notes.append(note)
        warnings.warn(f"MUFAC: {note}", stacklevel=2)
    else:
        fam = {name: set(tables[name]["ids"]) for name in MUFAC_FILES}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = sorted(fam[a] & fam[b])
            if shared:
                notes.append(f"families shared by {a} and {b} (the published MUFAC splits are "
                             f"identity-disjoint): {shared[:10]}")

    # the forget set
    train = tables["train"]
    n_train = len(train["paths"])

    def checked_size() -> int:
        if isinstance(forget_size, bool) or not isinstance(forget_size, (int, np.integer)) \
                or not 1 <= forget_size < n_train:
            raise DatasetError(f"forget_size must be an integer from 1 to {n_train - 1} (the "
                               f"{MUFAC_FILES['train'][0]} of {root} has {n_train} rows); got "
                               f"{forget_size!r}")
        return int(forget_size)

    if split == "paper":
        size = checked_size()
        forget_mask = np.zeros(n_train, bool)
        forget_mask[:size] = True
        rule = f"first {size} rows of {MUFAC_FILES['train'][0]} (the paper's split)"
    else:
        if not has_ids:
            raise DatasetError(f"split='identity' needs a family id in every MUFAC file name "
                               f"(e.g. F0001_AGE_D_18_a1.jpg): {notes[0]}. Use split='paper'.")
        frac = (checked_size() / n_train if forget_frac is None
                else check_fraction("forget_frac", forget_frac))
        rng = np.random.default_rng(seed)
        forget_mask = pick_groups(np.asarray(train["ids"]), frac * n_train, rng)
        rule = (f"all images of {len(set(np.asarray(train['ids'])[forget_mask]))} families drawn "
                f"at random (seed {seed}) to cover about {frac:.3f} of the training images")

    def part(table: dict, mask: np.ndarray | None = None):
        idx = np.arange(len(table["paths"])) if mask is None else np.flatnonzero(mask)
        ids = np.asarray(table["ids"], dtype=str)[idx] if has_ids else None
        return [table["paths"][i] for i in idx], table["labels"][idx], ids

    parts = {"retain": part(train, ~forget_mask), "forget": part(train, forget_mask),
             "val": part(tables["val"]), "test": part(tables["test"])}
    forget_families = sorted(set(parts["forget"][2])) if has_ids else None
    info = {"dataset": "mufac", "data_root": str(root), "split": split, "split_rule": rule,
            "forget_size": int(forget_mask.sum()), "seed": int(seed),
            "csv": {name: MUFAC_FILES[name][0] for name in MUFAC_FILES},
            "forget_identities": forget_families, "notes": notes}
    if split == "paper" and has_ids:
        cut = set(parts["forget"][2]) & set(parts["retain"][2])
        if cut:
            notes.append(f"the paper split cuts families {sorted(cut)} between forget and retain "
                         f"(the first {int(forget_mask.sum())} rows end inside a family)")
    fix = {"val": f"{MUFAC_FILES['val'][0]} has no rows.",
           "test": f"{MUFAC_FILES['test'][0]} has no rows.",
           "retain": "Lower forget_size / forget_frac.", "forget": "Raise forget_size / forget_frac."}
    splits = assemble_splits("mufac", "age", MUFAC_CLASSES, parts, image_size, IMAGENET_MEAN,
                             IMAGENET_STD, info=info, empty_fix=fix)
    return splits


def _read_split(root: Path, name: str, verify: bool, progress: bool,
                allow_outside: bool = False) -> dict:
    """Read one CSV: resolved image paths, labels 0-7, family ids and the paths as written."""
    csv_name, folder = MUFAC_FILES[name]
    csv_path = require_file(root / csv_name, f"MUFAC {name} CSV", _LAYOUT_FIX)
    table = read_table(csv_path, ["image_path", "age_class"],
                       fix="MUFAC's CSVs name the image in 'image_path' and its age class (a-h) "
                           "in 'age_class'.")
    raw_paths = [str(p).strip().replace("\\", "/") for p in table["image_path"]]
    blank = [i for i, p in enumerate(raw_paths) if not p]
    if blank:
        raise DatasetError(f"empty image_path in {csv_path} at {csv_rows(blank)}: fill in the file "
                           f"name or delete these rows")
    labels = np.full(len(table), -1, np.int64)
    for i, value in enumerate(table["age_class"]):
        v = str(value).strip().lower()
        if len(v) == 1 and v in _LETTERS:
            labels[i] = _LETTERS.index(v)
        elif v.isdigit() and int(v) < len(_LETTERS):
            labels[i] = int(v)
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        values = sorted({str(table["age_class"].iloc[i]) for i in bad})
        raise DatasetError(f"unknown age_class value(s) {values[:10]} in {csv_path} at "
                           f"{csv_rows(bad)}: MUFAC's age classes are the letters a-h (or 0-7). "
                           f"Fix or delete these rows.")
    paths = [_resolve(root, folder, p) for p in raw_paths]
    check_inside_root(paths, raw_paths, root, f"{csv_path} (column image_path)", "MUFAC data_root",
                      allow_outside)
    image_dir = root / folder
    fix = (f"Check that the images sit in {image_dir} under the file names of the image_path "
           f"column." if image_dir.is_dir() else
           f"The image folder {image_dir} is missing: {_LAYOUT_FIX}")
    check_files_exist(paths, f"{csv_path} (column image_path)", fix)
    if verify:
        verify_image_files(paths, str(csv_path), progress)
    rel = [p if p.startswith(folder + "/") else f"{folder}/{p}" for p in raw_paths]
    return {"paths": paths, "labels": labels, "ids": [family_id(r) for r in rel],
            "rel": raw_paths, "csv": csv_path}


def _resolve(root: Path, folder: str, written: str) -> Path:
    """Where an ``image_path`` entry points: inside ``root/folder`` as published; a path that
    already starts with the folder, or an absolute path, is taken as it is."""
    p = Path(written)
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == folder:
        return root / p
    inside = root / folder / p
    if not inside.exists() and (root / p).is_file():  # e.g. 'images/F0001_...jpg' relative to root
        return root / p
    return inside
