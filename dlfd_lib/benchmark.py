"""Run unlearning methods against the reference models, over seeds, and summarise.

Used by notebook 03 and ``benchmarks/unlearning_quality.py``: for each seed, build the data,
train (or reuse) the original and retrained models, run every requested method from the
original, and evaluate all of them the same way (:func:`dlfd_lib.metrics.evaluate`).
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .data import load_splits
from .data.splits import content_digest
from .metrics import evaluate
from .model import save_checkpoint
from .profiles import Profile, get_profile, profile_name
from .stats import add_reference_gaps  # abs_mia_gap and Avg. Gap against the same seed's retrained model
from .train import TrainConfig, train_or_load
from .unlearn import available_methods, method_defaults, unlearn
from .utils import resolve_device, to_jsonable

#: metrics summarised over seeds, in table order
SUMMARY_COLUMNS = ["retain_acc", "forget_acc", "test_acc", "mia", "mia_auc", "fs", "abs_mia_gap", "avg_gap",
                   "nomus", "seconds"]
REFERENCES = ("original", "retrained")


def reference_models(profile: Profile | str, seed: int = 0, dataset: str = "synthetic", task: str = "age",
                     data_root=None, device="auto", ckpt_dir: str | Path = "checkpoints", progress: bool = True,
                     data_options: dict | None = None):
    """The data of one seed and its two reference models, as notebook 01 made them
    (``data_options`` go to :func:`dlfd_lib.data.load_splits`, e.g. ``{"split": "identity"}``).

    Returns ``(splits, {"original": model, "retrained": model}, {role: meta})``; the models are
    reused from ``ckpt_dir`` when a checkpoint of the same data, recipe and seed exists
    (:func:`dlfd_lib.train.train_or_load`), otherwise trained and saved. ``profile``: a
    :class:`~dlfd_lib.profiles.Profile` (its ``data`` and ``train`` sections) or its name.
    """
    profile = get_profile(profile)
    splits = load_splits(dataset, task=task, data_root=data_root, profile=profile, seed=seed, **(data_options or {}))
    models, metas = train_references(splits, profile, seed, device, ckpt_dir, progress)
    return splits, models, metas


def train_references(splits, profile: Profile | str, seed: int = 0, device="auto",
                     ckpt_dir: str | Path = "checkpoints", progress: bool = True, force: bool = False):
    """``({role: model}, {role: meta})`` of the two reference models of ``splits`` with the
    profile's ``train`` recipe: reused from ``ckpt_dir`` or trained and saved
    (:func:`dlfd_lib.train.train_or_load`; ``force`` trains again)."""
    cfg = TrainConfig.from_profile(get_profile(profile))
    models, metas = {}, {}
    for role in REFERENCES:
        models[role], metas[role] = train_or_load(role, splits, cfg, seed=seed, device=device,
                                                  ckpt_dir=ckpt_dir, force=force, progress=progress)
    return models, metas


@dataclass(frozen=True)
class BenchmarkOptions:
    """How :func:`run_benchmark` handles models and output (each field can also be passed to it by
    name): ``save_models``, ``reuse``, ``keep_losses_for``, ``progress``, ``on_models``."""

    save_models: bool = False
    reuse: bool = True
    keep_losses_for: int | None = None
    progress: bool = True
    on_models: Callable[[int, Any, dict], None] | None = None


def run_benchmark(profile: Profile | str, seeds: Sequence[int], methods: Sequence[str] | None = None,
                  dataset: str = "synthetic", task: str = "age", data_root=None, device="auto",
                  ckpt_dir: str | Path = "checkpoints", method_overrides: dict[str, dict] | None = None,
                  variants: dict[str, dict] | None = None, data_options: dict | None = None,
                  options: BenchmarkOptions | None = None, **kwargs) -> dict[str, Any]:
    """Evaluate the reference models and ``methods`` (default: all registered) for each seed,
    under ``profile`` (a :class:`~dlfd_lib.profiles.Profile` or its name: its sections size the
    data and the training, its name picks the methods' presets and names the checkpoints).

    ``variants`` replaces ``methods``/``method_overrides`` when a method should run several
    times with different settings (notebook 05's ablations): ``{label: {"method": name,
    "hparams": {...}}}``; the label is the row's ``model`` name.

    Returns ``{"rows": DataFrame (one row per seed and model, with ``abs_mia_gap`` and ``avg_gap`` to
    the same seed's retrained model, :func:`dlfd_lib.stats.add_reference_gaps`), "histories": {(seed, label):
    DataFrame}, "infos": {(seed, label): dict}, "losses": {model: {split: array}}, "models":
    {model: nn.Module}, "splits": UnlearningSplits, "cfg": TrainConfig}``; per-sample losses,
    models and splits are kept for seed ``keep_losses_for`` (default: the first seed).
    ``save_models`` writes each unlearned model to ``ckpt_dir`` (atomically, with its
    hyperparameters, history and info); ``reuse`` (default) takes a model that a notebook or an
    earlier run saved there for the same original checkpoint, data, seed, method and resolved
    hyperparameters instead of unlearning again (its row keeps the ``seconds`` of the run that
    made it; ``infos[...]["reused"]`` says which were reused). ``data_options`` go to :func:`dlfd_lib.data.load_splits`;
    ``on_models(seed, splits, models)`` is called once per seed after the evaluation, with every
    model of that seed (references and variants), for extra measurements. These five are the
    fields of ``options`` (:class:`BenchmarkOptions`), or passed by name; every other keyword goes
    to :func:`dlfd_lib.metrics.evaluate` (e.g. ``attacks=True``).
    """
    fields_ = set(BenchmarkOptions.__dataclass_fields__)
    opt = replace(options or BenchmarkOptions(), **{k: v for k, v in kwargs.items() if k in fields_})
    evaluate_kwargs = {k: v for k, v in kwargs.items() if k not in fields_}
    keep_losses_for, progress, on_models = opt.keep_losses_for, opt.progress, opt.on_models
    profile = get_profile(profile)
    variants = _variants(methods, method_overrides, variants)
    keep = seeds[0] if keep_losses_for is None else keep_losses_for
    if keep not in seeds:
        raise ValueError(f"keep_losses_for={keep} is not among the seeds {list(seeds)}")
    kept: dict[str, Any] = {}
    rows, histories, infos, losses = [], {}, {}, {}
    for seed in seeds:
        splits, models, metas = reference_models(profile, seed, dataset, task, data_root, device,
                                                 ckpt_dir, progress, data_options)
        seconds = {role: metas[role].get("train_seconds", np.nan) for role in REFERENCES}
        for label, variant in variants.items():
            models[label], info, history = _variant_model(variant, label, models["original"], metas["original"]["path"],
                                                          splits, profile, seed, device, ckpt_dir, opt)
            histories[(seed, label)] = history
            seconds[label] = info["seconds"]
            infos[(seed, label)] = info
        for name, model in models.items():
            res = evaluate(model, splits, device=device, seed=seed, return_losses=seed == keep,
                           **evaluate_kwargs)
            if seed == keep:
                losses[name] = res.pop("losses")
            rows.append({"seed": seed, "model": name, **res, "seconds": seconds[name]})
        if on_models is not None:
            on_models(seed, splits, models)
        if seed == keep:
            kept = {"models": models, "splits": splits, "cfg": TrainConfig.from_profile(profile)}
    return {"rows": add_reference_gaps(pd.DataFrame(rows)), "histories": histories, "infos": infos, "losses": losses, **kept}


def _variants(methods, method_overrides, variants) -> dict[str, dict]:
    """``variants``, or one per method (default: all registered) with its overrides; checked."""
    if variants is None:
        methods = list(methods) if methods is not None else available_methods()
        variants = {m: {"method": m, "hparams": (method_overrides or {}).get(m, {})} for m in methods}
    unknown = sorted({v["method"] for v in variants.values()} - set(available_methods()))
    if unknown:
        raise KeyError(f"unknown unlearning method(s) {unknown}; registered: {available_methods()}")
    clash = sorted(set(variants) & set(REFERENCES))
    if clash:
        raise ValueError(f"variant label(s) {clash} clash with the reference models' names")
    return variants


def _variant_model(variant: dict, label: str, original, original_path, splits, profile, seed, device, ckpt_dir,
                   opt: BenchmarkOptions):
    """``(model, info, history)`` of one variant on one seed: reused from ``ckpt_dir`` (with
    ``opt.reuse``) or unlearned now (and saved with ``opt.save_models``)."""
    method, hparams = variant["method"], variant.get("hparams", {})
    found = (_find_unlearned(method, hparams, original_path, splits, profile, seed, ckpt_dir, device)
             if opt.reuse else None)
    if found is not None:
        model, info = found
        return model, info, info.pop("history")
    result = unlearn(method, original, splits, profile=profile, device=device, seed=seed, progress=opt.progress,
                     **hparams)
    if opt.save_models:
        _save_unlearned(result, splits, profile, seed, ckpt_dir, label, original_path)
    return result.model, {**result.info, "reused": False}, result.history


def unlearned_path(splits, profile: Profile | str, seed: int, ckpt_dir: str | Path, method: str,
                   hparams: dict) -> Path:
    """Where the unlearned model of ``method`` with the resolved ``hparams`` is kept, for one
    dataset, profile and seed: the file name carries a digest of the hyperparameters, so a
    notebook that runs the same method with the same settings finds the model another notebook
    saved, whatever label either gave it (notebook 05's "DLFD (paper)" is notebook 03's "dlfd")."""
    blob = json.dumps(to_jsonable(hparams), sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    return Path(ckpt_dir) / f"{splits.name}-{splits.task}-{profile_name(profile)}-seed{seed}-{_slug(method)}-{digest}.pt"


def _save_unlearned(result, splits, profile, seed, ckpt_dir, label, original_path) -> Path:
    path = unlearned_path(splits, profile, seed, ckpt_dir, result.info["method"], result.info.get("hparams", {}))
    save_checkpoint(result.model, path, meta={
        "method": result.info["method"], "label": label, "seed": seed, "original": Path(original_path).name,
        "data": content_digest(splits),
        "hparams": to_jsonable(result.info.get("hparams", {})), "seconds": float(result.info.get("seconds", float("nan"))),
        "info": to_jsonable(result.info), "history": to_jsonable(result.history.to_dict("records"))})
    return path


def _find_unlearned(method: str, hparams: dict | None, original_path, splits, profile: Profile | str, seed: int,
                    ckpt_dir, device):
    """``(model, info)`` of a saved unlearned model made by ``method`` with ``hparams`` (resolved
    against the profile's defaults) from the same original checkpoint and data, or ``None``."""
    resolved = to_jsonable({**method_defaults(method, profile), **(hparams or {})})
    path = unlearned_path(splits, profile, seed, ckpt_dir, method, resolved)
    if not path.exists():
        return None
    model, meta = _load_reusable(path, splits.num_classes, device)
    if not (model is not None and meta.get("method") == method and meta.get("original") == Path(original_path).name
            and meta.get("hparams") == resolved and meta.get("data") == content_digest(splits)):
        return None
    model.eval()
    info = {**meta.get("info", {}), "method": method, "hparams": resolved, "seconds": meta.get("seconds"),
            "history": pd.DataFrame(meta.get("history", [])), "path": str(path), "reused": True}
    return model, info


def unlearned_model(method: str, original, original_path: str | Path, splits, profile: Profile | str, seed: int,
                    device="auto", ckpt_dir: str | Path = "checkpoints", hparams: dict | None = None,
                    label: str | None = None, progress: bool = True, force: bool = False):
    """The model ``method`` makes from ``original``: loaded from ``ckpt_dir`` when a notebook (or
    an earlier call, or :func:`run_benchmark`) saved one for the same original checkpoint, data,
    seed and resolved hyperparameters, otherwise computed with :func:`dlfd_lib.unlearn.unlearn`
    and saved. (Unlearning is deterministic for a seed on the CPU, so the reused model is the
    one the call would compute.)

    Returns ``(model, info)``; ``info`` has ``method``, ``hparams``, ``seconds`` (of the run that
    made the model), ``history`` (DataFrame), ``path`` and ``reused``.
    """

    if not force:
        found = _find_unlearned(method, hparams, original_path, splits, profile, seed, ckpt_dir, device)
        if found is not None:
            return found
    result = unlearn(method, original, splits, profile=profile, device=device, seed=seed,
                     progress=progress, **(hparams or {}))
    path = _save_unlearned(result, splits, profile, seed, ckpt_dir, label or method, original_path)
    return result.model, {**result.info, "history": result.history, "path": str(path), "reused": False}


def _load_reusable(path: Path, num_classes: int, device):
    """``load_checkpoint`` for a cache lookup: a checkpoint with non-finite weights (written by
    an older kit from a diverged run) is reported and recomputed instead of reused."""
    from .model import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(path, num_classes=num_classes, device=resolve_device(device))
    except CheckpointError as err:
        if "non-finite" not in str(err):
            raise
        warnings.warn(f"{err} It is computed again.", stacklevel=3)
        return None, {}


def _slug(label: str) -> str:
    """A file-name-safe form of a variant label ("released: clamp [0,1]" -> "released-clamp-0-1")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-") or "variant"


def summarize(rows: pd.DataFrame, columns: Sequence[str] = SUMMARY_COLUMNS,
              reference: str = "retrained") -> pd.DataFrame:
    """Mean and sd over seeds per model (columns ``<metric>`` and ``<metric>_sd``), plus each
    metric's gap to ``reference`` (``<metric>_gap`` = model − reference, averaged over seeds
    of the per-seed differences) and the models in first-seen order."""
    columns = [c for c in columns if c in rows]
    order = list(dict.fromkeys(rows["model"]))
    grouped = rows.groupby("model")[columns]
    out = grouped.mean().loc[order]
    sd = grouped.std(ddof=1).loc[order].add_suffix("_sd")
    ref = rows[rows["model"] == reference].set_index("seed")[columns]
    diffs = rows.set_index("seed")
    gap = (diffs[columns] - ref.reindex(diffs.index)).assign(model=diffs["model"].values)
    gaps = gap.groupby("model")[columns].mean().loc[order].add_suffix("_gap")
    out = pd.concat([out, sd, gaps], axis=1)
    out["n_seeds"] = rows.groupby("model")["seed"].nunique().loc[order]
    return out


def format_mean_sd(summary: pd.DataFrame, columns: Sequence[str] = SUMMARY_COLUMNS, digits: int = 3) -> pd.DataFrame:
    """A display table: "mean (sd)" strings per metric (sd omitted for one seed)."""
    table = {}
    for c in columns:
        if c not in summary:
            continue
        if summary["n_seeds"].max() > 1:
            table[c] = [f"{m:.{digits}f} ({s:.{digits}f})" for m, s in zip(summary[c], summary[f"{c}_sd"])]
        else:
            table[c] = [f"{m:.{digits}f}" for m in summary[c]]
    return pd.DataFrame(table, index=summary.index)


def save_benchmark(rows: pd.DataFrame, summary: pd.DataFrame, results_dir: str | Path, tag: str,
                   extra: dict | None = None, prefix: str = "03_benchmark") -> list[Path]:
    """Write the per-seed rows (CSV), the summary (CSV) and both as JSON to ``results_dir``
    (files ``<prefix>_rows_<tag>.csv``, ``<prefix>_summary_<tag>.csv``, ``<prefix>_<tag>.json``)."""
    from .utils import atomic_write_bytes, save_json
    folder = Path(results_dir)
    paths = [folder / f"{prefix}_rows_{tag}.csv", folder / f"{prefix}_summary_{tag}.csv",
             folder / f"{prefix}_{tag}.json"]
    atomic_write_bytes(paths[0], lambda tmp: rows.to_csv(tmp, index=False))
    atomic_write_bytes(paths[1], lambda tmp: summary.to_csv(tmp))
    save_json({**(extra or {}), "rows": rows.to_dict("records"),
               "summary": summary.reset_index().to_dict("records")}, paths[2])
    return paths
