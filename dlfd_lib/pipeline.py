"""Profiles, headless notebook orchestration and provenance.

The notebooks in ``notebooks/`` (``01_…`` to ``05_…``) tell the story; this module runs them
in order with papermill so every figure and table comes back from one command
(``dlfd run --profile quick``, see ``dlfd_lib/cli.py``).

* ``PROFILES`` is the single home of the sizes everything uses. One name picks the data sizes,
  the training recipe and the evaluation batch size for every notebook: each notebook's
  ``parameters`` cell receives ``profile`` (plus ``seed`` and ``device``) and calls
  ``get_profile(profile)``.
* ``run_notebooks`` executes the notebooks into ``runs/<profile>/`` (git-ignored) and records
  what ran, where and how long in ``runs/<profile>/provenance.json``.
* A failing cell becomes ``NotebookFailed``, whose message names the notebook, the cell and
  where the executed notebook with the full traceback was written.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import __version__

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# profiles: the ONE place where sizes and recipes live (the lead retunes the numbers here)

# data.*  -> dlfd_lib.data.load_splits (synthetic: make_synthetic_splits keyword arguments)
# train.* -> dlfd_lib.train.TrainConfig.from_profile (warmup_frac applies to onecycle only)
# analysis.* -> notebooks 02, 04 and 05: umap_sizes (images per split in the feature maps, None:
#   all), track_every / track_size (optimiser steps between, and images per split in, the
#   correlation-collapse measurements along a run), ulira_k (reference models of the per-example
#   membership test)
# protocol.* -> dlfd_lib.protocol.ProtocolConfig (tuning seeds, evaluation seeds, Optuna trials per
#   method, points per trade-off front, attack bootstrap resamples; see README "The protocol")
_COMMON_DATA = {"forget_frac": 0.15}
_COMMON_TRAIN = {"weight_decay": 5e-4, "momentum": 0.9}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "tests: tiny data, a few seconds per notebook",
        "data": {"image_size": 32, "n_train_ids": 24, "imgs_per_id": 6,
                 "n_val_ids": 6, "n_test_ids": 6, "pose_sd": 1.0, "light_sd": 1.0,
                 "identity_offset_sd": 0.35, **_COMMON_DATA},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "onecycle",
                  "warmup_frac": 0.25, **_COMMON_TRAIN},
        "eval_batch_size": 64,
        "analysis": {"umap_sizes": {"retain": 48, "forget": None, "test": 24},
                     "track_every": 2, "track_size": 32, "ulira_k": 2},
        "protocol": {"tuning_seeds": [100], "eval_seeds": [0, 1], "n_trials": 2, "n_strengths": 2,
                     "n_front_seeds": None, "mia_boot": 5, "n_mia": 1, "n_boot": 2000},
    },
    "quick": {
        "description": "the CPU demo: the whole pipeline in well under 20 minutes on 2 cores",
        # 270 training people so that the forget set (15 %) holds 40 people, 9 photos each;
        # milder pose/lighting nuisance and person offset than the generator's defaults (which
        # were calibrated for 60-100 epochs) so that a 35-epoch CPU run memorises its training
        # people (train acc >= 0.9) and still generalises (benchmarks/synthetic_quality.py)
        "data": {"image_size": 64, "n_train_ids": 270, "imgs_per_id": 9,
                 "n_val_ids": 40, "n_test_ids": 40, "pose_sd": 0.5, "light_sd": 0.5,
                 "identity_offset_sd": 0.3, **_COMMON_DATA},
        "train": {"epochs": 35, "batch_size": 64, "lr": 0.02, "schedule": "onecycle",
                  "warmup_frac": 0.25, **_COMMON_TRAIN},
        "eval_batch_size": 256,
        "analysis": {"umap_sizes": {"retain": 800, "forget": None, "test": 360},
                     "track_every": 10, "track_size": 300, "ulira_k": 4},
        # sized for 2 CPU cores (README "The protocol": cost): one tuning seed, 4 trials per
        # method, fronts of 2 strengths (+ the tuned point) on the first 2 evaluation seeds
        "protocol": {"tuning_seeds": [100], "eval_seeds": [0, 1, 2, 3, 4], "n_trials": 4,
                     "n_strengths": 2, "n_front_seeds": 2, "mia_boot": 20, "n_mia": 3,
                     "n_boot": 10000},
    },
    "paper": {
        "description": "the authors' recipe on a GPU: 128 px, 100 epochs",
        # the generator's defaults (calibrated for 60-100 epochs on a GPU)
        "data": {"image_size": 128, "n_train_ids": 300, "imgs_per_id": 34,
                 "n_val_ids": 50, "n_test_ids": 50, "pose_sd": 1.0, "light_sd": 1.0,
                 "identity_offset_sd": 0.35, **_COMMON_DATA},
        "train": {"epochs": 100, "batch_size": 32, "lr": 0.01, "schedule": "cosine",
                  "warmup_frac": 0.0, **_COMMON_TRAIN},
        "eval_batch_size": 256,
        "analysis": {"umap_sizes": {"retain": 2000, "forget": 1000, "test": 1000},
                     "track_every": 20, "track_size": 1000, "ulira_k": 8},
        "protocol": {"tuning_seeds": [100, 101], "eval_seeds": [0, 1, 2, 3, 4], "n_trials": 20,
                     "n_strengths": 5, "n_front_seeds": None, "mia_boot": 50, "n_mia": 3,
                     "n_boot": 10000},
    },
}


def get_profile(name: str) -> dict[str, Any]:
    """A deep copy of the settings of profile ``name`` (edit it freely; PROFILES stays)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])


