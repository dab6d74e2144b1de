"""SalUn: saliency-masked random labelling (Fan et al., ICLR 2024, "SalUn: Empowering machine
unlearning via gradient-based weight saliency", arXiv 2310.12508).

1. **Weight saliency.** With the original model in eval mode, the gradient of the forget loss
   g = grad_w sum_batches CE(f(x_f), y_f) is accumulated over the *whole* forget set; the
   saliency of a weight is |g|. The mask m keeps the top ``mask_ratio`` fraction of all
   parameter entries, ranked *globally* over every parameter tensor (SalUn's "hard threshold"
   over the whole model; 0.5 in the paper). Ties at the threshold are broken by ``torch.topk``
   so that exactly round(mask_ratio * n_weights) entries are kept.
2. **Random labelling under the mask.** The training of :mod:`.random_label`
   (:func:`.loop.relabelled_pass` in the shared loop; forget samples
   with fixed random wrong labels + retain samples with true labels, one shuffled loader, SGD
   with momentum and weight decay) where only the salient weights move:
   w <- w - lr * m * (update). Implemented so that masked-out entries stay **bitwise**
   unchanged with any momentum and weight decay: the optimizer gets ``weight_decay=0``; the
   decay is added to the gradient by hand *on masked weights only* (g <- m * (g + wd * w)), so
   masked-out gradients and momentum entries are exactly 0 (the loop's ``before_step`` hook);
   and after every ``opt.step`` (its ``after_step`` hook) the masked-out entries are copied back from a frozen copy as a guarantee that does not depend
   on the optimizer's arithmetic (``torch.where``).

BatchNorm: the mask covers *parameters* (BN weight and bias included). BN running means and
variances are buffers, not weights: in train mode (the default, as in SalUn's code) they keep
updating on the mixed batches; ``freeze_bn_stats=True`` runs the BN layers in eval mode during
training so that they stay frozen too.

``info["mask_fraction"]`` is the kept share; with ``return_mask=True`` ``info["mask"]`` holds the
mask itself (name -> bool tensor on the CPU; off by default so that ``info`` stays small);
:func:`saliency_mask` computes it on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import autocast, check_finite, to_device
from .loop import Hooks, SGDTraining, fit, relabelled_pass, seed_words
from .registry import register

__all__ = ["salun", "SalUnHparams", "saliency_mask", "MaskedUpdate"]


def saliency_mask(model: nn.Module, splits, device: torch.device, mask_ratio: float = 0.5,
                  batch_size: int = 64, amp: bool = True) -> dict[str, torch.Tensor]:
    """Bool mask per parameter name: True for the top ``mask_ratio`` share of |grad forget CE|,
    ranked over all parameters together. The model is used in eval mode and left unchanged
    (its ``.grad`` fields are cleared)."""
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio={mask_ratio} must lie in [0, 1]")
    was_training = model.training
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params}
    loader = splits.loader("forget", batch_size=batch_size, augment=False, shuffle=False)
    for x, y in loader:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        for (n, _), g in zip(params, gs):
            if g is not None:
                grads[n] += g.float()
    model.train(was_training)
    flat = torch.cat([g.abs().reshape(-1) for g in grads.values()])
    check_finite(flat.sum(), "SalUn's forget-loss gradient (saliency)")
    k = int(round(mask_ratio * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for n, g in grads.items():
        masks[n] = keep[start:start + g.numel()].reshape(g.shape)
        start += g.numel()
    return masks


class MaskedUpdate:
    """Confine SGD updates to a mask: call :meth:`before_step` after ``backward`` and
    :meth:`after_step` after ``opt.step`` (see the module docstring)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor], weight_decay: float):
        self.items = []
        for n, p in model.named_parameters():
            if n not in masks:
                continue
            m = masks[n].to(p.device)
            # a full copy; only its masked-out entries are ever used
            self.items.append((p, m, p.detach().clone()))
        self.weight_decay = weight_decay

    @torch.no_grad()
    def before_step(self) -> None:
        for p, m, _ in self.items:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.weight_decay:
                p.grad.add_(p, alpha=self.weight_decay)
            p.grad.masked_fill_(~m, 0.0)  # masked-out: exactly 0, so momentum stays 0 there

    @torch.no_grad()
    def after_step(self) -> None:
        for p, m, frozen in self.items:
            p.copy_(torch.where(m, p, frozen))


