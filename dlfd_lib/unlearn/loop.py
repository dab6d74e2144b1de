"""The one training loop of the unlearning methods, and the pieces they share.

A method supplies only what is its own: the loss of one step (a :class:`Pass`: a loader and a
``step(batch) -> (loss, sums)`` function), and hooks where it needs them; :func:`fit` owns the
rest, once for every method:

* the optimiser (:class:`dlfd_lib.optim.Optim`: SGD with the kit's momentum and weight decay,
  or Adam), built over ``params`` (default: every weight of the model);
* the per-epoch batch cap ``max_steps`` (per pass; ``None``: the whole loader);
* ``zero_grad`` / ``backward`` / ``step``, with ``Hooks.before_step`` between ``backward`` and
  ``step`` (SalUn's gradient mask), ``Hooks.after_step`` after it (SalUn's weight restore) and
  ``Hooks.lr_at`` setting the learning rate before each step (fine-tuning's cosine schedule);
* the losses summed on the device and read on the host once per pass, where a NaN or an
  infinity stops the run (:func:`~dlfd_lib.utils.check_finite`);
* the tqdm bar, the history (one row per epoch, below) and ``model.eval()`` at the end.

**History rows** (one per epoch, ``epoch`` counted from 1; a method may add a row ``epoch=0``
for the model before any update): ``epoch``, ``phase``, ``step`` (optimiser steps so far),
``loss`` (mean over the epoch's steps of the loss that was minimised), ``batches``, ``lr`` (at the
end of the epoch), ``seconds`` (since the start of :func:`fit`), then each pass's own columns:
by default the batch mean of every entry of ``sums``; a pass's ``summary(sums, batches)``
replaces that (per-sample means, counts; it may restate ``loss`` as a per-image mean), and its
``after(epoch)`` adds measurements taken after the pass (SCRUB's eval-mode forget KL).

**Shared settings and helpers**: :class:`SGDTraining` holds the hyperparameters every
SGD-trained baseline has (a method's dataclass derives from it); :func:`train_on_retain` is the
retain fine-tuning of fine-tune / CF-k / EU-k; :func:`relabelled_pass` the pass of Random-Label
and SalUn; :func:`layer_blocks` the layers CF-k and EU-k count. Methods share these through
this module and never import one another.

**Batches**: a loader over more images than one batch drops its last partial batch
(:func:`drop_last`), so no BatchNorm layer sees a one-image batch in train mode; every training
loader of every method applies it (:func:`make_loader` and :func:`shuffled_loader` do).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.splits import SplitDataset
from ..optim import SGD_DEFAULTS, Optim
from ..utils import autocast, check_finite, to_device

__all__ = ["fit", "Pass", "Hooks", "per_sample_means", "make_loader", "shuffled_loader", "drop_last",
           "cycle", "seed_words", "batch_ce", "logits_of", "frozen_copy", "TaggedDataset",
           "random_wrong_labels", "relabelled_forget", "relabelled_pass", "SGDTraining",
           "RetainTraining", "LastKTraining", "train_on_retain", "train_last_k", "layer_blocks",
           "split_last_k", "modules_of"]


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------
def drop_last(n: int, batch_size: int) -> bool:
    """The kit's one rule for partial batches: drop the last one when there is more than one
    batch, so that no BatchNorm layer normalises a one-image batch in train mode."""
    return n > batch_size


def make_loader(splits, name: str, batch_size: int, augment: bool, seed: int, shuffle: bool = True):
    """A seeded, shuffled loader over one split (:func:`drop_last` applied)."""
    return splits.loader(name, batch_size=batch_size, augment=augment, shuffle=shuffle,
                         seed=int(seed), drop_last=drop_last(len(splits.split(name)), batch_size))


def shuffled_loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """A seeded, shuffled ``DataLoader`` over any dataset (:func:`drop_last` applied)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(int(seed)),
                      drop_last=drop_last(len(dataset), batch_size))


