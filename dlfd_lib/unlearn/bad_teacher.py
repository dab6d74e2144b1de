"""Bad Teacher: competent / incompetent teacher distillation (Chundawat, Tarun, Mandal and
Kankanhalli, AAAI 2023, "Can bad teaching induce forgetting? Unlearning in deep networks using an
incompetent teacher", arXiv 2205.08096).

* **Competent teacher** T_s: a frozen copy of the original model (eval mode).
* **Incompetent teacher** T_d: a *randomly initialised* model of the same architecture
  (seeded), frozen (eval mode). For the kit's :class:`~dlfd_lib.model.FaceClassifier` it is a
  fresh ``FaceClassifier`` (torchvision's initialisation); for any other model a deep copy with
  every module's ``reset_parameters()`` called.
* **Student** S: the model being unlearned, trained in train mode.
* **Data**: the forget set (l_u = 1) and a seeded random ``retain_frac`` share of the retain set
  (l_u = 0; 30 % in the paper), joined and shuffled, so each batch mixes both kinds.
* **Loss**, per sample, with temperature T:
  KL( softmax(t(x)/T) || softmax(s(x)/T) ), where t = T_d's logits for forget samples and T_s's
  for retain samples (a per-sample teacher choice); averaged over the batch. It is a KL
  divergence, so it is >= 0 and bounded below, unlike the released DLFD-repository variant
  (``released-code-pitfalls.md`` item 9), which subtracted a KL on retain data only and never
  used the forget set. Rounding can make a per-sample KL of two (nearly) equal distributions a
  tiny negative number; per-sample values are clamped at 0 (which changes nothing but rounding:
  the gradient of a KL at its minimum is 0 anyway).
* **Optimiser**: Adam, lr 1e-4, one epoch, T = 1 (the paper's settings).

History (the shared loop, :func:`.loop.fit`): one row per epoch with the mean KL on forget and
on retain samples (``kl_forget``, ``kl_retain``), their sum weighted by counts (``loss``) and the
counts. Finiteness is checked once per epoch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset

from ..model import FaceClassifier
from ..optim import Optim
from ..utils import autocast, to_device
from .loop import (Pass, TaggedDataset, fit, frozen_copy, per_sample_means, seed_words,
                   shuffled_loader)
from .registry import register

__all__ = ["bad_teacher", "BadTeacherHparams", "incompetent_teacher", "teacher_kl"]


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """A randomly initialised (seeded) model of ``model``'s architecture, frozen, in eval mode,
    on ``model``'s device, in channels_last. The global RNG state is left untouched."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if isinstance(model, FaceClassifier):
            bad = FaceClassifier(model.num_classes)
        else:
            bad = copy.deepcopy(model).cpu()
            for mod in bad.modules():
                if hasattr(mod, "reset_parameters"):
                    mod.reset_parameters()
    bad = bad.to(device=device, memory_format=torch.channels_last).eval()
    for p in bad.parameters():
        p.requires_grad_(False)
    return bad


def teacher_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """Per-sample KL(softmax(teacher/T) || softmax(student/T)) in float32, clamped at 0."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    return kl.clamp_min(0.0)


@dataclass
class BadTeacherHparams:
    """Bad Teacher: Adam (``lr``) for ``epochs`` epochs, KL at ``temperature``, on the forget
    set and a ``retain_frac`` share of the retain set in mixed batches of ``batch_size``
    (Chundawat et al.: Adam lr 1e-4, 1 epoch, T = 1, 30 % of retain, batch 256, their released
    code); ``augment``, ``amp``, ``max_steps`` (cap the batches per epoch) as everywhere."""

    epochs: int = 1
    lr: float = 1e-4
    temperature: float = 1.0
    retain_frac: float = 0.3
    batch_size: int = 256
    augment: bool = False
    amp: bool = True
    max_steps: int | None = None

    PRESETS: ClassVar[dict] = {
        # CPU demo (untuned): the paper's recipe with smaller batches
        "quick": {"epochs": 1, "lr": 1e-4, "temperature": 1.0, "retain_frac": 0.3, "batch_size": 64},
        "smoke": {"epochs": 1, "lr": 1e-3, "temperature": 1.0, "retain_frac": 0.5, "batch_size": 8},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): Adam's
    #: learning rate, the distillation temperature and the share of retain data; augmentation of
    #: its batches is a tuned choice too (the authors' baselines trained on augmented batches, the
    #: kit's defaults do not; every method, DLFD included, gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"lr": ("float", 1e-5, 1e-3, "log"), "temperature": ("float", 1.0, 4.0),
                                    "retain_frac": ("float", 0.1, 0.6),
                                    "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("lr", (1e-5, 3e-5, 1e-4, 3e-4, 1e-3))

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or not self.temperature > 0 \
                or not 0 < self.retain_frac <= 1:
            raise ValueError(f"bad_teacher needs epochs >= 1, batch_size >= 1, lr > 0, temperature > 0 "
                             f"and 0 < retain_frac <= 1; got epochs={self.epochs}, "
                             f"batch_size={self.batch_size}, lr={self.lr}, "
                             f"temperature={self.temperature}, retain_frac={self.retain_frac}")


@register("bad_teacher", BadTeacherHparams)
def bad_teacher(model: nn.Module, splits, hp: BadTeacherHparams, *, device: torch.device,
                seed: int = 0, progress: bool = False):
    """Bad Teacher: the student distils (KL at ``temperature``) from the frozen original on a
    ``retain_frac`` subset of retain and from a random frozen model on forget, in shuffled
    mixed batches, with Adam (``lr``) for ``epochs`` epochs."""
    seeds = seed_words(seed, 3)
    n_retain = len(splits.retain)
    n_sub = max(1, int(round(hp.retain_frac * n_retain)))
    sub_idx = np.sort(np.random.default_rng(seeds[0]).choice(n_retain, n_sub, replace=False))
    retain_sub = splits.dataset("retain", hp.augment).subset(sub_idx)
    union = ConcatDataset([TaggedDataset(splits.dataset("forget", hp.augment), 1), TaggedDataset(retain_sub, 0)])
    loader = shuffled_loader(union, hp.batch_size, seeds[1])
    good = frozen_copy(model)
    bad = incompetent_teacher(model, seeds[2])

    def step(batch):
        x, _, tag = batch
        x = to_device(x, device)
        is_forget = tag.to(device, non_blocking=True).bool()
        with torch.no_grad(), autocast(device, hp.amp):
            t_logits = torch.where(is_forget[:, None], bad(x).float(), good(x).float())
        with autocast(device, hp.amp):
            s_logits = model(x)
        kl = teacher_kl(s_logits, t_logits, hp.temperature)
        with torch.no_grad():
            f = is_forget.float()
            sums = {"kl_forget": (kl * f).sum(), "kl_retain": (kl * (1 - f)).sum(),
                    "n_forget": f.sum(), "n_retain": (1 - f).sum()}
        return kl.mean(), sums

    def summary(sums, batches):
        n = sums["n_forget"] + sums["n_retain"]
        return {**per_sample_means(sums, "kl"),
                "loss": (sums["kl_forget"] + sums["kl_retain"]) / n if n else float("nan")}

    adam = Optim(hp.lr, weight_decay=0.0, kind="adam")  # the paper's Adam, no weight decay
    history, steps = fit(model, [Pass(loader, step, summary=summary)], adam, epochs=hp.epochs, max_steps=hp.max_steps, device=device,
                         desc="Bad Teacher", phase="distil", progress=progress)
    return history, {"n_retain_used": n_sub, "n_forget": len(splits.forget), "epochs": hp.epochs,
                     "steps": steps}
