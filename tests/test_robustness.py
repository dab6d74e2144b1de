"""Faults a user runs into, each with the message or the behaviour the kit promises (issue 12).

Non-finite unlearning, checkpoints that must not be used, stale temporary files and
permissions, data fingerprints that force a retrain, paths outside the data root, parameter
validation, and the notebook runner's timeouts and interruptions.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_splits  # noqa: E402

from dlfd_lib.model import CheckpointError, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from dlfd_lib.unlearn import available_methods, unlearn  # noqa: E402
from dlfd_lib.utils import atomic_write_bytes, save_json  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return tiny_splits()


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return build_model(tiny.num_classes)


# ------------------------------------------------------------------ 4. non-finite unlearning

#: a learning rate far past divergence for every method (UNSIR has two)
DIVERGING = {"unsir": {"impair_lr": 1e12, "repair_lr": 1e12}}


@pytest.mark.parametrize("method", available_methods())
def test_every_method_stops_with_floating_point_error_naming_it_and_the_step(method, tiny, model):
    hp = DIVERGING.get(method, {"lr": 1e12})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError) as err:
        unlearn(method, model, tiny, profile="smoke", device="cpu", progress=False, **hp)
    msg = str(err.value)
    assert f"unlearning method {method!r}" in msg, msg
    assert "step" in msg, msg
    if method == "salun":
        assert "random-label" not in msg.lower(), msg
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nonfinite_weights_are_never_saved_and_never_loaded(tmp_path, model):
    bad = build_model(3)
    with torch.no_grad():
        bad.features[6].weight[0, 0] = float("nan")
    path = tmp_path / "bad.pt"
    with pytest.raises(FloatingPointError, match="not finite"):
        save_checkpoint(bad, path)
    assert not path.exists() and not list(tmp_path.iterdir())
    # a file written some other way (an older kit) is refused on loading, with the reason
    state = {k: v.clone() for k, v in bad.state_dict().items()}
    torch.save({"format": "dlfd-kit-checkpoint/1", "state_dict": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match="non-finite weights.*features.6.weight"):
        load_checkpoint(path)
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(tmp_path / "plain.pt")
