"""Fine-tuning on the retain set: fine-tune, CF-k and EU-k (fast, CPU).

Every baseline's common behaviour (runs, leaves the caller's model alone, history of the shared
loop) is in test_baselines_common.py."""
import copy
import math

import pytest
import torch

from dlfd_lib.unlearn import unlearn
from dlfd_lib.unlearn.euk import _init_seed, reinitialise_last_k
from dlfd_lib.unlearn.loop import layer_blocks, split_last_k


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _block_keys(model, blocks):
    """state_dict keys (parameters and buffers) of the given layer blocks."""
    names = {id(mod): n for n, mod in model.named_modules()}
    keys = set()
    for _, mods in blocks:
        for mod in mods:
            prefix = names[id(mod)]
            keys |= {f"{prefix}.{k}" for k in mod.state_dict()}
    return keys


def test_layer_definition(model):
    names = [n for n, _ in layer_blocks(model)]
    assert names == ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                     "layer4.0", "layer4.1", "head.0", "head.3", "head.6"]
    # every parameter belongs to exactly one layer
    keys = _block_keys(model, layer_blocks(model))
    assert keys == set(model.state_dict())
    with pytest.raises(ValueError, match="k=13"):
        split_last_k(model, 13)


@pytest.mark.parametrize("k", [3, 4])
def test_cf_k_freezes_all_but_last_k_bitwise(splits, model, k):
    before = _state(model)
    res = unlearn("cf_k", model, splits, profile="smoke", device="cpu", k=k, progress=False)
    frozen, last = split_last_k(res.model, k)
    frozen_keys, last_keys = _block_keys(res.model, frozen), _block_keys(res.model, last)
    after = res.model.state_dict()
    for key in frozen_keys:  # parameters AND buffers (BatchNorm running stats, batch counts)
        assert torch.equal(after[key], before[key]), f"CF-{k} changed frozen {key}"
    moved = {key for key in last_keys if not torch.equal(after[key], before[key])}
    for name, mods in last:  # every trained layer moved
        assert any(key in moved for key in _block_keys(res.model, [(name, mods)])), name
    if k == 4:  # the trained residual block updated its BatchNorm statistics
        assert "base_model.layer4.1.bn2.running_mean" in moved
    assert res.info["trained_layers"] == [n for n, _ in last]


def test_eu_k_reinitialises_last_k_and_keeps_the_rest(splits, model):
    k, seed = 4, 5
    model = copy.deepcopy(model)  # give BatchNorm non-initial values, so a reset shows
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(0.5)
                m.running_var.fill_(2.0)
                m.num_batches_tracked.fill_(7)
    before = _state(model)
    res0 = unlearn("eu_k", model, splits, profile="smoke", device="cpu", k=k, seed=seed, epochs=0,
                   progress=False)
    fresh = copy.deepcopy(model)
    reinitialise_last_k(fresh, k, _init_seed(seed))
    frozen, last = split_last_k(model, k)
    frozen_keys, last_keys = _block_keys(model, frozen), _block_keys(model, last)
    s0, sf = res0.model.state_dict(), fresh.state_dict()
    for key in last_keys:  # exactly the seeded fresh init ...
        assert torch.equal(s0[key], sf[key]), key
    for key in last_keys:  # ... which differs from the original weights
        if key.endswith("weight") and ("conv" in key or "features" in key):
            assert not torch.equal(s0[key], before[key]), key
    assert float(s0["base_model.layer4.1.bn1.running_var"].min()) == 1.0  # fresh BN statistics
    assert int(s0["base_model.layer4.1.bn1.num_batches_tracked"]) == 0
    assert float(s0["base_model.layer4.1.bn1.weight"].min()) == 1.0
    assert float(s0["base_model.layer4.0.bn1.running_var"].min()) == 2.0  # frozen: kept
    bound = 1 / math.sqrt(512)  # nn.Linear's default init: |w| <= 1/sqrt(fan_in)
    assert float(s0["features.0.weight"].abs().max()) <= bound
    for key in frozen_keys:
        assert torch.equal(s0[key], before[key]), key
    # trained: the rest still bitwise unchanged, the last k far from the original
    res = unlearn("eu_k", model, splits, profile="smoke", device="cpu", k=k, seed=seed, progress=False)
    s1 = res.model.state_dict()
    for key in frozen_keys:
        assert torch.equal(s1[key], before[key]), key
    w1, w0 = s1["features.6.weight"], before["features.6.weight"]
    assert float((w1 - w0).norm()) > 0.5 * float(w0.norm())
    assert res.info["reinitialised_layers"] == ["layer4.1", "head.0", "head.3", "head.6"]
