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

History: one row per epoch with the mean KL on forget and on retain samples and their sum
weighted by counts (``loss``). Finiteness is checked once per epoch.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm

from ..model import FaceClassifier
from ..utils import autocast, check_finite, to_device
from .random_label import TaggedDataset
from .registry import register

__all__ = ["bad_teacher", "incompetent_teacher", "teacher_kl"]


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


_DEFAULTS = {
    # Chundawat et al.: Adam lr 1e-4, 1 epoch, KL temperature 1, 30 % of the retain set,
    # batch 256 (their released code)
    "paper": {"epochs": 1, "lr": 1e-4, "temperature": 1.0, "retain_frac": 0.3, "batch_size": 256},
    # CPU demo (untuned): the paper's recipe with smaller batches
    "quick": {"epochs": 1, "lr": 1e-4, "temperature": 1.0, "retain_frac": 0.3, "batch_size": 64},
    "smoke": {"epochs": 1, "lr": 1e-3, "temperature": 1.0, "retain_frac": 0.5, "batch_size": 8},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): Adam's learning rate, the distillation temperature and the share of retain data;
#: augmentation of its batches is a tuned choice too (the authors' baselines trained on
#: augmented batches, the kit's defaults do not; every method, DLFD included, gets the same choice).
SEARCH_SPACE = {"lr": ("float", 1e-5, 1e-3, "log"), "temperature": ("float", 1.0, 4.0), "retain_frac": ("float", 0.1, 0.6), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
STRENGTH = ("lr", (1e-5, 3e-5, 1e-4, 3e-4, 1e-3))


@register("bad_teacher", defaults=_DEFAULTS, search_space=SEARCH_SPACE, strength=STRENGTH)
def bad_teacher(model: nn.Module, splits, *, device: torch.device, seed: int = 0,
                progress: bool = False, epochs: int = 1, lr: float = 1e-4,
                temperature: float = 1.0, retain_frac: float = 0.3, batch_size: int = 256,
                augment: bool = False, amp: bool = True, max_batches: int | None = None):
    """Bad Teacher: the student distils (KL at ``temperature``) from the frozen original on a
    ``retain_frac`` subset of retain and from a random frozen model on forget, in shuffled
    mixed batches, with Adam (``lr``) for ``epochs`` epochs. ``max_batches`` caps each epoch."""
    if epochs < 1 or batch_size < 1 or not lr > 0 or not temperature > 0 or not 0 < retain_frac <= 1:
        raise ValueError(f"bad_teacher needs epochs >= 1, batch_size >= 1, lr > 0, temperature > 0 "
                         f"and 0 < retain_frac <= 1; got epochs={epochs}, batch_size={batch_size}, "
                         f"lr={lr}, temperature={temperature}, retain_frac={retain_frac}")
    seeds = np.random.SeedSequence(seed).generate_state(3)
    n_retain = len(splits.retain)
    n_sub = max(1, int(round(retain_frac * n_retain)))
    sub_idx = np.sort(np.random.default_rng(int(seeds[0])).choice(n_retain, n_sub, replace=False))
    retain_sub = splits.dataset("retain", augment).subset(sub_idx)
    union = ConcatDataset([TaggedDataset(splits.dataset("forget", augment), 1), TaggedDataset(retain_sub, 0)])
    loader = DataLoader(union, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(int(seeds[1])),
                        drop_last=len(union) > batch_size)

    good = copy.deepcopy(model).eval()
    for p in good.parameters():
        p.requires_grad_(False)
    bad = incompetent_teacher(model, int(seeds[2]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    total = epochs * (len(loader) if max_batches is None else min(len(loader), max_batches))
    history = []
    bar = tqdm(total=total, desc="Bad Teacher", disable=not progress)
    for epoch in range(epochs):
        model.train()
        sums = torch.zeros(4, device=device)  # KL forget sum, KL retain sum, n forget, n retain
        n_batches = 0
        for x, _, tag in loader:
            if max_batches is not None and n_batches >= max_batches:
                break
            x = to_device(x, device)
            is_forget = tag.to(device, non_blocking=True).bool()
            with torch.no_grad(), autocast(device, amp):
                t_logits = torch.where(is_forget[:, None], bad(x).float(), good(x).float())
            with autocast(device, amp):
                s_logits = model(x)
            kl = teacher_kl(s_logits, t_logits, temperature)
            loss = kl.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                f = is_forget.float()
                sums += torch.stack([(kl * f).sum(), (kl * (1 - f)).sum(), f.sum(), (1 - f).sum()])
            n_batches += 1
            bar.update(1)
        opt.zero_grad(set_to_none=True)
        s = sums.tolist()
        check_finite(s[0] + s[1], f"Bad Teacher's KL loss in epoch {epoch + 1}")
        n = s[2] + s[3]
        history.append({"epoch": epoch + 1, "phase": "distil",
                        "kl_forget": s[0] / s[2] if s[2] else float("nan"),
                        "kl_retain": s[1] / s[3] if s[3] else float("nan"),
                        "loss": (s[0] + s[1]) / n if n else float("nan"),
                        "n_forget": int(s[2]), "n_retain": int(s[3]), "batches": n_batches})
    bar.close()
    model.eval()
    return history, {"n_retain_used": n_sub, "n_forget": len(splits.forget), "epochs": epochs}
