"""Run unlearning methods against the reference models, over seeds, and summarise.

Used by notebook 03 and ``benchmarks/unlearning_quality.py``: for each seed, build the data,
train (or reuse) the original and retrained models, run every requested method from the
original, and evaluate all of them the same way (:func:`dlfd_lib.metrics.evaluate`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import load_splits
from .metrics import evaluate
from .model import save_checkpoint
from .train import TrainConfig, train_or_load
from .unlearn import available_methods, unlearn

#: metrics summarised over seeds, in table order
SUMMARY_COLUMNS = ["retain_acc", "forget_acc", "test_acc", "mia", "mia_auc", "fs", "nomus", "seconds"]
REFERENCES = ("original", "retrained")


def run_benchmark(profile: dict, profile_name: str, seeds: Sequence[int], methods: Sequence[str] | None = None,
                  dataset: str = "synthetic", task: str = "age", data_root=None, device="auto",
                  ckpt_dir: str | Path = "checkpoints", save_models: bool = False, keep_losses_for: int | None = None,
                  method_overrides: dict[str, dict] | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate the reference models and ``methods`` (default: all registered) for each seed.

    Returns ``{"rows": DataFrame (one row per seed and model), "histories": {(seed, method):
    DataFrame}, "infos": {(seed, method): dict}, "losses": {model: {split: array}}}``;
    per-sample losses are kept for seed ``keep_losses_for`` (default: the first seed).
    ``save_models`` writes each unlearned model to ``ckpt_dir`` (atomically, with its
    hyperparameters).
    """
    methods = list(methods) if methods is not None else available_methods()
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise KeyError(f"unknown unlearning method(s) {unknown}; registered: {available_methods()}")
    keep = seeds[0] if keep_losses_for is None else keep_losses_for
    cfg = TrainConfig.from_profile(profile)
    rows, histories, infos, losses = [], {}, {}, {}
    for seed in seeds:
        splits = load_splits(dataset, task=task, data_root=data_root, profile=profile, seed=seed)
        models, seconds = {}, {}
        for role in REFERENCES:
            models[role], meta = train_or_load(role, splits, cfg, seed=seed, device=device,
                                               ckpt_dir=ckpt_dir, progress=progress)
            seconds[role] = meta.get("train_seconds", np.nan)
        for name in methods:
            t0 = time.perf_counter()
            result = unlearn(name, models["original"], splits, profile=profile_name, device=device,
                             seed=seed, progress=progress, **(method_overrides or {}).get(name, {}))
            seconds[name] = time.perf_counter() - t0
            models[name] = result.model
            histories[(seed, name)] = result.history
            infos[(seed, name)] = result.info
            if save_models:
                tag = f"{splits.name}-{splits.task}-{profile_name}-seed{seed}"
                save_checkpoint(result.model, Path(ckpt_dir) / f"{tag}-{name}.pt",
                                meta={"method": name, "seed": seed, "hparams": result.info.get("hparams", {})})
        for name, model in models.items():
            res = evaluate(model, splits, device=device, seed=seed, return_losses=seed == keep)
            if seed == keep:
                losses[name] = res.pop("losses")
            rows.append({"seed": seed, "model": name, **res, "seconds": seconds[name]})
    return {"rows": pd.DataFrame(rows), "histories": histories, "infos": infos, "losses": losses}


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
                   extra: dict | None = None) -> list[Path]:
    """Write the per-seed rows (CSV), the summary (CSV) and both as JSON to ``results_dir``."""
    from .utils import atomic_write_bytes, save_json
    folder = Path(results_dir)
    paths = [folder / f"03_benchmark_rows_{tag}.csv", folder / f"03_benchmark_summary_{tag}.csv",
             folder / f"03_benchmark_{tag}.json"]
    atomic_write_bytes(paths[0], lambda tmp: rows.to_csv(tmp, index=False))
    atomic_write_bytes(paths[1], lambda tmp: summary.to_csv(tmp))
    save_json({**(extra or {}), "rows": rows.to_dict("records"),
               "summary": summary.reset_index().to_dict("records")}, paths[2])
    return paths
