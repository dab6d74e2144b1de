"""``dlfd sweep``: seeds × methods × tuning trials as Ray tasks, resumable, with ``run_benchmark``'s rows.

The protocol multiplies the work (``protocol_plan``); one Python process runs it one model at a
time. A sweep cuts the same work into jobs and hands them to `Ray <https://docs.ray.io>`_ (an
existing distributed engine: this module schedules nothing itself beyond "a job starts when its
inputs are done"):

1. **data** – one job per seed draws (or reads) the seed's data, so its cache file is written once;
2. **references** – one job per seed and role (original, retrained) trains or reuses the model
   (:func:`dlfd_lib.train.train_or_load`, the same checkpoints the notebooks use) and, on an
   evaluation seed, evaluates it; on a tuning seed the retrained job also computes the tuning
   objective's target (:func:`dlfd_lib.tuning.reference_mia_val`). Each model is trained once and
   shared by every later job that needs it;
3. **tuning** (``n_trials > 0``) – per method an Optuna study (seeded TPE, journal file), driven
   from here with ask/tell: trials are asked ``trial_batch`` at a time, every (trial, tuning seed)
   unlearning + validation objective is one job, results are told in trial order; the chosen
   setting is written by :func:`dlfd_lib.tuning.tune_method`, in the protocol's format;
4. **rows** – one job per evaluation seed and method: the method's model from that seed's original
   (:func:`dlfd_lib.benchmark.unlearned_model`: saved to, or reused from, ``ckpt_dir``) at its
   tuned setting (or its profile defaults without tuning), evaluated with
   :func:`dlfd_lib.metrics.evaluate` – the row :func:`dlfd_lib.benchmark.run_benchmark` makes.

On CUDA each job takes one GPU; on the CPU a share of the cores (``cpus_per_job``, also its torch
threads). **Files** under ``out_dir``: ``jobs/<job>.json`` (one per finished reference or row job:
its key and result), ``store/`` and ``tuning/`` (the protocol's layout: tuning evaluations, Optuna
journals, ``<method>.json`` chosen settings, so ``run_protocol`` and notebook 03 reuse them),
``failures/<job>.json`` (a failed job's parameters and traceback, removed once it succeeds),
``03_benchmark_*_<tag>`` (:func:`dlfd_lib.benchmark.save_benchmark`: what notebook 03 writes) and
``sweep.json``. Every file is written atomically (temporary file + ``os.replace``) by exactly one
job, so a job cut off leaves nothing half-written: a sweep started again skips every finished job
and redoes the rest. A job that fails is reported and the others go on.

Without Ray the same jobs run one after another in this process (``use_ray=False``, ``dlfd sweep
--no-ray``): the sequential path, with the same files and the same numbers.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .executors import RAY_INSTALL_HINT, Failure as _Failure, InProcessExecutor, RayExecutor, RayMissing, \
    start_local_ray

__all__ = ["SweepSpec", "run_sweep", "RayMissing", "RAY_INSTALL_HINT", "FAULTS_ENV", "sweep_tag", "start_local_ray"]

#: test hook: a JSON file ``{job_id: "raise" | "exit"}``; the job raises (or kills its worker
#: process) half-way, after its model is saved and before its row is written, on its first attempt
FAULTS_ENV = "DLFD_SWEEP_FAULTS"

ROLES = ("original", "retrained")


@dataclass
class SweepSpec:
    """What a sweep computes: the parameters the notebooks take.

    ``seeds``: evaluation seeds (a row per seed and model). ``methods``: default all registered.
    ``n_trials``: Optuna trials per method (0: the profile's defaults, as notebook 03 without a
    protocol folder), each run on every one of ``tuning_seeds`` (never evaluated); ``n_mia``
    attack seeds in the objective; ``trial_batch`` trials asked at once per method (the trials
    of a batch run in parallel; the result depends on it, not on the number of workers; 1 gives
    exactly :func:`dlfd_lib.tuning.tune_method`'s trials). ``attacks``: the four-attack suite in
    every row (``evaluate(attacks=True)``, as notebook 03).
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
    trial_batch: int = 4
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
        if set(self.methods) & set(ROLES):
            raise ValueError(f"SweepSpec.methods: {sorted(set(self.methods) & set(ROLES))} are the reference models' names")
        for name in ("n_trials", "n_mia"):
            if getattr(self, name) < 0:
                raise ValueError(f"SweepSpec.{name}={getattr(self, name)}: give 0 or more")
        if self.trial_batch < 1:
            raise ValueError(f"SweepSpec.trial_batch={self.trial_batch}: give 1 or more")
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
                          "n_mia": self.n_mia, "trial_batch": self.trial_batch if self.n_trials else None,
                          "attacks": self.attacks})


