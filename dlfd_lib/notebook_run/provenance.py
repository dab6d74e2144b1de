"""What a run records about itself (``provenance.json``): the environment, the commit, the
times; and a record left ``running`` by a killed process told from a live one."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(root: Path) -> dict[str, Any] | None:
    """HEAD commit of ``root`` and whether tracked files differ from it (None without git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args],
                              check=True, capture_output=True, text=True, timeout=10).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "papermill": _version("papermill"),
        "device_requested": device,
    }
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:  # provenance must never stop a run
        env["cuda_available"] = None
    return env


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


STALE_STATUS = "interrupted or killed"


def read_provenance(path: str | Path, update: bool = True) -> dict[str, Any]:
    """The provenance record of a run (``provenance.json``, or the runs folder holding it).

    A record still marked ``running`` whose process is gone (killed with SIGKILL, a crash, a
    power cut) is reported as ``"interrupted or killed"`` – in the returned record and, with
    ``update``, in the file itself."""
    from ..utils import save_json

    path = Path(path)
    if path.is_dir():
        path = path / "provenance.json"
    record = json.loads(path.read_text())
    proc = record.get("process") or {}
    if record.get("status") == "running" and proc.get("pid") is not None \
            and proc.get("host") == platform.node() and not _process_alive(int(proc["pid"])):
        record["status"] = STALE_STATUS
        for entry in record.get("notebooks", []):
            if entry.get("status") == "running":
                entry["status"] = STALE_STATUS
        if update:
            save_json(record, path)
    return record
