"""The optimiser settings every training loop of the kit shares, written once.

The authors' MUFAC recipe (Choi & Na 2025) trains with SGD, momentum 0.9 and weight decay 5e-4;
the reference models (:mod:`dlfd_lib.train`, the profiles of :mod:`dlfd_lib.profiles`) and every
SGD-based unlearning method (:mod:`dlfd_lib.unlearn`) take their defaults from :data:`SGD_DEFAULTS`.
:class:`Optim` builds the optimiser of one run from a learning rate and these settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

__all__ = ["OptimSettings", "SGD_DEFAULTS", "Optim", "OPTIMIZERS"]

#: the optimiser kinds :class:`Optim` builds
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class OptimSettings:
    """Momentum and weight decay of the authors' recipe (SGD)."""

    momentum: float = 0.9
    weight_decay: float = 5e-4


#: the one place the kit's momentum and weight-decay defaults are written
SGD_DEFAULTS = OptimSettings()


@dataclass(frozen=True)
class Optim:
    """What builds one optimiser: ``kind`` "sgd" (momentum, weight decay) or "adam" (weight decay;
    momentum unused), its learning rate and settings."""

    lr: float
    momentum: float = SGD_DEFAULTS.momentum
    weight_decay: float = SGD_DEFAULTS.weight_decay
    kind: str = "sgd"

    def __post_init__(self):
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.kind!r}: choose {' or '.join(map(repr, OPTIMIZERS))}")

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.kind == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)
