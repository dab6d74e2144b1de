"""Training the two reference models of every unlearning study.

* the **original** model: trained on all training images (retain + forget);
* the **retrained** model: trained from scratch on the retain images only – the gold standard
  an unlearning method tries to imitate without paying for it.

The paper's recipe (Choi & Na 2025, after the MUFAC benchmark): SGD, momentum 0.9, weight
decay 5e-4, lr 0.01, cosine schedule, 100 epochs, batch 32 (age) / 64 (emotion), horizontal
flip + affine + rotation + colour-jitter augmentation. Schedules here are stepped once per
*batch* with a period counted in batches, so the learning rate follows one smooth cosine (the
released trainer stepped per batch with a period in epochs, which makes it oscillate). The
``quick`` CPU profile uses a one-cycle schedule instead, which reaches a memorising model in far
fewer epochs; the README says so.

bf16 autocast and channels_last are used on CUDA, and bf16 on the CPU only where it has native
bf16 kernels (AVX-512 and newer; :func:`dlfd_lib.utils.cpu_bf16_supported`): on an AVX2-only CPU
emulated bf16 is ~10x slower than float32, so training runs in float32 there. The checkpoint's
meta records the precision used (``precision``).
A checkpoint is reused when one with the same configuration exists (``force=True`` retrains).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.splits import UnlearningSplits, content_digest
from .model import CheckpointError, FaceClassifier, build_model, load_checkpoint, save_checkpoint
from .optim import SGD_DEFAULTS
from .utils import to_jsonable, amp_enabled, autocast, check_finite, resolve_device, seed_everything, to_device

ROLES = {"original": "train", "retrained": "retain"}


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = SGD_DEFAULTS.momentum
    weight_decay: float = SGD_DEFAULTS.weight_decay
    schedule: str = "cosine"  # "cosine" (the paper) or "onecycle" (fast CPU recipe)
    warmup_frac: float = 0.25  # one-cycle only: share of steps spent warming up
    augment: bool = True
    amp: bool = True  # bf16 autocast
    num_workers: int = 0

    def __post_init__(self):
        """Check every field's type and range; one error lists every bad value and the accepted
        form (a profile edited by hand or a parameter passed as text fails here, not deep
        inside torch)."""
        problems = []

        def whole(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                problems.append(f"{name}={v!r} must be a whole number >= {low} (an int), "
                                f"not {type(v).__name__}")
            elif v < low:
                problems.append(f"{name}={v!r} must be >= {low}")

        def real(name: str, ok, rule: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                problems.append(f"{name}={v!r} must be a number {rule} (an int or float), not "
                                f"{type(v).__name__}")
            elif not (math.isfinite(v) and ok(v)):
                problems.append(f"{name}={v!r} must be a finite number {rule}")

        whole("epochs", 1)
        whole("batch_size", 1)
        whole("num_workers", 0)
        real("lr", lambda v: v > 0, "> 0, e.g. 0.01")
        real("momentum", lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.9")
        real("weight_decay", lambda v: v >= 0, ">= 0, e.g. 5e-4")
        real("warmup_frac", lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.25")
        for name in ("augment", "amp"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                problems.append(f"{name}={v!r} must be True or False, not {type(v).__name__}")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            problems.append(f"schedule={self.schedule!r}: choose 'cosine', 'onecycle' or "
                            f"'constant'")
        if problems:
            raise ValueError("TrainConfig got invalid values: " + "; ".join(problems)
                             + ". Fix them where the config is built (a profile's 'train' "
                               "section in dlfd_lib/profiles.py, or TrainConfig(...)).")

    @classmethod
    def from_profile(cls, profile: dict) -> "TrainConfig":
        """Build from a profile's ``train`` section (unknown keys are ignored)."""
        section = profile.get("train", profile)
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def make_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int):
    """SGD with momentum and weight decay plus a per-batch learning-rate schedule whose period
    is ``total_steps`` batches (a one-cycle schedule over fewer than 4 steps becomes a constant
    learning rate)."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    elif cfg.schedule == "onecycle" and total_steps >= 4:
        # OneCycleLR needs at least one step up and one step down: on tiny data (a few batches)
        # the warm-up share is raised just enough for that
        pct = min(max(cfg.warmup_frac, 1.5 / total_steps), (total_steps - 2.5) / total_steps)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps,
                                                    pct_start=pct)
    elif cfg.schedule == "onecycle":  # fewer than 4 steps in all: no room for a cycle
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader, device: torch.device, amp: bool = True) -> tuple[float, float]:
    """(accuracy, mean CE loss) of ``model`` over ``loader`` in eval mode; restores the mode."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device)
    n = 0
    for x, y in loader:
        x, y = to_device(x, device), y.to(device)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    model.train(was_training)
    return float(correct) / max(n, 1), float(loss_sum) / max(n, 1)


