"""Random labelling ("RL"): fine-tune on the forget set with random wrong labels, plus retain.

The baseline as SalUn (Fan et al., ICLR 2024, "SalUn: Empowering machine unlearning via
gradient-based weight saliency", Sec. 4 and its RL baseline, after Golatkar et al. 2020) uses it:

1. Every forget sample i gets **one** random label y~_i, drawn once before training (seeded),
   uniform over the classes *other* than its true label: y~_i = (y_i + U{1..C-1}) mod C. (SalUn's
   own code draws uniformly over all C classes, so 1/C of the "random" labels are the true
   ones; this kit always relabels wrongly, which is the intent of the method.)
2. For ``epochs`` epochs, SGD (momentum, weight decay) with cross-entropy over one shuffled
   loader of the union forget-with-random-labels + retain-with-true-labels (each sample once per
   epoch; the forget share of a batch is on average |D_f| / (|D_f| + |D_r|)), in train mode,
   bf16 autocast, channels_last.

History: one row per epoch with the mean CE on the forget (random-label) and the retain samples
of that epoch (running means over the training batches). Finiteness is checked once per epoch.

:func:`random_wrong_labels`, :class:`TaggedDataset` and :func:`mixed_epoch` are shared with
:mod:`.salun` (SalUn is this training with its updates confined to a weight-saliency mask).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.splits import SplitDataset
from ..utils import autocast, check_finite, to_device
from .registry import register

__all__ = ["random_label", "random_wrong_labels", "TaggedDataset", "relabelled_mixed_loader",
           "mixed_epoch"]


def random_wrong_labels(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """One random label per sample, uniform over the classes other than its own (seeded)."""
    if num_classes < 2:
        raise ValueError("random labelling needs at least 2 classes")
    labels = np.asarray(labels, dtype=np.int64)
    shift = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
    return (labels + shift) % num_classes


class TaggedDataset(Dataset):
    """Wrap a dataset of ``(x, y)`` so that it yields ``(x, y, tag)`` (tag: 1 forget, 0 retain)."""

    def __init__(self, base: Dataset, tag: int):
        self.base, self.tag = base, int(tag)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, y, self.tag


def relabelled_mixed_loader(splits, batch_size: int, augment: bool, seed: int,
                            label_seed: int) -> tuple[DataLoader, np.ndarray]:
    """Shuffled loader over forget (random wrong labels, tag 1) + retain (true labels, tag 0).

    Returns the loader and the forget set's random labels. The last partial batch is dropped
    when the union is larger than one batch (no 1-image BatchNorm batch in train mode).
    """
    forget = splits.dataset("forget", augment)
    new_labels = random_wrong_labels(forget.labels, splits.num_classes, label_seed)
    forget_rl = SplitDataset(forget.source, new_labels, forget.transform, forget.identities)
    union = ConcatDataset([TaggedDataset(forget_rl, 1), TaggedDataset(splits.dataset("retain", augment), 0)])
    gen = torch.Generator().manual_seed(int(seed))
    loader = DataLoader(union, batch_size=batch_size, shuffle=True, generator=gen,
                        drop_last=len(union) > batch_size)
    return loader, new_labels


def mixed_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer,
                device: torch.device, amp: bool, max_batches: int | None = None,
                before_step: Callable[[], None] | None = None,
                after_step: Callable[[], None] | None = None, bar=None,
                set_train_mode: Callable[[nn.Module], None] | None = None,
                what: str = "the random-label training loss") -> dict[str, float]:
    """One epoch of CE training on a loader of ``(x, y, tag)`` batches; returns the epoch means.

    ``before_step`` runs between ``backward`` and ``opt.step`` (gradient masking),
    ``after_step`` after ``opt.step`` (weight restoring), ``set_train_mode(model)`` replaces
    ``model.train()`` (e.g. to keep BatchNorm frozen); ``what`` names the loss in the error a
    non-finite loss raises. Losses are accumulated on the device
    and read once at the end of the epoch.
    """
    sums = torch.zeros(4, device=device)  # forget CE sum, retain CE sum, n forget, n retain
    n_batches = 0
    if set_train_mode is None:
        model.train()
    else:
        set_train_mode(model)
    for x, y, tag in loader:
        if max_batches is not None and n_batches >= max_batches:
            break
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        tag = tag.to(device, non_blocking=True).bool()
        with autocast(device, amp):
            logits = model(x)
        per = F.cross_entropy(logits.float(), y, reduction="none")
        loss = per.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step()
        opt.step()
        if after_step is not None:
            after_step()
        with torch.no_grad():
            tf = tag.float()
            sums += torch.stack([(per * tf).sum(), (per * (1 - tf)).sum(), tf.sum(), (1 - tf).sum()])
        n_batches += 1
        if bar is not None:
            bar.update(1)
    opt.zero_grad(set_to_none=True)
    s = sums.tolist()
    out = {"forget_ce": s[0] / s[2] if s[2] else float("nan"),
           "retain_ce": s[1] / s[3] if s[3] else float("nan"),
           "n_forget": int(s[2]), "n_retain": int(s[3]), "batches": n_batches}
    check_finite(s[0] + s[1], what)
    return out


_DEFAULTS = {
    # SalUn's RL baseline on CIFAR-10 random-data forgetting: SGD momentum 0.9, wd 5e-4, 10
    # epochs, lr ~0.01 (SalUn tunes the RL lr per setting); batch 32 = the DLFD authors' MUFAC batch
    "paper": {"epochs": 10, "lr": 0.01, "batch_size": 32},
    # CPU demo (untuned): 2 epochs over retain + forget of the quick synthetic data
    "quick": {"epochs": 2, "lr": 0.01, "batch_size": 64},
    "smoke": {"epochs": 1, "lr": 0.01, "batch_size": 8},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the learning rate and epochs;
#: augmentation of its batches is a tuned choice too (the authors' baselines trained on
#: augmented batches, the kit's defaults do not; every method, DLFD included, gets the same choice).
SEARCH_SPACE = {"lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 3), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
STRENGTH = ("lr", (1e-3, 3e-3, 1e-2, 3e-2))


@register("random_label", defaults=_DEFAULTS, search_space=SEARCH_SPACE, strength=STRENGTH)
def random_label(model: nn.Module, splits, *, device: torch.device, seed: int = 0,
                 progress: bool = False, epochs: int = 10, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, batch_size: int = 32, augment: bool = False,
                 amp: bool = True, max_batches: int | None = None):
    """Random labelling: CE on forget (fixed random wrong labels) + retain, ``epochs`` epochs of
    SGD (lr/momentum/weight_decay). ``max_batches`` caps each epoch (tests, benchmarks)."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"random_label needs epochs >= 1, batch_size >= 1, lr > 0; got "
                         f"epochs={epochs}, batch_size={batch_size}, lr={lr}")
    seeds = np.random.SeedSequence(seed).generate_state(2)
    loader, new_labels = relabelled_mixed_loader(splits, batch_size, augment, int(seeds[0]), int(seeds[1]))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    total = epochs * (len(loader) if max_batches is None else min(len(loader), max_batches))
    history = []
    with tqdm(total=total, desc="RL", disable=not progress) as bar:
        for epoch in range(epochs):
            rec = mixed_epoch(model, loader, opt, device, amp, max_batches, bar=bar,
                              what=f"Random-Label's training loss in epoch {epoch + 1}")
            history.append({"epoch": epoch + 1, "phase": "random_label", **rec})
    model.eval()
    return history, {"n_forget_relabelled": len(new_labels), "epochs": epochs}
