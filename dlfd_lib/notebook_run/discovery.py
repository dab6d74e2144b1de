"""The kit's notebooks (``notebooks/NN_*.ipynb``) and how a selection names them."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_PATTERN = re.compile(r"^\d\d_.+\.ipynb$")


def default_notebooks_dir() -> Path:
    """``notebooks/`` of this clone (editable install), else ``./notebooks``."""
    here = REPO_ROOT / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The ``NN_*.ipynb`` files of ``notebooks_dir``, sorted by name ([] if it is missing)."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK_PATTERN.match(p.name))


NOTEBOOKS: list[Path] = discover_notebooks()


def select_notebooks(selection: Iterable[str | Path] | None,
                     notebooks_dir: str | Path | None = None) -> list[Path]:
    """Resolve a selection such as ``["01", "03_unlearning_benchmark"]`` to notebook paths.

    Each item may be an existing file path, a file name, a stem, or a prefix of a name
    (``"01"``). ``None`` selects every notebook, in order.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    available = discover_notebooks(folder)
    if selection is None:
        if not available:
            raise FileNotFoundError(
                f"no notebooks named NN_*.ipynb in {folder}; run from a clone of the kit or "
                f"pass notebooks_dir= (CLI: --notebooks-dir)")
        return available
    chosen: list[Path] = []
    for item in selection:
        path = Path(item)
        if (isinstance(item, Path) or os.sep in str(item)) and path.is_file():
            chosen.append(path)  # an explicit path to a notebook
            continue
        key = str(item)
        exact = [p for p in available if key in (p.name, p.stem)]
        matches = exact or [p for p in available if p.name.startswith(key)]
        if len(matches) != 1:
            names = ", ".join(p.name for p in available) or "(none)"
            what = "matches no" if not matches else "is ambiguous among the"
            raise ValueError(f"notebook {key!r} {what} notebooks in {folder}; available: {names}")
        chosen.append(matches[0])
    return chosen
