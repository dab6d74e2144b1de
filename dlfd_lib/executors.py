"""Where the jobs of a plan run: one after another in this process, or as Ray tasks.

Both executors take the same calls – ``submit(job_id, fn, args, gpu)``, ``wait()``,
``pending()``, ``close()`` – and run the same function on the same arguments, so a plan's numbers
do not depend on where it ran (at one torch thread per job they are bitwise the same; tested).
Neither decides *what* runs: the plan's driver (:func:`dlfd_lib.plan.execute`) submits a job once
its inputs are done and reads the outcome of each as it finishes.

* :class:`InProcessExecutor` – the default: the jobs in submission order, in this process.
* :class:`RayExecutor` – each job a `Ray <https://docs.ray.io>`_ task: one GPU per job on CUDA,
  else ``cpus_per_job`` cores (also its torch threads). A local Ray started here (``address``
  None, no ``RAY_ADDRESS``), or an existing cluster (``address="auto"`` on a node of it, or
  ``ray://host:10001``). A job whose worker dies is retried ``retries`` times; an exception in a
  job is not retried: it comes back as a :class:`Failure` and the driver goes on with the rest.
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Callable

__all__ = ["InProcessExecutor", "RayExecutor", "Failure", "RayMissing", "RAY_INSTALL_HINT", "require_ray",
           "start_local_ray", "make_executor"]

RAY_INSTALL_HINT = ("This runs its jobs on Ray, which is not installed in this Python environment. "
                    "Install the kit's `ray` extra in your clone of the kit:\n"
                    "    pip install -e '.[ray]'\n"
                    "(`make install` installs it too), or leave out --ray to run the same jobs one after "
                    "another in this process (`dlfd sweep --no-ray`).")


class RayMissing(RuntimeError):
    """Ray is not installed (the message says how to install it)."""


class Failure:
    """A job that raised: its traceback, as text."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Failure({self.text.strip().splitlines()[-1] if self.text.strip() else ''})"


def require_ray():
    try:
        import ray
    except ModuleNotFoundError as err:
        raise RayMissing(RAY_INSTALL_HINT) from err
    return ray


def start_local_ray(num_cpus: int, object_store_mb: int = 200, temp_dir: str | None = None, attempts: int = 3):
    """A new Ray on this machine only (``address="local"``: never a cluster that happens to run
    here), without the dashboard, with a small object store (jobs pass file names, not data).

    Ray waits a fixed 30 s for its raylet to register; on a machine whose cores are busy with
    other work that can pass, so the start is tried ``attempts`` times before giving up."""
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(address="local", num_cpus=int(num_cpus), include_dashboard=False,
                            object_store_memory=int(object_store_mb) * 2**20, logging_level="WARNING",
                            _temp_dir=temp_dir)
        except Exception as err:  # Ray raises a bare Exception for this timeout
            if "timed out during startup" not in str(err) or attempt == attempts:
                raise
            ray.shutdown()


def call_with_threads(fn: Callable, args: tuple, threads: int | None = None):
    """``fn(*args)`` with torch's intra-op threads set to ``threads`` (the cores the job was given)."""
    if threads:
        import torch
        torch.set_num_threads(int(threads))
    return fn(*args)


class InProcessExecutor:
    """The jobs one after another in this process, in the order they were submitted. A job that
    raises comes back as a :class:`Failure`, or with ``raise_errors`` its exception propagates and
    ends the run (the notebooks' way: the error where it happened)."""

    name = "this process"
    workers = 1

    def __init__(self, raise_errors: bool = False):
        self._queue: list[tuple[str, Callable, tuple]] = []
        self.raise_errors = raise_errors

    def device(self, requested) -> str:
        from .utils import resolve_device
        return str(resolve_device(requested))

    def submit(self, job_id: str, fn: Callable, args: tuple, gpu: bool = False):
        self._queue.append((job_id, fn, args))

    def pending(self) -> int:
        return len(self._queue)

    def wait(self) -> list[tuple[str, Any]]:
        job_id, fn, args = self._queue.pop(0)
        try:
            return [(job_id, fn(*args))]
        except Exception:
            if self.raise_errors:
                self._queue.clear()
                raise
            return [(job_id, Failure(traceback.format_exc()))]

    def close(self):
        pass


class RayExecutor:
    """Each job a Ray task: ``num_gpus=1`` on CUDA, else ``num_cpus=cpus_per_job`` (its torch
    threads). Ray retries a job whose worker died ``retries`` times (an exception in the job is
    not retried: it is reported)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_job: int = 1,
                 retries: int = 1, object_store_mb: int = 200, temp_dir: str | None = None):
        ray = require_ray()
        self.ray, self.cpus_per_job, self.retries = ray, int(cpus_per_job), int(retries)
        if self.cpus_per_job < 1:
            raise ValueError(f"cpus_per_job={cpus_per_job}: give 1 or more")
        self._owns = not ray.is_initialized()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self._owns:
            address = address or os.environ.get("RAY_ADDRESS") or None
            if address:
                ray.init(address=address, logging_level="WARNING")
            else:
                start_local_ray(num_cpus or os.cpu_count() or 1, object_store_mb, temp_dir)
        res = ray.cluster_resources()
        self.name = (f"Ray at {address}" if address else "a local Ray") + \
            f" ({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs)"
        self.gpus, self.cpus = res.get("GPU", 0), res.get("CPU", 1)
        self.workers = max(1, int(self.cpus) // self.cpus_per_job)  # jobs at a time; on GPUs set by device()
        self._remote = ray.remote(call_with_threads)
        self._refs: dict = {}

    def device(self, requested) -> str:
        """The jobs' device: ``auto`` is CUDA when the cluster has GPUs (one per job), else the CPU."""
        import torch
        kind = "cuda" if (requested in (None, "auto") and self.gpus) else \
            ("cpu" if requested in (None, "auto") else torch.device(requested).type)
        if kind == "cuda" and not self.gpus:
            raise ValueError(f"device={requested!r} but the Ray cluster has no GPU; use --device cpu or auto")
        self.workers = int(self.gpus) if kind == "cuda" else max(1, int(self.cpus) // self.cpus_per_job)
        return kind

    def submit(self, job_id: str, fn: Callable, args: tuple, gpu: bool = False):
        opts = dict(num_cpus=self.cpus_per_job, num_gpus=1 if gpu else 0, max_retries=self.retries,
                    retry_exceptions=False)
        ref = self._remote.options(**opts).remote(fn, args, None if gpu else self.cpus_per_job)
        self._refs[ref] = job_id

    def pending(self) -> int:
        return len(self._refs)

    def wait(self) -> list[tuple[str, Any]]:
        done, _ = self.ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in done:
            job_id = self._refs.pop(ref)
            try:
                out.append((job_id, self.ray.get(ref)))
            except Exception as err:  # RayTaskError (the job's traceback), WorkerCrashedError, ...
                out.append((job_id, Failure(f"{type(err).__name__}: {err}")))
        return out

    def close(self):
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(ray: bool = False, address: str | None = None, workers: int | None = None,
                  cpus_per_job: int = 1, retries: int = 1):
    """The in-process executor, or with ``ray`` (or an ``address``) a :class:`RayExecutor`: a
    local Ray of ``workers × cpus_per_job`` cores, or the cluster at ``address``."""
    if not ray and not address:
        return InProcessExecutor()
    num_cpus = None if workers is None else int(workers) * int(cpus_per_job)
    return RayExecutor(address=address, num_cpus=num_cpus, cpus_per_job=cpus_per_job, retries=retries)
