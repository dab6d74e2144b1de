"""Shared building blocks of the file-based datasets (MUFAC, RAF-DB, any image folder).

The real datasets cannot be shipped with the kit, so users point the loaders at their own copy.
Most things that go wrong then are mundane – a wrong folder, a renamed column, a missing or
broken image, a label the loader does not know – and the loaders should say *which* file or
field is at fault and how to fix it, instead of failing deep inside a training loop. This
module holds those checks (they raise :class:`~dlfd_lib.data.errors.DatasetError`) and the last step every
loader shares: turning lists of paths, labels and identities into an
:class:`~dlfd_lib.data.splits.UnlearningSplits` backed by a
:class:`~dlfd_lib.data.splits.FileSource`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import DatasetError, DatasetNotFoundError
from .splits import (IMAGENET_MEAN, IMAGENET_STD, FileSource, LazyTransform, SplitDataset,
                     UnlearningSplits, eval_pipeline, train_pipeline, eval_transform, train_transform)

__all__ = ["IMAGE_EXTENSIONS", "HALF_MEAN", "HALF_STD",
           "GrayscaleSplits", "require_dir", "require_file", "check_task", "check_image_size",
           "check_fraction", "read_table", "csv_rows", "check_files_exist", "check_inside_root",
           "verify_image_files", "list_images", "class_folders", "sort_key", "pick_groups",
           "assemble_splits"]

#: file endings the loaders treat as images (what torchvision's decoder reads)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
#: RAF-DB's normalisation in the paper: mean = std = 0.5 on every channel
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------
# grayscale datasets (RAF-DB in the paper)
# --------------------------------------------------------------------------------------------
class GrayscaleSplits(UnlearningSplits):
    """:class:`UnlearningSplits` whose images are turned to grayscale (repeated over three
    channels) before any other transform, in the evaluation *and* the augmented view.

    The paper feeds RAF-DB to the ResNet as 3-channel grayscale. Doing the conversion in the
    transform (rather than in the image source) keeps ``train = retain + forget`` and every
    subset grayscale too, since those views are rebuilt from the same transforms.
    """

    def transform(self, augment: bool) -> Callable:
        return grayscale_transform(self.image_size, self.mean, self.std, augment)


def _grayscale_pipeline(image_size: int, mean: tuple, std: tuple, augment: bool) -> Callable:
    from torchvision.transforms import v2
    make = train_pipeline if augment else eval_pipeline
    return v2.Compose([v2.Grayscale(num_output_channels=3), make(image_size, mean, std)])


def grayscale_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                        augment: bool) -> Callable:
    """Grayscale (3 channels), then the paper's training or evaluation transform."""
    return LazyTransform(_grayscale_pipeline, image_size, tuple(mean), tuple(std), augment)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def require_dir(path: str | Path | None, what: str, fix: str) -> Path:
    """``path`` as a Path if it is an existing folder, else a :class:`DatasetNotFoundError`."""
    if path is None:
        raise DatasetNotFoundError(f"no {what} given: {fix}")
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {path} does not exist: {fix}")
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what} {path} is a file, not a folder: {fix}")
    return path


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as a Path if it is an existing file, else a :class:`DatasetNotFoundError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DatasetNotFoundError(f"{what} {path} {state}: {fix}")
    return path


def check_task(task: str, expected: str, dataset: str) -> None:
    """MUFAC only has age labels and RAF-DB only emotion labels: say so if asked otherwise."""
    if task != expected:
        raise DatasetError(f"dataset {dataset!r} has {expected} labels, but task={task!r} was asked "
                           f"for: pass task={expected!r} (or pick a dataset with {task!r} labels)")


def check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not 8 <= image_size <= 1024:
        raise DatasetError(f"image_size must be an integer number of pixels from 8 to 1024; got "
                           f"{image_size!r} (the paper uses 128)")
    return int(image_size)


def check_fraction(name: str, value: float, allow_zero: bool = False) -> float:
    low_ok = (lambda v: v >= 0.0) if allow_zero else (lambda v: v > 0.0)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{name} must be a number between 0 and 1; got {value!r}") from None
    if not (low_ok(value) and value < 1.0):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise DatasetError(f"{name} must lie in {bound}; got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# CSV files
# --------------------------------------------------------------------------------------------
def read_table(path: Path, required: Iterable[str], fix: str = "") -> "pandas.DataFrame":  # noqa: F821
    """Read a CSV file; every column of ``required`` must be present (exact name after
    stripping spaces), else the error names the missing ones and lists the columns found."""
    import pandas as pd
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"CSV file {path} is empty: it needs a header row with the columns "
                           f"{list(required)}. {fix}".strip()) from None
    except Exception as exc:
        raise DatasetError(f"could not parse CSV file {path} ({type(exc).__name__}: {exc}). Check "
                           f"that it is a comma-separated text file with a header row.") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"CSV file {path} lacks the column(s) {missing}; columns found: "
                           f"{list(table.columns)}. {fix}".strip())
    return table


def csv_rows(rows: Sequence[int], limit: int = 8) -> str:
    """'lines 2, 5, 9' for data rows 0, 3, 7 of a CSV with a header (line 1 is the header)."""
    rows = [int(r) + 2 for r in rows]
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"line{'s' if len(rows) > 1 else ''} {shown}{more}"


def _examples(items: Sequence, limit: int = 5) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


# --------------------------------------------------------------------------------------------
# image files
# --------------------------------------------------------------------------------------------
def check_files_exist(paths: Sequence[Path], where: str, fix: str) -> None:
    """Every path must be an existing file (cheap: one ``stat`` per image); the error names
    the first missing ones, how many are missing, and where they were listed."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(f"{len(missing)} of {len(paths)} images listed in {where} do not "
                                   f"exist, e.g. {_examples(missing)}. {fix}")


def check_inside_root(paths: Sequence[Path], written: Sequence[str], root: Path, where: str,
                      root_name: str, allow: bool) -> None:
    """Refuse image paths that lead outside ``root`` (an absolute path elsewhere, or ``..``
    steps out of it) unless ``allow``: a CSV must not make the kit read arbitrary files. Paths
    are normalised lexically (``..`` removed, symbolic links inside the root are followed as
    the user set them up). The error lists the first offenders with their CSV lines."""
    if allow:
        return
    top = os.path.abspath(root)
    outside = []
    for i, p in enumerate(paths):
        full = os.path.abspath(p)
        if os.path.commonpath([top, full]) != top:
            outside.append(i)
    if outside:
        shown = "; ".join(f"{written[i]!r} (line {i + 2}) -> {os.path.abspath(paths[i])}"
                          for i in outside[:5])
        more = f" ... ({len(outside)} in all)" if len(outside) > 5 else ""
        raise DatasetError(
            f"{len(outside)} of {len(paths)} image paths listed in {where} lead outside the "
            f"{root_name} {top}: {shown}{more}. Put the images under {top} and list them "
            f"relative to it, or, if you trust this CSV, pass allow_absolute_paths=True "
            f"(notebooks and dlfd run: data_options={{\"allow_absolute_paths\": true}}).")


def verify_image_files(paths: Sequence[Path], where: str, progress: bool = False) -> None:
    """Decode every image once (slow: the same work as one epoch of reading). The error names
    every file that could not be decoded (up to 5, plus the count)."""
    from tqdm.auto import tqdm
    source = FileSource(paths)
    bad: list[str] = []
    for i in tqdm(range(len(source)), desc=f"verifying images ({where})", disable=not progress):
        try:
            source.get(i)
        except RuntimeError as exc:
            bad.append(f"{paths[i]} ({str(exc.__cause__ or exc)[:80]})")
    if bad:
        raise DatasetError(f"{len(bad)} of {len(paths)} images from {where} cannot be decoded: "
                           f"{_examples(bad)}. Replace or delete these files (and their rows), "
                           f"or re-export them as JPEG/PNG.")


def sort_key(path: Path) -> tuple:
    """Natural order of file names: 'img2' before 'img10'."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t)
                 for t in re.split(r"(\d+)", path.as_posix()) if t)


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """The image files below ``folder`` (recursively, natural order) and the other files that
    were skipped. Hidden files and folders (starting with '.') are ignored."""
    images: list[Path] = []
    skipped: list[Path] = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        (images if p.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(p)
    return sorted(images, key=sort_key), sorted(skipped, key=sort_key)


def class_folders(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """``{class folder name: its images}`` for the visible sub-folders of ``folder`` (an
    ImageFolder-style tree; images may sit in deeper sub-folders of a class) and the non-image
    files that were skipped."""
    classes: dict[str, list[Path]] = {}
    skipped: list[Path] = []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=sort_key):
        classes[sub.name], extra = list_images(sub)
        skipped += extra
    return classes, skipped


# --------------------------------------------------------------------------------------------
# seeded choices
# --------------------------------------------------------------------------------------------
def pick_groups(groups: np.ndarray, target: float, rng: np.random.Generator,
                candidates: np.ndarray | None = None) -> np.ndarray:
    """Choose whole groups (people) at random until their images come closest to ``target``
    images; returns a boolean mask over ``groups``. At least one group is chosen, and at least
    one candidate group is left over when there are two or more. ``candidates`` (a boolean
    mask) restricts which images, hence which groups, may be chosen."""
    groups = np.asarray(groups)
    ok = np.ones(len(groups), bool) if candidates is None else np.asarray(candidates, bool)
    names, inverse = np.unique(groups[ok], return_inverse=True)
    if len(names) == 0:
        return np.zeros(len(groups), bool)
    sizes = np.bincount(inverse, minlength=len(names))
    order = rng.permutation(len(names))
    cum = np.cumsum(sizes[order])
    k = int(np.argmin(np.abs(cum - target))) + 1
    k = min(max(k, 1), max(len(names) - 1, 1))
    chosen = names[order[:k]]
    return ok & np.isin(groups, chosen)


# --------------------------------------------------------------------------------------------
# assembling the splits
# --------------------------------------------------------------------------------------------
def assemble_splits(name: str, task: str, class_names: list[str],
                    parts: dict[str, tuple[list[Path], np.ndarray, np.ndarray | None]],
                    image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, grayscale: bool = False,
                    info: dict | None = None, empty_fix: dict[str, str] | None = None
                    ) -> UnlearningSplits:
    """Build the :class:`UnlearningSplits` from ``parts[split] = (paths, labels, identities)``
    for the splits retain, forget, val and test, each with its own evaluation transform.

    An empty split is reported with ``empty_fix[split]`` (what to change); the augmented
    training view is built by :meth:`UnlearningSplits.dataset`, never shared between splits.
    """
    empty_fix = empty_fix or {}
    for split in ("retain", "forget", "val", "test"):
        if len(parts[split][0]) == 0:
            raise DatasetError(f"the {split} split of dataset {name!r} is empty. "
                               f"{empty_fix.get(split, 'Check the data root and the split settings.')}")
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    datasets = {}
    for split in ("retain", "forget", "val", "test"):
        paths, labels, ids = parts[split]
        transform = (grayscale_transform(image_size, mean, std, augment=False) if grayscale
                     else eval_transform(image_size, mean, std))
        datasets[split] = SplitDataset(FileSource(paths), np.asarray(labels, np.int64), transform,
                                       identities=None if ids is None else np.asarray(ids))
    cls = GrayscaleSplits if grayscale else UnlearningSplits
    info = dict(info or {})
    info.setdefault("grayscale", bool(grayscale))
    return cls(name=name, task=task, class_names=list(class_names), image_size=image_size,
               mean=mean, std=std, info=info, **datasets)
