"""Unlearning methods, one module each, behind one registry (see :mod:`.registry`).

    from dlfd_lib.unlearn import unlearn, available_methods, method_defaults
    res = unlearn("dlfd", model, splits, profile="quick", device="auto", seed=0)

Adding a method = adding one file to this folder: a hyperparameter dataclass and a function
decorated by ``@register(name, MyHparams)``; every module here is imported below, so it registers
itself. The training loop they share is :mod:`.loop`.
"""
from __future__ import annotations

import importlib
import pkgutil

from .registry import (PROFILE_NAMES, UnlearnResult, available_methods, get_method,
                       method_defaults, method_search_space, method_strength, register, unlearn)

__all__ = ["unlearn", "available_methods", "method_defaults", "get_method", "register",
           "method_search_space", "method_strength", "UnlearnResult", "PROFILE_NAMES"]


def _import_all_methods() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_") or mod.name in ("registry", "loop"):
            continue
        try:
            importlib.import_module(f"{__name__}.{mod.name}")
        except Exception as exc:
            raise ImportError(f"dlfd_lib/unlearn/{mod.name}.py failed to import, so its unlearning "
                              f"method(s) cannot be registered: {type(exc).__name__}: {exc}. Fix "
                              f"that file (or move it out of dlfd_lib/unlearn/).") from exc


_import_all_methods()