# ----------------------------------------------------------------------------------------------
# notebooks

REPO_ROOT = Path(__file__).resolve().parents[1]
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


# ----------------------------------------------------------------------------------------------
# kernel: run the notebooks in THIS interpreter

KERNEL_NAME = "dlfd-kit"  # what `make install` registers (ipykernel install --sys-prefix)


def _runs_this_python(argv0: str) -> bool:
    """Would a kernelspec whose argv starts with ``argv0`` run the current interpreter?"""
    major, minor = sys.version_info[:2]
    if argv0 in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True  # jupyter_client replaces these bare names with sys.executable
    # compare without resolving symlinks: a venv's python is a symlink to the base python
    exe = Path(os.path.abspath(sys.executable))
    cand = Path(os.path.abspath(argv0))
    return cand == exe or (cand.parent == exe.parent and cand.name.startswith("python"))


@contextlib.contextmanager
def kernel_for_this_python(kernel_name: str | None = None) -> Iterator[str]:
    """Yield a kernel name whose kernel runs ``sys.executable``.

    An explicit ``kernel_name`` is used as given. Otherwise the ``python3`` kernelspec (inside
    a venv or conda env, the env's own ipykernel) or the ``dlfd-kit`` one registered by
    ``make install`` is used when it launches this interpreter; failing both (say a user-level
    ``python3`` kernelspec that points at another Python), a private kernelspec for this
    interpreter is put on ``JUPYTER_PATH`` for the duration of the block.
    """
    if kernel_name is not None:
        yield kernel_name
        return
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    for name in ("python3", KERNEL_NAME):
        try:
            spec = ksm.get_kernel_spec(name)
        except (NoSuchKernel, OSError, ValueError):  # missing or unreadable kernel.json
            continue
        if spec.argv and _runs_this_python(spec.argv[0]):
            yield name
            return
    log.info("no kernelspec runs %s; using a private one", sys.executable)
    with tempfile.TemporaryDirectory(prefix="dlfd-kernel-") as tmp:
        kdir = Path(tmp, "kernels", KERNEL_NAME)
        kdir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (dlfd-kit)", "language": "python"}
        (kdir / "kernel.json").write_text(json.dumps(spec, indent=1))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp if not old else tmp + os.pathsep + old
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


# ----------------------------------------------------------------------------------------------
# failures and provenance

class NotebookFailed(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the executed copy."""

    def __init__(self, message: str, *, notebook: Path, output_path: Path,
                 cell_index: int | None = None, ename: str | None = None,
                 evalue: str | None = None):
        super().__init__(message)
        self.notebook = notebook
        self.output_path = output_path
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


def _describe_failed_cell(notebook: Path, source: str) -> tuple[int | None, str]:
    """(1-based cell number in the source notebook, human description) of the failing cell.

    papermill's ``cell_index`` counts cells of the executed copy, which has an injected
    parameters cell; matching the source finds the cell as the reader sees it in Jupyter.
    """
    import nbformat

    try:
        cells = nbformat.read(str(notebook), as_version=4).cells
    except Exception:  # unreadable: fall back to papermill's numbering
        return None, "a cell"
    code_no = 0
    for i, cell in enumerate(cells, start=1):
        if cell.cell_type != "code":
            continue
        code_no += 1
        if cell.source == source:
            return i, f"cell {i} (code cell {code_no})"
    return None, "the injected parameters cell"


def _failure_message(notebook: Path, output_path: Path, err: BaseException,
                     profile: str) -> NotebookFailed:
    from papermill.exceptions import PapermillExecutionError

    rerun = f"dlfd run --profile {profile} --notebooks {notebook.name[:2]}"
    if notebook.parent.resolve() != default_notebooks_dir().resolve():
        rerun += f" --notebooks-dir {notebook.parent}"
    if isinstance(err, PapermillExecutionError):
        cell_no, where = _describe_failed_cell(notebook, err.source or "")
        first_line = next((ln for ln in (err.source or "").splitlines() if ln.strip()), "")
        msg = (f"notebook {notebook.name} failed in {where}, "
               f"In [{err.exec_count}]: {err.ename}: {err.evalue}\n"
               f"  the cell begins: {first_line[:120]}\n"
               f"  the executed notebook, with the full traceback, is at {output_path}\n"
               f"  rerun it alone with: {rerun}")
        return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                              cell_index=cell_no, ename=err.ename, evalue=err.evalue)
    msg = (f"notebook {notebook.name} failed outside a cell: {type(err).__name__}: {err}\n"
           f"  the partly executed notebook (if any) is at {output_path}\n"
           f"  rerun it alone with: {rerun}")
    return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                          ename=type(err).__name__, evalue=str(err))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(root: Path) -> dict[str, Any] | None:
    """HEAD commit of ``root`` and whether tracked files differ from it (None without git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args],
                              check=True, capture_output=True, text=True, timeout=10).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "papermill": _version("papermill"),
        "device_requested": device,
    }
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:  # provenance must never stop a run
        env["cuda_available"] = None
    return env


