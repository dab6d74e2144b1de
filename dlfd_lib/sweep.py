"""``dlfd sweep``: the protocol's plan of jobs at the sizes a notebook takes, on Ray or in this process.

A sweep is the verdict protocol (:mod:`dlfd_lib.plan`) without fronts, statistics, collapse or
ablations: per seed the two reference models, per method (with ``n_trials > 0``) its Optuna study
on the tuning seeds, then per seed and method the model at its tuned setting (or its profile
defaults without tuning) evaluated once – the rows :func:`dlfd_lib.benchmark.run_benchmark` makes,
with the same numbers at the same thread count. The jobs, their files and their faults are the
plan's; :mod:`dlfd_lib.executors` runs them (a local Ray, a cluster at ``address`` or
``$RAY_ADDRESS``, or this process with ``use_ray=False``).

**Files** under ``out_dir``: the protocol's ``store/`` and ``tuning/`` (so ``run_protocol`` and
notebook 03 – ``protocol_dir=<out>`` – read them), ``failures/<job>.json`` (a failed job's traceback,
removed once it succeeds), ``03_benchmark_*_<tag>`` (:func:`dlfd_lib.benchmark.save_benchmark`: what
notebook 03 writes) and ``sweep.json``. Each method's tuned model is kept in ``ckpt_dir``, where the
notebooks find it. A sweep started again runs only what is missing; a results folder refuses a sweep
of other settings.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .executors import RAY_INSTALL_HINT, InProcessExecutor, RayExecutor, RayMissing, start_local_ray
from .plan import FAULTS_ENV

__all__ = ["SweepSpec", "run_sweep", "RayMissing", "RAY_INSTALL_HINT", "FAULTS_ENV", "sweep_tag", "start_local_ray"]


@dataclass
class SweepSpec:
    """What a sweep computes: the parameters the notebooks take.

    ``seeds``: evaluation seeds (a row per seed and model). ``methods``: default all registered.
    ``n_trials``: Optuna trials per method (0: the profile's defaults, as notebook 03 without a
    protocol folder), each run on every one of ``tuning_seeds`` (never evaluated), in trial order
    as the protocol's tuner runs them (the studies of different methods run side by side);
    ``n_mia`` attack seeds in the objective. ``attacks``: the four-attack suite in every row
    (``evaluate(attacks=True)``, as notebook 03).
    """

    profile_name: str
    seeds: list[int]
    methods: list[str] | None = None
    dataset: str = "synthetic"
    task: str = "age"
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    n_trials: int = 0
    tuning_seeds: list[int] = field(default_factory=lambda: [100])
    n_mia: int = 3
    attacks: bool = False

    def __post_init__(self):
        from .unlearn import available_methods
        self.seeds = [int(s) for s in self.seeds]
        self.tuning_seeds = [int(s) for s in self.tuning_seeds]
        if not self.seeds:
            raise ValueError("SweepSpec.seeds is empty: give at least one evaluation seed (--seeds 0 1 2)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"SweepSpec.seeds {self.seeds} repeats a seed")
        self.methods = list(self.methods) if self.methods else available_methods()
        bad = sorted(set(self.methods) - set(available_methods()))
        if bad:
            raise KeyError(f"SweepSpec.methods: unknown method(s) {bad}; registered: {available_methods()}")
        for name in ("n_trials", "n_mia"):
            if getattr(self, name) < 0:
                raise ValueError(f"SweepSpec.{name}={getattr(self, name)}: give 0 or more")
        if self.n_trials > 0:
            if not self.tuning_seeds:
                raise ValueError("SweepSpec: n_trials > 0 needs tuning_seeds (--tuning-seeds 100)")
            overlap = sorted(set(self.tuning_seeds) & set(self.seeds))
            if overlap:
                raise ValueError(f"SweepSpec: seeds {overlap} are both tuning and evaluation seeds; tuning "
                                 f"must never see an evaluation seed (change --tuning-seeds)")

    def context(self, profile) -> dict:
        """What every result of the sweep depends on besides the seed and method: a results
        folder holds one context (its seeds and methods may grow)."""
        from .profiles import get_profile
        return _jsonable({"profile_name": self.profile_name, "profile": get_profile(profile).as_dict(),
                          "dataset": self.dataset, "task": self.task, "data_root": self.data_root,
                          "data_options": self.data_options, "n_trials": self.n_trials,
                          "tuning_seeds": self.tuning_seeds if self.n_trials else [],
                          "n_mia": self.n_mia, "attacks": self.attacks})

    def protocol_config(self):
        """The protocol's config of this sweep: its seeds, methods and trials; no fronts, no
        collapse, no ablations, no attack bootstrap."""
        from .protocol import ProtocolConfig
        return ProtocolConfig(tuning_seeds=self.tuning_seeds if self.n_trials else [], eval_seeds=self.seeds,
                              n_trials=self.n_trials, n_strengths=0, mia_boot=0, n_mia=self.n_mia,
                              methods=self.methods, attacks=self.attacks)


def sweep_tag(spec: SweepSpec) -> str:
    """The tag notebook 03 gives its files for the same dataset, task, profile and seeds."""
    return f"{spec.dataset}-{spec.task}-{spec.profile_name}-seeds{'-'.join(map(str, spec.seeds))}"


def run_sweep(spec: SweepSpec, out_dir: str | Path, profile=None, ckpt_dir: str | Path = "checkpoints",
              device: str = "auto", use_ray: bool = True, address: str | None = None,
              num_cpus: int | None = None, cpus_per_job: int = 1, retries: int = 1,
              object_store_mb: int = 200, ray_temp_dir: str | None = None, runner=None,
              log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run (or continue) ``spec`` (module docstring). ``use_ray=False`` runs the jobs in this
    process; otherwise ``address`` (or ``$RAY_ADDRESS``) joins a Ray cluster, and without one a
    local Ray starts with ``num_cpus`` (default: every core) and ``object_store_mb`` of object
    store; ``runner`` an executor of :mod:`dlfd_lib.executors` instead. ``profile`` (a
    :class:`~dlfd_lib.profiles.Profile`, e.g. an edited copy of ``get_profile(spec.profile_name)``)
    replaces the named profile's sizes; it must carry ``spec.profile_name``.

    Returns ``dict(rows, summary, tuned, failed, blocked, ran, paths, seconds, record)``: ``rows``
    (None unless every job finished) are :func:`dlfd_lib.benchmark.run_benchmark`'s rows for the
    same seeds and methods (at their tuned settings with ``n_trials > 0``); ``failed`` ``{job:
    traceback}``; ``blocked`` the jobs not run because one they need failed; ``ran`` the jobs run.
    """
    from .plan import PlanContext, build_plan, execute
    from .profiles import get_profile
    from .utils import save_json
    log = log or (lambda *a, **k: None)
    t_start = time.perf_counter()
    profile = get_profile(spec.profile_name if profile is None else profile)
    if profile.name != spec.profile_name:
        raise ValueError(f"run_sweep: the profile given is {profile.name!r} but spec.profile_name is "
                         f"{spec.profile_name!r}; pass get_profile({spec.profile_name!r}) (or an edited copy of it)")
    out = Path(out_dir).resolve()
    context = spec.context(profile)
    _check_context(out, context)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "sweep.json").is_file():  # claim the folder for these settings before any job runs
        save_json({"context": context, "complete": False}, out / "sweep.json")
    runner = runner or (RayExecutor(address, num_cpus, cpus_per_job, retries, object_store_mb, ray_temp_dir)
                        if use_ray else InProcessExecutor())
    try:
        faults = os.environ.get(FAULTS_ENV)
        ctx = PlanContext(profile, spec.protocol_config(), str(out), dataset=spec.dataset, task=spec.task,
                          data_root=str(Path(spec.data_root).resolve()) if spec.data_root else None,
                          data_options=spec.data_options, device=runner.device(device),
                          ckpt_dir=str(Path(ckpt_dir).resolve()), faults=str(Path(faults).resolve()) if faults else None,
                          save_models=True, reuse=True)
        log(f"sweep: {len(spec.methods)} method(s) × {len(spec.seeds)} seed(s)"
            f"{f', {spec.n_trials} trials per method on tuning seeds {spec.tuning_seeds}' if spec.n_trials else ''}"
            f" on {runner.name}, device {ctx.device}; results in {out}")
        outcome = execute(build_plan(ctx), ctx, runner, log=log)
        return _finish(spec, ctx, runner, outcome, context, t_start, log)
    finally:
        runner.close()


