"""UNSIR: error-maximising noise, impair, repair (Tarun, Chundawat, Mandal and Kankanhalli,
"Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023, arXiv 2111.08947).

The paper forgets whole *classes*: it learns one noise batch per forget class. Here the forget
set is a set of *people* whose images span all classes, so this is the **sample-level**
variant: one noise image per forget sample, labelled with that sample's label.

1. **Error-maximising noise.** N (shape of the forget set, in normalised input space,
   initialised N(0, 1), seeded) is learned with the original model frozen in eval mode:
   for each batch of ``noise_batch_size`` forget samples (covering the *whole* forget set,
   not one batch), ``noise_steps`` Adam steps (lr ``noise_lr``) minimise

       -CE(f(N_b), y_b) + noise_lambda * mean_i mean_pixels(N_i^2)

   i.e. maximise the loss of the forget labels with an L2 regulariser on the noise. The
   regulariser is a per-pixel mean (the paper writes lambda * ||N||; its code sums squares over
   the pixels), so that ``noise_lambda`` does not depend on the image size. Only the noise
   receives gradients (``torch.autograd.grad``); the weights are untouched.
2. **Impair.** One epoch over the (shuffled) retain set (``retain_frac`` of it, seeded; the
   paper uses a retain subset, default here: all of it) in which every retain batch is joined
   by its share of the noise images, labelled with the forget labels (the noise is split evenly
   over the batches, so the epoch sees each noise image once, as the paper's single epoch over
   retain subset + noise does); CE on the joined batch, high learning rate ``impair_lr``.
3. **Repair.** One epoch of CE on the retain (sub)set alone, learning rate ``repair_lr``.

Both phases run in train mode with bf16 autocast; the optimiser is ``optimizer`` ("sgd" with
momentum / weight decay, or "adam" as in the authors' released notebook). Counters are reset for
every phase and count each image once, so the accuracies are fractions in [0, 1] (the DLFD
authors' version never reset them and printed accuracies above 100 %: item 9 of
``released-code-pitfalls.md``).

Impair and repair are two runs of the shared loop (:func:`.loop.fit`), the impair pass with a
hook that joins the noise to each retain batch. History: one row for the noise (``epoch`` 0:
CE of the forget labels on the noise before and after learning it, eval mode, float32) and one
row per phase (the loop's columns, ``loss`` the per-image mean CE, retain accuracy, noise
accuracy during the impair phase). Finiteness is checked once per phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..optim import OPTIMIZERS, SGD_DEFAULTS, Optim
from ..utils import autocast, check_finite, to_device
from .loop import Pass, fit, seed_words, shuffled_loader
from .registry import register

__all__ = ["unsir", "UnsirHparams", "learn_noise", "noise_loss"]


@torch.no_grad()
def noise_loss(model: nn.Module, noise: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> float:
    """Mean CE of ``labels`` on ``noise`` (eval mode, float32)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(noise), batch_size):
        total += float(F.cross_entropy(model(noise[i:i + batch_size]).float(),
                                       labels[i:i + batch_size], reduction="sum"))
    model.train(was_training)
    return total / max(len(noise), 1)


