"""Negative-gradient unlearning: "neggrad" and "neggrad_plus".

**NegGrad** (gradient ascent on the forget set), the baseline used by Golatkar, Achille &
Soatto, *Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks* (CVPR
2020) and by Kurmanji et al. (below), and listed in the DLFD paper (Choi & Na, AAAI 2025):
starting from the original model, run ``epochs`` epochs over a shuffled forget loader and, for
each forget batch (x_f, y_f), take one SGD step on

    L = - CE(f(x_f), y_f)

i.e. *maximise* the cross-entropy of the forget set. Nothing else: no retain term, no early
stopping when the forget accuracy collapses (the algorithm has none). The cross-entropy is
unbounded above, so too large a learning rate or too many steps diverge; a NaN/Inf loss stops
the run with ``FloatingPointError``.

**NegGrad+** ("advanced NegGrad"), Kurmanji, Triantafillou, Hayes & Triantafillou, *Towards
Unbounded Machine Unlearning* (NeurIPS 2023): fine-tune on retain and ascend on forget at the
same time. Each epoch iterates the shuffled retain loader; each retain batch (x_r, y_r) is
paired with the next batch (x_f, y_f) of a shuffled forget loader that is cycled (restarted
when exhausted), and one SGD step is taken on

    L = alpha * CE(f(x_r), y_r) - (1 - alpha) * CE(f(x_f), y_f).

Both methods run in train mode (BatchNorm and dropout as in ordinary training; the two
batches of NegGrad+ go through the model in two forward passes, so BatchNorm normalises each
with its own statistics), with SGD (momentum 0.9, weight decay 5e-4), a constant learning
rate, bf16 autocast and channels_last inputs. History: one row per epoch with ``epoch``,
``step`` and the mean loss terms (``forget_loss`` = mean CE on forget; NegGrad+ also
``retain_loss`` and the combined ``loss``); the losses are read on the host once per epoch.

Defaults per profile (no MUFAC values of the DLFD authors are in the paper notes; the values
below are assumptions, flagged here): ``paper``: NegGrad 1 epoch at lr 1e-3, batch 32;
NegGrad+ alpha = 0.999 (Kurmanji et al. tune alpha per dataset; a forget weight of 1e-3 keeps
the unbounded ascent term from dominating), 1 epoch at lr 0.01 (the authors' fine-tuning lr),
batch 32. ``quick``: NegGrad 1 epoch at lr 1e-3; NegGrad+ alpha 0.99, 2 epochs at lr 0.01.
``smoke``: 1 epoch, batch 16.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..utils import check_finite
from .finetune import batch_ce, make_loader
from .registry import register

__all__ = ["neggrad", "neggrad_plus"]


def _cycle(loader):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the forget loader is empty")


def _check_args(name, epochs, batch_size, lr):
    if epochs < 0 or batch_size < 1 or not lr >= 0:
        raise ValueError(f"{name} needs epochs >= 0, batch_size >= 1 and lr >= 0; got epochs={epochs}, "
                         f"batch_size={batch_size}, lr={lr}")


_NEGGRAD_DEFAULTS = {
    "paper": {"epochs": 1, "lr": 1e-3, "batch_size": 32},
    "quick": {"epochs": 1, "lr": 1e-3, "batch_size": 32},
    "smoke": {"epochs": 1, "lr": 1e-3, "batch_size": 16},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the ascent's learning rate and epochs;
#: augmentation of its retain/forget batches is a tuned choice too (the authors' baselines
#: trained on augmented batches, the kit's defaults do not; every method, DLFD included, gets
#: the same choice).
NEGGRAD_SEARCH_SPACE = {"lr": ("float", 1e-4, 1e-2, "log"), "epochs": ("int", 1, 3), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
NEGGRAD_STRENGTH = ("lr", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2))


@register("neggrad", defaults=_NEGGRAD_DEFAULTS, search_space=NEGGRAD_SEARCH_SPACE, strength=NEGGRAD_STRENGTH)
def neggrad(model: nn.Module, splits, *, device: torch.device, seed: int = 0, progress: bool = False,
            epochs: int = 1, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
            batch_size: int = 32, augment: bool = False, amp: bool = True,
            max_steps: int | None = None):
    """NegGrad: SGD steps on -CE over the forget set for ``epochs`` epochs (gradient ascent).
    max_steps caps the batches per epoch; other arguments as for ``finetune``."""
    _check_args("NegGrad", epochs, batch_size, lr)
    loader = make_loader(splits, "forget", batch_size, augment,
                         int(np.random.SeedSequence(seed).generate_state(1)[0]))
    per_epoch = len(loader) if max_steps is None else min(len(loader), max_steps)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    bar = tqdm(total=epochs * per_epoch, desc="NegGrad", disable=not progress)
    for epoch in range(epochs):
        model.train()
        f_sum = torch.zeros((), device=device)
        n = 0
        for i, (x, y) in enumerate(loader):
            if i >= per_epoch:
                break
            ce = batch_ce(model, x, y, device, amp)
            opt.zero_grad(set_to_none=True)
            (-ce).backward()
            opt.step()
            f_sum += ce.detach()
            n += 1
            step += 1
            bar.update(1)
        forget_loss = float(f_sum) / max(n, 1)  # one host sync per epoch
        check_finite(forget_loss, f"NegGrad's forget cross-entropy in epoch {epoch}")
        history.append({"epoch": epoch, "step": step, "forget_loss": forget_loss,
                        "loss": -forget_loss, "seconds": time.perf_counter() - t0})
        bar.set_postfix(forget_ce=f"{forget_loss:.3f}")
    bar.close()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history, {"epochs": epochs, "steps": step}


_PLUS_DEFAULTS = {
    "paper": {"alpha": 0.999, "epochs": 1, "lr": 0.01, "batch_size": 32},
    "quick": {"alpha": 0.99, "epochs": 2, "lr": 0.01, "batch_size": 32},
    "smoke": {"alpha": 0.99, "epochs": 1, "lr": 0.01, "batch_size": 16},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the retain/forget balance alpha (lower: more ascent), the lr and epochs;
#: augmentation of its batches is a tuned choice too (the authors' baselines trained on
#: augmented batches, the kit's defaults do not; every method, DLFD included, gets the same choice).
PLUS_SEARCH_SPACE = {"alpha": ("float", 0.9, 0.999), "lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 3), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
PLUS_STRENGTH = ("alpha", (0.999, 0.995, 0.99, 0.97, 0.95))


@register("neggrad_plus", defaults=_PLUS_DEFAULTS, search_space=PLUS_SEARCH_SPACE, strength=PLUS_STRENGTH)
def neggrad_plus(model: nn.Module, splits, *, device: torch.device, seed: int = 0,
                 progress: bool = False, alpha: float = 0.999, epochs: int = 1, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 32,
                 augment: bool = False, amp: bool = True, max_steps: int | None = None):
    """NegGrad+: per retain batch, one SGD step on alpha*CE(retain) - (1-alpha)*CE(forget), the
    forget batches cycled. max_steps caps the retain batches per epoch."""
    _check_args("NegGrad+", epochs, batch_size, lr)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: the retain weight must lie in [0, 1]")
    seeds = np.random.SeedSequence(seed).generate_state(2)
    retain_loader = make_loader(splits, "retain", batch_size, augment, int(seeds[0]))
    forget_iter = _cycle(make_loader(splits, "forget", batch_size, augment, int(seeds[1])))
    per_epoch = len(retain_loader) if max_steps is None else min(len(retain_loader), max_steps)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    bar = tqdm(total=epochs * per_epoch, desc="NegGrad+", disable=not progress)
    for epoch in range(epochs):
        model.train()
        r_sum = torch.zeros((), device=device)
        f_sum = torch.zeros((), device=device)
        n = 0
        for i, (xr, yr) in enumerate(retain_loader):
            if i >= per_epoch:
                break
            xf, yf = next(forget_iter)
            ce_r = batch_ce(model, xr, yr, device, amp)
            ce_f = batch_ce(model, xf, yf, device, amp)
            loss = alpha * ce_r - (1.0 - alpha) * ce_f
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            r_sum += ce_r.detach()
            f_sum += ce_f.detach()
            n += 1
            step += 1
            bar.update(1)
        retain_loss, forget_loss = float(r_sum) / max(n, 1), float(f_sum) / max(n, 1)
        check_finite(retain_loss, f"NegGrad+'s retain cross-entropy in epoch {epoch}")
        check_finite(forget_loss, f"NegGrad+'s forget cross-entropy in epoch {epoch}")
        history.append({"epoch": epoch, "step": step, "retain_loss": retain_loss,
                        "forget_loss": forget_loss,
                        "loss": alpha * retain_loss - (1.0 - alpha) * forget_loss,
                        "seconds": time.perf_counter() - t0})
        bar.set_postfix(retain_ce=f"{retain_loss:.3f}", forget_ce=f"{forget_loss:.3f}")
    bar.close()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history, {"epochs": epochs, "steps": step}
