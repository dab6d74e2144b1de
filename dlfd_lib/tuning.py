"""An equal tuning budget for every method: Optuna (seeded TPE) on validation data of tuning seeds.

Each method declares a search space beside its defaults (``SEARCH_SPACE`` in its own file,
:func:`dlfd_lib.unlearn.method_search_space`). :func:`tune_method` runs the **same number of
trials** for every method, DLFD included, each trial running the method from the original model
of every *tuning* seed (seeds the evaluation never uses) and scoring it with
:func:`validation_objective`.

**The objective** (maximised), from validation data only::

    score = ½ · val_acc + ½ · (1 − 2 · |MIA_val − MIA_val(retrained)|)

* ``val_acc``: accuracy on the *tune* half of the validation people
  (:func:`dlfd_lib.data.view.tuning_validation`; no method ever sees these images);
* ``MIA_val``: the paper's balanced loss attack, forget images vs those validation images,
  averaged over ``n_mia`` balancing/fold seeds (the attack's own noise is ~0.02 at these sizes);
* ``MIA_val(retrained)``: the same attack on the retrained model of the same seed.

Why this one: it has NoMUS's equal weighting of utility and forgetting, so the tuner optimises
what the paper claims to improve, but its forgetting term is the distance to the *retrained*
model rather than to 0.5 (NoMUS rewards MIA → 0.5 even where the retrained model sits at 0.55),
and it reads no test image: the test split is read once, by the final evaluation on other seeds.

**Resumable**: every study lives in an Optuna ``JournalStorage`` file (``<dir>/<method>.journal``,
no database server), and every (setting, seed) evaluation is kept in a JSON store, so a run cut
off mid-way continues with the trials it has. Optuna does not store the sampler's random state,
so a resumed study's sampler is seeded with ``seed + completed trials``: repeatable for the same
cut point, not identical to an uninterrupted run. The chosen setting is written beside the study
as ``<dir>/<method>.json``.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .attacks import mia
from .data.view import tuning_validation
from .inference import accuracy, predict
from .store import NUMBERS_VERSION, JsonStore
from .utils import save_json, to_jsonable

__all__ = ["validation_objective", "objective_score", "suggest", "tune_method", "load_tuned",
           "JsonStore", "OBJECTIVE"]

#: A one-line statement of the objective, saved with every tuning result.
OBJECTIVE = ("maximise 0.5*val_acc + 0.5*(1 - 2*|MIA_val - MIA_val(retrained)|), on the tune half "
             "of the validation people (forget vs validation for the MIA), mean over tuning seeds")


def study_name(method: str, space: dict) -> str:
    """The Optuna study of ``method`` in its journal: named by the numbers version and a digest of
    the search space, so that trials of an older space or of number-changing code are never
    counted towards (or mixed into) a new study."""
    digest = hashlib.sha1(json.dumps(to_jsonable(space), sort_keys=True).encode()).hexdigest()[:10]
    return f"{method}-v{NUMBERS_VERSION}-{digest}"


def objective_score(val_acc: float, mia_gap: float) -> float:
    """½·val_acc + ½·(1 − 2·mia_gap) (see the module docstring)."""
    return 0.5 * float(val_acc) + 0.5 * (1.0 - 2.0 * float(mia_gap))


def _val_numbers(model, splits, device, seed: int, n_mia: int, batch_size: int = 256) -> dict:
    from torch.utils.data import DataLoader
    tune = tuning_validation(splits)
    v = predict(model, DataLoader(tune, batch_size=batch_size, shuffle=False), device, amp=False)
    f = predict(model, splits.loader("forget", batch_size=batch_size), device, amp=False)
    mias = [mia(f["losses"], v["losses"], seed=seed * 1000 + k)["mia"] for k in range(n_mia)]
    return {"val_acc": accuracy(v["logits"], v["labels"]), "mia_val": float(np.mean(mias))}


def validation_objective(model, splits, retrained_mia_val: float, device=None, seed: int = 0,
                         n_mia: int = 3) -> dict:
    """The tuner's numbers for one unlearned model: ``val_acc``, ``mia_val``, ``mia_gap`` (to
    ``retrained_mia_val``) and ``score`` (:func:`objective_score`). Reads forget and the tune
    half of validation, nothing else."""
    out = _val_numbers(model, splits, device, seed, n_mia)
    out["mia_gap"] = abs(out["mia_val"] - float(retrained_mia_val))
    out["score"] = objective_score(out["val_acc"], out["mia_gap"])
    return out


def reference_mia_val(retrained, splits, device=None, seed: int = 0, n_mia: int = 3) -> float:
    """The retrained model's MIA_val (the target of the objective's forgetting term)."""
    return _val_numbers(retrained, splits, device, seed, n_mia)["mia_val"]


def open_study(folder: str | Path, method: str, space: dict):
    """``method``'s Optuna study in ``<folder>/<method>.journal`` (:func:`study_name`), created
    if absent. An existing study is loaded, not re-created, so that resuming appends nothing to
    the journal; a trial left RUNNING by a run that was cut off is marked failed (it does not
    count)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend(str(Path(folder) / f"{method}.journal")))
    name = study_name(method, space)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return study


