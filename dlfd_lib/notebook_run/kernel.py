"""A Jupyter kernel that runs the notebooks in *this* interpreter (its venv, its packages)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

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
