"""The shared training loop of the unlearning methods (dlfd_lib.unlearn.loop) on a tiny linear
model: rows, passes, hooks, caps, finite checks, the partial-batch rule (fast, CPU)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlfd_lib.optim import SGD_DEFAULTS, Optim
from dlfd_lib.unlearn.loop import (Hooks, Pass, cycle, drop_last, fit, make_loader, seed_words,
                                   shuffled_loader)

CPU = torch.device("cpu")


def _data(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return [(x[i:i + 2], (x[i:i + 2].sum(1) > 0).long()) for i in range(0, n, 2)]  # 5 batches of 2


def _step(model):
    def step(batch):
        x, y = batch
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.detach(), "n": torch.tensor(float(len(y)))}
    return step


def test_fit_trains_and_writes_one_row_per_epoch():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    w0 = model.weight.detach().clone()
    hist, steps = fit(model, [Pass(_data(), _step(model))], Optim(0.1), epochs=3, max_steps=None,
                      device=CPU, desc="toy", progress=False)
    assert steps == 15 and not model.training and not torch.equal(model.weight, w0)
    assert [r["epoch"] for r in hist] == [1, 2, 3] and [r["step"] for r in hist] == [5, 10, 15]
    assert all(r["phase"] == "toy" and r["batches"] == 5 and r["lr"] == 0.1 for r in hist)
    for r in hist:  # default summary: the batch means of the sums; loss: the minimised loss
        assert r["ce"] == pytest.approx(r["loss"]) and r["n"] == pytest.approx(2.0)
    assert hist[-1]["loss"] < hist[0]["loss"]  # it learns
    assert all(p.grad is None for p in model.parameters())


def test_fit_builds_the_optimiser_with_the_shared_settings(monkeypatch):
    built = []
    real = torch.optim.SGD

    def spy(params, **kw):
        built.append(kw)
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    model = nn.Linear(4, 2)
    fit(model, [Pass(_data(), _step(model))], Optim(0.05), epochs=1, max_steps=1, device=CPU,
        desc="toy", progress=False)
    assert built == [{"lr": 0.05, "momentum": SGD_DEFAULTS.momentum, "weight_decay": SGD_DEFAULTS.weight_decay}]
    with pytest.raises(ValueError, match="optimizer='lbfgs'"):
        Optim(0.1, kind="lbfgs")
    assert isinstance(Optim(0.1, kind="adam").build(model.parameters()), torch.optim.Adam)


def test_passes_caps_hooks_and_schedules():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    calls = []
    modes = []

    def first_only(epoch):
        return epoch == 1

    passes = [Pass(_data(seed=1), _step(model), when=first_only, after=lambda e: {"after_a": e},
                   summary=lambda s, n: {"a_ce": s["ce"] / n},
                   train_mode=lambda m: modes.append("a") or m.train()),
              Pass(_data(seed=2), _step(model), summary=lambda s, n: {"b_n": s["n"]},
                   train_mode=lambda m: modes.append("b") or m.train())]
    hooks = Hooks(before_step=lambda: calls.append("before"), after_step=lambda: calls.append("after"),
                  lr_at=lambda step, total: 0.1 * (total - step) / total)
    hist, steps = fit(model, passes, Optim(0.1), epochs=2, max_steps=3, device=CPU, desc="toy",
                      progress=False, hooks=hooks)
    assert steps == 3 + 3 + 3 and modes == ["a", "b", "b"]
    assert calls == ["before", "after"] * 9
    assert hist[0]["batches"] == 6 and hist[1]["batches"] == 3
    assert hist[0]["after_a"] == 1 and "after_a" not in hist[1] and "a_ce" in hist[0]
    assert hist[0]["b_n"] == pytest.approx(6.0)  # the sum over the capped pass: 3 batches of 2
    assert hist[1]["lr"] == pytest.approx(0.1 * (9 - 8) / 9)  # set before every step


def test_a_non_finite_loss_stops_the_run_naming_the_term_and_epoch():
    model = nn.Linear(4, 2)

    def step(batch):
        x, y = batch
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce_forget": ce.detach() * math.inf}

    with pytest.raises(FloatingPointError, match="toy's ce_forget in epoch 1 became inf"):
        fit(model, [Pass(_data(), step)], Optim(0.1), epochs=2, max_steps=None, device=CPU,
            desc="toy", progress=False)


def test_partial_batches_and_loaders(splits):
    assert drop_last(17, 16) and not drop_last(16, 16) and not drop_last(5, 16)
    loader = make_loader(splits, "retain", 16, augment=False, seed=0)  # 36 images: 2 full batches
    assert [len(y) for _, y in loader] == [16, 16]
    assert [len(y) for _, y in make_loader(splits, "forget", 16, False, 0)] == [12]  # one batch: kept
    ds = splits.dataset("retain")
    assert [len(b[1]) for b in shuffled_loader(ds, 16, seed=1)] == [16, 16]
    a = [b[1].tolist() for b in shuffled_loader(ds, 16, seed=1)]
    assert a == [b[1].tolist() for b in shuffled_loader(ds, 16, seed=1)]  # seeded


def test_cycle_restarts_and_refuses_an_empty_loader():
    it = cycle([1, 2])
    assert [next(it) for _ in range(5)] == [1, 2, 1, 2, 1]
    with pytest.raises(ValueError, match="empty"):
        next(cycle([]))
    assert seed_words(0, 3)[:2] == seed_words(0, 2)  # the first words do not depend on n
