"""Headless notebook orchestration and provenance.

The notebooks in ``notebooks/`` (``01_…`` to ``05_…``) tell the story; this module runs them
in order with papermill so every figure and table comes back from one command
(``dlfd run --profile quick``, see ``dlfd_lib/cli.py``). The sizes they use live in
:mod:`dlfd_lib.profiles`: each notebook's ``parameters`` cell receives ``profile`` (a profile's
name, plus ``seed`` and ``device``) and builds its :class:`dlfd_lib.study.Study` from it.

* ``run_notebooks`` executes the notebooks into ``runs/<profile>/`` (git-ignored) and records
  what ran, where and how long in ``runs/<profile>/provenance.json``.
* A failing cell becomes ``NotebookFailed``, whose message names the notebook, the cell and
  where the executed notebook with the full traceback was written; so do a cell that runs past
  the profile's ``cell_timeout_s`` and a kernel that dies. Ctrl-C becomes
  ``NotebookInterrupted``; the executed notebook is kept in every case.
* ``validate_parameters`` checks the notebook parameters against the notebooks' ``parameters``
  cells before anything runs; ``run_lock`` keeps two runs out of one runs folder;
  ``read_provenance`` tells a run that was killed from one that is still running.
"""
from __future__ import annotations

import ast
import contextlib
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
from .profiles import get_profile

log = logging.getLogger(__name__)

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
                     rerun: str) -> NotebookFailed:
    """NotebookFailed for an error raised in a cell (papermill's PapermillExecutionError)."""
    cell_no, where = _describe_failed_cell(notebook, err.source or "")
    first_line = next((ln for ln in (err.source or "").splitlines() if ln.strip()), "")
    msg = (f"notebook {notebook.name} failed in {where}, "
           f"In [{err.exec_count}]: {err.ename}: {err.evalue}\n"
           f"  the cell begins: {first_line[:120]}\n"
           f"  the executed notebook, with the full traceback, is at {output_path}\n"
           f"  rerun it alone with: {rerun}")
    return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                          cell_index=cell_no, ename=err.ename, evalue=err.evalue)


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
# notebook parameters: validated against the parameters cells before anything runs

class ParameterError(ValueError):
    """Notebook parameters that do not fit the notebooks; the message lists every bad value
    and the forms it accepts."""


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """``{name: default}`` of the cell tagged ``parameters`` in ``notebook`` (a default that is
    not a Python literal is given as the :data:`ANY` marker)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell = next((c for c in nb.cells
                 if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    out: dict[str, Any] = {}
    for node in ast.parse(cell.source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except (ValueError, SyntaxError, TypeError):
                    out[target.id] = ANY
    return out


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: a parameter whose default says nothing about its type (accepts any value)
ANY = _Any()


def _example(name: str, text: str) -> str:
    """How to pass ``name=text`` on the command line (quoted when the shell would change it)."""
    return f"-p '{name}={text}'" if re.search(r"[\s\"'{}\[\]*?$]", text) else f"-p {name}={text}"


def _form_problem(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` does not fit a parameter whose default is ``default`` (None if it fits)."""
    if default is ANY or default is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return None
        return f"must be True or False ({_example(name, 'True')} or {_example(name, 'false')})"
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"must be a whole number ({_example(name, str(default))})"
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        return f"must be a number ({_example(name, repr(default))})"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"must be a string ({_example(name, default)})"
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return None
        return f"must be a list, written as JSON ({_example(name, json.dumps(list(default)) or '[]')})"
    if isinstance(default, dict):
        if isinstance(value, dict):
            return None
        return f"must be a JSON object ({_example(name, json.dumps(default) if default else '{}')})"
    return None


def _json_hint(value: Any) -> str:
    """For text passed to a list/dict parameter: why it is not JSON."""
    if not isinstance(value, str):
        return ""
    try:
        json.loads(value)
    except ValueError as err:
        return f"; the text {value!r} is not valid JSON ({err}): quote keys and strings with \"\""
    return ""


def _hparam_problems(where: str, values: Any, defaults: dict[str, Any]) -> list[str]:
    """Problems of a dict of keyword arguments against ``defaults`` (name -> default)."""
    if not isinstance(values, dict):
        return []
    problems = []
    for key, v in values.items():
        if key not in defaults:
            problems.append(f"{where}: unknown key {key!r}; accepted keys: "
                            f"{', '.join(sorted(defaults))}")
            continue
        why = _form_problem(f"{key}", v, defaults[key])
        if why:
            problems.append(f"{where}[{key!r}]={v!r} {why.split(' (')[0]}")
    return problems