def sweep_tag(spec: SweepSpec) -> str:
    """The tag notebook 03 gives its files for the same dataset, task, profile and seeds."""
    return f"{spec.dataset}-{spec.task}-{spec.profile_name}-seeds{'-'.join(map(str, spec.seeds))}"


# ---------------------------------------------------------------------------------------------
# the jobs (run in a Ray worker, or in this process)
def run_job(kind: str, params: dict, ctx: dict, threads: int | None = None) -> dict:
    """Run one job; ``threads``: torch intra-op threads (the CPUs Ray gave the task)."""
    if threads:
        import torch
        torch.set_num_threads(int(threads))
    return _JOBS[kind](ctx, **params)


def _splits(ctx, seed):
    from .data import load_splits
    return load_splits(ctx["dataset"], task=ctx["task"], data_root=ctx["data_root"], profile=ctx["profile"],
                       seed=seed, **(ctx["data_options"] or {}))


def _references(ctx, seed, roles=ROLES):
    """The seed's data and its reference models (of ``roles``), as :func:`reference_models` gives
    them; the reference jobs have trained them, so they are read from ``ckpt_dir``."""
    from .train import TrainConfig, train_or_load
    splits = _splits(ctx, seed)
    cfg = TrainConfig.from_profile(ctx["profile"])
    models, metas = {}, {}
    for role in roles:
        models[role], metas[role] = train_or_load(role, splits, cfg, seed=seed, device=ctx["device"],
                                                  ckpt_dir=ctx["ckpt_dir"], progress=False)
    return splits, models, metas


def _evaluate_row(model, splits, ctx, seed, label, seconds) -> dict:
    from .metrics import evaluate
    res = evaluate(model, splits, device=ctx["device"], seed=seed, attacks=ctx["attacks"])
    return {"seed": seed, "model": label, **res, "seconds": seconds}


def _data_job(ctx, seed):
    splits = _splits(ctx, seed)
    return {"sizes": splits.sizes()}


def _reference_job(ctx, seed, role, job_id, key, evaluate_it, target_n_mia):
    from .train import TrainConfig, train_or_load
    from .store import NUMBERS_VERSION, JsonStore
    from .tuning import reference_mia_val
    splits = _splits(ctx, seed)
    model, meta = train_or_load(role, splits, TrainConfig.from_profile(ctx["profile"]), seed=seed,
                                device=ctx["device"], ckpt_dir=ctx["ckpt_dir"], progress=False)
    result = {"path": meta["path"], "row": None}
    if target_n_mia is not None:  # the tuning objective's target, under the protocol's key
        store = JsonStore(Path(ctx["out_dir"]) / "store")
        tkey = {"numbers": NUMBERS_VERSION, "stage": "reference_mia_val", "seed": seed, "retrained": Path(meta["path"]).name,
                "n_mia": target_n_mia}
        if store.get(tkey) is None:
            store.put(tkey, reference_mia_val(model, splits, ctx["device"], seed, target_n_mia))
    _maybe_fault(ctx, job_id)
    if evaluate_it:
        result["row"] = _evaluate_row(model, splits, ctx, seed, role, meta.get("train_seconds", float("nan")))
    _write_done(ctx, job_id, key, result)
    return result


