"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, NeurIPS 2023, "Towards Unbounded
Machine Unlearning", arXiv 2302.09880).

Teacher t: a frozen copy of the original model (eval mode). Student s: the model, trained in
train mode. With d(x) = KL( softmax(t(x)/T) || softmax(s(x)/T) ) * T^2 (the usual distillation
scaling; temperature ``temperature``), for ``epochs`` epochs:

* **max-steps** (only in the first ``msteps`` epochs): one pass over the shuffled forget set,
  each batch one SGD step on  -mean_x d(x_f)  (move *away* from the teacher on the forget set);
* **min-steps** (every epoch, after the max-steps): one pass over the shuffled retain set, each
  batch one SGD step on  gamma * CE(s(x_r), y_r) + alpha * mean_x d(x_r)  (stay close to the
  teacher and correct on the retain set).

The KL term appears once in each loss (the DLFD authors' released version counted it twice
and ignored ``msteps`` and the temperature: ``released-code-pitfalls.md`` item 9). One SGD
optimiser (momentum, weight decay) serves both kinds of step, as in SCRUB's code. SCRUB's
optional learning-rate decay (at epochs 3, 5, 9 in its example settings) never fires within
the 3 epochs used here and is not implemented.

History: row 0 holds the forget KL of the untouched student (eval mode, float32: it is 0 up to
rounding); then one row per epoch with the running means of the max- and min-step losses and
(``monitor=True``) the eval-mode mean forget KL after the max-steps (``forget_kl_after_max``)
and at the end of the epoch (``forget_kl``). Finiteness is checked once per epoch.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..utils import autocast, check_finite, to_device
from .registry import register

__all__ = ["scrub", "distill_kl", "mean_forget_kl"]


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(t/T) || softmax(s/T)) * T^2 in float32."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(dim=1) * temperature ** 2


@torch.no_grad()
def mean_forget_kl(student: nn.Module, teacher: nn.Module, loader, device: torch.device,
                   temperature: float) -> float:
    """Mean :func:`distill_kl` over ``loader`` with both models in eval mode, float32."""
    was_training = student.training
    student.eval()
    total, n = 0.0, 0
    for x, _ in loader:
        x = to_device(x, device)
        total += float(distill_kl(student(x), teacher(x), temperature).sum())
        n += x.shape[0]
    student.train(was_training)
    return total / max(n, 1)