def _data_option_defaults(dataset: Any) -> dict[str, Any] | None:
    """Keyword arguments ``load_splits`` accepts for ``dataset`` (name -> default)."""
    import inspect

    if dataset == "synthetic":
        from .data.synthetic import DEFAULT_KNOBS, make_synthetic_splits as fn
        skip = {"task", "seed", "cache_dir", "knobs"}
        out = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in skip}
        return {**out, **DEFAULT_KNOBS, "drop_leaks": False, "hygiene_threshold": 6}
    if dataset == "mufac":
        from .data.mufac import load_mufac as fn
    elif dataset == "rafdb":
        from .data.rafdb import load_rafdb as fn
    elif dataset == "folder":
        from .data.folder import load_folder as fn
    else:
        return None
    out = {k: p.default for k, p in inspect.signature(fn).parameters.items()
           if k not in ("data_root", "task")}
    return {**out, "split_seed": 42, "drop_leaks": False, "hygiene_threshold": 6}


def _choice(name: str, value: Any, choices: Sequence[str]) -> str | None:
    if value in choices:
        return None
    return f"must be one of {', '.join(map(repr, choices))}"


def validate_parameters(notebooks: Sequence[Path], parameters: dict[str, Any],
                        profile: str) -> None:
    """Check ``parameters`` against the ``parameters`` cells of ``notebooks`` before anything
    runs: each value must have the type of the cell's default (True/False for a boolean, a whole
    number for an int, JSON lists and objects for lists and dicts), the kit's own parameters
    are checked more closely (datasets, methods, feature layers, the keys and value types of
    ``data_options`` and of the method overrides), and every name must be a parameter of at
    least one notebook. Raises :class:`ParameterError` listing every problem at once."""
    from .model import FEATURE_LAYERS
    from .unlearn import available_methods, method_defaults

    declared: dict[str, Any] = {}
    for nb in notebooks:
        for name, default in notebook_parameters(nb).items():
            declared.setdefault(name, default)
    problems: list[str] = []
    methods = available_methods()
    dataset = parameters.get("dataset", declared.get("dataset", "synthetic"))
    for name, value in parameters.items():
        if name in _RESERVED:
            continue
        if name not in declared:
            problems.append(f"{name}={value!r}: no selected notebook has a parameter {name!r}; "
                            f"their parameters are {', '.join(sorted(declared))}")
            continue
        default = declared[name]
        why: str | None = None
        if name == "dataset":
            from .data.load import DATASETS
            why = _choice(name, value, DATASETS)
        elif name == "layer":
            why = _choice(name, value, FEATURE_LAYERS)
        elif name in ("data_root", "fit_on"):
            why = None if value is None or isinstance(value, str) else \
                f"must be a string or None ({_example(name, 'path/to/data')})"
        elif name in ("methods", "curve_methods"):
            ok = (value is None and default is None) or (
                isinstance(value, (list, tuple)) and all(m in methods for m in value))
            why = None if ok else (f"must be a JSON list of registered methods ({methods}), e.g. "
                                   f"{_example(name, json.dumps(methods[:2]))}"
                                   + ("" if default is not None else ", or None"))
        elif name == "seeds":
            ok = value is None or (isinstance(value, (list, tuple)) and value and all(
                isinstance(s, int) and not isinstance(s, bool) for s in value))
            why = None if ok else f"must be a JSON list of whole numbers, e.g. {_example(name, '[0,1,2]')}, or None"
        elif name == "umap_sizes":
            ok = value is None or (isinstance(value, dict) and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
                for v in value.values()))
            why = None if ok else ("must be a JSON object of images per split (a whole number "
                                   "or null), e.g. " + _example(name, '{"retain":800,"forget":null}')
                                   + ", or None")
        elif name == "ablations":
            from .unlearn.dlfd import ABLATIONS
            ok = value is None or (isinstance(value, (list, tuple)) and all(a in ABLATIONS for a in value))
            why = None if ok else f"must be a JSON list of labels of ABLATIONS ({list(ABLATIONS)}), or None"
        elif name == "ulira_k":
            why = _form_problem(name, value, default)
            if why is None and value < 0:
                why = "must be 0 (off) or a positive number of reference models"
        else:
            why = _form_problem(name, value, default)
        if why:
            hint = _json_hint(value) if isinstance(default, (list, dict)) or default is None else ""
            problems.append(f"{name}={value!r} {why}{hint}")
            continue
        # the keys and values inside the dict parameters
        if name == "data_options":
            accepted = _data_option_defaults(dataset)
            if accepted is not None:
                problems += _hparam_problems(f"data_options (dataset {dataset!r})", value, accepted)
        elif name == "dlfd_overrides":
            problems += _hparam_problems("dlfd_overrides", value, method_defaults("dlfd", profile))
        elif name == "curve_overrides" and isinstance(value, dict):
            for m, hp in value.items():
                if m not in methods:
                    problems.append(f"curve_overrides: unknown method {m!r}; registered: {methods}")
                elif not isinstance(hp, dict):
                    problems.append(f"curve_overrides[{m!r}]={hp!r} must be a JSON object of "
                                    f"hyperparameters, e.g. {{\"epochs\": 5}}")
                else:
                    problems += _hparam_problems(f"curve_overrides[{m!r}]", hp,
                                                 method_defaults(m, profile))
    if problems:
        raise ParameterError(
            f"{len(problems)} notebook parameter(s) cannot be used (nothing was run):\n  - "
            + "\n  - ".join(problems)
            + "\n  Values given with -p parse as JSON (true, 3, 0.5, \"text\", [1, 2], "
              "{\"key\": 1}) or Python literals (True, None); anything else stays a string.")