def _finish(spec, ctx, runner, outcome, context, t_start, log) -> dict:
    """The rows (when every job finished), notebook 03's files and ``sweep.json``."""
    from .benchmark import plan_rows, save_benchmark, summarize
    from .plan import tuned_settings
    from .utils import save_json
    out, rows, summary, paths = Path(ctx.out_dir), None, None, []
    done = not outcome["failed"] and not outcome["blocked"]
    tuned = tuned_settings(ctx) if done else {}
    if done:
        rows = plan_rows(ctx, tuned)
        summary = summarize(rows)
        paths = save_benchmark(rows, summary, out, sweep_tag(spec),
                               extra={"seeds": spec.seeds, "profile": spec.profile_name, "methods": spec.methods,
                                      "tuned": tuned if spec.n_trials else None, "sweep": True})
    seconds = time.perf_counter() - t_start
    record = {"context": context, "seeds": spec.seeds, "methods": spec.methods, "runner": runner.name,
              "device": ctx.device, "ran": outcome["ran"], "failed": sorted(outcome["failed"]),
              "blocked": outcome["blocked"], "tuned": tuned, "seconds": seconds, "complete": done,
              "files": [str(p) for p in paths]}
    save_json(record, out / "sweep.json")
    if done:
        log(f"sweep: complete, {len(outcome['ran'])} job(s) ran ({seconds:.0f} s); rows in {paths[0]}")
    else:
        log(f"sweep: {len(outcome['failed'])} job(s) failed and {len(outcome['blocked'])} were blocked by them "
            f"(tracebacks in {out / 'failures'}); run the same command again to redo only those")
    return {"rows": rows, "summary": summary, "tuned": tuned, "failed": outcome["failed"],
            "blocked": outcome["blocked"], "ran": outcome["ran"], "paths": paths, "seconds": seconds,
            "record": record}


def _check_context(out: Path, context: dict):
    """A results folder holds one sweep's settings: refuse another, naming the fields that differ."""
    path = out / "sweep.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("context")
    except (OSError, ValueError):
        return
    if isinstance(old, dict):
        old = {k: v for k, v in old.items() if k != "trial_batch"}  # folders of the kit's earlier sweep
    if old is None or old == context:
        return
    diff = sorted(k for k in set(old) | set(context) if old.get(k) != context.get(k))
    raise ValueError(f"{out} holds a sweep with other settings ({', '.join(diff)} differ): give another "
                     f"--out, or delete {path} to let this sweep reuse what matches")


def _jsonable(obj):
    from .utils import to_jsonable
    return json.loads(json.dumps(to_jsonable(obj), sort_keys=True))