def _row_job(ctx, seed, label, method, hparams, job_id, key):
    from .benchmark import unlearned_model
    splits, models, metas = _references(ctx, seed, roles=("original",))  # the retrained model is not needed
    model, info = unlearned_model(method, models["original"], metas["original"]["path"], splits,
                                  ctx["profile"], seed, device=ctx["device"], ckpt_dir=ctx["ckpt_dir"],
                                  hparams=hparams, label=label, progress=False)
    _maybe_fault(ctx, job_id)
    result = {"row": _evaluate_row(model, splits, ctx, seed, label, info["seconds"]), "path": info["path"],
              "reused": bool(info.get("reused"))}
    _write_done(ctx, job_id, key, result)
    return result


def _tune_job(ctx, seed, method, hparams, store_key, n_mia, job_id):
    from .store import NUMBERS_VERSION, JsonStore
    from .tuning import validation_objective
    from .unlearn import unlearn
    store = JsonStore(Path(ctx["out_dir"]) / "store")
    val = store.get(store_key, prefix=f"tune-{method}-")
    if val is not None:
        return {"val": val}
    from .train import TrainConfig, checkpoint_path
    splits, models, metas = _references(ctx, seed, roles=("original",))
    retrained, _ = checkpoint_path(ctx["ckpt_dir"], splits, "retrained", TrainConfig.from_profile(ctx["profile"]), seed,
                                   ctx["device"])
    target = store.get({"numbers": NUMBERS_VERSION, "stage": "reference_mia_val", "seed": seed, "retrained": retrained.name, "n_mia": n_mia})
    if target is None:
        raise RuntimeError(f"the tuning target of seed {seed} is missing from {store.folder}: its retrained "
                           f"reference job did not finish; run the sweep again")
    try:
        res = unlearn(method, models["original"], splits, profile=ctx["profile_name"], device=ctx["device"],
                      seed=seed, progress=False, **hparams)
    except FloatingPointError as exc:  # a diverged setting: a finished trial with score 0 (tune_method)
        return {"val": None, "failed": str(exc)}
    val = validation_objective(res.model, splits, target, ctx["device"], seed, n_mia)
    val["seconds"] = res.info["seconds"]
    _maybe_fault(ctx, job_id)
    store.put(store_key, val, prefix=f"tune-{method}-")
    return {"val": val}


_JOBS = {"data": _data_job, "reference": _reference_job, "row": _row_job, "tune": _tune_job}


def _done_path(out_dir, job_id) -> Path:
    return Path(out_dir) / "jobs" / f"{job_id}.json"


def _write_done(ctx, job_id, key, result):
    from .utils import save_json, to_jsonable
    save_json({"job": job_id, "key": _jsonable(key), "result": to_jsonable(result)},  # the row keeps its column order
              _done_path(ctx["out_dir"], job_id))


def _read_done(out_dir, job_id, key):
    """The result of a finished job with this key, else None (missing, cut off, other settings)."""
    path = _done_path(out_dir, job_id)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != _jsonable(key):
        return None
    result = data.get("result", {})
    if result.get("path") and not Path(result["path"]).is_file():
        return None  # its model is gone: redo
    return result


def _maybe_fault(ctx, job_id):
    """The test hook (:data:`FAULTS_ENV`): fail this job half-way on its first attempt."""
    spec = ctx.get("faults")
    if not spec:
        return
    action = json.loads(Path(spec).read_text()).get(job_id)
    if action is None:
        return
    marker = Path(f"{spec}.{job_id}.fired")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # fired once already
    if action == "exit":
        os._exit(17)  # the worker dies mid-job, as if killed
    raise RuntimeError(f"fault injected into job {job_id} ({FAULTS_ENV})")