def check_device(device: Any) -> None:
    """``device`` must be "auto", "cpu", "cuda" or "cuda:N", and CUDA must exist if asked for."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ParameterError(f"device={device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda"):
        from .utils import resolve_device
        try:
            resolve_device(device)
        except RuntimeError as err:
            raise ParameterError(str(err) + " (CLI: --device cpu or --device auto)") from None


# ----------------------------------------------------------------------------------------------
# one run per folder, and what a killed run leaves behind

class RunLocked(RuntimeError):
    """Another ``dlfd run`` is writing into the same runs folder."""


LOCK_NAME = ".dlfd-run.lock"


@contextlib.contextmanager
def run_lock(out: Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on the runs folder ``out`` (``out/.dlfd-run.lock``) for the
    duration of the block, so that two runs never overwrite each other's executed notebooks and
    provenance. The operating system releases the lock when the process ends, even by SIGKILL,
    so a killed run never blocks the next one."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    path = out / LOCK_NAME
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunLocked(
                f"another dlfd run is writing into {out} ({holder}); wait for it to finish, or "
                f"give this run a folder of its own with --out DIR (run_notebooks(out_dir=...))"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}, started {_now()}: {command}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


STALE_STATUS = "interrupted or killed"


def read_provenance(path: str | Path, update: bool = True) -> dict[str, Any]:
    """The provenance record of a run (``provenance.json``, or the runs folder holding it).

    A record still marked ``running`` whose process is gone (killed with SIGKILL, a crash, a
    power cut) is reported as ``"interrupted or killed"`` – in the returned record and, with
    ``update``, in the file itself."""
    from .utils import save_json

    path = Path(path)
    if path.is_dir():
        path = path / "provenance.json"
    record = json.loads(path.read_text())
    proc = record.get("process") or {}
    if record.get("status") == "running" and proc.get("pid") is not None \
            and proc.get("host") == platform.node() and not _process_alive(int(proc["pid"])):
        record["status"] = STALE_STATUS
        for entry in record.get("notebooks", []):
            if entry.get("status") == "running":
                entry["status"] = STALE_STATUS
        if update:
            save_json(record, path)
    return record


# ----------------------------------------------------------------------------------------------
# the runner

_RESERVED = ("profile", "seed", "device")


class NotebookInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; the message names the notebook, the cell and where
    the partly executed notebook was kept."""

    def __init__(self, message: str, *, notebook: Path, output_path: Path,
                 cell_index: int | None = None):
        super().__init__(message)
        self.notebook, self.output_path, self.cell_index = notebook, output_path, cell_index

    def __str__(self) -> str:
        return str(self.args[0])


