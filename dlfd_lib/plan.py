"""The verdict protocol as one plan of jobs, each with its inputs, run by an executor.

:func:`build_plan` lists every piece of work of :func:`dlfd_lib.protocol.run_protocol` as a
:class:`Job` – its kind, its parameters, the jobs it needs (``deps``) and the stage it belongs to:

| kind | one job per | needs | writes |
|---|---|---|---|
| ``reference`` | seed × role (original, retrained) | – | the checkpoint; on a tuning seed the tuning objective's target |
| ``reference_eval`` | evaluation seed | both references | the references' evaluation (and collapse) rows |
| ``tune`` | method | the tuning seeds' references | Optuna trials in order (ask/tell), ``tuning/<method>.json`` |
| ``evaluate`` | evaluation seed × method | the seed's references, the method's tuning | the tuned row (+ collapse) and the strength sweep on a front seed |
| ``ablation`` | evaluation seed × DLFD variant | the seed's original, DLFD's tuning | the variant's row |
| ``ulira`` | the first evaluation seed | its references, every tuning | the per-example test table |
| ``variant`` | evaluation seed × label of ``ctx.variants`` | the seed's original | the labelled setting's row (:func:`dlfd_lib.benchmark.run_benchmark`: no tuning, fronts or extras) |

Jobs talk to each other only through files: the result store (:class:`dlfd_lib.store.JsonStore`,
``out_dir/store``), the chosen settings (``out_dir/tuning``) and the checkpoints (``ckpt_dir``). So a
job runs the same anywhere – in this process or on a Ray worker of a cluster that shares the folders
(:mod:`dlfd_lib.executors`) – and every job is *get or compute*: run twice, it computes once.

:func:`execute` drives a plan on an executor: it drops what is finished (a job whose store entries
exist; a reference nothing pending needs), submits each job once its inputs are done, records each
stage's time in ``stages.json`` when its last job ends, reports a failed job (``failures/<job>.json``)
and goes on with every job that does not need it. :func:`collect` then reads the finished entries back
in the protocol's order, for the statistics.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .store import NUMBERS_VERSION, JsonStore, run_provenance
from .utils import save_json

__all__ = ["Job", "PlanContext", "build_plan", "execute", "collect", "tuned_settings", "strength_values",
           "FAULTS_ENV", "REFERENCES", "pending_jobs", "run_job", "read_stages", "failure_summary",
           "method_settings", "seed_refs", "clear_seed_refs", "reference_paths", "SeedRefs"]

REFERENCES = ("original", "retrained")

#: test hook: a JSON file ``{job_id: "raise" | "exit"}``; that job raises (or kills its worker process)
#: after its work and before it returns, on its first attempt only
FAULTS_ENV = "DLFD_PLAN_FAULTS"


@dataclass(frozen=True)
class Job:
    """One piece of work: ``id`` (unique, readable: ``evaluate/0/dlfd``), ``kind`` (a function of
    :data:`_KINDS`), its ``params``, the ids it needs (``deps``) and its ``stage`` (``stages.json``)."""

    id: str
    kind: str
    params: dict
    deps: tuple[str, ...]
    stage: str


@dataclass
class PlanContext:
    """What every job needs besides its parameters; small and picklable, sent with each job."""

    profile: Any            # a dlfd_lib.profiles.Profile
    config: Any             # a dlfd_lib.protocol.ProtocolConfig
    out_dir: str
    dataset: str = "synthetic"
    task: str = "age"
    data_root: Any = None
    data_options: dict = field(default_factory=dict)
    device: str = "cpu"
    ckpt_dir: str = "checkpoints"
    progress: bool = False
    faults: str | None = None
    save_models: bool = False  # also keep each method's tuned model in ckpt_dir, for the notebooks to reuse
    reuse: bool = False        # take a tuned model a notebook (or an earlier run) saved in ckpt_dir
    #: ``{label: {"method": name, "hparams": {...}}}``: evaluate these labelled settings (per evaluation
    #: seed, after the references) instead of tuning and evaluating ``config.methods``
    variants: dict | None = None
    #: the ``variant`` and ``reference_eval`` jobs also return their models, run records and per-sample
    #: losses to the driver (``execute(on_result=)``): :func:`dlfd_lib.benchmark.run_benchmark`'s in-memory
    #: results, for the notebooks' figures
    hand_back: bool = False

    @property
    def methods(self) -> list[str]:
        from .unlearn import available_methods
        return list(self.config.methods) if self.config.methods is not None else available_methods()

    def store(self) -> JsonStore:
        return JsonStore(Path(self.out_dir) / "store", provenance=_provenance(self.device))


# ------------------------------------------------------------------------------------------------
# the plan
def strength_values(method: str, n: int) -> list:
    """``n`` of ``method``'s declared strength values, evenly spaced from weak to strong (all of
    them if it declares fewer; [] for ``n = 0`` or a method without a strength knob)."""
    from .unlearn import method_strength
    knob = method_strength(method)
    if knob is None or n <= 0:
        return []
    values = list(knob[1])
    if n >= len(values):
        return values
    if n == 1:
        return [values[len(values) // 2]]
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))
    return [values[i] for i in idx]


def build_plan(ctx: PlanContext) -> list[Job]:
    """Every job of the protocol, in an order that runs well on one worker (each job after the
    jobs it needs; a seed's work together, so that stages end one after another). With
    ``ctx.variants``: per evaluation seed the references, their evaluation and one ``variant`` job
    per label (no tuning, fronts, collapse, ablations or per-example test)."""
    if ctx.variants is not None:
        return _variant_plan(ctx)
    cfg, methods = ctx.config, ctx.methods
    tuning = cfg.n_trials > 0 or not cfg.tuned_from
    jobs: list[Job] = []

    def refs(seed, roles=REFERENCES):
        return tuple(f"reference/{seed}/{r}" for r in roles)

    tune_seeds = cfg.tuning_seeds if cfg.n_trials > 0 else []
    for seed in tune_seeds:
        jobs += [Job(f"reference/{seed}/{r}", "reference", {"seed": seed, "role": r}, (), f"references seed {seed}")
                 for r in REFERENCES]
    if tuning:
        jobs += [Job(f"tune/{m}", "tune", {"method": m}, tuple(d for s in tune_seeds for d in refs(s)), f"tune {m}")
                 for m in methods]
    tune_dep = (lambda m: (f"tune/{m}",)) if tuning else (lambda m: ())
    for seed in cfg.eval_seeds:
        stage = f"evaluate seed {seed}"
        jobs += [Job(f"reference/{seed}/{r}", "reference", {"seed": seed, "role": r}, (), stage)
                 for r in REFERENCES if f"reference/{seed}/{r}" not in {j.id for j in jobs}]
        jobs.append(Job(f"reference_eval/{seed}", "reference_eval", {"seed": seed}, refs(seed), stage))
        need = refs(seed) if cfg.collapse else refs(seed, ("original",))
        jobs += [Job(f"evaluate/{seed}/{m}", "evaluate", {"seed": seed, "method": m}, need + tune_dep(m), stage)
                 for m in methods]
    if cfg.ablations and "dlfd" in methods:
        from .unlearn.dlfd import ABLATIONS
        for seed in cfg.eval_seeds:
            jobs += [Job(f"ablation/{seed}/{label}", "ablation", {"seed": seed, "label": label},
                         refs(seed, ("original",)) + tune_dep("dlfd"), f"ablations seed {seed}")
                     for label, (_, overrides) in ABLATIONS.items() if overrides]
    if cfg.ulira_k > 0:
        seed = cfg.eval_seeds[0]
        jobs.append(Job(f"ulira/{seed}", "ulira", {"seed": seed},
                        refs(seed) + tuple(d for m in methods for d in tune_dep(m)), f"per-example test seed {seed}"))
    return jobs


def _variant_plan(ctx: PlanContext) -> list[Job]:
    jobs: list[Job] = []
    for seed in ctx.config.eval_seeds:
        stage, refs = f"evaluate seed {seed}", tuple(f"reference/{seed}/{r}" for r in REFERENCES)
        jobs += [Job(f"reference/{seed}/{r}", "reference", {"seed": seed, "role": r}, (), stage) for r in REFERENCES]
        jobs.append(Job(f"reference_eval/{seed}", "reference_eval", {"seed": seed}, refs, stage))
        jobs += [Job(f"variant/{seed}/{label}", "variant", {"seed": seed, "label": label}, refs[:1], stage)
                 for label in ctx.variants]
    return jobs


def tuned_settings(ctx: PlanContext) -> dict[str, dict]:
    """``{method: chosen hyperparameters}``: the tuning's (``out_dir/tuning``), or with
    ``n_trials = 0`` and ``tuned_from`` that folder's, the declared defaults (``{}``) elsewhere."""
    from .tuning import load_tuned
    cfg = ctx.config
    if cfg.n_trials == 0 and cfg.tuned_from:
        found = {**{m: {} for m in ctx.methods}, **load_tuned(cfg.tuned_from, ctx.methods)}
    else:
        found = load_tuned(Path(ctx.out_dir) / "tuning", ctx.methods)
    return {m: found[m] for m in ctx.methods if m in found}  # in the order of the methods


# ------------------------------------------------------------------------------------------------
# one seed's data and reference models, kept per process (a worker reuses them from job to job)
class SeedRefs:
    """One seed's data, the names of its reference checkpoints (which key the store entries, and
    follow from the data, the recipe and the seed alone), and its reference models and their
    features, trained or loaded only when first asked for."""

    def __init__(self, ctx: PlanContext, seed: int):
        from .data import load_splits
        from .train import TrainConfig, checkpoint_path
        self.ctx, self.seed = ctx, seed
        self.splits = load_splits(ctx.dataset, task=ctx.task, data_root=ctx.data_root, profile=ctx.profile,
                                  seed=seed, **(ctx.data_options or {}))
        self.train_cfg = TrainConfig.from_profile(ctx.profile)
        self.paths = {r: checkpoint_path(ctx.ckpt_dir, self.splits, r, self.train_cfg, seed, ctx.device)[0]
                      for r in REFERENCES}
        self.names = {r: p.name for r, p in self.paths.items()}
        _PATHS[_seed_key(ctx, seed)] = self.paths
        self._models: dict = {}
        self.metas: dict = {}
        self._features: dict = {}

    def model(self, role: str):
        if role not in self._models:
            from .train import train_or_load
            self._models[role], self.metas[role] = train_or_load(
                role, self.splits, self.train_cfg, seed=self.seed, device=self.ctx.device,
                ckpt_dir=self.ctx.ckpt_dir, progress=self.ctx.progress)
            if Path(self.metas[role]["path"]).name != self.names[role]:  # the store's keys would not name it
                raise RuntimeError(f"reference checkpoint {self.metas[role]['path']} differs from the expected "
                                   f"{self.names[role]}")
        return self._models[role]

    def features(self, role: str):
        if role not in self._features:
            from .inference import extract_all
            from .utils import resolve_device
            self._features[role] = extract_all(self.model(role), self.splits, device=resolve_device(self.ctx.device))
        return self._features[role]


_SEEDS: OrderedDict = OrderedDict()
_PATHS: dict = {}  # every seed's reference checkpoint paths met in this process (small: kept for all seeds)
_PROVENANCE: dict = {}


def clear_seed_refs() -> None:
    """Forget this process's :class:`SeedRefs` (data, reference models, features) and reference
    paths: the next job loads them again from the data and the checkpoint folder."""
    _SEEDS.clear()
    _PATHS.clear()


def _seed_key(ctx: PlanContext, seed: int) -> str:
    return json.dumps([ctx.profile.name, ctx.profile.as_dict(), ctx.dataset, ctx.task, str(ctx.data_root),
                       ctx.data_options, ctx.device, str(ctx.ckpt_dir), seed], sort_keys=True, default=str)


def reference_paths(ctx: PlanContext, seed: int) -> dict[str, Path]:
    """``{role: checkpoint path}`` of the seed's references (their names key the store entries):
    remembered for every seed, so that checking and collecting the store loads a seed's data once
    more at most, not once per look (:func:`seed_refs` keeps only the latest seeds' data)."""
    key = _seed_key(ctx, seed)
    if key not in _PATHS:
        seed_refs(ctx, seed)
    return _PATHS[key]


def _ref_names(ctx: PlanContext, seed: int) -> dict[str, str]:
    return {role: p.name for role, p in reference_paths(ctx, seed).items()}


def seed_refs(ctx: PlanContext, seed: int, keep: int = 2) -> SeedRefs:
    """The process's :class:`SeedRefs` of ``seed`` under ``ctx`` (the ``keep`` latest are kept)."""
    key = _seed_key(ctx, seed)
    if key not in _SEEDS:
        _SEEDS[key] = SeedRefs(ctx, seed)
        while len(_SEEDS) > keep:
            _SEEDS.popitem(last=False)
    _SEEDS.move_to_end(key)
    return _SEEDS[key]


def _provenance(device: str) -> dict:
    """This process's provenance (cached); a driver without the jobs' GPU describes its CPU."""
    if device not in _PROVENANCE:
        import torch
        here = device if torch.device(device).type != "cuda" or torch.cuda.is_available() else "cpu"
        _PROVENANCE[device] = {**run_provenance(here), "device": str(device)}
    return _PROVENANCE[device]


# ------------------------------------------------------------------------------------------------
# store keys (one function each, shared by the jobs, the check for finished work and collect)
def _target_key(cfg, seed, names):
    return {"numbers": NUMBERS_VERSION, "stage": "reference_mia_val", "seed": seed, "retrained": names["retrained"],
            "n_mia": cfg.n_mia}


def _ref_keys(cfg, seed, names, role):
    ev = {"numbers": NUMBERS_VERSION, "stage": "eval", "model": role, "seed": seed, "checkpoint": names[role],
          "mia_boot": cfg.mia_boot, "attacks": cfg.attacks}
    col = {"numbers": NUMBERS_VERSION, "stage": "collapse", "model": role, "seed": seed, "checkpoint": names[role]}
    return (ev, f"eval-{role}-"), (col, f"collapse-{role}-")


def _method_keys(cfg, method, seed, resolved, names):
    ev = {"numbers": NUMBERS_VERSION, "stage": "eval", "method": method, "seed": seed, "hparams": resolved,
          "original": names["original"], "mia_boot": cfg.mia_boot, "attacks": cfg.attacks}
    col = {"numbers": NUMBERS_VERSION, "stage": "collapse", "method": method, "seed": seed, "hparams": resolved,
           "original": names["original"]}
    return (ev, f"eval-{method}-"), (col, f"collapse-{method}-")


def _ablation_key(cfg, label, seed, resolved, names):
    return ({"numbers": NUMBERS_VERSION, "stage": "ablation", "label": label, "seed": seed, "hparams": resolved,
             "original": names["original"], "mia_boot": cfg.mia_boot, "attacks": cfg.attacks}, "ablation-")


def _ulira_key(cfg, seed, names, hps):
    return ({"numbers": NUMBERS_VERSION, "stage": "ulira", "seed": seed, "k": cfg.ulira_k,
             "original": names["original"], "retrained": names["retrained"], "hparams": hps}, "ulira-")


def _resolved(ctx, method, hp) -> dict:
    from .unlearn import method_defaults
    return {**method_defaults(method, ctx.profile), **hp}


def method_settings(ctx: PlanContext, method: str, seed: int, tuned: dict) -> list[tuple[str, Any, dict]]:
    """``[(kind, strength, hparams)]`` of ``method`` on ``seed``: its tuned setting, then on a front
    seed its strength sweep (``fixed`` applied to each)."""
    from .unlearn import method_strength
    cfg = ctx.config
    settings = [("tuned", None, tuned[method])]
    knob = method_strength(method)
    swept = ((cfg.front_methods is None or method in cfg.front_methods) and
             (cfg.n_front_seeds is None or cfg.eval_seeds.index(seed) < cfg.n_front_seeds))
    for v in strength_values(method, cfg.n_strengths if swept else 0):
        settings.append(("sweep", v, {**tuned[method], knob[0]: v}))
    return [(kind, v, {**hp, **cfg.fixed.get(method, {})}) for kind, v, hp in settings]


def _variant_key(ctx, seed, label, names):
    """A variant's entry: the key of its method's row at the same resolved setting, and its label."""
    v = ctx.variants[label]
    key, prefix = _method_keys(ctx.config, v["method"], seed, _resolved(ctx, v["method"], v.get("hparams", {})), names)[0]
    return {**key, "label": label}, prefix


def _ablation_hparams(ctx, label, tuned) -> dict:
    from .unlearn.dlfd import ABLATIONS
    return {**tuned["dlfd"], **ctx.config.fixed.get("dlfd", {}), **ABLATIONS[label][1]}


def _job_keys(job: Job, ctx: PlanContext, tuned: dict) -> list[tuple[dict, str]]:
    """The store entries a finished ``job`` has written ([] for reference and tune jobs)."""
    cfg, p = ctx.config, job.params
    if job.kind in ("reference", "tune"):
        return []
    names = _ref_names(ctx, p["seed"])
    if job.kind == "reference_eval":
        return [k for role in REFERENCES for k in _ref_keys(cfg, p["seed"], names, role)[:1 + cfg.collapse]]
    if job.kind == "evaluate":
        keys = []
        for kind, _, hp in method_settings(ctx, p["method"], p["seed"], tuned):
            ev, col = _method_keys(cfg, p["method"], p["seed"], _resolved(ctx, p["method"], hp), names)
            keys += [ev, col] if cfg.collapse and kind == "tuned" else [ev]
        return keys
    if job.kind == "variant":
        return [_variant_key(ctx, p["seed"], p["label"], names)]
    if job.kind == "ablation":
        return [_ablation_key(cfg, p["label"], p["seed"], _resolved(ctx, "dlfd", _ablation_hparams(ctx, p["label"], tuned)), names)]
    return [_ulira_key(cfg, p["seed"], names, _ulira_hparams(ctx, tuned))]


def _ulira_hparams(ctx, tuned) -> dict:
    return {m: _resolved(ctx, m, {**tuned[m], **ctx.config.fixed.get(m, {})}) for m in ctx.methods}


# ------------------------------------------------------------------------------------------------
# the jobs
def run_job(job_id: str, kind: str, params: dict, ctx: PlanContext) -> dict:
    """Run one job (get or compute); returns ``dict(seconds, computed)`` (whether it wrote anything)."""
    t0 = time.perf_counter()
    got = _KINDS[kind](ctx, **params)
    computed, outputs = got if isinstance(got, tuple) else (got, None)
    _maybe_fault(ctx, job_id)
    out = {"seconds": time.perf_counter() - t0, "computed": bool(computed)}
    return {**out, "outputs": outputs} if outputs is not None else out


def _reference_job(ctx, seed, role) -> bool:
    r = seed_refs(ctx, seed)
    existed = r.paths[role].is_file()
    model = r.model(role)
    if role == "retrained" and seed in ctx.config.tuning_seeds and ctx.config.n_trials > 0:
        from .tuning import reference_mia_val
        store, key = ctx.store(), _target_key(ctx.config, seed, r.names)
        if store.get(key) is None:
            store.put(key, reference_mia_val(model, r.splits, ctx.device, seed, ctx.config.n_mia))
            return True
    return not existed


def _evaluate_row(model, splits, seed: int, device, mia_boot: int, attacks: bool, losses_out: dict | None = None) -> dict:
    """The evaluation's row (``losses_out``, where given, receives the per-sample losses)."""
    from .metrics import evaluate
    from .stats import mia_sampling_sd
    res = evaluate(model, splits, device=device, seed=seed, return_losses=True, attacks=attacks)
    losses = res.pop("losses")
    res["mia_sampling_sd"] = (mia_sampling_sd(losses["forget"], losses["test"], n_boot=mia_boot, seed=seed)
                              if mia_boot >= 2 else float("nan"))
    if losses_out is not None:
        losses_out.update(losses)
    return res


def _collapse_row(features: dict, refs: SeedRefs) -> dict:
    """The correlation-collapse measures of one model's features, against the seed's retrained and
    original models' features."""
    from .collapse import collapse_measures
    r = collapse_measures(None, refs.splits, reference=refs.features("retrained"), original=refs.features("original"),
                          features=features, seed=refs.seed)
    return {k: v for k, v in r.items() if k != "notes"}


def _reference_eval_job(ctx, seed):
    cfg, r, store, computed = ctx.config, seed_refs(ctx, seed), ctx.store(), False
    handed = {"seed": seed, "splits": r.splits, "models": {}, "losses": {}} if ctx.hand_back else None
    for role in REFERENCES:
        (ev, ev_prefix), (col, col_prefix) = _ref_keys(cfg, seed, r.names, role)
        if store.get(ev, prefix=ev_prefix) is None or handed is not None:
            losses = handed["losses"].setdefault(role, {}) if handed is not None else None
            row = _evaluate_row(r.model(role), r.splits, seed, ctx.device, cfg.mia_boot, cfg.attacks, losses)
            store.put(ev, {**row, "seconds": r.metas[role].get("train_seconds", float("nan"))}, prefix=ev_prefix)
            computed = True
        if cfg.collapse and store.get(col, prefix=col_prefix) is None:
            store.put(col, _collapse_row(r.features(role), r), prefix=col_prefix)
            computed = True
        if handed is not None:
            handed["models"][role] = r.model(role)
    return (computed, handed) if handed is not None else computed


def _variant_job(ctx, seed, label):
    """One labelled setting (``ctx.variants``) from the seed's original, evaluated; with
    ``ctx.hand_back`` evaluated even when its entry exists, and returned with its run."""
    cfg, r, store = ctx.config, seed_refs(ctx, seed), ctx.store()
    key, prefix = _variant_key(ctx, seed, label, r.names)
    if store.get(key, prefix=prefix) is not None and not ctx.hand_back:
        return False
    v = ctx.variants[label]
    model, info = _unlearned(ctx, r, v["method"], v.get("hparams", {}), reuse=ctx.reuse, save=ctx.save_models,
                             label=label, progress=ctx.progress)
    history = info.pop("history")
    losses: dict = {}
    row = _evaluate_row(model, r.splits, seed, ctx.device, cfg.mia_boot, cfg.attacks, losses)
    store.put(key, {**row, "seconds": info["seconds"]}, prefix=prefix)
    if not ctx.hand_back:
        return True
    return True, {"seed": seed, "label": label, "model": model, "info": info, "history": history, "losses": losses}


def _evaluate_job(ctx, seed, method) -> bool:
    cfg, r, store, computed = ctx.config, seed_refs(ctx, seed), ctx.store(), False
    tuned = tuned_settings(ctx)
    for kind, _, hp in method_settings(ctx, method, seed, tuned):
        (ev, ev_prefix), (col, col_prefix) = _method_keys(cfg, method, seed, _resolved(ctx, method, hp), r.names)
        measure = cfg.collapse and kind == "tuned"
        row, crow = store.get(ev, prefix=ev_prefix), store.get(col, prefix=col_prefix) if measure else None
        if row is not None and (crow is not None or not measure):
            continue
        tuned_kind = kind == "tuned"  # only a method's tuned model is kept for (and taken from) the notebooks
        model, info = _unlearned(ctx, r, method, hp, reuse=ctx.reuse and tuned_kind, save=ctx.save_models and tuned_kind)
        if row is None:
            row = _evaluate_row(model, r.splits, seed, ctx.device, cfg.mia_boot, cfg.attacks)
            store.put(ev, {**row, "seconds": info["seconds"]}, prefix=ev_prefix)
        if measure and crow is None:
            from .inference import extract_all
            from .utils import resolve_device
            feats = extract_all(model, r.splits, device=resolve_device(ctx.device))
            store.put(col, _collapse_row(feats, r), prefix=col_prefix)
        computed = True
    return computed


def _unlearned(ctx, r: SeedRefs, method: str, hp: dict, reuse: bool = False, save: bool = False,
               label: str | None = None, progress: bool = False):
    """``(model, info)`` of ``method`` at ``hp`` from the seed's original (``info`` with its
    ``seconds``, ``history`` and ``reused``): with ``reuse`` the model saved in ``ckpt_dir`` for the
    same original, data, seed and resolved setting, else unlearned now (and kept there with
    ``save``, as the notebooks keep theirs; :func:`dlfd_lib.unlearned.unlearned_model`)."""
    from .unlearned import unlearned_model
    return unlearned_model(method, r.model("original"), r.paths["original"], r.splits, ctx.profile, r.seed,
                           device=ctx.device, ckpt_dir=ctx.ckpt_dir, hparams=hp, label=label, progress=progress,
                           force=not reuse, save=save)


def _ablation_job(ctx, seed, label) -> bool:
    from .unlearn import unlearn
    cfg, r, store = ctx.config, seed_refs(ctx, seed), ctx.store()
    hp = _ablation_hparams(ctx, label, tuned_settings(ctx))
    key, prefix = _ablation_key(cfg, label, seed, _resolved(ctx, "dlfd", hp), r.names)
    if store.get(key, prefix=prefix) is not None:
        return False
    res = unlearn("dlfd", r.model("original"), r.splits, profile=ctx.profile, device=ctx.device, seed=seed,
                  progress=False, **hp)
    row = _evaluate_row(res.model, r.splits, seed, ctx.device, cfg.mia_boot, cfg.attacks)
    store.put(key, {**row, "seconds": res.info["seconds"], "selection_rule": res.info["selection_rule"]},
              prefix=prefix)
    return True


def _ulira_job(ctx, seed) -> bool:
    from .train import TrainConfig
    from .ulira import train_references as ulira_references, ulira_many, ulira_table
    from .unlearn import unlearn
    from .utils import resolve_device
    cfg, r, store, tuned = ctx.config, seed_refs(ctx, seed), ctx.store(), tuned_settings(ctx)
    key, prefix = _ulira_key(cfg, seed, r.names, _ulira_hparams(ctx, tuned))
    if store.get(key, prefix=prefix) is not None:
        return False
    ref_models = ulira_references(r.splits, TrainConfig.from_profile(ctx.profile), cfg.ulira_k,
                                  device=resolve_device(ctx.device), ckpt_dir=ctx.ckpt_dir, progress=False)
    targets = {role: r.model(role) for role in REFERENCES}
    for m in ctx.methods:
        targets[m] = unlearn(m, r.model("original"), r.splits, profile=ctx.profile, device=ctx.device, seed=seed,
                             progress=False, **{**tuned[m], **cfg.fixed.get(m, {})}).model
    store.put(key, ulira_table(ulira_many(targets, r.splits, ref_models)).reset_index().to_dict("records"),
              prefix=prefix)
    return True


def _tune_job(ctx, method) -> bool:
    """The method's Optuna study, continued until it has ``n_trials`` finished trials (in trial
    order; each trial's run on each tuning seed is cached in the store)."""
    from .tuning import tune_method, validation_objective
    from .unlearn import method_search_space, unlearn
    cfg, store = ctx.config, ctx.store()
    space, computed = method_search_space(method), []

    def evaluate_setting(hp):
        hp, scores = {**hp, **cfg.fixed.get(method, {})}, []
        for seed in cfg.tuning_seeds:
            r = seed_refs(ctx, seed)
            key = {"numbers": NUMBERS_VERSION, "stage": "tune", "method": method, "seed": seed,
                   "hparams": _resolved(ctx, method, hp), "original": r.names["original"], "n_mia": cfg.n_mia}
            val = store.get(key, prefix=f"tune-{method}-")
            if val is None:
                res = unlearn(method, r.model("original"), r.splits, profile=ctx.profile, device=ctx.device,
                              seed=seed, progress=False, **hp)
                val = validation_objective(res.model, r.splits, store.get(_target_key(cfg, seed, r.names)),
                                           ctx.device, seed, cfg.n_mia)
                store.put(key, {**val, "seconds": res.info["seconds"]}, prefix=f"tune-{method}-")
                computed.append(key)
            scores.append(val["score"])
        return float(np.mean(scores))

    tune_method(method, evaluate_setting, space, cfg.n_trials if space else 0, Path(ctx.out_dir) / "tuning",
                seed=cfg.tuning_seeds[0] if cfg.tuning_seeds else 0,
                meta={"profile": ctx.profile.name, "tuning_seeds": cfg.tuning_seeds})
    return bool(computed)


_KINDS = {"reference": _reference_job, "reference_eval": _reference_eval_job, "tune": _tune_job,
          "evaluate": _evaluate_job, "ablation": _ablation_job, "ulira": _ulira_job, "variant": _variant_job}


def _maybe_fault(ctx, job_id):
    """The test hook (:data:`FAULTS_ENV`): fail this job at its end, on its first attempt only."""
    if not ctx.faults:
        return
    action = json.loads(Path(ctx.faults).read_text()).get(job_id)
    if action is None:
        return
    marker = Path(f"{ctx.faults}.{job_id.replace('/', '_')}.fired")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # fired once already
    if action == "exit":
        os._exit(17)  # the worker dies mid-job, as if killed
    raise RuntimeError(f"fault injected into job {job_id} ({FAULTS_ENV})")


# ------------------------------------------------------------------------------------------------
# what is finished
def _tune_done(ctx, method) -> bool:
    from .unlearn import method_search_space
    path = Path(ctx.out_dir) / "tuning" / f"{method}.json"
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    want = ctx.config.n_trials if method_search_space(method) else 0
    return (data.get("n_trials") == want and data.get("tuning_seeds") == list(ctx.config.tuning_seeds)
            and data.get("profile") == ctx.profile.name)


def pending_jobs(jobs: list[Job], ctx: PlanContext) -> set[str]:
    """The ids of the jobs still to run: a tune job without its chosen setting; a job after a
    pending tune job, or with a store entry missing; a reference that a pending job needs and
    whose checkpoint (or, on a tuning seed, the tuning target) is missing."""
    store, by_id = ctx.store(), {j.id: j for j in jobs}
    todo = {j.id for j in jobs if j.kind == "tune" and not _tune_done(ctx, j.params["method"])}
    tuned = tuned_settings(ctx)  # the finished tunings (a job after a pending one is pending anyway)
    for j in jobs:
        if j.kind in ("reference", "tune"):
            continue
        if any(d in todo for d in j.deps) or any(store.get(k, prefix=p) is None for k, p in _job_keys(j, ctx, tuned)):
            todo.add(j.id)
    needed = {d for i in todo for d in by_id[i].deps if by_id[d].kind == "reference"}
    for i in needed:
        p = by_id[i].params
        paths = reference_paths(ctx, p["seed"])
        target = (p["role"] == "retrained" and p["seed"] in ctx.config.tuning_seeds and ctx.config.n_trials > 0
                  and store.get(_target_key(ctx.config, p["seed"], _ref_names(ctx, p["seed"]))) is None)
        if target or not paths[p["role"]].is_file():
            todo.add(i)
    return todo


# ------------------------------------------------------------------------------------------------
# the driver
def execute(jobs: list[Job], ctx: PlanContext, executor, log=print, on_stage=None, on_result=None) -> dict:
    """Run the pending jobs of ``jobs`` on ``executor`` (at most its ``workers`` at a time, in plan
    order as their inputs finish). Returns ``dict(ran, failed, blocked)``: ``failed`` ``{job:
    traceback}`` (also in ``failures/<job>.json``), ``blocked`` the jobs not run because one they
    need failed. ``on_stage(name)`` is called when the last job of a stage ends, ``on_result(job_id,
    outputs)`` when a job hands something back (``ctx.hand_back``), before its stage's ``on_stage``."""
    todo = [j for j in jobs if j.id in pending_jobs(jobs, ctx)]
    for old in (Path(ctx.out_dir) / "failures").glob("*.json"):  # a job that fails again reports again
        old.unlink()
    state = _RunState(ctx, todo, log, on_stage, on_result)
    log(f"plan: {len(jobs)} jobs, {len(todo)} to run ({dict(Counter(j.kind for j in todo))}) on {executor.name}")
    while todo or executor.pending():
        for job in list(todo):
            if executor.pending() >= executor.workers:
                break
            if any(d in state.failed or d in state.blocked for d in job.deps):
                todo.remove(job)
                state.block(job)
            elif all(d not in state.waiting for d in job.deps):
                todo.remove(job)
                state.started(job)
                executor.submit(job.id, run_job, (job.id, job.kind, job.params, ctx), gpu=_on_gpu(ctx.device))
        if not executor.pending():
            if todo:  # nothing can start: every remaining job waits on a failed one
                for job in list(todo):
                    todo.remove(job)
                    state.block(job)
            break
        for job_id, value in executor.wait():
            state.finish(job_id, value)
    return {"ran": state.ran, "failed": state.failed, "blocked": sorted(state.blocked)}


class _RunState:
    """The driver's book-keeping: which jobs are waiting, ran, failed or were blocked, and each
    stage's jobs left and seconds (recorded in ``stages.json`` when its last job ends)."""

    def __init__(self, ctx, todo, log, on_stage, on_result=None):
        self.out, self.log, self.on_stage, self.on_result = Path(ctx.out_dir), log, on_stage, on_result
        self.jobs = {j.id: j for j in todo}
        self.waiting = set(self.jobs)
        self.left = Counter(j.stage for j in todo)
        self.seconds, self.computed, self.start, self.broken = Counter(), set(), {}, set()
        self.ran, self.failed, self.blocked = [], {}, set()
        self.provenance = _provenance(ctx.device)

    def started(self, job):
        self.start.setdefault(job.stage, time.perf_counter())

    def block(self, job):
        self.broken.add(job.stage)
        self.blocked.add(job.id)
        self.waiting.discard(job.id)
        self._stage_step(job.stage)

    def finish(self, job_id, value):
        from .executors import Failure
        job = self.jobs[job_id]
        self.waiting.discard(job_id)
        failure_file = self.out / "failures" / f"{job_id.replace('/', '_')}.json"
        if isinstance(value, Failure):
            self.failed[job_id] = value.text
            self.broken.add(job.stage)
            save_json({"job": job_id, "kind": job.kind, "params": job.params, "traceback": value.text}, failure_file)
            self.log(f"job {job_id} FAILED (the others go on; traceback in {failure_file})")
        else:
            self.ran.append(job_id)
            self.log(f"done {job_id} ({value['seconds']:.1f} s{'' if value['computed'] else ', nothing to compute'})")
            self.seconds[job.stage] += value["seconds"]
            if value["computed"]:
                self.computed.add(job.stage)
            failure_file.unlink(missing_ok=True)
            if self.on_result is not None and value.get("outputs") is not None:
                self.on_result(job_id, value["outputs"])
        self._stage_step(job.stage)

    def _stage_step(self, stage):
        self.left[stage] -= 1
        if self.left[stage] > 0:
            return
        if stage in self.broken:  # recorded when a later call finishes it
            return
        if stage in self.computed:
            wall = time.perf_counter() - self.start.get(stage, time.perf_counter())
            _record_stage(self.out, stage, wall, self.seconds[stage], self.provenance)
            self.log(f"{stage}: done ({wall:.0f} s wall, {self.seconds[stage]:.0f} s of job time)")
        if self.on_stage is not None:
            self.on_stage(stage)


def _on_gpu(device: str) -> bool:
    import torch
    return torch.device(device).type == "cuda"


def read_stages(out: Path) -> list[dict]:
    path = Path(out) / "stages.json"
    return json.loads(path.read_text()) if path.exists() else []


def _record_stage(out: Path, name: str, seconds: float, job_seconds: float, provenance: dict) -> None:
    """Append one finished stage to ``out/stages.json``: its wall time (first job started to last
    job ended) and the sum of its jobs' times (the same on one worker)."""
    stages = read_stages(out)
    stages.append({"stage": name, "seconds": round(seconds, 2), "job_seconds": round(job_seconds, 2),
                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "commit": (provenance.get("git") or {}).get("commit"), "cpu": provenance.get("cpu"),
                   "precision": provenance.get("precision"), "torch": provenance.get("torch")})
    save_json(stages, out / "stages.json")


# ------------------------------------------------------------------------------------------------
# reading the finished work back
def collect(ctx: PlanContext, tuned: dict) -> dict[str, pd.DataFrame | list]:
    """The finished entries, in the protocol's order: ``rows`` (per evaluation seed the references,
    then each method at its tuned setting), ``sweep`` (every method setting with ``setting``,
    ``knob``, ``strength``), ``collapse``, ``ablations`` (with ``"DLFD (paper)"`` = the tuned DLFD's
    row) and ``ulira``. A missing entry raises, naming it (the plan should have computed it)."""
    from .unlearn import method_strength
    cfg, store = ctx.config, ctx.store()
    out = {"rows": [], "sweep": [], "collapse": [], "ablations": [], "ulira": []}

    def need(key, prefix):
        value = store.get(key, prefix=prefix)
        if value is None:
            raise RuntimeError(f"the store {store.folder} lacks {key}: run the protocol again to compute it")
        return value

    for seed in cfg.eval_seeds:
        names = _ref_names(ctx, seed)
        for role in REFERENCES:
            (ev, evp), (col, colp) = _ref_keys(cfg, seed, names, role)
            out["rows"].append({"seed": seed, "model": role, **need(ev, evp)})
            if cfg.collapse:
                out["collapse"].append({"seed": seed, "model": role, **need(col, colp)})
        for label in ctx.variants or ():
            out["rows"].append({"seed": seed, "model": label, **need(*_variant_key(ctx, seed, label, names))})
        for method in ctx.methods:
            knob = (method_strength(method) or (None,))[0]
            for kind, _, hp in method_settings(ctx, method, seed, tuned):
                resolved = _resolved(ctx, method, hp)
                (ev, evp), (col, colp) = _method_keys(cfg, method, seed, resolved, names)
                entry = {"seed": seed, "model": method, **need(ev, evp)}
                if kind == "tuned":
                    out["rows"].append(entry)
                    if cfg.collapse:
                        out["collapse"].append({"seed": seed, "model": method, **need(col, colp)})
                out["sweep"].append({**entry, "setting": kind, "knob": knob,
                                     "strength": resolved.get(knob) if knob else None})
    _collect_extras(ctx, tuned, need, out)
    return out


def _collect_extras(ctx, tuned, need, out) -> None:
    cfg = ctx.config
    if cfg.ablations and "dlfd" in ctx.methods:
        from .unlearn.dlfd import ABLATIONS
        for seed in cfg.eval_seeds:
            names = _ref_names(ctx, seed)
            for label, (_, overrides) in ABLATIONS.items():
                if not overrides:
                    row = next(r for r in out["rows"] if r["seed"] == seed and r["model"] == "dlfd")
                    out["ablations"].append({**row, "model": label})
                    continue
                hp = _resolved(ctx, "dlfd", _ablation_hparams(ctx, label, tuned))
                out["ablations"].append({"seed": seed, "model": label, **need(*_ablation_key(cfg, label, seed, hp, names))})
    if cfg.ulira_k > 0:
        seed = cfg.eval_seeds[0]
        out["ulira"] = need(*_ulira_key(cfg, seed, _ref_names(ctx, seed), _ulira_hparams(ctx, tuned)))


def failure_summary(outcome: dict, out_dir) -> str:
    """One message for a plan that did not finish: which jobs failed, which they blocked, where the
    tracebacks are, and that the same command continues."""
    failed = ", ".join(outcome["failed"])
    first = next(iter(outcome["failed"].values()), "")
    return (f"{len(outcome['failed'])} job(s) failed ({failed}) and {len(outcome['blocked'])} could not run "
            f"without them; tracebacks in {Path(out_dir) / 'failures'}. Everything else is in the store: fix the "
            f"cause and run the same command again to continue. First traceback:\n{first}")