# ---------------------------------------------------------------------------------------------
# the driver
class _Tuner:
    """One method's Optuna study, asked and told from the driver (the journal is written here
    only); trials of a batch run as parallel jobs."""

    def __init__(self, method, spec: SweepSpec, folder: Path):
        import optuna
        from optuna.trial import TrialState

        from .tuning import open_study
        from .unlearn import method_search_space
        self.method, self.spec, self.folder = method, spec, folder
        self.space = method_search_space(method)
        self.n_trials = spec.n_trials if self.space else 0
        folder.mkdir(parents=True, exist_ok=True)
        self.batch, self.failed, self.finished = [], None, False
        if self.n_trials == 0:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._state = TrialState
        self.study = open_study(folder, method, self.space)  # a RUNNING trial of a cut-off run: not counted
        startup = min(10, max(2, self.n_trials // 2))  # as tune_method
        self.study.sampler = optuna.samplers.TPESampler(seed=int(spec.tuning_seeds[0]) + self.complete(),
                                                        n_startup_trials=startup)

    def complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(self._state.COMPLETE,)))

    def ask(self) -> list[tuple[Any, dict]]:
        """The next batch of trials ``[(trial, hparams)]`` ([] when the study has its trials)."""
        from .tuning import _constants, suggest
        k = min(self.spec.trial_batch, self.n_trials - self.complete()) if self.n_trials else 0
        self.batch = []
        for _ in range(max(0, k)):
            trial = self.study.ask()
            hp = suggest(trial, self.space)
            for name, value in _constants(self.space).items():
                trial.set_user_attr(name, value)
            self.batch.append((trial, hp))
        return self.batch

    def tell(self, scores: dict[int, list], failed: dict[int, str]):
        """Tell the batch in trial order: the mean score over tuning seeds (0 for a diverged run)."""
        import numpy as np
        for trial, _ in self.batch:
            if trial.number in failed:
                trial.set_user_attr("failed", failed[trial.number])
                value = 0.0
            else:
                value = float(np.mean(scores[trial.number]))
            self.study.tell(trial, value if math.isfinite(value) else 0.0)
        self.batch = []

    def abandon(self, reason: str):
        from optuna.trial import TrialState
        for trial, _ in self.batch:
            self.study.tell(trial, state=TrialState.FAIL)
        self.batch, self.failed = [], reason

    def result(self) -> dict:
        """The chosen setting, written by :func:`tune_method` (the study has its trials)."""
        from .tuning import tune_method

        def no_more_trials(hp):
            raise AssertionError("the study should have all its trials")
        return tune_method(self.method, no_more_trials, self.space, self.n_trials, self.folder,
                           seed=self.spec.tuning_seeds[0] if self.spec.tuning_seeds else 0,
                           meta={"profile": self.spec.profile_name, "tuning_seeds": self.spec.tuning_seeds})


