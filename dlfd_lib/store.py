"""The protocol's result store: one small JSON file per finished piece of work, keyed by a hash
of a JSON-able key, so that a second run (on this machine or on a fresh clone of the committed
results folder) reuses what is finished and recomputes nothing.

Every key holds :data:`NUMBERS_VERSION`; every entry may carry the provenance of the run that
wrote it (commit, CPU, precision, torch), which is not part of its key.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .utils import save_json, to_jsonable

__all__ = ["NUMBERS_VERSION", "JsonStore", "run_provenance"]

#: Bump when a change to the code alters the protocol's numbers: it is part of every store key
#: (dlfd_lib.protocol, dlfd_lib.sweep), so entries computed before the change are recomputed, never
#: mixed with newer ones.
NUMBERS_VERSION = 2



class JsonStore:
    """A folder of small JSON files keyed by a hash of a JSON-able key: what the protocol keeps
    of every finished evaluation, so that a second run reuses it."""

    def __init__(self, folder: str | Path, provenance: dict | None = None):
        self.folder = Path(folder)
        #: written beside every new entry (not part of its key): where and how it was computed
        self.provenance = provenance

    @staticmethod
    def digest(key: dict) -> str:
        return hashlib.sha1(json.dumps(to_jsonable(key), sort_keys=True).encode()).hexdigest()[:16]

    def path(self, key: dict, prefix: str = "") -> Path:
        return self.folder / f"{prefix}{self.digest(key)}.json"

    def get(self, key: dict, prefix: str = ""):
        p = self.path(key, prefix)
        if not p.exists():
            return None
        data = json.loads(p.read_text())
        return data["value"] if data.get("key") == to_jsonable(key) else None

    def put(self, key: dict, value, prefix: str = ""):
        entry = {"key": to_jsonable(key), "value": to_jsonable(value)}
        if self.provenance is not None:
            entry["provenance"] = to_jsonable(self.provenance)
        save_json(entry, self.path(key, prefix))
        return value

    def entries(self, prefix: str = "") -> list[dict]:
        """Every entry (key, value and provenance where recorded) whose file name starts with
        ``prefix``, in file-name order."""
        if not self.folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.folder.glob(f"{prefix}*.json"))]

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0


#: the CPU flags worth naming beside a timing (vector units, bf16 and matrix extensions)
_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni",
              "amx_bf16", "amx_tile")


def run_provenance(device="cpu") -> dict[str, Any]:
    """Where and how results are computed: the kit's commit (and whether the work tree differs
    from it), the CPU model and its vector flags, the precision on ``device``, torch's version and
    the thread count, the host's CPU count."""
    import os
    import platform

    import torch

    from .pipeline import REPO_ROOT, _git_commit
    from .utils import amp_enabled, resolve_device

    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in _CPU_FLAGS if f in have]
                break
    except OSError:
        pass
    dev = resolve_device(device)
    prov = {"git": _git_commit(REPO_ROOT), "cpu": model, "cpu_flags": flags, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(dev),
            "precision": "bf16" if amp_enabled(dev) else "float32", "numbers_version": NUMBERS_VERSION}
    if dev.type == "cuda":
        prov["gpu"] = torch.cuda.get_device_name(dev)
    return prov
