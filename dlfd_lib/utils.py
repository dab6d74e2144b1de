"""Small shared helpers: devices, mixed precision, seeding, atomic file writes."""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA if available, else CPU. Anything else is passed to torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but CUDA is not available here; "
                           f"use device='cpu' or device='auto'")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA and on the CPU (this CPU has AMX-bf16, so it pays there too)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def channels_last(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to ``device`` in channels_last memory format (faster convolutions)."""
    return model.to(device=device, memory_format=torch.channels_last)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch to ``device`` in channels_last layout."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def atomic_write_bytes(path: str | Path, write_fn) -> Path:
    """Write a file atomically: ``write_fn(tmp_path)`` writes a temporary file in the same
    folder, which then replaces ``path`` in one step, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, (Path, torch.device)) or type(o).__name__ == "TorchVersion":
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


def to_jsonable(obj: Any) -> Any:
    """Plain Python (dict/list/str/float/int/bool/None) copy of ``obj``: NumPy and torch values
    become numbers and lists, paths and devices strings."""
    return json.loads(json.dumps(obj, default=_json_default))


def save_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically (NumPy/torch scalars and arrays are converted)."""
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=_json_default)
    return atomic_write_bytes(path, write)


def check_finite(value: torch.Tensor | float, what: str) -> None:
    """Stop a diverging run with a clear message."""
    v = float(value)
    if not np.isfinite(v):
        raise FloatingPointError(f"{what} became {v}: the run diverged. Lower the learning rate "
                                 f"(or the step size / loss weights) and run again.")
