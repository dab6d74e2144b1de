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


# ---------------------------------------------------------------------------------------------
# shared fixtures (a test file that needs other data declares its own fixture of the same name)
@pytest.fixture(scope="module")
def splits():
    """Tiny, learnable splits (helpers.tiny_splits): 36 retain, 12 forget / val / test images,
    32 px, 3 classes, 4 images per identity; smoke batch 16 -> 2 retain batches, 1 forget."""
    from helpers import tiny_splits
    return tiny_splits()


@pytest.fixture(scope="module")
def model(splits):
    """An untrained FaceClassifier for ``splits`` (seed 0), in eval mode."""
    from dlfd_lib.model import build_model
    torch.manual_seed(0)
    return build_model(splits.num_classes).eval()


@pytest.fixture(scope="module")
def smoke_run(splits, model):
    """``smoke_run(name)``: method ``name`` run once per test module on ``splits`` / ``model``
    (smoke profile, CPU, seed 0), cached; the caller's model is checked to be untouched."""
    import copy

    from dlfd_lib.unlearn import unlearn
    cache = {}
    before = copy.deepcopy(model.state_dict())

    def run(name):
        if name not in cache:
            cache[name] = unlearn(name, model, splits, profile="smoke", device="cpu", seed=0,
                                  progress=False)
            for k, v in model.state_dict().items():
                assert torch.equal(v, before[k]), f"{name} changed the caller's {k}"
        return cache[name]

    return run
