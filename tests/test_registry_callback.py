"""The registry's step callback: called at the right steps, and invisible to the method."""
import pytest
import torch

from dlfd_lib.model import build_model
from dlfd_lib.unlearn import unlearn
from helpers import tiny_splits


@pytest.fixture(scope="module")
def splits():
    return tiny_splits()


def _weights(model):
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


@pytest.mark.parametrize("name, hp", [("neggrad", {"epochs": 4}), ("dlfd", {})])
def test_callback_steps_and_no_effect_on_result(splits, name, hp):
    torch.manual_seed(0)
    model = build_model(splits.num_classes)
    calls = []

    def cb(m, step, final):
        modes = [x.training for x in m.modules()]
        m.eval()
        with torch.no_grad():
            m(torch.zeros(2, 3, 32, 32))
        torch.rand(3)  # a callback that draws random numbers must not change the method's stream
        for x, was in zip(m.modules(), modes):
            x.training = was
        calls.append((step, final))

    plain = unlearn(name, model, splits, profile="smoke", device="cpu", seed=3, progress=False, **hp)
    watched = unlearn(name, model, splits, profile="smoke", device="cpu", seed=3, progress=False,
                      callback=cb, callback_every=2, **hp)
    assert torch.equal(_weights(plain.model), _weights(watched.model))
    steps = [s for s, f in calls if not f]
    assert steps[0] == 0 and all(s % 2 == 0 for s in steps) and steps == sorted(steps)
    assert calls[-1][1] is True and sum(f for _, f in calls) == 1
    total = calls[-1][0]
    assert total >= 2 and steps[-1] == total - total % 2
    assert watched.info["seconds"] > 0


def test_callback_every_must_be_positive(splits):
    with pytest.raises(ValueError, match="callback_every"):
        unlearn("neggrad", build_model(splits.num_classes), splits, profile="smoke", device="cpu",
                callback=lambda *a: None, callback_every=0)
