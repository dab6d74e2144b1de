"""What every baseline shares: it runs on the smoke profile, changes the model and leaves the
caller's alone, and reports through the shared loop (dlfd_lib.unlearn.loop): one set of history
columns, epochs counted from 1, the per-pass batch cap ``max_steps``, finite checks (fast, CPU)."""
import copy

import numpy as np
import pytest
import torch

from dlfd_lib.unlearn import available_methods, unlearn

#: every registered method but DLFD (its own, explicit loop), with the history rows of a smoke
#: run: one per epoch, plus SCRUB's row 0 (the untouched student) and UNSIR's noise row
ROWS = {"finetune": 1, "cf_k": 1, "eu_k": 1, "neggrad": 1, "neggrad_plus": 1, "random_label": 1,
        "salun": 1, "bad_teacher": 1, "scrub": 3, "unsir": 3}
#: optimiser steps of a smoke run with max_steps=1: one per pass that runs (SCRUB's smoke: 2
#: epochs, the first with a max-step pass; UNSIR: an impair and a repair epoch)
CAPPED_STEPS = {"scrub": 3, "unsir": 2}
#: the columns of every training row (dlfd_lib.unlearn.loop.fit)
LOOP_COLUMNS = {"epoch", "phase", "step", "loss", "batches", "lr", "seconds"}


def test_every_baseline_is_covered():
    assert set(ROWS) == set(available_methods()) - {"dlfd", "dlfd_released"}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_method_runs_changes_model_and_leaves_input_alone(splits, model, smoke_run, name):
    before = copy.deepcopy(model.state_dict())
    res = smoke_run(name)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} changed the caller's {k}"
    assert res.model is not model
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert all(p.requires_grad for p in res.model.parameters())
    changed = [k for k, v in res.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"{name} did not change the model"
    h = res.history
    assert len(h) == ROWS[name] and {"epoch", "step", "loss"} <= set(h.columns)
    num = h.select_dtypes("number")
    assert np.isfinite(num.to_numpy(dtype=float)[~num.isna().to_numpy()]).all()
    if ROWS[name] == 1:  # a plain training run: no column is missing on its one row
        assert np.isfinite(num.to_numpy(dtype=float)).all()
    assert res.info["steps"] >= 1 and res.info["method"] == name
    assert not res.model.training  # eval mode at the end


@pytest.mark.parametrize("name", sorted(ROWS))
def test_history_rows_share_the_loops_columns_and_numbering(smoke_run, name):
    res = smoke_run(name)
    h = res.history
    train = h[h["epoch"] >= 1]
    assert LOOP_COLUMNS <= set(h.columns), sorted(LOOP_COLUMNS - set(h.columns))
    assert train[list(LOOP_COLUMNS - {"phase"})].notna().all().all()
    for _, rows in train.groupby("phase", sort=False):  # each run of the loop counts from 1
        assert list(rows["epoch"]) == list(range(1, len(rows) + 1))
    assert list(train["step"]) == sorted(train["step"]) and train["step"].iloc[-1] == res.info["steps"]
    assert (train["batches"] >= 1).all() and (train["lr"] > 0).all()
    assert set(h.loc[h["epoch"] == 0, "step"].dropna()) == set()  # a row 0 is before any step


@pytest.mark.parametrize("name", sorted(ROWS))
def test_max_steps_caps_every_pass(splits, model, name):
    res = unlearn(name, model, splits, profile="smoke", device="cpu", seed=0, progress=False,
                  max_steps=1)
    assert res.info["steps"] == CAPPED_STEPS.get(name, 1)
    train = res.history[res.history["epoch"] >= 1]
    assert train["batches"].sum() == res.info["steps"] and train["batches"].max() <= 2


def test_nan_stops_with_clear_error(splits, model):
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.features[6].weight.fill_(float("nan"))
    for name in ("finetune", "neggrad"):
        with pytest.raises(FloatingPointError, match="diverged"):
            unlearn(name, bad, splits, profile="smoke", device="cpu", progress=False)


@pytest.mark.parametrize("value, message", [(float("nan"), "became non-finite"),
                                            (float("inf"), "became non-finite"),
                                            (3e38, "grew so large")])
def test_the_finite_watch_names_the_first_bad_step(value, message):
    from dlfd_lib.unlearn.registry import _FiniteWatch
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with _FiniteWatch("toy", net, every=100) as watch:
        for step in range(1, 6):
            if step == 3:
                with torch.no_grad():
                    net[1].weight.fill_(value)  # [value, value]: 3e38 + 3e38 overflows, each is finite
            opt.zero_grad()
            net(torch.ones(1, 3)).sum().backward()
            opt.step()
        with pytest.raises(FloatingPointError, match=rf"{message}.* at optimiser step 3"):
            watch.check()
    clean = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(clean.parameters(), lr=0.1)
    with _FiniteWatch("toy", clean, every=2) as watch:
        for _ in range(4):
            opt.zero_grad()
            clean(torch.ones(1, 3)).sum().backward()
            opt.step()
        watch.check()  # nothing to report
        assert watch.steps == 4