def parse_value(text: str) -> Any:
    """The value of ``-p key=<text>`` (``dlfd run``): ``3`` -> 3, ``0.5`` -> 0.5, ``true``/``True`` -> True, ``[1,2]`` -> [1, 2], else text."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _cli_value(value: Any) -> str:
    """``value`` as the text of ``-p key=<text>`` that parses back to it (:func:`parse_value`)."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def rerun_command(profile: str, notebook: Path, out: Path, seed: int, device: str,
                  parameters: dict[str, Any], kernel_name: str | None = None,
                  cell_timeout: float | None = None, default_timeout: float | None = None) -> str:
    """The full ``dlfd run`` command that runs ``notebook`` alone again, the same way."""
    import shlex

    args = ["dlfd", "run", "--profile", profile, "--notebooks", notebook.name[:2]]
    if notebook.parent.resolve() != default_notebooks_dir().resolve():
        args += ["--notebooks-dir", str(notebook.parent)]
    args += ["--seed", str(seed), "--device", device, "--out", str(out)]
    if kernel_name:
        args += ["--kernel", kernel_name]
    if cell_timeout != default_timeout:
        args += ["--cell-timeout", str(0 if cell_timeout is None else cell_timeout)]
    for key, value in parameters.items():
        args += ["-p", f"{key}={_cli_value(value)}"]
    return " ".join(shlex.quote(a) for a in args)


