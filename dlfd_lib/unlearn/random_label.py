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

History (the shared loop, :func:`.loop.fit`): one row per epoch with the mean CE on the forget
(random-label) and the retain samples of that epoch (``ce_forget``, ``ce_retain``: running
means over the training batches) and their counts. Finiteness is checked once per epoch.

The pass itself (:func:`.loop.relabelled_pass`) lives in the shared module: SalUn (:mod:`.salun`)
is this training with its updates confined to a weight-saliency mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from .loop import SGDTraining, fit, relabelled_pass, seed_words
from .registry import register

__all__ = ["random_label", "RandomLabelHparams"]


@dataclass
class RandomLabelHparams(SGDTraining):
    """Random labelling: ``epochs`` epochs of SGD with CE on forget (fixed random wrong labels)
    + retain (the fields of :class:`.loop.SGDTraining`). SalUn's RL baseline on CIFAR-10
    random-data forgetting: SGD momentum 0.9, wd 5e-4, 10 epochs, lr ~0.01 (SalUn tunes the RL
    lr per setting); batch 32 = the DLFD authors' MUFAC batch."""

    epochs: int = 10

    PRESETS: ClassVar[dict] = {
        # CPU demo (untuned): 2 epochs over retain + forget of the quick synthetic data
        "quick": {"epochs": 2, "lr": 0.01, "batch_size": 64},
        "smoke": {"epochs": 1, "lr": 0.01, "batch_size": 8},
    }
    #: What the tuner searches (dlfd_lib.tuning, the same trial budget for every method): the
    #: learning rate and epochs; augmentation of its batches is a tuned choice too (the authors'
    #: baselines trained on augmented batches, the kit's defaults do not; every method, DLFD
    #: included, gets the same choice).
    SEARCH_SPACE: ClassVar[dict] = {"lr": ("float", 1e-3, 3e-2, "log"), "epochs": ("int", 1, 3),
                                    "augment": ("categorical", [False, True])}
    #: The trade-off front's knob (dlfd_lib.protocol): values from weak to strong forgetting.
    STRENGTH: ClassVar[tuple] = ("lr", (1e-3, 3e-3, 1e-2, 3e-2))


@register("random_label", RandomLabelHparams)
def random_label(model: nn.Module, splits, hp: RandomLabelHparams, *, device: torch.device,
                 seed: int = 0, progress: bool = False):
    """Random labelling: CE on forget (fixed random wrong labels) + retain, ``hp.epochs`` epochs
    of SGD."""
    seeds = seed_words(seed, 2)
    rl, n_relabelled = relabelled_pass(model, splits, batch_size=hp.batch_size, augment=hp.augment,
                                       seed=seeds[0], label_seed=seeds[1], device=device, amp=hp.amp)
    history, steps = fit(model, [rl], hp.optim(), epochs=hp.epochs,
                         max_steps=hp.max_steps, device=device, desc="Random-Label",
                         phase="random_label", progress=progress)
    return history, {"n_forget_relabelled": n_relabelled, "epochs": hp.epochs, "steps": steps}
