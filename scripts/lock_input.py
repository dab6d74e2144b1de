"""Print the kit's requirements (dependencies + every extra) without torch/torchvision.

`make lock` feeds this to `uv pip compile` to write requirements/constraints.txt, the lock of exact
versions that `make install` uses. torch and torchvision are left out on purpose: the user's own
build (CPU, a CUDA version, a ROCm wheel) stays theirs, within pyproject's range.
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    sys.exit("error: `make lock` needs Python >= 3.11 (tomllib); run 'make PYTHON=python3.11 lock'")

UNLOCKED = {"torch", "torchvision"}


def requirement_name(req: str) -> str:
    for sep in "<>=!~;[ ":
        req = req.split(sep, 1)[0]
    return req.strip().lower()


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    with open(root / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    reqs = list(project["dependencies"])
    for extra in sorted(project.get("optional-dependencies", {})):
        reqs += project["optional-dependencies"][extra]
    for req in reqs:
        if requirement_name(req) not in UNLOCKED:
            print(req)


if __name__ == "__main__":
    main()
