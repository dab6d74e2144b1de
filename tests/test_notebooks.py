"""Papermill smoke run of every notebook on the smallest profile (`smoke`).

Each notebook in notebooks/ is executed headlessly through the kit's own pipeline with its
outputs (checkpoints, figures, results, data cache) redirected into a temporary folder, so a
test run writes nothing into the repository.
"""
from pathlib import Path

import pytest

from dlfd_lib.pipeline import run_notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


#: notebook-specific smoke parameters: the optional per-example test of notebook 03 with K = 2
SMOKE_EXTRA = {"03_unlearning_benchmark.ipynb": {"ulira_k": 2}}


def test_every_numbered_notebook_is_found():
    assert NOTEBOOKS == ["01_train_original_and_retrained.ipynb", "02_correlation_collapse.ipynb",
                         "03_unlearning_benchmark.ipynb", "04_feature_distributions.ipynb",
                         "05_ablations.ipynb"]


@pytest.mark.notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_smoke_profile(name, tmp_path):
    params = {"checkpoint_dir": str(tmp_path / "checkpoints"), "figure_dir": str(tmp_path / "figures"),
              "results_dir": str(tmp_path / "results"), "data_root": str(tmp_path / "cache"),
              **SMOKE_EXTRA.get(name, {})}
    record = run_notebooks("smoke", notebooks=[name], out_dir=tmp_path / "runs", parameters=params,
                           device="cpu", seed=0, progress_bar=False)
    assert (tmp_path / "runs" / name).exists()
    assert list((tmp_path / "figures").glob("*.png")), "the notebook saved no figure"
    assert list((tmp_path / "results").glob("*.json")), "the notebook saved no results"
    assert record is not None
    if name.startswith("03_"):
        assert list((tmp_path / "results").glob("03_attacks_*.json"))
        assert list((tmp_path / "results").glob("03_ulira_*.json"))