# ----------------------------------------------------------------------------------------------
# the runner

_RESERVED = ("profile", "seed", "device")


def run_notebooks(profile: str = "quick",
                  notebooks: Sequence[str | Path] | None = None,
                  out_dir: str | Path | None = None,
                  parameters: dict[str, Any] | None = None,
                  kernel_name: str | None = None,
                  device: str = "auto",
                  seed: int = 0,
                  log_output: bool = False,
                  notebooks_dir: str | Path | None = None,
                  progress_bar: bool = True) -> dict[str, Any]:
    """Execute the notebooks in order with papermill; return the provenance record.

    Every notebook receives the parameters ``profile``, ``seed``, ``device`` and then
    ``parameters``. Executed copies go to ``out_dir`` (default ``runs/<profile>`` next to the
    notebooks folder) together with ``provenance.json``, rewritten atomically after every
    notebook. The first failure stops the run with ``NotebookFailed``.
    """
    import papermill as pm

    from .utils import save_json

    settings = get_profile(profile)  # validates the name before anything runs
    parameters = dict(parameters or {})
    clash = [k for k in _RESERVED if k in parameters]
    if clash:
        raise ValueError(f"parameters {clash} have their own arguments (profile=, seed=, "
                         f"device=; CLI: --profile, --seed, --device); do not pass them in "
                         f"parameters")
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    paths = select_notebooks(notebooks, folder)
    out = Path(out_dir) if out_dir is not None else folder.resolve().parent / "runs" / profile
    out.mkdir(parents=True, exist_ok=True)
    prov_path = out / "provenance.json"
    nb_params = {"profile": profile, "seed": seed, "device": device, **parameters}

    record: dict[str, Any] = {
        "kit_version": __version__,
        "profile": profile,
        "settings": settings,
        "seed": seed,
        "device": device,
        "parameters": nb_params,
        "out_dir": str(out),
        "environment": _environment(device),
        "git": _git_commit(REPO_ROOT),
        "started": _now(),
        "finished": None,
        "status": "running",
        "notebooks": [],
    }
    save_json(record, prov_path)

    with kernel_for_this_python(kernel_name) as kernel:
        record["kernel_name"] = kernel
        for i, nb in enumerate(paths, start=1):
            output = out / nb.name
            entry: dict[str, Any] = {"notebook": nb.name, "output": str(output),
                                     "started": _now(), "status": "running"}
            record["notebooks"].append(entry)
            log.info("[%d/%d] %s -> %s", i, len(paths), nb.name, output)
            t0 = time.perf_counter()
            failure: NotebookFailed | None = None
            try:
                pm.execute_notebook(str(nb), str(output), parameters=nb_params,
                                    kernel_name=kernel, cwd=str(nb.parent.resolve()),
                                    progress_bar=progress_bar, log_output=log_output)
                entry["status"] = "ok"
            except KeyboardInterrupt:
                entry["status"] = record["status"] = "interrupted"
                raise
            except Exception as err:  # noqa: BLE001 - every failure is reported the same way
                failure = _failure_message(nb, output, err, profile)
                entry["status"] = record["status"] = "failed"
                entry["error"] = str(failure)
                failure.__cause__ = err
            finally:
                entry["wall_s"] = round(time.perf_counter() - t0, 2)
                entry["finished"] = _now()
                if entry["status"] != "ok" or i == len(paths):
                    record["finished"] = _now()
                    if record["status"] == "running":
                        record["status"] = "ok"
                save_json(record, prov_path)
            if failure is not None:
                raise failure
            log.info("[%d/%d] %s done in %.1f s", i, len(paths), nb.name, entry["wall_s"])
    return record