def run_sweep(spec: SweepSpec, out_dir: str | Path, profile=None, ckpt_dir: str | Path = "checkpoints",
              device: str = "auto", use_ray: bool = True, address: str | None = None,
              num_cpus: int | None = None, cpus_per_job: int = 1, retries: int = 1,
              object_store_mb: int = 200, ray_temp_dir: str | None = None, runner=None,
              log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run (or continue) ``spec`` (module docstring). ``use_ray=False`` runs the jobs in this
    process; otherwise ``address`` (or ``$RAY_ADDRESS``) joins a Ray cluster, and without one a
    local Ray starts with ``num_cpus`` (default: every core) and ``object_store_mb`` of object
    store. ``profile`` (a :class:`~dlfd_lib.profiles.Profile`, e.g. an edited copy of
    ``get_profile(spec.profile_name)``) replaces the named profile's sizes; it must carry
    ``spec.profile_name``, which picks the methods' defaults.

    Returns ``dict(rows, summary, tuned, failed, blocked, ran, skipped, paths, seconds)``:
    ``rows`` (None unless every job finished) are :func:`dlfd_lib.benchmark.run_benchmark`'s rows
    for the same seeds and methods (at their tuned settings with ``n_trials > 0``); ``failed``
    ``{job: traceback}``; ``blocked`` the jobs not run because one they need failed.
    """
    import pandas as pd

    from .benchmark import save_benchmark, summarize
    from .profiles import get_profile
    from .stats import add_reference_gaps
    from .unlearn import method_defaults
    from .store import NUMBERS_VERSION
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
    if runner is None:
        runner = (RayExecutor(address, num_cpus, cpus_per_job, retries, object_store_mb, ray_temp_dir)
                  if use_ray else InProcessExecutor())
    try:
        dev = runner.device(device)
        faults = os.environ.get(FAULTS_ENV)
        ctx = {"profile": profile, "profile_name": spec.profile_name, "dataset": spec.dataset, "task": spec.task,
               "data_root": str(Path(spec.data_root).resolve()) if spec.data_root else None,
               "data_options": spec.data_options, "device": dev, "ckpt_dir": str(Path(ckpt_dir).resolve()),
               "out_dir": str(out), "attacks": spec.attacks, "faults": str(Path(faults).resolve()) if faults else None}
        tuning = spec.n_trials > 0
        all_seeds = list(dict.fromkeys(spec.seeds + (spec.tuning_seeds if tuning else [])))
        log(f"sweep: {len(spec.methods)} method(s) × {len(spec.seeds)} seed(s)"
            f"{f', {spec.n_trials} trials per method on tuning seeds {spec.tuning_seeds}' if tuning else ''}"
            f" on {runner.name}, device {dev}; results in {out}")

        state: dict[str, str] = {}      # job -> done | failed | blocked | running
        results: dict[str, dict] = {}
        failed: dict[str, str] = {}
        waiting: list[dict] = []        # jobs whose inputs are not all done yet
        counts = {"ran": 0, "skipped": 0}
        tuners: dict[str, _Tuner] = {}
        tuned: dict[str, dict] = {}
        trial_jobs: dict[str, dict] = {}  # tune job -> {"method", "trials": [trial numbers]}
        batch_scores: dict[str, dict] = {}
        submitted: dict[str, tuple] = {}  # job -> (kind, parameters), for the failure report

        def submit(job_id, kind, params):
            submitted[job_id] = (kind, params)
            runner.submit(job_id, run_job, (kind, params, ctx), threads=cpus_per_job, gpu=ctx["device"] == "cuda")

        def add(job_id, kind, params, deps=(), key=None):
            job = {"id": job_id, "kind": kind, "params": params, "deps": list(deps), "key": key}
            if key is not None:
                found = _read_done(out, job_id, key)
                if found is not None:
                    state[job_id], results[job_id] = "done", found
                    counts["skipped"] += 1
                    return
            waiting.append(job)

        def start_ready():
            for job in list(waiting):
                if any(state.get(d) in ("failed", "blocked") for d in job["deps"]):
                    waiting.remove(job)
                    state[job["id"]] = "blocked"
                elif all(state.get(d) == "done" for d in job["deps"]):
                    waiting.remove(job)
                    params = job["params"]() if callable(job["params"]) else job["params"]
                    if params is None:  # settled without a job (e.g. a stored tuning result)
                        state[job["id"]] = "done"
                        continue
                    state[job["id"]] = "running"
                    submit(job["id"], job["kind"], params)

        # ---- data and reference jobs ----------------------------------------------------------
        for seed in all_seeds:
            target = spec.n_mia if tuning and seed in spec.tuning_seeds else None
            for role in ROLES:
                job_id = f"ref-seed{seed}-{role}"
                key = {"seed": seed, "role": role, "evaluate": seed in spec.seeds,
                       "target_n_mia": target if role == "retrained" else None}
                add(job_id, "reference", dict(seed=seed, role=role, job_id=job_id, key=key,
                                              evaluate_it=seed in spec.seeds,
                                              target_n_mia=target if role == "retrained" else None),
                    deps=[f"data-seed{seed}"], key=key)
            if any(state.get(f"ref-seed{seed}-{r}") != "done" for r in ROLES):
                add(f"data-seed{seed}", "data", {"seed": seed})
            else:
                state[f"data-seed{seed}"] = "done"

        # ---- tuning: a study per method -------------------------------------------------------
        def original_name(seed):
            return Path(results[f"ref-seed{seed}-original"]["path"]).name

        def settings_of(method):
            return tuned.get(method, {}) if tuning else {}

        if tuning:
            for method in spec.methods:
                tuners[method] = _Tuner(method, spec, out / "tuning")
                state[f"tuned-{method}"] = "running"

        def advance_tuners():
            ref_ok = all(state.get(f"ref-seed{s}-{r}") == "done" for s in spec.tuning_seeds for r in ROLES)
            ref_bad = any(state.get(f"ref-seed{s}-{r}") in ("failed", "blocked")
                          for s in spec.tuning_seeds for r in ROLES)
            for method, tuner in tuners.items():
                if state[f"tuned-{method}"] != "running" or tuner.batch:
                    continue
                if ref_bad:
                    state[f"tuned-{method}"] = "blocked"
                    continue
                if not ref_ok:
                    continue
                batch = tuner.ask()
                if not batch:
                    tuned[method] = tuner.result()["params"]
                    state[f"tuned-{method}"] = "done"
                    log(f"tuned {method}: {tuned[method]}")
                    continue
                batch_scores[method] = {"scores": {t.number: [] for t, _ in batch}, "failed": {},
                                        "jobs": set()}
                for trial, hp in batch:
                    resolved = {**method_defaults(method, spec.profile_name), **hp}
                    for seed in spec.tuning_seeds:
                        store_key = {"numbers": NUMBERS_VERSION, "stage": "tune", "method": method, "seed": seed, "hparams": resolved,
                                     "original": original_name(seed), "n_mia": spec.n_mia}
                        job_id = f"tune-{method}-seed{seed}-{_digest(resolved)}"
                        trial_jobs.setdefault(job_id, {"method": method, "trials": []})["trials"].append(
                            (trial.number, seed))
                        batch_scores[method]["jobs"].add(job_id)
                        if state.get(job_id) != "running":
                            state[job_id] = "running"
                            submit(job_id, "tune", dict(seed=seed, method=method, hparams=hp,
                                                        store_key=store_key, n_mia=spec.n_mia, job_id=job_id))

        def tune_job_done(job_id, value):
            info = trial_jobs.pop(job_id)
            method = info["method"]
            bs = batch_scores[method]
            bs["jobs"].discard(job_id)
            for number, _seed in info["trials"]:
                if isinstance(value, _Failure):
                    bs["failed_job"] = (job_id, value.text)
                elif value.get("val") is None:
                    bs["failed"][number] = value.get("failed", "diverged")
                else:
                    bs["scores"][number].append(value["val"]["score"])
            if not bs["jobs"]:
                tuner = tuners[method]
                if "failed_job" in bs:
                    tuner.abandon(bs["failed_job"][0])
                    state[f"tuned-{method}"] = "failed"
                    failed[f"tuned-{method}"] = f"tuning job {bs['failed_job'][0]} failed"
                else:
                    tuner.tell(bs["scores"], bs["failed"])
                del batch_scores[method]

        # ---- row jobs ---------------------------------------------------------------------
        for seed in spec.seeds:
            for method in spec.methods:
                job_id = f"row-seed{seed}-{_slug(method)}"
                deps = [f"ref-seed{seed}-original", f"ref-seed{seed}-retrained"] + (
                    [f"tuned-{method}"] if tuning else [])

                def params(seed=seed, method=method, job_id=job_id):
                    hp = settings_of(method)
                    key = {"seed": seed, "model": method, "method": method,
                           "hparams": {**method_defaults(method, spec.profile_name), **hp},
                           "original": original_name(seed)}
                    found = _read_done(out, job_id, key)
                    if found is not None:
                        results[job_id] = found
                        counts["skipped"] += 1
                        return None
                    return dict(seed=seed, label=method, method=method, hparams=hp, job_id=job_id, key=key)
                add(job_id, "row", params, deps=deps)

        # ---- run ------------------------------------------------------------------------------
        while True:
            start_ready()
            advance_tuners()  # may finish a study (its rows become ready) or ask a new batch
            start_ready()
            if not runner.pending():
                break  # all done, or only jobs blocked by a failure are left
            for job_id, value in runner.wait():
                if job_id in trial_jobs:
                    failed_now = isinstance(value, _Failure)
                    state[job_id] = "failed" if failed_now else "done"
                    if failed_now:
                        failed[job_id] = value.text
                        _report_failure(out, job_id, *submitted[job_id], value.text, log)
                    tune_job_done(job_id, value)
                    counts["ran"] += 1
                    continue
                if isinstance(value, _Failure):
                    state[job_id] = "failed"
                    failed[job_id] = value.text
                    _report_failure(out, job_id, *submitted[job_id], value.text, log)
                else:
                    state[job_id], results[job_id] = "done", value
                    _clear_failure(out, job_id)
                    if not job_id.startswith("data-"):
                        counts["ran"] += 1
                        log(f"done {job_id} ({time.perf_counter() - t_start:.0f} s)")
        for job in waiting:
            state[job["id"]] = "blocked"
        blocked = sorted(k for k, v in state.items() if v == "blocked")

        # ---- rows, in run_benchmark's order ------------------------------------------------------
        rows = summary = None
        paths: list[Path] = []
        labels = list(ROLES) + list(spec.methods)
        job_of = {(s, lab): (f"ref-seed{s}-{lab}" if lab in ROLES else f"row-seed{s}-{_slug(lab)}")
                  for s in spec.seeds for lab in labels}
        missing = [j for j in job_of.values() if j not in results]
        if not missing:
            rows = add_reference_gaps(pd.DataFrame([results[job_of[(s, lab)]]["row"]
                                                    for s in spec.seeds for lab in labels]))
            summary = summarize(rows)
            paths = save_benchmark(rows, summary, out, sweep_tag(spec),
                                   extra={"seeds": spec.seeds, "profile": spec.profile_name, "methods": spec.methods,
                                          "tuned": tuned if tuning else None, "sweep": True})
        seconds = time.perf_counter() - t_start
        record = {"context": context, "seeds": spec.seeds, "methods": spec.methods, "runner": runner.name,
                  "device": dev, "ran": counts["ran"], "skipped": counts["skipped"], "failed": sorted(failed),
                  "blocked": blocked, "missing_rows": missing, "tuned": tuned, "seconds": seconds,
                  "complete": not missing, "files": [str(p) for p in paths]}
        save_json(record, out / "sweep.json")
        if missing:
            log(f"sweep: {len(missing)} of {len(job_of)} rows missing ({len(failed)} job(s) failed, "
                f"{len(blocked)} blocked by them; tracebacks in {out / 'failures'}); run the same command "
                f"again to redo only those")
        else:
            log(f"sweep: complete, {counts['ran']} job(s) ran, {counts['skipped']} were done already "
                f"({seconds:.0f} s); rows in {paths[0]}")
        return {"rows": rows, "summary": summary, "tuned": tuned, "failed": failed, "blocked": blocked,
                "ran": counts["ran"], "skipped": counts["skipped"], "paths": paths, "seconds": seconds,
                "record": record}
    finally:
        runner.close()


def _report_failure(out: Path, job_id, kind, params, text, log):
    from .utils import save_json
    path = out / "failures" / f"{job_id}.json"
    shown = {k: v for k, v in params.items() if k in ("seed", "role", "method", "hparams")}
    save_json({"job": job_id, "kind": kind, "params": _jsonable(params), "traceback": text,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, path)
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or [""]
    log(f"FAILED {job_id} {json.dumps(_jsonable(shown))}: {last[0][:300]} (traceback: {path}); "
        f"the other jobs go on")


def _clear_failure(out: Path, job_id):
    p = out / "failures" / f"{job_id}.json"
    if p.exists():
        p.unlink()


def _check_context(out: Path, context: dict):
    """A results folder holds one sweep's settings: refuse another, naming the fields that differ."""
    path = out / "sweep.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("context")
    except (OSError, ValueError):
        return
    if old is None or old == context:
        return
    diff = sorted(k for k in set(old) | set(context) if old.get(k) != context.get(k))
    raise ValueError(f"{out} holds a sweep with other settings ({', '.join(diff)} differ): give another "
                     f"--out, or delete {path} to let this sweep reuse what matches")


def _jsonable(obj):
    from .utils import to_jsonable
    return json.loads(json.dumps(to_jsonable(obj), sort_keys=True))


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(_jsonable(obj), sort_keys=True).encode()).hexdigest()[:10]


def _slug(label: str) -> str:
    from .benchmark import _slug as slug
    return slug(label)
