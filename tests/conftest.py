"""Shared pytest set-up.

``DLFD_TEST_THREADS=N`` runs the whole suite with N torch intra-op threads: this process through
``torch.set_num_threads`` and the notebook kernels papermill starts through ``OMP_NUM_THREADS``.
``make test-threads`` runs the suite at 1 and at 2 threads, so an assertion that holds only for
one thread count's rounding shows up.

Under pytest-xdist (``make test`` runs ``-n auto``: one worker per core) each worker gets
``cores // workers`` threads (at least 1) unless ``DLFD_TEST_THREADS`` says otherwise, so the
workers do not oversubscribe the cores; the slowest tests (the notebook smoke runs) are
collected first so that no worker is left with a long one at the end.
"""
from __future__ import annotations

import os

import pytest
import torch

_THREADS = os.environ.get("DLFD_TEST_THREADS", "").strip()
if _THREADS:
    if not _THREADS.isdigit() or int(_THREADS) < 1:
        raise pytest.UsageError(f"DLFD_TEST_THREADS={_THREADS!r}: give a positive integer, e.g. 1 or 2")
elif os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    _THREADS = str(max(1, (os.cpu_count() or 1) // max(1, _workers)))
if _THREADS:
    torch.set_num_threads(int(_THREADS))
    os.environ["OMP_NUM_THREADS"] = _THREADS  # inherited by the notebook kernels


#: the test files whose tests run longest (papermill smoke runs of whole notebooks), slowest first
SLOW_FIRST = ("test_notebooks.py", "test_notebooks_real_data.py", "test_protocol.py", "test_robustness.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)
    items.sort(key=rank)  # stable: the order inside a file is kept


def pytest_report_header(config):
    source = (f"DLFD_TEST_THREADS={os.environ['DLFD_TEST_THREADS']}" if os.environ.get("DLFD_TEST_THREADS")
              else "cores // xdist workers" if _THREADS else "torch's default")
    return f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()} ({source})"
