"""Exact Unlearning-k ("eu_k").

Reference: S. Goel, A. Prabhu, A. Sanyal, S.-N. Lim, P. Torr, P. Kumaraguru, *Towards
Adversarial Evaluations for Inexact Machine Unlearning* (arXiv 2201.06640, 2022). EU-k is one
of the two baselines the paper proposes (with CF-k, :mod:`.cfk`).

Algorithm: keep the first layers of the original model frozen, **re-initialise** the last k
layers from scratch, and train those k layers on the retain set D_r alone. If the frozen
layers held no information specific to D_f, the result is an exact unlearning of D_f for the
last k layers (they never see D_f); in practice the frozen features still do, which is what
the paper's evaluation probes.

"Layers" are those of :func:`.loop.layer_blocks` (12 units for FaceClassifier: the stem, the
eight ResNet BasicBlocks, the three Linear layers of the MLP head; k counts from the end, so
k = 3 is the whole MLP head and k = 4 adds layer4.1).

Re-initialisation (:func:`reinitialise_last_k`) follows the model's constructor exactly:
``nn.Linear`` as PyTorch's default (Kaiming-uniform weight with a = sqrt(5), bias uniform in
+-1/sqrt(fan_in)); convolutions as torchvision's ResNet (Kaiming-normal, fan_out, ReLU); every
BatchNorm back to weight 1, bias 0 and fresh running statistics (mean 0, var 1, 0 batches
tracked). The new values are drawn on the CPU from a ``torch.Generator`` seeded from ``seed``
and then copied in, so the same seed gives the same initial weights on every device and memory
layout. (The DLFD authors' released EU-k re-initialises nothing and only unfreezes the ResNet's
``bn2`` layers – pitfall 9; this one follows the paper.)

Training as CF-k (:func:`.loop.train_last_k`): the frozen layers are bitwise unchanged
(``requires_grad=False``, not in the optimiser, eval mode so their BatchNorm statistics do not
move); the re-initialised layers run in train mode. ``epochs=0`` returns the re-initialised,
untrained model (used by the tests).

Defaults per profile: k = 3; ``paper`` uses the authors' MUFAC recipe (SGD lr 0.01, momentum
0.9, weight decay 5e-4, batch 32) for 5 epochs – layers trained from scratch may want more, and
the DLFD authors' epoch count for EU-k is not in the paper notes, so 5 is an assumption;
``quick`` 3 epochs at lr 0.01; ``smoke`` 1 epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .loop import LastKTraining, modules_of, seed_words, split_last_k, train_last_k
from .registry import register

__all__ = ["eu_k", "EUkHparams", "reinitialise_last_k", "reinitialise_module"]


@torch.no_grad()
def _fill(param: torch.Tensor, init) -> None:
    fresh = torch.empty(param.shape, dtype=torch.float32)  # CPU, contiguous
    init(fresh)
    param.copy_(fresh)


@torch.no_grad()
def reinitialise_module(module: nn.Module, generator: torch.Generator) -> None:
    """Give every Conv2d / BatchNorm / Linear inside ``module`` the values the model's
    constructor would give it (module docstring), drawing from ``generator``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            _fill(m.weight, lambda t: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu",
                                                               generator=generator))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1, 0 batches tracked
        elif isinstance(m, nn.Linear):
            _fill(m.weight, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator))
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
                _fill(m.bias, lambda t: nn.init.uniform_(t, -bound, bound, generator=generator))


def reinitialise_last_k(model: nn.Module, k: int, seed: int = 0) -> list[str]:
    """Re-initialise the last ``k`` layers of ``model`` in place (seeded); returns their names."""
    _, last = split_last_k(model, k)
    gen = torch.Generator().manual_seed(int(seed))
    for m in modules_of(last):
        reinitialise_module(m, gen)
    return [n for n, _ in last]


def _init_seed(seed: int) -> int:
    # independent of the loader's shuffling seed (which uses the first word of the same sequence)
    return seed_words(seed, 2)[1]


@dataclass
class EUkHparams(LastKTraining):
    """EU-k's hyperparameters: ``k`` (the last k layers are re-initialised and trained) and the
    authors' SGD recipe (:class:`.loop.LastKTraining`)."""

    # presets, search space and strength knob: LastKTraining's, shared with CF-k on purpose


@register("eu_k", EUkHparams)
def eu_k(model: nn.Module, splits, hp: EUkHparams, *, device: torch.device, seed: int = 0,
         progress: bool = False):
    """EU-k: re-initialise the last ``hp.k`` layers (see :func:`.loop.layer_blocks`) and train
    them on the retain set; all other layers stay bitwise unchanged."""
    init_seed = _init_seed(seed)
    names = reinitialise_last_k(model, hp.k, init_seed)
    history, info = train_last_k(model, splits, hp, device=device, seed=seed, progress=progress,
                                 desc=f"EU-{hp.k}")
    return history, {**info, "reinitialised_layers": names, "init_seed": init_seed}
