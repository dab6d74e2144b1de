"""Run unlearning methods against the reference models, over seeds, and summarise.

Used by notebooks 03 and 05 and ``benchmarks/unlearning_quality.py``. :func:`run_benchmark` is the
protocol's plan of jobs (:mod:`dlfd_lib.plan`) at a notebook's sizes, run in this process: per seed
the data, the original and retrained models (trained or reused), every requested method (or
labelled variant) from the original, each evaluated the same way (:func:`dlfd_lib.metrics.evaluate`);
the jobs hand their models, runs and per-sample losses back for the notebooks' figures.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .data import load_splits
from .profiles import Profile, get_profile
from .stats import add_reference_gaps  # abs_mia_gap and Avg. Gap against the same seed's retrained model
from .train import TrainConfig, train_or_load
from .unlearn import available_methods
from .unlearned import unlearned_model, unlearned_path  # noqa: F401  (the notebooks' reuse, kept importable here)

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
    data and the training, its name picks the methods' presets and names the checkpoints): the
    protocol's plan (:mod:`dlfd_lib.plan`, ``variant`` jobs) run in this process, with a store that
    lasts the call. An error in a job is raised here, as it happened.

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
    fields of ``options`` (:class:`BenchmarkOptions`), or passed by name; ``attacks`` goes to
    :func:`dlfd_lib.metrics.evaluate` (``True``: the four-attack suite in every row).
    """
    from .executors import InProcessExecutor
    from .plan import PlanContext, build_plan, clear_seed_refs, execute
    from .protocol import ProtocolConfig
    opt, attacks = _options(options, kwargs)
    profile, seeds = get_profile(profile), [int(s) for s in seeds]
    variants = _variants(methods, method_overrides, variants)
    keep = seeds[0] if opt.keep_losses_for is None else opt.keep_losses_for
    if keep not in seeds:
        raise ValueError(f"keep_losses_for={keep} is not among the seeds {list(seeds)}")
    handed = _HandedBack(keep, list(variants), opt.on_models)
    executor = InProcessExecutor(raise_errors=True)
    clear_seed_refs()  # the references as their checkpoints are now, and objects that no earlier caller holds
    try:
        with tempfile.TemporaryDirectory(prefix="dlfd-benchmark-") as store_dir:
            cfg = ProtocolConfig(tuning_seeds=[], eval_seeds=seeds, n_trials=0, n_strengths=0, mia_boot=0,
                                 methods=[], attacks=attacks)
            ctx = PlanContext(profile, cfg, store_dir, dataset=dataset, task=task, data_root=data_root,
                              data_options=dict(data_options or {}), device=executor.device(device),
                              ckpt_dir=str(ckpt_dir), progress=opt.progress, save_models=opt.save_models,
                              reuse=opt.reuse, variants=variants, hand_back=True)
            execute(build_plan(ctx), ctx, executor, log=lambda *a, **k: None, on_result=handed.add)
            rows = plan_rows(ctx, {})
    finally:
        clear_seed_refs()  # even after an error: only the kept seed's models stay in memory, with the caller
    return {"rows": rows, "histories": handed.histories, "infos": handed.infos,
            "losses": handed.losses, **handed.kept, "cfg": TrainConfig.from_profile(profile)}


def plan_rows(ctx, tuned: dict) -> pd.DataFrame:
    """A finished plan's rows as :func:`run_benchmark` gives them (the sweep's too): per seed the
    references, then each method or variant, with the gaps to the seed's retrained model; without
    the protocol's attack sampling sd."""
    from .plan import collect
    rows = pd.DataFrame(collect(ctx, tuned)["rows"]).drop(columns=["mia_sampling_sd"])
    return add_reference_gaps(rows)


def _options(options: BenchmarkOptions | None, kwargs: dict) -> tuple[BenchmarkOptions, Any]:
    """The options (``options`` updated by the keywords that name its fields) and ``attacks``."""
    fields_ = set(BenchmarkOptions.__dataclass_fields__)
    unknown = sorted(set(kwargs) - fields_ - {"attacks"})
    if unknown:
        raise TypeError(f"run_benchmark: unknown keyword(s) {unknown}; it takes the options {sorted(fields_)} "
                        f"and the evaluation's `attacks`")
    opt = replace(options or BenchmarkOptions(), **{k: v for k, v in kwargs.items() if k in fields_})
    return opt, kwargs.get("attacks", False)


class _HandedBack:
    """What the plan's jobs hand back, gathered per seed: the histories and run records of every
    seed, the models, splits and per-sample losses of the kept seed; ``on_models`` is called once a
    seed has all its models (references first, then the variants in order)."""

    def __init__(self, keep: int, labels: list[str], on_models):
        self.keep, self.labels, self.on_models = keep, labels, on_models
        self.histories, self.infos, self.losses, self.kept = {}, {}, {}, {}
        self._seeds: dict[int, dict] = {}

    def add(self, job_id: str, out: dict) -> None:
        seed = out["seed"]
        got = self._seeds.setdefault(seed, {"models": {}, "losses": {}})
        if "label" in out:
            label = out["label"]
            got["models"][label], got["losses"][label] = out["model"], out["losses"]
            self.histories[(seed, label)], self.infos[(seed, label)] = out["history"], out["info"]
        else:
            got["splits"] = out["splits"]
            got["models"].update(out["models"])
            got["losses"].update(out["losses"])
        names = list(REFERENCES) + self.labels
        if "splits" not in got or set(got["models"]) != set(names):
            return
        models = {n: got["models"][n] for n in names}
        if self.on_models is not None:
            self.on_models(seed, got["splits"], models)
        if seed == self.keep:
            self.losses = {n: got["losses"][n] for n in names}
            self.kept = {"models": models, "splits": got["splits"]}
        del self._seeds[seed]  # another seed's models are not kept


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
    return {label: {"method": v["method"], "hparams": dict(v.get("hparams") or {})} for label, v in variants.items()}


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
