"""Small shared helpers: devices, mixed precision, seeding, atomic file writes."""
from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from collections.abc import Mapping
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


#: ``DLFD_CPU_BF16=1`` forces bf16 autocast on the CPU, ``=0`` forbids it; unset: decided by
#: :func:`cpu_bf16_supported`.
CPU_BF16_ENV = "DLFD_CPU_BF16"


def cpu_bf16_supported() -> bool:
    """Whether bf16 autocast pays on this CPU: oneDNN has native bf16 kernels (AVX-512 BW/VL/DQ
    or newer: AVX-512 bf16, AMX). Without them (an AVX2-only CPU) torch emulates bf16 and a
    ResNet18 training step runs ~10× *slower* than in float32 (``benchmarks/cpu_precision_speed.py``
    on a 2-core AVX2 AMD EPYC, batch 64, 64 px: 6–7 against 56–77 images/s), so the kit trains
    in float32 there.
    ``DLFD_CPU_BF16`` (0/1) overrides the check."""
    env = os.environ.get(CPU_BF16_ENV, "").strip()
    if env:
        if env not in ("0", "1"):
            raise ValueError(f"{CPU_BF16_ENV}={env!r}: use 1 (bf16 autocast on the CPU) or 0 (float32)")
        return env == "1"
    return _onednn_bf16()


@functools.lru_cache(maxsize=None)
def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without that probe: read the ISA instead
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def amp_enabled(device: torch.device | str, enabled: bool = True) -> bool:
    """Whether ``enabled`` bf16 autocast is actually used on ``device``: always on CUDA, on the
    CPU only where :func:`cpu_bf16_supported`."""
    if not enabled:
        return False
    return torch.device(device).type != "cpu" or cpu_bf16_supported()


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA, and on the CPU where it has native bf16 kernels
    (:func:`cpu_bf16_supported`; elsewhere float32, which is faster there)."""
    if not amp_enabled(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


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


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows, else set and reset)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


#: a temporary file of an earlier format (no writer pid in its name) counts as stale after this
STALE_TMP_SECONDS = 3600


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes of ``path`` left behind (``.<name>.*.tmp``
    next to it): those whose writer process (its pid is in the name) is gone, and unnamed ones
    older than an hour. Writes still in progress in a live process are left alone."""
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        rest = tmp.name[len(prefix):]
        m = re.match(r"pid(\d+)\.", rest)
        try:
            if m:
                pid = int(m.group(1))
                if pid == os.getpid() or _pid_alive(pid):
                    continue
            elif time.time() - tmp.stat().st_mtime < STALE_TMP_SECONDS:
                continue
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            continue
    return removed


def atomic_write_bytes(path: str | Path, write_fn) -> Path:
    """Write a file atomically: ``write_fn(tmp_path)`` writes a temporary file in the same
    folder, which then replaces ``path`` in one step, so a crash never leaves half a file.

    The file gets the permissions the umask gives new files (``mkstemp`` alone would make it
    private, 0600). Temporary files of earlier writes of ``path`` that were killed (SIGKILL,
    power loss) are removed first (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
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


def check_named_results(results) -> None:
    """``results`` must be ``{model name: metrics dict}`` (what the metric and attack tables read)."""
    if not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values()):
        raise TypeError("expected {model name: metrics dict}, e.g. {'original': evaluate(...)}; "
                        "wrap a single result as {'name': result}")


def check_finite(value: torch.Tensor | float, what: str) -> None:
    """Stop a diverging run with a clear message."""
    v = float(value)
    if not np.isfinite(v):
        raise FloatingPointError(f"{what} became {v}: the run diverged. Lower the learning rate "
                                 f"(or the step size / loss weights) and run again.")


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``tensors`` that hold a NaN or an infinity (one
    host sync for all of them)."""
    names = [k for k, t in tensors.items()
             if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0]
    if not names:
        return []
    # amax propagates NaN, and |x| turns -inf into inf: one number per tensor tells both
    peaks = torch.stack([tensors[k].detach().abs().amax().float().cpu() for k in names])
    bad = (~torch.isfinite(peaks)).tolist()
    return [k for k, b in zip(names, bad) if b]
