"""How a notebook run fails: :class:`NotebookFailed` (an error in a cell, a cell past its
timeout, a dead kernel) and :class:`NotebookInterrupted` (Ctrl-C, SIGTERM), each naming the
notebook, the cell as the reader sees it in Jupyter, the executed copy and the command that
reruns it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .discovery import default_notebooks_dir
from .parameters import _cli_value

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


class NotebookInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; the message names the notebook, the cell and where
    the partly executed notebook was kept."""

    def __init__(self, message: str, *, notebook: Path, output_path: Path,
                 cell_index: int | None = None):
        super().__init__(message)
        self.notebook, self.output_path, self.cell_index = notebook, output_path, cell_index

    def __str__(self) -> str:
        return str(self.args[0])


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


def _interruption(nb: Path, output: Path, current: dict[str, Any], rerun: str) -> NotebookInterrupted:
    source = current.get("source") or ""
    cell_no, where = _describe_failed_cell(nb, source) if source else (None, "before its first cell")
    msg = (f"interrupted in notebook {nb.name}, {where}; the partly executed notebook is kept at "
           f"{output}\n  run it again with: {rerun}")
    return NotebookInterrupted(msg, notebook=nb, output_path=output, cell_index=cell_no)