def _train_bn_frozen(model: nn.Module) -> None:
    """Train mode everywhere except BatchNorm (running statistics stay frozen)."""
    model.train()
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()


@dataclass
class SalUnHparams(SGDTraining):
    """SalUn: the saliency mask keeps the top ``mask_ratio`` share of |grad forget CE| (computed
    in batches of ``mask_batch_size``); then ``epochs`` epochs of masked random labelling with SGD
    (the fields of :class:`.loop.SGDTraining`; weight decay on masked weights only).
    ``freeze_bn_stats``: BatchNorm layers in eval mode while training; ``return_mask``: put the
    mask (name -> bool CPU tensor, ~1 byte per weight) in ``info["mask"]``. SalUn paper, random-data forgetting
    (CIFAR-10, ResNet-18): mask ratio 0.5, SGD momentum 0.9, wd 5e-4, 10 epochs, lr 0.013 (its
    released script for this setting); batch 32 = the DLFD authors' MUFAC batch (SalUn: 256)."""

    epochs: int = 10
    lr: float = 0.013
    mask_ratio: float = 0.5
    mask_batch_size: int = 64
    freeze_bn_stats: bool = False
    return_mask: bool = False

    PRESETS: ClassVar[dict] = {
        # CPU demo (untuned)
        "quick": {"epochs": 2, "lr": 0.013, "mask_ratio": 0.5, "batch_size": 64},
        "smoke": {"epochs": 1, "lr": 0.01, "mask_ratio": 0.5, "batch_size": 8},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the
    #: learning rate, the saliency mask's share of weights and epochs; augmentation of its
    #: batches is a tuned choice too (the authors' baselines trained on augmented batches, the
    #: kit's defaults do not; every method, DLFD included, gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"lr": ("float", 1e-3, 3e-2, "log"), "mask_ratio": ("float", 0.1, 0.9),
                                    "epochs": ("int", 1, 3), "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("mask_ratio", (0.1, 0.3, 0.5, 0.7, 0.9))

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio={self.mask_ratio} must lie in [0, 1]")


@register("salun", SalUnHparams)
def salun(model: nn.Module, splits, hp: SalUnHparams, *, device: torch.device, seed: int = 0,
          progress: bool = False):
    """SalUn: saliency mask (top ``mask_ratio`` of |grad forget CE|, global), then random
    labelling (forget with random wrong labels + retain) with updates confined to the mask."""
    masks = saliency_mask(model, splits, device, hp.mask_ratio, hp.mask_batch_size, hp.amp)
    n_total = sum(m.numel() for m in masks.values())
    n_kept = int(sum(int(m.sum()) for m in masks.values()))
    seeds = seed_words(seed, 2)
    rl, n_relabelled = relabelled_pass(model, splits, batch_size=hp.batch_size, augment=hp.augment,
                                       seed=seeds[0], label_seed=seeds[1], device=device, amp=hp.amp)
    if hp.freeze_bn_stats:
        rl.train_mode = _train_bn_frozen
    masked = MaskedUpdate(model, masks, hp.weight_decay)
    # weight decay goes through MaskedUpdate (masked weights only), never through the optimiser
    history, steps = fit(model, [rl], hp.optim(weight_decay=0.0), epochs=hp.epochs,
                         max_steps=hp.max_steps, device=device, desc="SalUn", phase="salun",
                         progress=progress,
                         hooks=Hooks(before_step=masked.before_step, after_step=masked.after_step))
    info = {"mask_fraction": n_kept / max(n_total, 1), "n_weights": n_total, "n_masked_in": n_kept,
            "n_forget_relabelled": n_relabelled, "steps": steps}
    if hp.return_mask:
        info["mask"] = {n: m.cpu() for n, m in masks.items()}
    return history, info