def learn_noise(model: nn.Module, splits, device: torch.device, steps: int = 10, lr: float = 0.1,
                lam: float = 0.1, batch_size: int = 64, seed: int = 0, amp: bool = True,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Error-maximising noise for every forget sample (see the module docstring).

    Returns ``(noise, labels, stats)``: noise of shape (N_forget, 3, S, S) on ``device``
    (channels_last), the forget labels, and ``stats`` = {"loss_start", "loss_end",
    "noise_rms"}: the forget labels' CE on the noise before and after learning, and the noise's
    root mean square. The model is used in eval mode and its weights get no gradients.
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"noise steps must be >= 0 and batch size >= 1; got {steps}, {batch_size}")
    n, s = len(splits.forget), splits.image_size
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n, 3, s, s, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.as_tensor(splits.forget.labels, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    start = noise_loss(model, noise, labels)
    for i in tqdm(range(0, n, batch_size), desc="UNSIR noise", disable=not progress):
        chunk = noise[i:i + batch_size].clone().requires_grad_(True)
        y = labels[i:i + batch_size]
        opt = torch.optim.Adam([chunk], lr=lr)
        for _ in range(steps):
            with autocast(device, amp):
                logits = model(chunk)
            objective = -F.cross_entropy(logits.float(), y) + lam * chunk.float().pow(2).mean()
            (g,) = torch.autograd.grad(objective, chunk)
            chunk.grad = g
            opt.step()
        noise[i:i + batch_size] = chunk.detach()
    end = noise_loss(model, noise, labels)
    model.train(was_training)
    check_finite(end, "UNSIR's noise loss")
    return noise, labels, {"loss_start": start, "loss_end": end,
                           "noise_rms": float(noise.pow(2).mean().sqrt())}


def _phase_pass(model, loader, device, amp, noise, noise_labels, chunks) -> Pass:
    """CE on retain batches, each joined by its noise chunk (``chunks``: one index array per
    batch, or None for retain only); counters count each image once."""
    seen = [0]

    def step(batch):
        x, y = to_device(batch[0], device), batch[1].to(device, non_blocking=True)
        n_r = x.shape[0]
        if chunks is not None and len(chunks[seen[0]]):
            idx = torch.as_tensor(chunks[seen[0]], device=device)
            x = torch.cat([x, noise[idx]]).contiguous(memory_format=torch.channels_last)
            y = torch.cat([y, noise_labels[idx]])
        seen[0] += 1
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        with torch.no_grad():
            hit = (logits.argmax(1) == y).float()
            sums = {"loss_n": loss.detach() * len(y), "retain_hit": hit[:n_r].sum(),
                    "n_retain": hit.new_tensor(n_r), "noise_hit": hit[n_r:].sum(),
                    "n_noise": hit.new_tensor(len(y) - n_r)}
        return loss, sums

    def summary(s, batches):
        n_all = s["n_retain"] + s["n_noise"]
        return {"loss": s["loss_n"] / n_all if n_all else float("nan"),
                "retain_acc": s["retain_hit"] / s["n_retain"] if s["n_retain"] else float("nan"),
                "n_retain": int(s["n_retain"]),
                "noise_acc": s["noise_hit"] / s["n_noise"] if s["n_noise"] else float("nan"),
                "n_noise": int(s["n_noise"])}

    return Pass(loader, step, summary=summary)


@dataclass
class UnsirHparams:
    """UNSIR (sample-level): the noise (``noise_steps`` Adam steps at ``noise_lr``, L2 weight
    ``noise_lambda``, batches of ``noise_batch_size``), one impair epoch at ``impair_lr``, one
    repair epoch at ``repair_lr``, optimiser ``optimizer`` ("adam" | "sgd" with ``momentum``;
    ``weight_decay`` for both), retain batches of ``batch_size`` from a seeded ``retain_frac``
    subset; ``augment``, ``amp``, ``max_steps`` (cap each phase) as everywhere. Tarun et al.:
    noise by Adam lr 0.1 with lambda 0.1, impair 1 epoch at lr 0.02, repair 1 epoch at lr 0.01,
    Adam for both (the authors' released notebook); 40 noise steps and batch 32 (the DLFD
    authors' MUFAC batch) are this kit's choices for the sample-level variant."""

    noise_steps: int = 40
    noise_lr: float = 0.1
    noise_lambda: float = 0.1
    noise_batch_size: int = 64
    impair_lr: float = 0.02
    repair_lr: float = 0.01
    optimizer: str = "adam"
    momentum: float = SGD_DEFAULTS.momentum
    weight_decay: float = 0.0
    batch_size: int = 32
    retain_frac: float = 1.0
    augment: bool = False
    amp: bool = True
    max_steps: int | None = None

    PRESETS: ClassVar[dict] = {
        # CPU demo (untuned): SGD instead of Adam at the paper's learning rates, fewer noise steps
        "quick": {"noise_steps": 10, "noise_lr": 0.1, "noise_lambda": 0.1, "impair_lr": 0.02,
                  "repair_lr": 0.01, "optimizer": "sgd", "batch_size": 64, "retain_frac": 1.0},
        "smoke": {"noise_steps": 3, "batch_size": 8, "noise_batch_size": 8, "optimizer": "sgd"},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the
    #: noise's optimisation steps and the impair / repair learning rates; augmentation of its
    #: batches is a tuned choice too (the authors' baselines trained on augmented batches, the
    #: kit's defaults do not; every method, DLFD included, gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"noise_steps": ("int", 2, 40, "log"),
                                    "impair_lr": ("float", 2e-3, 5e-2, "log"),
                                    "repair_lr": ("float", 1e-3, 3e-2, "log"),
                                    "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("noise_steps", (2, 5, 10, 20, 40))

    def __post_init__(self):
        if not (0 < self.retain_frac <= 1) or self.batch_size < 1 or not self.impair_lr > 0 \
                or not self.repair_lr > 0:
            raise ValueError(f"unsir needs 0 < retain_frac <= 1, batch_size >= 1 and positive learning "
                             f"rates; got retain_frac={self.retain_frac}, batch_size={self.batch_size}, "
                             f"impair_lr={self.impair_lr}, repair_lr={self.repair_lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: choose 'sgd' or 'adam'")

    def optim(self, lr: float) -> Optim:
        return Optim(lr, self.momentum, self.weight_decay, kind=self.optimizer)


@register("unsir", UnsirHparams)
def unsir(model: nn.Module, splits, hp: UnsirHparams, *, device: torch.device, seed: int = 0,
          progress: bool = False):
    """UNSIR (sample-level): learn error-maximising noise for every forget sample, impair for
    one epoch on retain + noise with the forget labels, repair for one epoch on retain."""
    seeds = seed_words(seed, 5)
    noise, noise_labels, stats = learn_noise(model, splits, device, hp.noise_steps, hp.noise_lr,
                                             hp.noise_lambda, hp.noise_batch_size, seeds[0], hp.amp,
                                             progress)
    n_retain = len(splits.retain)
    n_sub = max(1, int(round(hp.retain_frac * n_retain)))
    idx = np.arange(n_retain) if n_sub == n_retain else \
        np.sort(np.random.default_rng(seeds[1]).choice(n_retain, n_sub, replace=False))
    retain = splits.dataset("retain", hp.augment).subset(idx)
    impair_loader, repair_loader = (shuffled_loader(retain, hp.batch_size, s) for s in seeds[2:4])
    n_imp = len(impair_loader) if hp.max_steps is None else min(len(impair_loader), hp.max_steps)
    if n_imp < 1:
        raise ValueError("UNSIR has no retain batch to run; give max_steps >= 1")
    perm = np.random.default_rng(seeds[4]).permutation(len(noise))
    chunks = np.array_split(perm, n_imp)  # each noise image once over the impair epoch

    history = [{"epoch": 0, "phase": "noise", "noise_loss_start": stats["loss_start"],
                "noise_loss_end": stats["loss_end"], "noise_rms": stats["noise_rms"]}]
    steps = 0
    for phase, loader, lr, phase_chunks in (("impair", impair_loader, hp.impair_lr, chunks),
                                            ("repair", repair_loader, hp.repair_lr, None)):
        rows, n = fit(model, [_phase_pass(model, loader, device, hp.amp, noise, noise_labels, phase_chunks)],
                      hp.optim(lr), epochs=1, max_steps=hp.max_steps, device=device,
                      desc=f"UNSIR {phase}", phase=phase, progress=progress)
        history += [{**r, "step": r["step"] + steps} for r in rows]  # steps count over both phases
        steps += n
    return history, {"noise_loss_start": stats["loss_start"], "noise_loss_end": stats["loss_end"],
                     "noise_rms": stats["noise_rms"], "n_noise": len(noise), "n_retain_used": n_sub,
                     "steps": steps}