def train_model(model: nn.Module, splits: UnlearningSplits, on: str = "train",
                cfg: TrainConfig | None = None, device: str | torch.device = "auto",
                seed: int = 0, progress: bool = True, desc: str | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on split ``on`` and return the per-epoch history
    (lr, training loss and accuracy on augmented batches, validation accuracy and loss)."""
    cfg = cfg or TrainConfig()
    device = resolve_device(device)
    gen = seed_everything(seed)
    model.to(device=device, memory_format=torch.channels_last)
    loader = splits.loader(on, batch_size=cfg.batch_size, augment=cfg.augment, shuffle=True,
                           seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)),
                           num_workers=cfg.num_workers, drop_last=len(splits.split(on)) > cfg.batch_size,
                           device=device)
    val_loader = splits.loader("val", batch_size=256, device=device)
    opt, sched = make_optimizer(model, cfg, total_steps=cfg.epochs * len(loader))
    history = []
    bar = tqdm(range(cfg.epochs), desc=desc or f"training on {on}", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        lr = opt.param_groups[0]["lr"]
        for x, y in loader:
            x, y = to_device(x, device), y.to(device, non_blocking=True)
            with autocast(device, cfg.amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        train_loss = float(loss_sum) / seen  # one host sync per epoch
        check_finite(train_loss, f"the training loss in epoch {epoch + 1}")
        val_acc, val_loss = evaluate_accuracy(model, val_loader, device, cfg.amp)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
               "train_acc": float(correct) / seen, "val_acc": val_acc, "val_loss": val_loss,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{row['train_acc']:.2f}", val=f"{val_acc:.2f}")
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# train-or-reuse
# ---------------------------------------------------------------------------------------------
def splits_fingerprint(splits: UnlearningSplits) -> dict[str, Any]:
    """What identifies a dataset for the checkpoint cache: its name, task, sizes, image size,
    the parameters that generated or located it, and a digest per split of its labels,
    identities and images (:func:`~dlfd_lib.data.splits.content_digest`), so that a model
    trained on other labels, other images or another forget set is never reused."""
    return {"name": splits.name, "task": splits.task, "image_size": splits.image_size,
            "sizes": splits.sizes(), "info": to_jsonable(splits.info),
            "content": content_digest(splits)}


def checkpoint_path(ckpt_dir: str | Path, splits: UnlearningSplits, role: str, cfg: TrainConfig,
                    seed: int, device: str | torch.device = "auto") -> tuple[Path, dict[str, Any]]:
    """Checkpoint file for a (dataset, role, recipe, seed, precision) and the config that keys it.

    The precision (bf16 or float32, :func:`dlfd_lib.utils.amp_enabled` on ``device``) is part of
    the key: the same recipe trained in bf16 and in float32 gives different models, so a machine
    without native CPU bf16 never takes (or is given results keyed by) one trained with it."""
    named = torch.device(device) if device is not None and str(device) != "auto" else resolve_device(device)
    precision = "bf16" if amp_enabled(named, cfg.amp) else "float32"  # a name only: no GPU needed here
    config = to_jsonable({"role": role, "data": splits_fingerprint(splits), "train": asdict(cfg), "seed": seed,
                          "precision": precision})
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{splits.name}-{splits.task}-{role}-seed{seed}-{key}.pt"
    return Path(ckpt_dir) / name, config


def train_or_load(role: str, splits: UnlearningSplits, cfg: TrainConfig, seed: int = 0,
                  device: str | torch.device = "auto", ckpt_dir: str | Path = "checkpoints",
                  force: bool = False, progress: bool = True) -> tuple[FaceClassifier, dict[str, Any]]:
    """Train the ``"original"`` (all train images) or ``"retrained"`` (retain only) model, or
    reuse the checkpoint written by an earlier run with the same data, recipe and seed.

    Returns ``(model, meta)``; ``meta`` holds ``config``, ``history`` (per-epoch curves),
    ``train_seconds``, ``path`` and ``reused``.
    """
    if role not in ROLES:
        raise ValueError(f"role={role!r}: choose one of {list(ROLES)}")
    device = resolve_device(device)
    path, config = checkpoint_path(ckpt_dir, splits, role, cfg, seed, device)
    if path.exists() and not force:
        try:
            model, meta = load_checkpoint(path, num_classes=splits.num_classes, device=device)
        except CheckpointError as err:  # an older kit saved a diverged model: train it again
            if "non-finite" not in str(err):
                raise
            warnings.warn(f"{err} It is trained again.", stacklevel=2)
            model, meta = None, {}
        if meta.get("config") == config:
            model.eval()
            return model, {**meta, "path": str(path), "reused": True}
    seed_everything(seed)
    model = build_model(splits.num_classes, device)
    t0 = time.perf_counter()
    history = train_model(model, splits, on=ROLES[role], cfg=cfg, device=device, seed=seed,
                          progress=progress, desc=f"{role} model ({ROLES[role]} split)")
    seconds = time.perf_counter() - t0
    meta = {"config": config, "history": history, "train_seconds": seconds,
            "metrics": {k: history[-1][k] for k in ("train_loss", "train_acc", "val_acc", "val_loss")},
            "device": str(device), "torch": str(torch.__version__),
            "precision": config["precision"]}
    save_checkpoint(model, path, meta)
    return model, {**meta, "path": str(path), "reused": False}
