"""Shared pytest set-up.

``DLFD_TEST_THREADS=N`` runs the whole suite with N torch intra-op threads: this process through
``torch.set_num_threads`` and the notebook kernels papermill starts through ``OMP_NUM_THREADS``.
``make test-threads`` runs the suite at 1 and at 2 threads, so an assertion that holds only for
one thread count's rounding shows up.
"""
from __future__ import annotations

import os

import pytest
import torch

_THREADS = os.environ.get("DLFD_TEST_THREADS", "").strip()
if _THREADS:
    if not _THREADS.isdigit() or int(_THREADS) < 1:
        raise pytest.UsageError(f"DLFD_TEST_THREADS={_THREADS!r}: give a positive integer, e.g. 1 or 2")
    torch.set_num_threads(int(_THREADS))
    os.environ["OMP_NUM_THREADS"] = _THREADS  # inherited by the notebook kernels


def pytest_report_header(config):
    return f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}" + (
        f" (DLFD_TEST_THREADS={_THREADS})" if _THREADS else "")