def _failure(notebook: Path, output_path: Path, err: BaseException, rerun: str,
             current: dict[str, Any], timeout: float | None) -> NotebookFailed:
    """A NotebookFailed for any way a notebook can fail: an error in a cell, a cell past its
    timeout, a kernel that died, or a failure outside the cells."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    kept = f"  the executed notebook, up to that cell, is at {output_path}\n"
    if isinstance(err, PapermillExecutionError):
        return _failure_message(notebook, output_path, err, rerun)
    source = current.get("source") or ""
    cell_no, where = _describe_failed_cell(notebook, source) if source else (None, "a cell")
    first_line = next((ln for ln in source.splitlines() if ln.strip()), "")
    begins = f"  the cell begins: {first_line[:120]}\n" if first_line else ""
    if isinstance(err, CellTimeoutError):
        if "IOPub" in str(err):
            what = (f"finished, but its output did not arrive within nbclient's IOPub timeout "
                    f"(the machine is very busy?)")
        else:
            what = (f"ran longer than the cell timeout of {timeout:g} s and was stopped (the "
                    f"profile's cell_timeout_s; raise it with --cell-timeout SECONDS, 0 for none)")
        msg = (f"notebook {notebook.name}: {where} {what}\n{begins}{kept}"
               f"  rerun it alone with: {rerun}")
        return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                              cell_index=cell_no, ename="CellTimeoutError", evalue=str(err)[:200])
    if isinstance(err, DeadKernelError):
        msg = (f"notebook {notebook.name}: the kernel died while running {where} (DeadKernelError:"
               f" the Python process of the notebook ended, e.g. killed for lack of memory – see "
               f"`dmesg` – or by a crash in native code)\n{begins}{kept}"
               f"  rerun it alone with: {rerun}")
        return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                              cell_index=cell_no, ename="DeadKernelError", evalue=str(err))
    msg = (f"notebook {notebook.name} failed outside a cell: {type(err).__name__}: {err}\n"
           f"  the partly executed notebook (if any) is at {output_path}\n"
           f"  rerun it alone with: {rerun}")
    return NotebookFailed(msg, notebook=notebook, output_path=output_path,
                          ename=type(err).__name__, evalue=str(err))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM (``kill PID``) stops the run like Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_notebooks(profile: str = "quick",
                  notebooks: Sequence[str | Path] | None = None,
                  out_dir: str | Path | None = None,
                  parameters: dict[str, Any] | None = None,
                  kernel_name: str | None = None,
                  device: str = "auto",
                  seed: int = 0,
                  log_output: bool = False,
                  notebooks_dir: str | Path | None = None,
                  progress_bar: bool = True,
                  cell_timeout: float | None | str = "profile") -> dict[str, Any]:
    """Execute the notebooks in order with papermill; return the provenance record.

    Every notebook receives the parameters ``profile``, ``seed``, ``device`` and then
    ``parameters``, which are first checked against the notebooks' ``parameters`` cells
    (:func:`validate_parameters`; :class:`ParameterError` lists every bad value before anything
    runs). Executed copies go to ``out_dir`` (default ``runs/<profile>`` next to the notebooks
    folder) together with ``provenance.json``, rewritten atomically after every notebook; the
    folder is locked for the run (:func:`run_lock`). Each cell may run ``cell_timeout`` seconds
    (default: the profile's ``cell_timeout_s``; None: no limit). The first failure stops the
    run with ``NotebookFailed`` (an error, a timed-out cell or a dead kernel, each naming the
    notebook and the cell); Ctrl-C or SIGTERM with :class:`NotebookInterrupted`. Either way the
    executed notebook is kept.
    """
    import papermill as pm

    from .utils import save_json

    if not isinstance(profile, str):
        raise TypeError(f"run_notebooks(profile=...) takes a profile's name (one of the keys of "
                        f"dlfd_lib.profiles.PROFILES), not {type(profile).__name__}: every "
                        f"notebook builds its Profile from that name")
    settings = get_profile(profile)  # validates the name before anything runs
    parameters = dict(parameters or {})
    clash = [k for k in _RESERVED if k in parameters]
    if clash:
        raise ValueError(f"parameters {clash} have their own arguments (profile=, seed=, "
                         f"device=; CLI: --profile, --seed, --device); do not pass them in "
                         f"parameters")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterError(f"seed={seed!r} must be a whole number (CLI: --seed 0)")
    default_timeout = settings.cell_timeout_s
    timeout = default_timeout if cell_timeout == "profile" else cell_timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout >= 0):
        raise ParameterError(f"cell_timeout={cell_timeout!r} must be a number of seconds "
                             f"(0 or None: no limit)")
    timeout = timeout or None
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    paths = select_notebooks(notebooks, folder)
    validate_parameters(paths, parameters, profile)
    check_device(device)
    out = Path(out_dir) if out_dir is not None else folder.resolve().parent / "runs" / profile
    out.mkdir(parents=True, exist_ok=True)
    prov_path = out / "provenance.json"
    nb_params = {"profile": profile, "seed": seed, "device": device, **parameters}

    def rerun_of(nb: Path) -> str:
        return rerun_command(profile, nb, out, seed, device, parameters, kernel_name, timeout,
                             default_timeout)

    command = " ".join([Path(sys.argv[0]).name or "python", *sys.argv[1:]])
    with run_lock(out, command), _sigterm_as_interrupt():
        record: dict[str, Any] = {
            "kit_version": __version__,
            "profile": profile,
            "settings": settings.as_dict(),
            "seed": seed,
            "device": device,
            "parameters": nb_params,
            "cell_timeout_s": timeout,
            "out_dir": str(out),
            "environment": _environment(device),
            "git": _git_commit(REPO_ROOT),
            "process": {"pid": os.getpid(), "host": platform.node()},
            "started": _now(),
            "finished": None,
            "status": "running",
            "notebooks": [],
        }
        save_json(record, prov_path)
        with kernel_for_this_python(kernel_name) as kernel:
            record["kernel_name"] = kernel
            for i, nb in enumerate(paths, start=1):
                _run_one(pm, nb, i, len(paths), out / nb.name, nb_params, kernel, timeout,
                         progress_bar, log_output, record, prov_path, rerun_of(nb))
    return record


ENGINE_NAME = "dlfd-kit"


def _register_engine() -> str:
    """Register (once) the papermill engine the kit runs notebooks with and return its name.

    It is papermill's nbclient engine with one change: when the run is interrupted (Ctrl-C or
    SIGTERM in *this* process; the kernel runs in a session of its own and never sees the
    terminal's Ctrl-C) or a cell runs past its timeout, the kernel is interrupted first and its reply awaited for a few
    seconds, so that the kernel is idle when it is shut down instead of dying in the middle of
    a cell and printing a traceback of its own."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger as pm_logger

    if ENGINE_NAME in papermill_engines._engines:
        return ENGINE_NAME

    class Client(PapermillNotebookClient):
        def papermill_execute_cells(self):
            from nbclient.exceptions import CellTimeoutError

            try:
                super().papermill_execute_cells()
            except (KeyboardInterrupt, CellTimeoutError):
                self._settle()
                raise

        def _settle(self, wait_s: float = 15.0) -> None:
            """Interrupt the kernel and wait up to ``wait_s`` for its reply to the cell (plain
            signals and a synchronous socket: the event loop was just interrupted)."""
            import signal

            import zmq

            try:
                pid = self.km.provisioner.process.pid
                group = os.getpgid(pid)
                if group != os.getpgid(0):
                    os.killpg(group, signal.SIGINT)
                else:
                    os.kill(pid, signal.SIGINT)
                sock = zmq.Socket.shadow(self.kc.shell_channel.socket.underlying)
                deadline = time.monotonic() + wait_s
                while (left := deadline - time.monotonic()) > 0:
                    if not sock.poll(int(left * 1000)):
                        return
                    _, msg = self.kc.session.recv(sock, mode=0)
                    if msg and msg.get("msg_type") == "execute_reply":
                        return
            except Exception:  # noqa: BLE001 - best effort; the shutdown follows anyway
                log.debug("could not interrupt the kernel before shutting it down", exc_info=True)

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            kwargs.pop("input_path", None)
            timeout = kwargs.pop("execution_timeout", None)
            startup = kwargs.pop("start_timeout", 60)
            return Client(nb_man, kernel_name=kernel_name, timeout=timeout,
                          startup_timeout=startup, log=pm_logger, **kwargs).execute()

    papermill_engines.register(ENGINE_NAME, Engine)
    return ENGINE_NAME


def _run_one(pm, nb: Path, i: int, n: int, output: Path, nb_params: dict[str, Any], kernel: str,
             timeout: float | None, progress_bar: bool, log_output: bool,
             record: dict[str, Any], prov_path: Path, rerun: str) -> None:
    """Execute one notebook of :func:`run_notebooks` and record how it went."""
    from papermill.exceptions import PapermillExecutionError

    from .utils import save_json

    entry: dict[str, Any] = {"notebook": nb.name, "output": str(output),
                             "started": _now(), "status": "running"}
    record["notebooks"].append(entry)
    log.info("[%d/%d] %s -> %s", i, n, nb.name, output)
    t0 = time.perf_counter()
    current: dict[str, Any] = {}

    def on_cell_execute(cell, cell_index, **_):  # which cell runs now (for timeouts, Ctrl-C)
        current.update(source=cell.source, index=cell_index)

    failure: NotebookFailed | None = None
    interrupted: NotebookInterrupted | None = None
    try:
        pm.execute_notebook(str(nb), str(output), parameters=nb_params,
                            kernel_name=kernel, cwd=str(nb.parent.resolve()),
                            progress_bar=progress_bar, log_output=log_output,
                            execution_timeout=timeout, start_timeout=180,
                            iopub_timeout=60, on_cell_execute=on_cell_execute,
                            engine_name=_register_engine())
        entry["status"] = "ok"
    except KeyboardInterrupt:
        interrupted = _interruption(nb, output, current, rerun)
    except Exception as err:  # noqa: BLE001 - every failure is reported the same way
        if isinstance(err, PapermillExecutionError) and err.ename == "KeyboardInterrupt":
            interrupted = _interruption(nb, output, current, rerun)  # the kernel got the Ctrl-C
        else:
            failure = _failure(nb, output, err, rerun, current, timeout)
            failure.__cause__ = err
            entry["status"] = record["status"] = "failed"
            entry["error"] = str(failure)
    finally:
        if interrupted is not None:
            entry["status"] = record["status"] = "interrupted"
            entry["error"] = str(interrupted)
        entry["wall_s"] = round(time.perf_counter() - t0, 2)
        entry["finished"] = _now()
        if entry["status"] != "ok" or i == n:
            record["finished"] = _now()
            if record["status"] == "running":
                record["status"] = "ok"
        save_json(record, prov_path)
    if interrupted is not None:
        raise interrupted from None
    if failure is not None:
        raise failure
    log.info("[%d/%d] %s done in %.1f s", i, n, nb.name, entry["wall_s"])


def _interruption(nb: Path, output: Path, current: dict[str, Any], rerun: str) -> NotebookInterrupted:
    source = current.get("source") or ""
    cell_no, where = _describe_failed_cell(nb, source) if source else (None, "before its first cell")
    msg = (f"interrupted in notebook {nb.name}, {where}; the partly executed notebook is kept at "
           f"{output}\n  run it again with: {rerun}")
    return NotebookInterrupted(msg, notebook=nb, output_path=output, cell_index=cell_no)
