"""Execute the notebooks in order with papermill (:func:`run_notebooks`), under the run lock,
writing the executed copies and ``provenance.json``; the papermill engine that settles the
kernel before shutting it down."""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from .. import __version__
from ..profiles import get_profile
from .discovery import REPO_ROOT, default_notebooks_dir, select_notebooks
from .failures import NotebookFailed, NotebookInterrupted, _failure, _interruption, rerun_command
from .kernel import kernel_for_this_python
from .lock import run_lock
from .parameters import _RESERVED, ParameterError, check_device, validate_parameters
from .provenance import _environment, _git_commit, _now

log = logging.getLogger(__name__)

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

    from ..utils import save_json

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


def _quiet_dead_kernel_tasks(record) -> bool:
    """A filter for asyncio's logger: drop "Task exception was never retrieved" for nbclient's
    ``DeadKernelError``. After an interruption the kit shuts the kernel down itself; a cell task
    still waiting for its reply then ends with that error, and asyncio would print its traceback
    when the task is collected, after the kit's own one-line message."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (type(exc).__name__ == "DeadKernelError" and "never retrieved" in str(record.msg))


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

    logging.getLogger("asyncio").addFilter(_quiet_dead_kernel_tasks)

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

    from ..utils import save_json

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
