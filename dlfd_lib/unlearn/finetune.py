"""Fine-tuning on the retain set ("finetune"), the simplest unlearning baseline.

Reference: the "Fine-tune" baseline of Choi & Na, *Distribution-Level Feature Distancing for
Machine Unlearning* (AAAI 2025, arXiv 2409.14747), Tables of ``shared/reference/paper-notes.md``;
the idea goes back to the fine-tuning baseline of Golatkar et al., *Eternal Sunshine of the
Spotless Net* (CVPR 2020) and the NeurIPS 2023 unlearning challenge starting kit.

Algorithm: starting from the original model, train on the retain set D_r alone with plain
cross-entropy for a few epochs (SGD with momentum and weight decay). The forget set is never
used: forgetting comes only from "catastrophic forgetting" of D_f while the weights move to fit
D_r. Everything runs in train mode (BatchNorm statistics and dropout as in ordinary training),
under bf16 autocast where it pays (:func:`dlfd_lib.utils.autocast`) with channels_last inputs.

The learning rate is constant (``schedule="constant"``) or follows a cosine decay to 0 stepped
once per *batch* over the whole run (``schedule="cosine"``; the period is counted in batches,
so it does not oscillate: see pitfall 10 of ``released-code-pitfalls.md``).

The training is :func:`.loop.train_on_retain` (the shared loop, :func:`.loop.fit`, on the retain
cross-entropy), which CF-k and EU-k (:mod:`.cfk`, :mod:`.euk`) run on a subset of the layers.

Defaults per profile: ``paper`` uses the authors' MUFAC training recipe (SGD lr 0.01,
momentum 0.9, weight decay 5e-4, batch 32) for a few (5) epochs; the number of fine-tuning
epochs of the DLFD authors' baseline is not given in the paper notes, so 5 is an assumption.
``quick`` uses 3 epochs at lr 0.01, ``smoke`` 1 epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from .loop import RetainTraining, train_on_retain
from .registry import register

__all__ = ["finetune", "FinetuneHparams"]


@dataclass
class FinetuneHparams(RetainTraining):
    """Fine-tuning's hyperparameters: those of :class:`.loop.RetainTraining` (the authors'
    training recipe: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 32; 5 epochs)."""

    PRESETS: ClassVar[dict] = {
        "quick": {"epochs": 3, "lr": 0.01, "batch_size": 32},
        "smoke": {"epochs": 1, "lr": 0.01, "batch_size": 16},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the
    #: learning rate and the number of epochs (more epochs: closer to retraining, and more
    #: forgetting); augmentation of its retain/forget batches is a tuned choice too (the
    #: authors' baselines trained on augmented batches, the kit's defaults do not; every method,
    #: DLFD included, gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 4),
                                    "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("epochs", (1, 2, 3, 4))


@register("finetune", FinetuneHparams)
def finetune(model: nn.Module, splits, hp: FinetuneHparams, *, device: torch.device, seed: int = 0,
             progress: bool = False):
    """Fine-tune every weight on the retain set for ``hp.epochs`` epochs (CE, SGD with momentum)."""
    return train_on_retain(model, splits, hp, device=device, seed=seed, progress=progress,
                           desc="Fine-tune")
