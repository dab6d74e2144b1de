"""Catastrophic Forgetting-k ("cf_k").

Reference: S. Goel, A. Prabhu, A. Sanyal, S.-N. Lim, P. Torr, P. Kumaraguru, *Towards
Adversarial Evaluations for Inexact Machine Unlearning* (arXiv 2201.06640, 2022; first titled
*Evaluating Inexact Unlearning Requires Revisiting Forgetting*). CF-k is one of the two
baselines the paper proposes (with EU-k, :mod:`.euk`).

Algorithm: freeze every layer of the original model except the last k, and fine-tune those k
layers on the retain set D_r alone (cross-entropy, SGD). The frozen part is left exactly as
it was; the last k layers "catastrophically forget" D_f while they are trained on D_r only.

What a "layer" is for :class:`~dlfd_lib.model.FaceClassifier` (:func:`.loop.layer_blocks`), in
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
has a constant learning rate or a per-batch cosine, see :class:`.loop.RetainTraining`.)

Defaults per profile: k = 3 in every profile (the "CF-3" of the MUFAC/MUCAC benchmark by the
same authors); ``paper`` uses the authors' MUFAC training recipe (SGD lr 0.01, momentum 0.9,
weight decay 5e-4, batch 32) for 5 epochs (the epoch count of the DLFD authors' baseline is
not given in the paper notes: an assumption); ``quick`` 3 epochs at lr 0.01; ``smoke`` 1 epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .loop import LastKTraining, train_last_k
from .registry import register

__all__ = ["cf_k", "CFkHparams"]


@dataclass
class CFkHparams(LastKTraining):
    """CF-k's hyperparameters: ``k`` (the last k layers are trained) and the authors' SGD recipe
    (:class:`.loop.LastKTraining`)."""

    # presets, search space and strength knob: LastKTraining's, shared with EU-k on purpose


@register("cf_k", CFkHparams)
def cf_k(model: nn.Module, splits, hp: CFkHparams, *, device: torch.device, seed: int = 0,
         progress: bool = False):
    """CF-k: fine-tune only the last ``hp.k`` layers (see :func:`.loop.layer_blocks`) on the
    retain set; all other layers stay bitwise unchanged."""
    return train_last_k(model, splits, hp, device=device, seed=seed, progress=progress,
                        desc=f"CF-{hp.k}")
