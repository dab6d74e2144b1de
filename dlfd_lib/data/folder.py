"""Any face dataset: an image-folder tree or a CSV file, with the user's own forget list.

Two layouts are read:

* **Image folder** (torchvision's ``ImageFolder`` convention)::

      root/<class>/*.jpg                          one pool, val/test held out here, or
      root/train/<class>/  root/val/<class>/  root/test/<class>/     (val and test optional;
                                                  'valid'/'validation' also name val)

  The class is the folder name. Identities can be parsed from the file path with
  ``identity_regex`` (e.g. ``r"^[^/]+/(\\w+?)_"`` for ``<class>/<person>_<n>.jpg``).

* **CSV file** with the columns ``path`` and ``label`` and, optionally, ``identity`` and
  ``split`` (column names are case-insensitive). ``path`` is relative to ``image_root``
  (default: ``data_root`` if that is a folder, else the CSV's own folder) or absolute; a path
  that leads outside that root is refused unless ``allow_absolute_paths=True``.
  ``split`` holds train / val / test (also validation, valid, dev, testing), or retain /
  forget to fix those directly.

**The forget set** is what the user says: ``forget`` is a list of identities or image paths,
or the path of a text file with one per line (blank lines and lines starting with '#' are
skipped). An entry is matched against the identities first (when there are any), then
against the image paths as written in the CSV / relative to the root, then against absolute
paths. Every entry must match at least one training image, else the error lists the ones that
match nothing. Without a forget list (and without 'forget' in a split column), a seeded random
``forget_frac`` of the training images is forgotten, whole identities at a time when there
are identities.

**Missing validation or test split**: ``val_frac`` / ``test_frac`` of all images are held out
from the training pool with the seeded generator, whole identities at a time when there are
identities (so that held-out people are unseen). Identities that own a forget image, or a
row pinned to a split, are never held out.

The result is the same :class:`~dlfd_lib.data.splits.UnlearningSplits` as every other
dataset (ImageNet normalisation by default; ``mean``/``std``/``grayscale`` change that).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .common import (assemble_splits, check_files_exist,
                     check_inside_root,
                     check_fraction, check_image_size, class_folders, csv_rows,
                     pick_groups, read_table, require_dir,
                     require_file, sort_key, verify_image_files)
from .errors import DatasetError, DatasetNotFoundError
from .splits import IMAGENET_MEAN, IMAGENET_STD, UnlearningSplits

__all__ = ["load_folder", "read_forget_list", "FolderOptions"]

_SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "dev": "val", "test": "test", "testing": "test",
                "retain": "retain", "forget": "forget"}
_TREE_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class FolderOptions:
    """How :func:`load_folder` draws and reads the images (each field can also be passed to it by
    name; the Parameters of :func:`load_folder` say what each does)."""

    forget_frac: float = 0.15
    val_frac: float = 0.1
    test_frac: float = 0.1
    image_size: int = 128
    class_names: Sequence[str] | None = None
    identity_regex: str | None = None
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    grayscale: bool = False
    verify_images: bool = False
    allow_absolute_paths: bool = False


def load_folder(data_root: str | Path, task: str = "custom", *, csv: str | Path | None = None,
                image_root: str | Path | None = None, forget: str | Path | Sequence[str] | None = None,
                seed: int = 42, progress: bool = False, name: str = "folder",
                options: FolderOptions | None = None, **settings) -> UnlearningSplits:
    """Load an image-folder tree or a CSV-described dataset (see the module docstring).

    Parameters
    ----------
    data_root : the image-folder root, a folder holding the CSV named by ``csv``, or the CSV
        file itself.
    task : a free name for the labels (stored in ``splits.task``).
    csv : the CSV file (absolute, or relative to ``data_root``); ``None`` reads ``data_root``
        as an image-folder tree unless it is itself a ``.csv`` file.
    image_root : folder that relative CSV paths start from (default: ``data_root`` if it is a
        folder, else the CSV's folder).
    forget : identities or image paths to forget (a list), or a text file of them, one per
        line; ``None`` draws ``forget_frac`` at random (seeded, by identity if there are any).
    forget_frac : share of the training images forgotten when there is no forget list.
    val_frac, test_frac : share of all images held out as val / test when the data have no
        such split.
    seed : seeds every random choice (hold-outs and the random forget set).
    image_size : side the images are resized to.
    class_names : the classes in label order; default: the labels / class folders sorted
        (numerically when they are all integers). Labels outside the list are an error.
    identity_regex : regular expression searched in each image's relative path (``/``
        separators) to find its identity (group 1 if it has a group, else the whole match);
        used when the data carry no ``identity`` column.
    mean, std : normalisation (ImageNet by default; the paper uses 0.5/0.5 for RAF-DB).
    grayscale : convert images to 3-channel grayscale before the transforms.
    verify_images : decode every image once at load time (slow); existence is always checked.
    progress : progress bars for ``verify_images``.
    name : the dataset name stored in the splits.
    allow_absolute_paths : accept CSV paths that lead outside the image root (an absolute path
        elsewhere, or ``../``); refused by default, so that a CSV cannot make the kit read
        arbitrary files.
    options : a :class:`FolderOptions` holding the settings above from ``forget_frac`` on (those
        passed by name replace its fields).
    """
    known = set(FolderOptions.__dataclass_fields__)
    bad = sorted(set(settings) - known)
    if bad:
        raise TypeError(f"load_folder: unknown option(s) {bad}; valid: {sorted(known)} (and data_root, task, "
                        f"csv, image_root, forget, seed, progress, name)")
    opt = replace(options or FolderOptions(), **settings)
    forget_frac, val_frac, test_frac, image_size = opt.forget_frac, opt.val_frac, opt.test_frac, opt.image_size
    class_names, identity_regex, mean, std = opt.class_names, opt.identity_regex, opt.mean, opt.std
    grayscale, verify_images, allow_absolute_paths = opt.grayscale, opt.verify_images, opt.allow_absolute_paths
    image_size = check_image_size(image_size)
    forget_frac = check_fraction("forget_frac", forget_frac)
    val_frac = check_fraction("val_frac", val_frac)
    test_frac = check_fraction("test_frac", test_frac)
    if data_root is None:
        raise DatasetNotFoundError("no data_root given: pass the image-folder root or the CSV file")
    root = Path(data_root).expanduser()
    if csv is not None or root.suffix.lower() == ".csv":
        csv_path = Path(csv).expanduser() if csv is not None else root
        if csv is not None and not csv_path.is_absolute():
            csv_path = require_dir(root, "data_root", "pass the folder that holds the CSV") / csv_path
        csv_path = require_file(csv_path, "CSV file", "check the path (csv= is read relative to "
                                                      "data_root unless absolute)")
        base = Path(image_root).expanduser() if image_root is not None else \
            (root if root.is_dir() else csv_path.parent)
        rec = _read_csv(csv_path, base)
        where = str(csv_path)
        check_inside_root(rec["paths"], rec["rel"], base, f"{csv_path} (column path)",
                          "image root", allow_absolute_paths)
    else:
        root = require_dir(root, "data_root", "pass an image-folder tree (root/<class>/*.jpg or "
                                              "root/train|val|test/<class>/*.jpg) or a CSV file")
        rec = _read_tree(root)
        base = root
        where = str(root)
    n = len(rec["paths"])
    if n == 0:
        raise DatasetError(f"no images found in {where} (looked for .jpg, .jpeg, .png, .webp)")
    check_files_exist(rec["paths"], where, f"Relative paths are read from {base}; pass "
                                           f"image_root= if they start from another folder.")
    if verify_images:
        verify_image_files(rec["paths"], where, progress)
    notes: list[str] = list(rec["notes"])

    # identities from the path, if asked
    ids = rec["ids"]
    if ids is None and identity_regex is not None:
        ids = _ids_from_regex(rec["rel"], identity_regex, where)
    elif ids is not None and identity_regex is not None:
        notes.append("identity_regex was ignored: the CSV has an identity column")

    # labels
    names, labels = _encode_labels(rec["labels"], class_names, rec["label_where"], rec["is_csv"])
    split = np.asarray(rec["split"], dtype=object)

    # the forget list
    forget_mask = split == "forget"
    entries: list[str] = []
    if forget is not None:
        entries = read_forget_list(forget)
        hits = _match_forget(entries, rec, ids, base)
        held = np.flatnonzero(hits & np.isin(split, ["val", "test"]))
        if len(held):
            raise DatasetError(f"{len(held)} images named by the forget list are in the val/test "
                               f"split of {where}, e.g. {rec['rel'][held[0]]}: the forget set must "
                               f"come from the training images. Fix the list or the split column.")
        forget_mask |= hits
    split[forget_mask] = "forget"
    rng = np.random.default_rng(seed)

    # hold out val / test where the data have none
    groups = ids if ids is not None else np.arange(n)
    for target, frac in (("test", test_frac), ("val", val_frac)):
        if (split == target).any():
            continue
        pinned = split != "train"
        candidates = ~pinned
        if ids is not None:
            candidates &= ~np.isin(ids, ids[pinned])
        if not candidates.any():
            continue  # the empty split is reported below
        chosen = pick_groups(groups, frac * n, rng, candidates)
        split[chosen] = target
        how = "whole identities" if ids is not None else "images"
        notes.append(f"{target}: {int(chosen.sum())} images ({how}) held out at random "
                     f"(seed {seed}, {target}_frac={frac})")

    # a random forget set if the user gave none
    if not (split == "forget").any() and forget is None:
        candidates = split == "train"
        if candidates.any():
            chosen = pick_groups(groups, forget_frac * candidates.sum(), rng, candidates)
            split[chosen] = "forget"
            how = "whole identities" if ids is not None else "images"
            rule = f"random {forget_frac} of the training images ({how}, seed {seed})"
        else:
            rule = "none"
    elif forget is not None:
        rule = f"forget list ({len(entries)} entries" + (
            f" from {Path(forget)})" if isinstance(forget, (str, Path)) else ")")
    else:
        rule = "split column = forget"
    split[split == "train"] = "retain"

    def part(which: str):
        idx = np.flatnonzero(split == which)
        return ([rec["paths"][i] for i in idx], labels[idx],
                None if ids is None else ids[idx])

    parts = {s: part(s) for s in ("retain", "forget", "val", "test")}
    info = {"dataset": name, "data_root": str(data_root), "layout": rec["layout"],
            "csv": rec.get("csv"), "image_root": str(base), "seed": int(seed),
            "forget_rule": rule, "forget_entries": len(entries),
            "forget_identities": None if ids is None else sorted(set(parts["forget"][2].tolist())),
            "notes": notes}
    fix = {"forget": "Give a forget list (forget=...) that names training images, or raise "
                     "forget_frac.",
           "retain": "The forget list / split column leaves no training image to retain.",
           "val": "Add a val split (folder or split column) or more training images/identities "
                  "for val_frac to hold out.",
           "test": "Add a test split (folder or split column) or more training images/identities "
                   "for test_frac to hold out."}
    splits = assemble_splits(name, task, names, parts, image_size, mean, std,
                             grayscale=grayscale, info=info, empty_fix=fix)
    return splits


# --------------------------------------------------------------------------------------------
# reading the two layouts
# --------------------------------------------------------------------------------------------
def _read_tree(root: Path) -> dict:
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_layout = bool(subdirs) and all(p.name.lower() in _TREE_SPLITS for p in subdirs) \
        and any(_TREE_SPLITS[p.name.lower()] == "train" for p in subdirs)
    notes: list[str] = []
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    if loose:
        notes.append(f"{len(loose)} files directly in {root} were ignored: images must sit in a "
                     f"class folder")
    paths: list[Path] = []
    labels: list[str] = []
    split: list[str] = []
    where: list[str] = []
    tops = sorted(subdirs, key=sort_key) if split_layout else [root]
    for top in tops:
        which = _TREE_SPLITS[top.name.lower()] if split_layout else "train"
        classes, skipped = class_folders(top)
        if skipped:
            notes.append(f"{len(skipped)} non-image files under {top} were skipped, e.g. {skipped[0]}")
        for cls, files in classes.items():
            paths += files
            labels += [cls] * len(files)
            split += [which] * len(files)
            where += [str(top / cls)] * len(files)
    rel = [p.relative_to(root).as_posix() for p in paths]
    return {"paths": paths, "rel": rel, "labels": labels, "ids": None, "split": split,
            "label_where": where, "is_csv": False, "notes": notes,
            "layout": "imagefolder with train/val/test" if split_layout else "imagefolder"}


def _read_csv(csv_path: Path, base: Path) -> dict:
    table = read_table(csv_path, [])
    lower = {c.lower(): c for c in table.columns}
    missing = [c for c in ("path", "label") if c not in lower]
    if missing:
        raise DatasetError(f"CSV file {csv_path} lacks the column(s) {missing}; columns found: "
                           f"{list(table.columns)}. It needs 'path' (image file) and 'label' "
                           f"(class), optionally 'identity' and 'split' (rename the columns).")
    col = lambda c: [str(v).strip() for v in table[lower[c]]]  # noqa: E731
    written = [p.replace("\\", "/") for p in col("path")]
    labels = col("label")
    for field, values in (("path", written), ("label", labels)):
        blank = [i for i, v in enumerate(values) if not v]
        if blank:
            raise DatasetError(f"empty '{field}' in {csv_path} at {csv_rows(blank)}: fill it in or "
                               f"delete these rows")
    ids = None
    if "identity" in lower:
        ids_list = col("identity")
        blank = [i for i, v in enumerate(ids_list) if not v]
        if blank:
            raise DatasetError(f"empty 'identity' in {csv_path} at {csv_rows(blank)}: give every "
                               f"row an identity, or drop the identity column")
        ids = np.asarray(ids_list, dtype=str)
    if "split" in lower:
        raw = col("split")
        split = [_SPLIT_WORDS.get(v.lower(), "?") for v in raw]
        bad = [i for i, s in enumerate(split) if s == "?"]
        if bad:
            values = sorted({raw[i] for i in bad})
            raise DatasetError(f"unknown 'split' value(s) {values[:10]} in {csv_path} at "
                               f"{csv_rows(bad)}: use train, val, test, retain or forget")
    else:
        split = ["train"] * len(written)
    paths = [Path(p) if Path(p).is_absolute() else base / p for p in written]
    return {"paths": paths, "rel": written, "labels": labels, "ids": ids, "split": split,
            "label_where": None, "is_csv": True, "notes": [], "csv": str(csv_path),
            "csv_path": csv_path, "layout": "csv"}


# --------------------------------------------------------------------------------------------
# labels, identities, forget lists
# --------------------------------------------------------------------------------------------
def _encode_labels(values: list[str], class_names: Sequence[str] | None,
                   where: list[str] | None, is_csv: bool) -> tuple[list[str], np.ndarray]:
    found = sorted(set(values))
    if class_names is None:
        if all(re.fullmatch(r"-?\d+", v) for v in found):
            found = sorted(found, key=int)
        names = found
    else:
        names = [str(c) for c in class_names]
        if len(set(names)) != len(names):
            raise DatasetError(f"class_names {names} lists a class twice")
        unknown = sorted(set(values) - set(names))
        if unknown:
            rows = [i for i, v in enumerate(values) if v in set(unknown)]
            loc = (f"at {csv_rows(rows)} of the CSV" if is_csv else
                   f"(class folders {sorted({where[i] for i in rows})[:5]})")
            raise DatasetError(f"label value(s) {unknown[:10]} {loc} are not in class_names "
                               f"{names}: add them to class_names or fix the labels")
    if len(names) < 2:
        raise DatasetError(f"the dataset has {len(names)} class ({names}); a classifier needs at "
                           f"least 2 (check the label column / class folders)")
    index = {c: k for k, c in enumerate(names)}
    return names, np.asarray([index[v] for v in values], np.int64)


def _ids_from_regex(rel: list[str], pattern: str, where: str) -> np.ndarray:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"identity_regex {pattern!r} is not a valid regular expression: "
                           f"{exc}") from None
    out = []
    failed = []
    for p in rel:
        m = rx.search(p)
        if m is None or not (m.group(1) if rx.groups else m.group(0)):
            failed.append(p)
            out.append("")
        else:
            out.append(m.group(1) if rx.groups else m.group(0))
    if failed:
        raise DatasetError(f"identity_regex {pattern!r} finds no identity in {len(failed)} of "
                           f"{len(rel)} image paths of {where}, e.g. {failed[:3]}: adjust the "
                           f"expression (it is searched in the path relative to the root)")
    return np.asarray(out, dtype=str)


def read_forget_list(forget: str | Path | Iterable[str]) -> list[str]:
    """The entries of a forget list: a list of identities / paths, or a text file of them
    (one per line; blank lines and lines starting with '#' skipped)."""
    if isinstance(forget, (str, Path)):
        path = require_file(forget, "forget list", "pass a text file with one identity or image "
                                                   "path per line, or a Python list of them")
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not entries:
            raise DatasetError(f"forget list {path} holds no entries: put one identity or image "
                               f"path per line")
        return entries
    entries = [str(e).strip() for e in forget]
    entries = [e for e in entries if e]
    if not entries:
        raise DatasetError("the forget list is empty: name the identities or image paths to "
                           "forget, or pass forget=None for a random forget set")
    return entries


def _match_forget(entries: list[str], rec: dict, ids: np.ndarray | None, base: Path) -> np.ndarray:
    """Boolean mask of the images named by ``entries`` (identity, relative or absolute path)."""
    n = len(rec["paths"])
    by_key: dict[str, list[int]] = {}
    for i, (rel, p) in enumerate(zip(rec["rel"], rec["paths"])):
        by_key.setdefault(rel, []).append(i)
        by_key.setdefault(p.as_posix(), []).append(i)
        by_key.setdefault(str(p.resolve()), []).append(i)
    by_id: dict[str, list[int]] = {}
    if ids is not None:
        for i, pid in enumerate(ids):
            by_id.setdefault(str(pid), []).append(i)
    mask = np.zeros(n, bool)
    unmatched = []
    for e in entries:
        key = e.replace("\\", "/")
        hit = by_id.get(e)
        if hit is None:
            hit = by_key.get(key)
        if hit is None:
            p = Path(key)
            hit = by_key.get(str((p if p.is_absolute() else base / p).resolve()))
        if hit is None:
            unmatched.append(e)
        else:
            mask[hit] = True
    if unmatched:
        kinds = "identities or image paths" if ids is not None else "image paths"
        raise DatasetError(f"{len(unmatched)} of {len(entries)} forget-list entries match no image: "
                           f"{unmatched[:5]}. Entries must be {kinds} relative to {base} (as in "
                           f"the CSV / folder), e.g. {rec['rel'][0]!r}"
                           + (f" or {str(ids[0])!r}" if ids is not None else "") + ".")
    return mask


load_folder.options_class = FolderOptions  # what load_splits and the parameter check list as its options
