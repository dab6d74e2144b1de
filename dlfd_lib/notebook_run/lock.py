"""One ``dlfd run`` per runs folder: an exclusive lock the operating system releases when the
process ends, however it ends."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Iterator

from .provenance import _now

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
