"""Catastrophic Forgetting-k ("cf_k").

Reference: S. Goel, A. Prabhu, A. Sanyal, S.-N. Lim, P. Torr, P. Kumaraguru, *Towards
Adversarial Evaluations for Inexact Machine Unlearning* (arXiv 2201.06640, 2022; first titled
*Evaluating Inexact Unlearning Requires Revisiting Forgetting*). CF-k is one of the two
baselines the paper proposes (with EU-k, :mod:`.euk`).

Algorithm: freeze every layer of the original model except the last k, and fine-tune those k
layers on the retain set D_r alone (cross-entropy, SGD). The frozen part is left exactly as
it was; the last k layers "catastrophically forget" D_f while they are trained on D_r only.

What a "layer" is for :class:`~dlfd_lib.model.FaceClassifier` (:func:`layer_blocks`), in
forward order, 12 units::

     0  stem       base_model.conv1 + base_model.bn1   (the 7x7 convolution and its BatchNorm)
     1  layer1.0   base_model.layer1[0]                (a ResNet BasicBlock: 2 convs, 2 BNs)
     2  layer1.1   base_model.layer1[1]
     3  layer2.0 ...  8  layer4.1                      (the other six BasicBlocks)
     9  head.0     features.0   Linear(512, 256)
    10  head.3     features.3   Linear(256, 128)
    11  head.6     features.6   Linear(128, C)

k counts from the end: k = 1 is the classifier Linear, k = 3 the whole MLP head, k = 4 adds
the last residual block (layer4.1), k = 5 adds layer4.0, ..., k = 12 is every layer (then
CF-k is plain fine-tuning). Parameter-free modules (ReLU, max-pool, dropout, average-pool)
belong to no layer.

Frozen means *bitwise unchanged*: the frozen layers' parameters have ``requires_grad=False``
and are not given to the optimiser (so neither weight decay nor momentum touches them), and
the frozen layers run in eval mode during training, so their BatchNorm running statistics (and
``num_batches_tracked``) do not move. The trainable layers, and the parameter-free modules,
run in train mode (dropout on, BatchNorm of trainable blocks updating its statistics). At the
end ``requires_grad`` is restored to True everywhere and the model is left in eval mode.
(The DLFD authors' released CF-k steps its scheduler twice per epoch – pitfall 9 – this one
has a constant learning rate or a per-batch cosine, see :mod:`.finetune`.)

Defaults per profile: k = 3 in every profile (the "CF-3" of the MUFAC/MUCAC benchmark by the
same authors); ``paper`` uses the authors' MUFAC training recipe (SGD lr 0.01, momentum 0.9,
weight decay 5e-4, batch 32) for 5 epochs (the epoch count of the DLFD authors' baseline is
not given in the paper notes: an assumption); ``quick`` 3 epochs at lr 0.01; ``smoke`` 1 epoch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .finetune import train_on_retain
from .registry import register

__all__ = ["cf_k", "layer_blocks", "split_last_k"]


def layer_blocks(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The ordered "layers" of a FaceClassifier (module docstring): ``[(name, [modules])]``."""
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


def train_last_k(model: nn.Module, splits, k: int, *, device, seed, progress, desc, **train_kw):
    """Freeze all but the last ``k`` layers (bitwise: no grad, eval mode) and train those on
    the retain set; ``requires_grad`` is restored afterwards."""
    frozen, last = split_last_k(model, k)
    frozen_mods, last_mods = modules_of(frozen), modules_of(last)
    trainable = [p for m in last_mods for p in m.parameters()]
    saved = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    try:
        history, info = train_on_retain(model, splits, device=device, seed=seed, progress=progress,
                                        params=trainable, frozen=frozen_mods, desc=desc, **train_kw)
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    info = {**info, "k": k, "trained_layers": [n for n, _ in last],
            "frozen_layers": [n for n, _ in frozen]}
    return history, info


_DEFAULTS = {
    # k = 3 as the benchmark's CF-3; the authors' recipe; 5 epochs is an assumption
    "paper": {"k": 3, "epochs": 5, "lr": 0.01, "batch_size": 32},
    "quick": {"k": 3, "epochs": 3, "lr": 0.01, "batch_size": 32},
    "smoke": {"k": 3, "epochs": 1, "lr": 0.01, "batch_size": 16},
}


#: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): how many last layers are fine-tuned, their lr and epochs;
#: augmentation of its batches is a tuned choice too (the authors' baselines trained on
#: augmented batches, the kit's defaults do not; every method, DLFD included, gets the same choice).
SEARCH_SPACE = {"k": ("int", 1, 6), "lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 4), "augment": ("categorical", [False, True])}
#: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
STRENGTH = ("k", (1, 2, 3, 4, 6))


@register("cf_k", defaults=_DEFAULTS, search_space=SEARCH_SPACE, strength=STRENGTH)
def cf_k(model: nn.Module, splits, *, device: torch.device, seed: int = 0, progress: bool = False,
         k: int = 3, epochs: int = 5, lr: float = 0.01, momentum: float = 0.9,
         weight_decay: float = 5e-4, batch_size: int = 32, augment: bool = False,
         schedule: str = "constant", amp: bool = True, max_steps: int | None = None):
    """CF-k: fine-tune only the last ``k`` layers (see :func:`layer_blocks`) on the retain set;
    all other layers stay bitwise unchanged. Other arguments as for ``finetune``."""
    return train_last_k(model, splits, k, device=device, seed=seed, progress=progress,
                        desc=f"CF-{k}", epochs=epochs, lr=lr, momentum=momentum,
                        weight_decay=weight_decay, batch_size=batch_size, augment=augment,
                        schedule=schedule, amp=amp, max_steps=max_steps)
