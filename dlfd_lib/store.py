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

from .utils import save_json, to_jsonable

__all__ = ["NUMBERS_VERSION", "JsonStore"]

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