def cycle(loader: Iterable):
    """Yield the loader's batches for ever, restarting it when it is exhausted."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("cycle(): the loader is empty")


def seed_words(seed: int, n: int) -> list[int]:
    """``n`` independent seeds drawn from ``seed`` (``np.random.SeedSequence``); the first words
    do not depend on ``n``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def logits_of(model: nn.Module, x: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """Forward ``x`` (moved to ``device`` in channels_last) under bf16 autocast."""
    with autocast(device, amp):
        return model(to_device(x, device))


def batch_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """Mean cross-entropy of one batch: inputs to ``device`` in channels_last, forward under
    bf16 autocast, loss in float32."""
    return F.cross_entropy(logits_of(model, x, device, amp).float(), y.to(device, non_blocking=True))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode without gradients (a teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class TaggedDataset(Dataset):
    """Wrap a dataset of ``(x, y)`` so that it yields ``(x, y, tag)`` (tag: 1 forget, 0 retain)."""

    def __init__(self, base: Dataset, tag: int):
        self.base, self.tag = base, int(tag)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, y, self.tag


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def _batch_means(sums: dict[str, float], batches: int) -> dict[str, float]:
    return {k: v / batches if batches else float("nan") for k, v in sums.items()}


def _train(model: nn.Module) -> None:
    model.train()


@dataclass
class Pass:
    """One pass over ``loader`` within an epoch.

    ``step(batch) -> (loss, sums)``: the loss to minimise on one batch and the 0-d tensors to
    sum over the pass (detached). ``summary(sums, batches)`` turns the host sums into history
    columns (default: batch means under the same names); ``when(epoch)`` says whether the pass
    runs in that epoch (1-based); ``after(epoch)`` returns extra columns measured after the pass;
    ``train_mode(model)`` sets the modes before the pass (default ``model.train()``).
    """

    loader: Iterable
    step: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    summary: Callable[[dict[str, float], int], dict[str, Any]] = _batch_means
    when: Callable[[int], bool] = lambda epoch: True
    after: Callable[[int], dict[str, Any]] | None = None
    train_mode: Callable[[nn.Module], None] = _train


@dataclass
class Hooks:
    """``before_step()`` between ``backward`` and ``opt.step``; ``after_step()`` after it;
    ``lr_at(step, total) -> lr`` before every step (``None``: the constant ``Optim.lr``)."""

    before_step: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    lr_at: Callable[[int, int], float] | None = None


def fit(model: nn.Module, passes: Sequence[Pass], optim: Optim, *, epochs: int,
        max_steps: int | None, device: torch.device, desc: str, progress: bool,
        phase: str | None = None, params: Iterable[nn.Parameter] | None = None,
        hooks: Hooks | None = None) -> tuple[list[dict], int]:
    """Train ``model`` for ``epochs`` epochs of ``passes`` (module docstring); returns the history
    rows and the number of optimiser steps. ``phase`` names the rows (default ``desc``)."""
    hooks = hooks or Hooks()
    opt = optim.build(model.parameters() if params is None else params)
    caps = [len(p.loader) if max_steps is None else min(len(p.loader), max_steps) for p in passes]
    total = sum(cap for e in range(1, epochs + 1) for p, cap in zip(passes, caps) if p.when(e))
    history: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress)
    for epoch in range(1, epochs + 1):
        row: dict[str, Any] = {"epoch": epoch, "phase": phase or desc}
        extra: dict[str, Any] = {}
        loss_all, n_all = 0.0, 0
        for p, cap in zip(passes, caps):
            if not p.when(epoch):
                continue
            p.train_mode(model)
            loss_sum = torch.zeros((), device=device)
            sums: dict[str, torch.Tensor] = {}
            n = 0
            for batch in p.loader:
                if n >= cap:
                    break
                if hooks.lr_at is not None:
                    for group in opt.param_groups:
                        group["lr"] = hooks.lr_at(step, total)
                loss, terms = p.step(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if hooks.before_step is not None:
                    hooks.before_step()
                opt.step()
                if hooks.after_step is not None:
                    hooks.after_step()
                loss_sum += loss.detach()
                for k, v in terms.items():
                    sums[k] = sums[k] + v.detach() if k in sums else v.detach().clone()
                n += 1
                step += 1
                bar.update(1)
            values = torch.stack([loss_sum, *sums.values()]).tolist()  # one host sync per pass
            for name, v in zip(("loss", *sums), values):
                check_finite(v, f"{desc}'s {name} in epoch {epoch}")
            loss_all, n_all = loss_all + values[0], n_all + n
            extra.update(p.summary(dict(zip(sums, values[1:])), n))
            if p.after is not None:
                extra.update(p.after(epoch))
        row.update(step=step, loss=loss_all / n_all if n_all else float("nan"), batches=n_all,
                   lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
        row.update(extra)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    bar.close()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history, step


def per_sample_means(sums: dict[str, float], term: str) -> dict[str, Any]:
    """History columns of a pass over mixed forget/retain batches whose ``sums`` hold per-sample
    sums ``f"{term}_forget"``, ``f"{term}_retain"`` and the counts ``n_forget``, ``n_retain``:
    the two means (NaN without samples) and the counts."""
    nf, nr = sums["n_forget"], sums["n_retain"]
    return {f"{term}_forget": sums[f"{term}_forget"] / nf if nf else float("nan"),
            f"{term}_retain": sums[f"{term}_retain"] / nr if nr else float("nan"),
            "n_forget": int(nf), "n_retain": int(nr)}


# ---------------------------------------------------------------------------------------------
# random labelling (Random-Label, SalUn)
# ---------------------------------------------------------------------------------------------
def random_wrong_labels(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """One random label per sample, uniform over the classes other than its own (seeded)."""
    if num_classes < 2:
        raise ValueError("random labelling needs at least 2 classes")
    labels = np.asarray(labels, dtype=np.int64)
    shift = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
    return (labels + shift) % num_classes


def relabelled_forget(splits, augment: bool, label_seed: int) -> SplitDataset:
    """The forget split with one fixed random wrong label per image (:func:`random_wrong_labels`)."""
    forget = splits.dataset("forget", augment)
    new_labels = random_wrong_labels(forget.labels, splits.num_classes, label_seed)
    return SplitDataset(forget.source, new_labels, forget.transform, forget.identities)


def relabelled_pass(model: nn.Module, splits, *, batch_size: int, augment: bool, seed: int,
                    label_seed: int, device: torch.device, amp: bool) -> tuple[Pass, int]:
    """Random labelling's pass (Random-Label, SalUn): one shuffled loader over the forget set with
    fixed random wrong labels (:func:`relabelled_forget`, tag 1) and the retain set with its true
    labels (tag 0); each step the mean CE of the mixed batch. Columns ``ce_forget``,
    ``ce_retain`` (per-sample means) and the counts. Returns the pass and the number of
    relabelled forget images."""
    forget_rl = relabelled_forget(splits, augment, label_seed)
    union = ConcatDataset([TaggedDataset(forget_rl, 1), TaggedDataset(splits.dataset("retain", augment), 0)])
    loader = shuffled_loader(union, batch_size, seed)

    def step(batch):
        x, y, tag = batch
        y, tag = y.to(device, non_blocking=True), tag.to(device, non_blocking=True).bool()
        per = F.cross_entropy(logits_of(model, x, device, amp).float(), y, reduction="none")
        with torch.no_grad():
            tf = tag.float()
            sums = {"ce_forget": (per * tf).sum(), "ce_retain": (per * (1 - tf)).sum(),
                    "n_forget": tf.sum(), "n_retain": (1 - tf).sum()}
        return per.mean(), sums

    return Pass(loader, step, summary=lambda sums, n: per_sample_means(sums, "ce")), len(forget_rl)


# ---------------------------------------------------------------------------------------------
# the hyperparameters the SGD-trained methods share, and cross-entropy training on the retain set
# ---------------------------------------------------------------------------------------------
@dataclass
class SGDTraining:
    """What every SGD-trained baseline sets: ``epochs`` of SGD (``lr``, ``momentum``,
    ``weight_decay``: the kit's :data:`~dlfd_lib.optim.SGD_DEFAULTS`) over batches of
    ``batch_size``; ``augment``: the training augmentation; ``amp``: bf16 autocast;
    ``max_steps``: cap the batches of each pass per epoch (tests, benchmarks). A method's
    dataclass derives from it, adds its own fields and restates the defaults its paper sets
    differently. ``ALLOW_ZERO``: whether ``epochs=0`` / ``lr=0`` (a run that changes nothing
    but what the method does before training) is allowed."""

    epochs: int = 1
    lr: float = 0.01
    momentum: float = SGD_DEFAULTS.momentum
    weight_decay: float = SGD_DEFAULTS.weight_decay
    batch_size: int = 32
    augment: bool = False
    amp: bool = True
    max_steps: int | None = None

    ALLOW_ZERO: ClassVar[bool] = False

    def __post_init__(self):
        low, rel = (0, ">=") if self.ALLOW_ZERO else (1, ">")
        if self.epochs < low or self.batch_size < 1 or not (self.lr >= 0 if self.ALLOW_ZERO else self.lr > 0):
            raise ValueError(f"{type(self).__name__} needs epochs >= {low}, batch_size >= 1 and "
                             f"lr {rel} 0; got epochs={self.epochs}, batch_size={self.batch_size}, "
                             f"lr={self.lr}")

    def optim(self, weight_decay: float | None = None) -> Optim:
        """The SGD optimiser of these settings (``weight_decay`` overrides, e.g. 0 for SalUn)."""
        return Optim(self.lr, self.momentum, self.weight_decay if weight_decay is None else weight_decay)


@dataclass
class RetainTraining(SGDTraining):
    """Cross-entropy training on the retain set (fine-tune, CF-k, EU-k) with the authors' MUFAC
    recipe (lr 0.01, momentum 0.9, weight decay 5e-4, batch 32) for 5 epochs (an assumption: the
    paper notes do not give the baselines' epoch count). ``schedule``:
    "constant" or "cosine" (stepped per batch, to 0 over the whole run)."""

    epochs: int = 5
    schedule: str = "constant"

    ALLOW_ZERO: ClassVar[bool] = True

    def __post_init__(self):
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: choose 'constant' or 'cosine'")
        super().__post_init__()


@dataclass
class LastKTraining(RetainTraining):
    """:class:`RetainTraining` of the last ``k`` layers only (CF-k, EU-k; k = 3 as the
    benchmark's CF-3 / EU-3)."""

    k: int = 3

    #: CF-k's and EU-k's presets, tuning space and front knob: one home for the two, which the
    #: benchmark runs with the same recipe (they differ only in re-initialising the k layers).
    PRESETS: ClassVar[dict] = {
        "quick": {"k": 3, "epochs": 3, "lr": 0.01, "batch_size": 32},
        "smoke": {"k": 3, "epochs": 1, "lr": 0.01, "batch_size": 16},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): how
    #: many last layers are fine-tuned (CF-k) or re-initialised and retrained (EU-k), their lr
    #: and epochs; augmentation of its batches is a tuned choice too (the authors' baselines
    #: trained on augmented batches, the kit's defaults do not; every method, DLFD included,
    #: gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"k": ("int", 1, 6), "lr": ("float", 1e-3, 3e-2, "log"),
                                    "epochs": ("int", 1, 4), "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("k", (1, 2, 3, 4, 6))


def _cosine(lr: float):
    def lr_at(step: int, total: int) -> float:
        return lr if total <= 1 else 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
    return lr_at


def _train_except(frozen: list[nn.Module]) -> Callable[[nn.Module], None]:
    def mode(model: nn.Module) -> None:
        model.train()
        for m in frozen:
            m.eval()
    return mode


def train_on_retain(model: nn.Module, splits, hp: RetainTraining, *, device: torch.device,
                    seed: int, progress: bool, desc: str,
                    params: Iterable[nn.Parameter] | None = None,
                    frozen: Iterable[nn.Module] = ()) -> tuple[list[dict], dict]:
    """Minimise CE on the retain set over ``params`` (default: all) for ``hp.epochs`` epochs.

    Modules in ``frozen`` stay in eval mode during every step (their BatchNorm running statistics
    do not move); only ``params`` reach the optimiser, so weight decay and momentum touch nothing
    else. History columns: those of :func:`fit`."""
    params = list(model.parameters() if params is None else params)
    loader = make_loader(splits, "retain", hp.batch_size, hp.augment, seed_words(seed, 1)[0])
    info = {"epochs": hp.epochs, "n_trainable": sum(p.numel() for p in params)}
    if not params:
        model.eval()
        return [], {**info, "steps": 0}

    def step(batch):
        x, y = batch
        return batch_ce(model, x, y, device, hp.amp), {}

    hooks = Hooks(lr_at=_cosine(hp.lr) if hp.schedule == "cosine" else None)
    history, steps = fit(model, [Pass(loader, step, train_mode=_train_except(list(frozen)))],
                         hp.optim(), epochs=hp.epochs, max_steps=hp.max_steps, device=device,
                         desc=desc, progress=progress, params=params, hooks=hooks)
    return history, {**info, "steps": steps}


# ---------------------------------------------------------------------------------------------
# the layers of a FaceClassifier (CF-k, EU-k)
# ---------------------------------------------------------------------------------------------
def layer_blocks(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The ordered "layers" of a FaceClassifier: ``[(name, [modules])]``, 12 units: the stem
    (conv1 + bn1), the eight ResNet BasicBlocks (layer1.0 ... layer4.1) and the three Linear
    layers of the MLP head (head.0, head.3, head.6). Parameter-free modules belong to none."""
    if not (hasattr(model, "base_model") and hasattr(model, "features")):
        raise TypeError(f"CF-k/EU-k know the layers of dlfd_lib.model.FaceClassifier only, not of "
                        f"{type(model).__name__}")
    b = model.base_model
    blocks: list[tuple[str, list[nn.Module]]] = [("stem", [b.conv1, b.bn1])]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(b, stage)):
            blocks.append((f"{stage}.{i}", [block]))
    for i, m in enumerate(model.features):
        if isinstance(m, nn.Linear):
            blocks.append((f"head.{i}", [m]))
    return blocks


def split_last_k(model: nn.Module, k: int) -> tuple[list[tuple[str, list[nn.Module]]],
                                                     list[tuple[str, list[nn.Module]]]]:
    """``(frozen, last_k)``: the layers before the last ``k`` and the last ``k`` layers."""
    blocks = layer_blocks(model)
    if not 1 <= k <= len(blocks):
        raise ValueError(f"k={k}: this model has {len(blocks)} layers "
                         f"({', '.join(n for n, _ in blocks)}); choose 1 <= k <= {len(blocks)}")
    return blocks[:-k], blocks[-k:]


def modules_of(blocks) -> list[nn.Module]:
    return [m for _, mods in blocks for m in mods]


def train_last_k(model: nn.Module, splits, hp: LastKTraining, *, device, seed, progress,
                 desc) -> tuple[list[dict], dict]:
    """Freeze all but the last ``hp.k`` layers (bitwise: no grad, not in the optimiser, eval mode)
    and train those on the retain set (:func:`train_on_retain`); ``requires_grad`` is restored
    afterwards."""
    frozen, last = split_last_k(model, hp.k)
    trainable = [p for m in modules_of(last) for p in m.parameters()]
    saved = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    try:
        history, info = train_on_retain(model, splits, hp, device=device, seed=seed, progress=progress,
                                        desc=desc, params=trainable, frozen=modules_of(frozen))
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    return history, {**info, "k": hp.k, "trained_layers": [n for n, _ in last],
                     "frozen_layers": [n for n, _ in frozen]}
