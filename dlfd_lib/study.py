"""One study: what every notebook sets up before its first experiment, in one object.

A :class:`Study` holds the :class:`~dlfd_lib.profiles.Profile`, the device, the folders
(checkpoints, figures, results), the data of one seed, its two reference models and the
unlearned models computed so far. Each notebook builds one from its papermill parameters::

    study = Study(profile, seed=seed, dataset=dataset, task=task, device=device, data_root=data_root,
                  data_options=data_options, checkpoint_dir=checkpoint_dir, figure_dir=figure_dir,
                  results_dir=results_dir)
    study.splits                      # the UnlearningSplits, loaded on first use
    study.models                      # {"original": ..., "retrained": ...}, trained or reused
    model, info = study.unlearned("dlfd")   # computed once, then reused

Nothing is computed twice: the reference models come from ``checkpoint_dir`` when notebook 01
(or any earlier run) trained them with the same data, recipe and seed
(:func:`dlfd_lib.train.train_or_load`); an unlearned model is kept in memory for the study and
on disk under a name that carries the method and a digest of its resolved hyperparameters
(:func:`dlfd_lib.unlearned.unlearned_model`), the same files :func:`dlfd_lib.benchmark.run_benchmark`
writes and reuses, so notebooks 02, 03, 04 and 05 share one another's models.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from .benchmark import run_benchmark, train_references
from .unlearned import unlearned_model
from .data import load_splits
from .profiles import Profile, get_profile
from .train import TrainConfig
from .unlearn import method_defaults
from .utils import resolve_device, to_jsonable

__all__ = ["Study"]


class Study:
    """Profile, device, folders, data, reference models and unlearned models of one seed (see
    the module docstring). ``profile``: a :class:`~dlfd_lib.profiles.Profile` or its name;
    ``device``: "auto", "cpu", "cuda" or a :class:`torch.device`; ``data_options`` go to
    :func:`dlfd_lib.data.load_splits` (e.g. ``{"split": "identity"}``); ``progress`` shows the
    training and unlearning progress bars."""

    def __init__(self, profile: Profile | str, seed: int = 0, dataset: str = "synthetic",
                 task: str = "age", device: str | torch.device = "auto", data_root=None,
                 data_options: dict | None = None, checkpoint_dir: str | Path = "checkpoints",
                 figure_dir: str | Path = "figures", results_dir: str | Path = "results",
                 progress: bool = True):
        self.profile = get_profile(profile)
        self.seed = seed
        self.dataset, self.task = dataset, task
        self.device = resolve_device(device)
        self.data_root = data_root
        self.data_options = dict(data_options or {})
        self.checkpoint_dir, self.figure_dir, self.results_dir = checkpoint_dir, figure_dir, results_dir
        self.progress = progress
        self._splits = None
        self._references: tuple[dict, dict] | None = None
        self._unlearned: dict[tuple[str, str], tuple[torch.nn.Module, dict]] = {}

    def __repr__(self) -> str:
        return (f"Study(profile={self.profile.name!r}, seed={self.seed}, dataset={self.dataset!r}, "
                f"task={self.task!r}, device={str(self.device)!r})")

    # ---- names ------------------------------------------------------------------------------
    @property
    def tag(self) -> str:
        """``<dataset>-<task>-<profile>-seed<seed>``: the suffix of this study's figure and result files."""
        return f"{self.dataset}-{self.task}-{self.profile.name}-seed{self.seed}"

    def seeds_tag(self, seeds: Sequence[int]) -> str:
        """The file suffix of a run over several ``seeds``: ``<dataset>-<task>-<profile>-seeds0-1-2``."""
        return f"{self.dataset}-{self.task}-{self.profile.name}-seeds{'-'.join(map(str, seeds))}"

    # ---- data and reference models ------------------------------------------------------------
    @property
    def train_config(self) -> TrainConfig:
        """The reference models' training recipe: the profile's ``train`` section."""
        return TrainConfig.from_profile(self.profile)

    @property
    def splits(self):
        """The :class:`~dlfd_lib.data.UnlearningSplits` of this study's dataset and seed (loaded
        once, on first use)."""
        if self._splits is None:
            self._splits = load_splits(self.dataset, task=self.task, data_root=self.data_root,
                                       profile=self.profile, seed=self.seed, **self.data_options)
        return self._splits

    def references(self, force: bool = False) -> tuple[dict[str, torch.nn.Module], dict[str, dict]]:
        """``({role: model}, {role: meta})`` of the original and the retrained model, trained
        once (or reused from ``checkpoint_dir``); ``force`` trains both again."""
        if self._references is None or force:
            self._references = train_references(self.splits, self.profile, self.seed, self.device,
                                                self.checkpoint_dir, self.progress, force=force)
            self._unlearned.clear()  # they were made from the previous original
        return self._references

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        """A new dict ``{"original": model, "retrained": model}`` (add your own models to it freely)."""
        return dict(self.references()[0])

    @property
    def metas(self) -> dict[str, dict]:
        """The reference models' checkpoint records (``path``, ``reused``, ``history``, ...)."""
        return self.references()[1]

    # ---- unlearned models ---------------------------------------------------------------------
    def unlearned(self, method: str, hparams: dict | None = None, label: str | None = None,
                  force: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
        """``(model, info)`` of ``method`` run from the original with ``hparams`` over the
        profile's presets: from this study's memory, else from ``checkpoint_dir`` (saved by any
        notebook or :func:`~dlfd_lib.benchmark.run_benchmark` for the same original, data, seed
        and resolved hyperparameters), else computed and saved
        (:func:`dlfd_lib.unlearned.unlearned_model`; ``force`` computes it again)."""
        resolved = to_jsonable({**method_defaults(method, self.profile), **(hparams or {})})
        key = (method, json.dumps(resolved, sort_keys=True))
        if force or key not in self._unlearned:
            models, metas = self.references()
            self._unlearned[key] = unlearned_model(
                method, models["original"], metas["original"]["path"], self.splits, self.profile,
                self.seed, device=self.device, ckpt_dir=self.checkpoint_dir, hparams=hparams,
                label=label, progress=self.progress, force=force)
        return self._unlearned[key]

    def unlearned_models(self, methods: Sequence[str], verbose: bool = True,
                         overrides: dict[str, dict] | None = None) -> dict[str, torch.nn.Module]:
        """``{method: model}`` of :meth:`unlearned` for each of ``methods`` at the profile's
        settings, updated by ``overrides[method]`` where given (e.g. the committed verdict's tuned
        settings, :func:`dlfd_lib.tuning.load_tuned`, so that a notebook studies the models the
        verdict and notebook 03 study); ``verbose`` prints which were reused and which were
        unlearned now."""
        out = {}
        for m in methods:
            out[m], info = self.unlearned(m, (overrides or {}).get(m) or None)
            if verbose:
                print(f"{m:12s} {'reused from ' + Path(info['path']).name if info['reused'] else 'unlearned now'}")
        return out

    # ---- the benchmark ------------------------------------------------------------------------
    def benchmark(self, seeds: Sequence[int] | None = None, **kwargs) -> dict[str, Any]:
        """:func:`dlfd_lib.benchmark.run_benchmark` over ``seeds`` (default: this study's seed)
        with this study's profile, data, device and checkpoint folder; ``kwargs`` (methods,
        variants, method_overrides, save_models, attacks, ...) are passed on. It reuses the
        unlearned models saved in ``checkpoint_dir``, those of this study included."""
        return run_benchmark(self.profile, list(seeds) if seeds else [self.seed], dataset=self.dataset,
                             task=self.task, data_root=self.data_root, device=self.device,
                             ckpt_dir=self.checkpoint_dir, data_options=self.data_options,
                             progress=self.progress, **kwargs)

