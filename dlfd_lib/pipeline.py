"""Headless notebook orchestration and provenance: the public names, in one place.

The notebooks in ``notebooks/`` (``01_…`` to ``05_…``) tell the story; :func:`run_notebooks`
runs them in order with papermill so every figure and table comes back from one command
(``dlfd run --profile quick``, see ``dlfd_lib/cli.py``). The sizes they use live in
:mod:`dlfd_lib.profiles`: each notebook's ``parameters`` cell receives ``profile`` (a profile's
name, plus ``seed`` and ``device``) and builds its :class:`dlfd_lib.study.Study` from it.

* ``run_notebooks`` executes the notebooks into ``runs/<profile>/`` (git-ignored) and records
  what ran, where and how long in ``runs/<profile>/provenance.json``.
* A failing cell becomes ``NotebookFailed``, whose message names the notebook, the cell and
  where the executed notebook with the full traceback was written; so do a cell that runs past
  the profile's ``cell_timeout_s`` and a kernel that dies. Ctrl-C becomes
  ``NotebookInterrupted``; the executed notebook is kept in every case.
* ``validate_parameters`` checks the notebook parameters against the notebooks' ``parameters``
  cells before anything runs; ``run_lock`` keeps two runs out of one runs folder;
  ``read_provenance`` tells a run that was killed from one that is still running.

The code lives in :mod:`dlfd_lib.notebook_run`, one file per concept: ``discovery``, ``kernel``,
``parameters``, ``lock``, ``provenance``, ``failures`` and ``papermill_run``.
"""
from __future__ import annotations

from .notebook_run.discovery import (NOTEBOOK_PATTERN, NOTEBOOKS, REPO_ROOT, default_notebooks_dir,
                                     discover_notebooks, select_notebooks)
from .notebook_run.failures import NotebookFailed, NotebookInterrupted, rerun_command
from .notebook_run.kernel import KERNEL_NAME, kernel_for_this_python
from .notebook_run.lock import LOCK_NAME, RunLocked, run_lock
from .notebook_run.papermill_run import ENGINE_NAME, run_notebooks
from .notebook_run.parameters import (ANY, ParameterError, check_device, notebook_parameters, parse_value,
                                      validate_parameters)
from .notebook_run.provenance import STALE_STATUS, _git_commit, read_provenance

__all__ = ["ANY", "ENGINE_NAME", "KERNEL_NAME", "LOCK_NAME", "NOTEBOOKS", "NOTEBOOK_PATTERN", "REPO_ROOT",
           "STALE_STATUS", "NotebookFailed", "NotebookInterrupted", "ParameterError", "RunLocked",
           "_git_commit", "check_device", "default_notebooks_dir", "discover_notebooks",
           "kernel_for_this_python", "notebook_parameters", "parse_value", "read_provenance",
           "rerun_command", "run_lock", "run_notebooks", "select_notebooks", "validate_parameters"]
