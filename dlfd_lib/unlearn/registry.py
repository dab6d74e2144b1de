"""The one registry of unlearning methods.

A method is one file of ``dlfd_lib/unlearn/``: a dataclass of its hyperparameters and a function,
registered together with a decorator::

    from dataclasses import dataclass
    from typing import ClassVar
    from .registry import register

    @dataclass
    class FinetuneHparams:
        epochs: int = 5                 # field defaults: the paper's values
        lr: float = 0.01
        PRESETS: ClassVar[dict] = {"smoke": {"epochs": 1}, "quick": {"epochs": 3}}
        SEARCH_SPACE: ClassVar[dict] = {"lr": ("float", 1e-3, 3e-2, "log")}
        STRENGTH: ClassVar[tuple] = ("epochs", (1, 2, 3, 4))

    @register("finetune", FinetuneHparams)
    def finetune(model, splits, hp: FinetuneHparams, *, device, seed, progress):
        ...                     # edit `model` in place (the registry hands over a copy)
        return history, info    # history: list of dicts (or a DataFrame); info: dict

* The function receives the model (already on ``device``, in channels_last), the
  :class:`~dlfd_lib.data.splits.UnlearningSplits`, an instance ``hp`` of its dataclass and the
  keyword arguments ``device`` (a ``torch.device``), ``seed`` and ``progress`` (show tqdm bars).
* **One home per hyperparameter**: the dataclass's field defaults are the paper's values (the
  ``paper`` profile); ``PRESETS`` overrides them for the smaller profiles (``smoke``, ``quick``;
  a ``paper`` entry is refused); the caller's flat ``**hparams`` (``unlearn``,
  notebook parameters, ``dlfd run -p``, ``run_benchmark(method_overrides=)``) override both.
  Names are checked against the dataclass's fields (an unknown one is a ``TypeError`` naming
  the method, the name and the valid ones); the values are checked by the dataclass itself
  (its ``__post_init__``), before anything runs.
* Every module of this package is imported when ``dlfd_lib.unlearn`` is imported (pkgutil),
  so adding a method is adding one file; nothing else needs editing. The training loop every
  method shares is :func:`dlfd_lib.unlearn.loop.fit`.
* **Split discipline**: :func:`unlearn` hands the method a
  :class:`~dlfd_lib.data.view.MethodSplits` view, not the full splits: retain, forget and the
  monitor half of the validation people; reading the test split raises
  :class:`~dlfd_lib.data.view.TestSplitAccessError` (the test split is for the final evaluation).
* **Tuning** (:mod:`dlfd_lib.tuning`): beside its ``PRESETS`` a method declares a
  ``SEARCH_SPACE`` over its main hyperparameters (name -> ``("float", lo, hi)``,
  ``("float", lo, hi, "log")``, ``("int", lo, hi)``, ``("int", lo, hi, "log")``,
  ``("categorical", [choices])`` or a plain constant applied in every trial) and a
  ``STRENGTH``: ``(hyperparameter, [values from weak to strong])``, the knob the trade-off front
  sweeps (:mod:`dlfd_lib.protocol`). All three are checked against the fields at import.

Calling a method::

    res = unlearn("dlfd", model, splits, profile="quick", device="auto", seed=0, lr=0.01)
    res.model      # the unlearned model (a copy: the caller's model is untouched)
    res.history    # pandas.DataFrame, one row per monitored step (method specific columns)
    res.info       # dict: method, profile, seed, device, hparams, seconds, + the method's info
    model, history = res        # unpacks as the (model, history) pair

``inplace=True`` edits and returns the caller's model instead of a copy (it is still moved to
``device``).

Watching a method as it runs (notebook 02's curves)::

    res = unlearn("neggrad", model, splits, callback=tracker, callback_every=5)

calls ``tracker(model, step, final)`` once before the first update (``step=0``), after every
``callback_every``-th optimiser step of the method (any ``torch.optim`` optimiser stepped while
the method runs, counted through torch's global step hook, so no method needs to know about
it), and once on the returned model (``final=True``; for DLFD this is the selected checkpoint,
which may be an earlier state). The callback's own time is not counted in ``info["seconds"]``;
it must leave the model's weights and train/eval flags as it found them.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import torch

from ..data.view import method_view
from ..profiles import PROFILE_NAMES, Profile, profile_name
from ..utils import nonfinite_tensors, resolve_device, seed_everything

__all__ = ["register", "unlearn", "available_methods", "method_defaults", "get_method",
           "method_search_space", "method_strength", "UnlearnResult", "PROFILE_NAMES", "SPACE_KINDS"]


# what every method function receives besides its hyperparameters
_POSITIONAL = ("model", "splits", "hp")
_KEYWORDS = ("device", "seed", "progress")


@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns.

    ``model``: the unlearned model; ``history``: one row per monitored step (a DataFrame, maybe
    empty); ``info``: ``method``, ``profile``, ``seed``, ``device``, ``hparams`` (the resolved
    values), ``seconds`` (wall time of the method, host-synchronised on CUDA) and whatever the
    method adds (DLFD: ``selected_step``, ``selected_fs``, ...). Unpacks as ``model, history``.
    """

    model: torch.nn.Module
    history: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.model, self.history))