_DEFAULTS = {
    # SCRUB's example settings (its released notebooks): SGD lr 5e-4, momentum 0.9, wd 5e-4,
    # 3 epochs of which 2 with max-steps, T = 4, gamma 0.99 (CE), alpha 0.001 (KL), batches
    # 128 (retain) / 32 (forget)
    "paper": {"epochs": 3, "msteps": 2, "lr": 5e-4, "temperature": 4.0, "gamma": 0.99,
              "alpha": 0.001, "batch_size": 128, "forget_batch_size": 32},
    # CPU demo (untuned): the same recipe with smaller retain batches
    "quick": {"epochs": 3, "msteps": 2, "lr": 5e-4, "temperature": 4.0, "gamma": 0.99,
              "alpha": 0.001, "batch_size": 64, "forget_batch_size": 32},
    "smoke": {"epochs": 2, "msteps": 1, "lr": 0.01, "batch_size": 8, "forget_batch_size": 4},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the learning rate, the number of max-step epochs (of 3) and the KL temperature;
#: augmentation of its batches is a tuned choice too (the authors' baselines trained on
#: augmented batches, the kit's defaults do not; every method, DLFD included, gets the same choice).
SEARCH_SPACE = {"lr": ("float", 1e-4, 5e-3, "log"), "msteps": ("int", 0, 3), "temperature": ("float", 1.0, 4.0), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
STRENGTH = ("msteps", (0, 1, 2, 3))


@register("scrub", defaults=_DEFAULTS, search_space=SEARCH_SPACE, strength=STRENGTH)
def scrub(model: nn.Module, splits, *, device: torch.device, seed: int = 0, progress: bool = False,
          epochs: int = 3, msteps: int = 2, lr: float = 5e-4, momentum: float = 0.9,
          weight_decay: float = 5e-4, temperature: float = 4.0, gamma: float = 0.99,
          alpha: float = 0.001, batch_size: int = 128, forget_batch_size: int = 32,
          augment: bool = False, amp: bool = True, monitor: bool = True,
          max_batches: int | None = None):
    """SCRUB: ``epochs`` epochs; the first ``msteps`` start with a max-step pass on forget
    (-KL to the frozen original), every epoch has a min-step pass on retain
    (gamma * CE + alpha * KL), KL at ``temperature``. ``batch_size``: retain batches;
    ``monitor``: measure the forget KL in eval mode; ``max_batches`` caps each pass."""
    if epochs < 1 or msteps < 0 or batch_size < 1 or forget_batch_size < 1 or not lr > 0 \
            or not temperature > 0:
        raise ValueError(f"scrub needs epochs >= 1, msteps >= 0, batch sizes >= 1, lr > 0 and "
                         f"temperature > 0; got epochs={epochs}, msteps={msteps}, "
                         f"batch_size={batch_size}, forget_batch_size={forget_batch_size}, lr={lr}, "
                         f"temperature={temperature}")
    seeds = np.random.SeedSequence(seed).generate_state(2)
    n_r, n_f = len(splits.retain), len(splits.forget)
    retain_loader = splits.loader("retain", batch_size=batch_size, augment=augment, shuffle=True,
                                  seed=int(seeds[0]), drop_last=n_r > batch_size)
    forget_loader = splits.loader("forget", batch_size=forget_batch_size, augment=augment,
                                  shuffle=True, seed=int(seeds[1]), drop_last=n_f > forget_batch_size)
    eval_forget = splits.loader("forget", batch_size=max(forget_batch_size, 64), shuffle=False)

    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def cap(n):
        return n if max_batches is None else min(n, max_batches)

    total = min(msteps, epochs) * cap(len(forget_loader)) + epochs * cap(len(retain_loader))
    history = []
    if monitor:
        history.append({"epoch": 0, "forget_kl": mean_forget_kl(model, teacher, eval_forget, device,
                                                                temperature)})
    bar = tqdm(total=total, desc="SCRUB", disable=not progress)
    for epoch in range(epochs):
        rec = {"epoch": epoch + 1, "max_step": epoch < msteps}
        model.train()
        if epoch < msteps:  # ---- max-steps: raise KL(teacher || student) on forget
            kl_sum, n, nb = torch.zeros((), device=device), 0, 0
            for x, _ in forget_loader:
                if max_batches is not None and nb >= max_batches:
                    break
                x = to_device(x, device)
                with torch.no_grad(), autocast(device, amp):
                    t_logits = teacher(x)
                with autocast(device, amp):
                    s_logits = model(x)
                kl = distill_kl(s_logits, t_logits, temperature)
                loss = -kl.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                kl_sum += kl.detach().sum()
                n += x.shape[0]
                nb += 1
                bar.update(1)
            rec["max_kl"] = float(kl_sum) / max(n, 1)
            check_finite(rec["max_kl"], f"SCRUB's forget KL (max-steps, epoch {epoch + 1})")
            if monitor:
                rec["forget_kl_after_max"] = mean_forget_kl(model, teacher, eval_forget, device, temperature)
                model.train()
        # ---- min-steps: gamma * CE + alpha * KL on retain
        sums, n, nb = torch.zeros(2, device=device), 0, 0
        for x, y in retain_loader:
            if max_batches is not None and nb >= max_batches:
                break
            x, y = to_device(x, device), y.to(device, non_blocking=True)
            with torch.no_grad(), autocast(device, amp):
                t_logits = teacher(x)
            with autocast(device, amp):
                s_logits = model(x)
            ce = F.cross_entropy(s_logits.float(), y)
            kl = distill_kl(s_logits, t_logits, temperature).mean()
            loss = gamma * ce + alpha * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([ce.detach(), kl.detach()]) * x.shape[0]
            n += x.shape[0]
            nb += 1
            bar.update(1)
        opt.zero_grad(set_to_none=True)
        ce_mean, kl_mean = (sums / max(n, 1)).tolist()
        check_finite(ce_mean + kl_mean, f"SCRUB's retain loss (min-steps, epoch {epoch + 1})")
        rec.update(min_ce=ce_mean, min_kl=kl_mean, min_loss=gamma * ce_mean + alpha * kl_mean)
        if monitor:
            rec["forget_kl"] = mean_forget_kl(model, teacher, eval_forget, device, temperature)
        history.append(rec)
    bar.close()
    model.eval()
    return history, {"epochs": epochs, "msteps_done": min(msteps, epochs)}