def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters for one Optuna ``trial`` from a method's declared ``space`` (constants are
    passed through)."""
    out = {}
    for name, spec in space.items():
        if isinstance(spec, tuple) and spec and spec[0] in ("float", "int", "categorical"):
            kind = spec[0]
            if kind == "categorical":
                out[name] = trial.suggest_categorical(name, list(spec[1]))
            elif kind == "float":
                out[name] = trial.suggest_float(name, spec[1], spec[2], log=len(spec) == 4)
            else:
                out[name] = trial.suggest_int(name, int(spec[1]), int(spec[2]), log=len(spec) == 4)
        else:
            out[name] = spec
    return out


def _constants(space: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in space.items()
            if not (isinstance(v, tuple) and v and v[0] in ("float", "int", "categorical"))}


def tune_method(method: str, evaluate_setting: Callable[[dict], float], space: dict[str, Any],
                n_trials: int, folder: str | Path, seed: int = 0, meta: dict | None = None) -> dict:
    """Run (or continue) the Optuna study of ``method`` until it has ``n_trials`` finished
    trials, and save the chosen setting as ``<folder>/<method>.json``.

    ``evaluate_setting(hparams) -> score`` runs the method with ``hparams`` on every tuning seed
    and returns the mean objective (the protocol passes one that caches each seed's result);
    an exception of the run (a diverged setting: ``FloatingPointError``) counts as a finished
    trial with score 0, so every method spends the same budget. ``n_trials = 0`` saves the
    declared defaults (``params = {}``) without a study.

    Returns ``dict(method, params, value, n_trials, objective, trials)`` (``trials``: one dict per
    finished trial: number, params, value, state).
    """
    import optuna
    from optuna.trial import TrialState

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result_path = folder / f"{method}.json"
    if n_trials < 0:
        raise ValueError(f"n_trials={n_trials}: give 0 (no tuning: the declared defaults) or more")
    if n_trials == 0:
        out = {"method": method, "params": {}, "value": None, "n_trials": 0,
               "objective": OBJECTIVE, "trials": [], **(meta or {})}
        save_json(out, result_path)
        return out
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(folder, method, space)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if done < n_trials:
        startup = min(10, max(2, n_trials // 2))
        study.sampler = optuna.samplers.TPESampler(seed=int(seed) + done, n_startup_trials=startup)
        consts = _constants(space)

        def objective(trial):
            hp = suggest(trial, space)
            for k, v in consts.items():
                trial.set_user_attr(k, v)
            try:
                value = float(evaluate_setting(hp))
            except FloatingPointError as exc:
                trial.set_user_attr("failed", str(exc))
                value = 0.0
            return value if math.isfinite(value) else 0.0

        while len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < n_trials:
            study.optimize(objective, n_trials=1)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))[:n_trials]
    best = max(complete, key=lambda t: (t.value, -t.number))
    params = {**_constants(space), **best.params}
    out = {"method": method, "params": params, "value": float(best.value), "n_trials": len(complete),
           "objective": OBJECTIVE,
           "trials": [{"number": t.number, "params": t.params, "value": t.value,
                       "failed": t.user_attrs.get("failed")} for t in complete], **(meta or {})}
    save_json(out, result_path)
    return out


def load_tuned(folder: str | Path, methods: Sequence[str] | None = None) -> dict[str, dict]:
    """``{method: params}`` from the ``<method>.json`` files :func:`tune_method` wrote (methods
    without a file are left out)."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(p.read_text())
        if "method" in data and "params" in data and (methods is None or data["method"] in methods):
            out[data["method"]] = data["params"]
    return out
