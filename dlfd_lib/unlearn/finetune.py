"""Fine-tuning on the retain set ("finetune"), the simplest unlearning baseline.

Reference: the "Fine-tune" baseline of Choi & Na, *Distribution-Level Feature Distancing for
Machine Unlearning* (AAAI 2025, arXiv 2409.14747), Tables of ``shared/reference/paper-notes.md``;
the idea goes back to the fine-tuning baseline of Golatkar et al., *Eternal Sunshine of the
Spotless Net* (CVPR 2020) and the NeurIPS 2023 unlearning challenge starting kit.

Algorithm: starting from the original model, train on the retain set D_r alone with plain
cross-entropy for a few epochs (SGD with momentum and weight decay). The forget set is never
used: forgetting comes only from "catastrophic forgetting" of D_f while the weights move to fit
D_r. Everything runs in train mode (BatchNorm statistics and dropout as in ordinary training),
under bf16 autocast (:func:`dlfd_lib.utils.autocast`) with channels_last inputs.

The learning rate is constant (``schedule="constant"``) or follows a cosine decay to 0 stepped
once per *batch* over the whole run (``schedule="cosine"``; the period is counted in batches,
so it does not oscillate: see pitfall 10 of ``released-code-pitfalls.md``).

The training loop here (:func:`train_on_retain`) is shared by CF-k and EU-k (:mod:`.cfk`,
:mod:`.euk`), which pass the subset of parameters to train and the modules to keep frozen.

Defaults per profile: ``paper`` uses the authors' MUFAC training recipe (SGD lr 0.01,
momentum 0.9, weight decay 5e-4, batch 32) for a few (5) epochs; the number of fine-tuning
epochs of the DLFD authors' baseline is not given in the paper notes, so 5 is an assumption.
``quick`` uses 3 epochs at lr 0.01, ``smoke`` 1 epoch.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..utils import autocast, check_finite, to_device
from .registry import register

__all__ = ["finetune", "train_on_retain", "make_loader"]


def batch_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """Mean cross-entropy of one batch: inputs to ``device`` in channels_last, forward under
    bf16 autocast, loss in float32."""
    with autocast(device, amp):
        logits = model(to_device(x, device))
    return F.cross_entropy(logits.float(), y.to(device, non_blocking=True))


def make_loader(splits, name: str, batch_size: int, augment: bool, seed: int, shuffle: bool = True):
    """A seeded, shuffled loader over one split that drops a last partial batch when there is more
    than one batch (so no BatchNorm layer sees a one-image batch)."""
    n = len(splits.split(name))
    return splits.loader(name, batch_size=batch_size, augment=augment, shuffle=shuffle, seed=seed,
                         drop_last=n > batch_size)


def _lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    if schedule == "constant" or total <= 1:
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total))


def train_on_retain(model: nn.Module, splits, *, device: torch.device, seed: int, progress: bool,
                    params: Iterable[nn.Parameter], frozen: Iterable[nn.Module] = (),
                    epochs: int, lr: float, momentum: float, weight_decay: float,
                    batch_size: int, augment: bool, schedule: str, amp: bool,
                    max_steps: int | None, desc: str) -> tuple[list[dict], dict]:
    """Minimise CE on the retain set over ``params`` for ``epochs`` epochs.

    Modules in ``frozen`` are kept in eval mode during every step (their BatchNorm running
    statistics do not move); the rest of the model is in train mode. Only ``params`` are given to
    the optimiser, so weight decay and momentum never touch anything else. One history row per
    epoch: ``epoch``, ``step`` (optimiser steps so far), ``loss`` (mean retain CE), ``lr`` (at the
    end of the epoch) and ``seconds``. The loss is read on the host once per epoch; a NaN/Inf
    stops the run with ``FloatingPointError``.
    """
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule={schedule!r}: choose 'constant' or 'cosine'")
    if epochs < 0 or batch_size < 1 or not lr >= 0:
        raise ValueError(f"{desc} needs epochs >= 0, batch_size >= 1 and lr >= 0; got epochs={epochs}, "
                         f"batch_size={batch_size}, lr={lr}")
    params = [p for p in params]
    frozen = list(frozen)
    loader = make_loader(splits, "retain", batch_size, augment,
                         int(np.random.SeedSequence(seed).generate_state(1)[0]))
    per_epoch = len(loader) if max_steps is None else min(len(loader), max_steps)
    total = epochs * per_epoch
    history: list[dict] = []
    if total == 0 or not params:
        model.eval()
        return history, {"epochs": epochs, "steps": 0, "n_trainable": sum(p.numel() for p in params)}
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    step = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress)
    for epoch in range(epochs):
        model.train()
        for m in frozen:
            m.eval()
        loss_sum = torch.zeros((), device=device)
        n = 0
        for i, (x, y) in enumerate(loader):
            if i >= per_epoch:
                break
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr, schedule)
            loss = batch_ce(model, x, y, device, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            n += 1
            step += 1
            bar.update(1)
        mean = float(loss_sum) / max(n, 1)  # one host sync per epoch
        check_finite(mean, f"{desc}'s retain cross-entropy in epoch {epoch}")
        history.append({"epoch": epoch, "step": step, "loss": mean,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{mean:.3f}")
    bar.close()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history, {"epochs": epochs, "steps": step, "n_trainable": sum(p.numel() for p in params)}


_DEFAULTS = {
    # the authors' training recipe (SGD 0.01 / 0.9 / 5e-4, batch 32); 5 epochs is an assumption
    "paper": {"epochs": 5, "lr": 0.01, "batch_size": 32},
    "quick": {"epochs": 3, "lr": 0.01, "batch_size": 32},
    "smoke": {"epochs": 1, "lr": 0.01, "batch_size": 16},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the learning rate and the number of epochs (more epochs: closer to retraining, and more forgetting);
#: augmentation of its retain/forget batches is a tuned choice too (the authors' baselines
#: trained on augmented batches, the kit's defaults do not; every method, DLFD included, gets
#: the same choice).
SEARCH_SPACE = {"lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 4), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
STRENGTH = ("epochs", (1, 2, 3, 4))


@register("finetune", defaults=_DEFAULTS, search_space=SEARCH_SPACE, strength=STRENGTH)
def finetune(model: nn.Module, splits, *, device: torch.device, seed: int = 0, progress: bool = False,
             epochs: int = 5, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4,
             batch_size: int = 32, augment: bool = False, schedule: str = "constant",
             amp: bool = True, max_steps: int | None = None):
    """Fine-tune every weight on the retain set for ``epochs`` epochs (CE, SGD with momentum).

    schedule: "constant" | "cosine" (per batch, to 0 over the run); augment: the training
    augmentation; amp: bf16 autocast; max_steps: cap the batches per epoch (tests, benchmarks).
    """
    return train_on_retain(model, splits, device=device, seed=seed, progress=progress,
                           params=model.parameters(), epochs=epochs, lr=lr, momentum=momentum,
                           weight_decay=weight_decay, batch_size=batch_size, augment=augment,
                           schedule=schedule, amp=amp, max_steps=max_steps, desc="Fine-tune")