@dataclass(frozen=True)
class _Method:
    name: str
    fn: Callable
    hparams_cls: type                # the method's hyperparameter dataclass
    hparams: dict[str, Any]          # name -> field default (the paper's value)
    presets: dict[str, dict[str, Any]]  # profile -> overrides (the dataclass's PRESETS)
    doc: str
    search_space: dict[str, Any] = field(default_factory=dict)  # name -> spec (see module doc)
    strength: tuple[str, tuple] | None = None  # (hyperparameter, values weak -> strong)


_METHODS: dict[str, _Method] = {}


def _fields_of(name: str, cls: type) -> dict[str, Any]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"unlearning method {name!r}: register(name, hparams) needs the method's "
                        f"hyperparameter dataclass, not {cls!r}")
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            raise TypeError(f"unlearning method {name!r}: hyperparameter {f.name!r} of "
                            f"{cls.__name__} needs a default value (the paper's)")
    return out


def _check_signature(name: str, fn: Callable) -> None:
    params = list(inspect.signature(fn).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    if positional != list(_POSITIONAL) or not set(_KEYWORDS) <= keywords:
        raise TypeError(f"unlearning method {name!r} ({getattr(fn, '__name__', fn)}) must accept "
                        f"fn(model, splits, hp, *, device, seed, progress): its hyperparameters "
                        f"come as one dataclass instance hp")


def check_hparams(name: str, hparams: dict[str, Any], valid: dict[str, Any], what: str) -> None:
    """Raise ``TypeError`` if ``hparams`` names a field the method's dataclass does not have."""
    bad = sorted(set(hparams) - set(valid))
    if bad:
        raise TypeError(f"unknown hyperparameter(s) {bad} for unlearning method {name!r} ({what}); "
                        f"valid: {', '.join(sorted(valid))}")


#: the kinds of a search-space entry (anything else is a constant)
SPACE_KINDS = ("float", "int", "categorical")


def _check_space(name: str, space: dict[str, Any], hparams: dict[str, Any]) -> None:
    bad = sorted(set(space) - set(hparams))
    if bad:
        raise ValueError(f"method {name!r}: SEARCH_SPACE names unknown hyperparameters {bad}; "
                         f"valid: {', '.join(sorted(hparams))}")
    for key, spec in space.items():
        if not (isinstance(spec, tuple) and spec and spec[0] in SPACE_KINDS):
            continue  # a constant
        kind = spec[0]
        if kind == "categorical":
            if len(spec) != 2 or not list(spec[1]):
                raise ValueError(f"method {name!r}: SEARCH_SPACE[{key!r}] = {spec!r}: write "
                                 f"('categorical', [choice, ...])")
            continue
        if len(spec) not in (3, 4) or (len(spec) == 4 and spec[3] != "log") or not spec[1] < spec[2]:
            raise ValueError(f"method {name!r}: SEARCH_SPACE[{key!r}] = {spec!r}: write "
                             f"('{kind}', low, high) or ('{kind}', low, high, 'log') with low < high")
        if len(spec) == 4 and not spec[1] > 0:
            raise ValueError(f"method {name!r}: SEARCH_SPACE[{key!r}] = {spec!r}: a log range needs low > 0")


def register(name: str, hparams: type) -> Callable:
    """Decorator: register ``fn`` as unlearning method ``name`` with the hyperparameter dataclass
    ``hparams`` (see the module docstring).

    The dataclass's ``PRESETS`` (profile -> overrides of the field defaults), ``SEARCH_SPACE``
    and ``STRENGTH`` are checked here, at import time: unknown profiles or hyperparameter names,
    malformed ranges and preset values the dataclass rejects raise."""

    def deco(fn: Callable) -> Callable:
        if name in _METHODS and _METHODS[name].fn is not fn and \
                _METHODS[name].fn.__module__ != fn.__module__:
            raise ValueError(f"unlearning method {name!r} is registered twice: by "
                             f"{_METHODS[name].fn.__module__} and by {fn.__module__}")
        values = _fields_of(name, hparams)
        _check_signature(name, fn)
        presets = {k: dict(v) for k, v in getattr(hparams, "PRESETS", {}).items()}
        if "paper" in presets:
            raise ValueError(f"method {name!r}: PRESETS['paper'] – the paper's values are the field "
                             f"defaults of {hparams.__name__}; change them there (PRESETS holds "
                             f"the smaller profiles)")
        for profile, preset in presets.items():
            if profile not in PROFILE_NAMES:
                raise ValueError(f"method {name!r}: unknown profile {profile!r} in PRESETS; "
                                 f"valid profiles: {', '.join(PROFILE_NAMES)}")
            bad = sorted(set(preset) - set(values))
            if bad:
                raise ValueError(f"method {name!r}: PRESETS[{profile!r}] names unknown "
                                 f"hyperparameters {bad}; valid: {', '.join(sorted(values))}")
            hparams(**{**values, **preset})  # the dataclass checks the values
        space = dict(getattr(hparams, "SEARCH_SPACE", {}))
        _check_space(name, space, values)
        strength = getattr(hparams, "STRENGTH", None)
        knob = None
        if strength is not None:
            if (len(strength) != 2 or strength[0] not in values or len(list(strength[1])) < 2):
                raise ValueError(f"method {name!r}: STRENGTH={strength!r}: write (hyperparameter, "
                                 f"[at least 2 values, weak to strong]) with a hyperparameter of "
                                 f"{', '.join(sorted(values))}")
            knob = (strength[0], tuple(strength[1]))
        _METHODS[name] = _Method(name, fn, hparams, values, presets, inspect.getdoc(fn) or "",
                                 space, knob)
        return fn

    return deco


def available_methods() -> list[str]:
    """Names of all registered unlearning methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> _Method:
    if name not in _METHODS:
        raise KeyError(f"unknown unlearning method {name!r}; available: "
                       f"{', '.join(available_methods()) or '(none)'}")
    return _METHODS[name]


def method_defaults(name: str, profile: str | Profile = "quick") -> dict[str, Any]:
    """The hyperparameters method ``name`` runs with under ``profile`` (a
    :class:`~dlfd_lib.profiles.Profile` or its name), flat: its dataclass's field defaults (the
    paper's values) updated by ``PRESETS[profile.name]`` (``paper``, and a profile the method does
    not list, use the field defaults alone)."""
    method = get_method(name)
    return {**method.hparams, **method.presets.get(profile_name(profile), {})}


def method_search_space(name: str) -> dict[str, Any]:
    """The search space method ``name`` declared beside its presets (a copy; {} if none)."""
    return dict(get_method(name).search_space)


def method_strength(name: str) -> tuple[str, tuple] | None:
    """``(hyperparameter, values weak -> strong)`` the trade-off front sweeps for ``name``."""
    return get_method(name).strength


class _OptimizerStepHook:
    """Runs ``self._hook`` after every optimiser step (torch's global post-step hook) while the
    ``with`` block of a subclass is open; the hook is removed on exit."""

    _handle = None

    def _install(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook
        self._handle = register_optimizer_step_post_hook(self._hook)

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class _StepWatch(_OptimizerStepHook):
    """Calls ``callback(model, step, final)`` every ``every`` optimiser steps while active (a
    global ``torch.optim`` post-step hook), keeping the callback's own wall time apart."""

    def __init__(self, model: torch.nn.Module, callback: Callable | None, every: int):
        self.model, self.callback, self.every = model, callback, every
        self.steps, self.seconds, self._handle = 0, 0.0, None

    def _call(self, final: bool = False) -> None:
        t = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # the method's random stream stays untouched
            self.callback(self.model, self.steps, final)
        self.seconds += time.perf_counter() - t

    def _hook(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self._call()

    def __enter__(self):
        if self.callback is not None:
            self._call()
            self._install()
        return self

    def final(self) -> None:
        if self.callback is not None:
            self._call(final=True)


class _FiniteWatch(_OptimizerStepHook):
    """Stops a diverging method: after every optimiser step on the model's weights it records,
    on the device, whether all those weights are finite, and every ``every`` steps (one host
    sync) raises ``FloatingPointError`` naming the method and the first step whose weights
    held a NaN or an infinity. :meth:`final` checks the returned model's weights, buffers and
    outputs on a few forget and retain images, so that nothing non-finite leaves
    :func:`unlearn` (and hence nothing non-finite is saved or reused)."""

    def __init__(self, name: str, model: torch.nn.Module, every: int = 16):
        self.name, self.model, self.every = name, model, every
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.steps, self._flags, self._handle = 0, [], None

    def _hook(self, optimizer, args, kwargs) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if id(p) in self.names]
        if not params:
            return  # an optimiser of something else (say a callback's probe)
        self.steps += 1
        # one sum per tensor: a NaN or an infinity anywhere makes it non-finite (so does a sum that
        # overflows, i.e. weights near 1e37, a divergence too). A twentieth of the cost of the
        # largest |w| (``_foreach_norm(inf)``) on a CPU, and no host sync.
        sums = torch.stack([p.detach().sum() for p in params])
        self._flags.append((self.steps, params, torch.isfinite(sums).all()))
        if len(self._flags) >= self.every:
            self.check()

    def check(self) -> None:
        """Raise if a recorded step left a non-finite weight (one host sync)."""
        if not self._flags:
            return
        flags, self._flags = self._flags, []
        ok = torch.stack([f for _, _, f in flags]).cpu().tolist()
        for (step, params, _), good in zip(flags, ok):
            if not good:
                bad = nonfinite_tensors({self.names[id(p)]: p for p in params})
                if not bad:
                    self._fail(f"its weights grew so large (the sum of a weight tensor overflows) at "
                               f"optimiser step {step}")
                self._fail(f"its weights became non-finite (NaN or infinity, e.g. in {bad[:3]}) "
                           f"at optimiser step {step}")

    def _fail(self, what: str) -> None:
        raise FloatingPointError(
            f"unlearning method {self.name!r}: {what}: the run diverged. Lower its learning rate "
            f"(lr=...), step size or number of epochs and run it again.")

    def __enter__(self):
        self._install()
        return self

    @torch.no_grad()
    def final(self, splits, device: torch.device, n: int = 16) -> None:
        self.check()
        bad = nonfinite_tensors(dict(self.model.state_dict()))
        if bad:
            self._fail(f"the model it returns has non-finite weights or statistics (e.g. in "
                       f"{bad[:3]}) after its last optimiser step, step {self.steps}")
        was_training = self.model.training
        self.model.eval()
        try:
            for split in ("forget", "retain"):
                data = splits.split(split)
                if len(data) == 0:
                    continue
                x = torch.stack([data[i][0] for i in range(min(n, len(data)))])
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                logits = self.model(x).float()
                if not torch.isfinite(logits).all():
                    self._fail(f"the model it returns gives non-finite outputs on {split} images "
                               f"after its last optimiser step, step {self.steps}")
        finally:
            self.model.train(was_training)


def unlearn(name: str, model: torch.nn.Module, splits, profile: str | Profile = "quick",
            device: str | torch.device = "auto", seed: int = 0, progress: bool = True,
            inplace: bool = False, callback: Callable | None = None, callback_every: int = 1,
            **hparams) -> UnlearnResult:
    """Run unlearning method ``name`` on ``model`` and return an :class:`UnlearnResult`.

    The caller's model is deep-copied first (``inplace=True`` skips the copy), moved to
    ``device`` (``"auto"``: CUDA if available) in channels_last, global RNGs are seeded with
    ``seed``, and the method runs on ``method_view(splits)`` (no test split) with its dataclass
    built from ``method_defaults(name, profile)`` (``profile``: a
    :class:`~dlfd_lib.profiles.Profile` or its name) updated by ``hparams``. Unknown hyperparameter
    names raise ``TypeError`` naming the method and listing the valid ones; values the dataclass
    rejects raise its ``ValueError``.
    ``progress`` shows the method's tqdm bar. ``callback`` / ``callback_every``: see the module
    docstring.
    """
    method = get_method(name)
    resolved = method_defaults(name, profile)
    check_hparams(name, hparams, resolved, "unlearn() keyword arguments")
    resolved.update(hparams)
    hp = method.hparams_cls(**resolved)
    dev = resolve_device(device)
    work = model if inplace else copy.deepcopy(model)
    work.to(device=dev, memory_format=torch.channels_last)
    if callback_every < 1:
        raise ValueError(f"callback_every={callback_every}: give a step count >= 1")
    seed_everything(seed)
    view = method_view(splits)  # no test split: the method cannot select on the reported number
    watch = _StepWatch(work, callback, callback_every)
    finite = _FiniteWatch(name, work)
    t0 = time.perf_counter()
    try:
        with finite, watch:
            out = method.fn(work, view, hp, device=dev, seed=seed, progress=progress)
    except FloatingPointError as err:  # the method's own finite checks (losses, gradients)
        finite.check()  # names the first step whose weights went non-finite, if there is one
        if str(err).startswith("unlearning method"):
            raise
        raise FloatingPointError(f"unlearning method {name!r} stopped after optimiser step "
                                 f"{finite.steps}: {err}") from err
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0 - watch.seconds
    with torch.random.fork_rng(devices=[]):  # the checks draw nothing, but leave RNGs as they were
        finite.final(splits, dev)
    watch.final()
    history, extra = out if isinstance(out, tuple) else (out, {})
    history = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history or []))
    info = {"method": name, "profile": profile_name(profile), "seed": seed, "device": str(dev),
            "hparams": resolved, "seconds": seconds, **(extra or {})}
    return UnlearnResult(work, history, info)
