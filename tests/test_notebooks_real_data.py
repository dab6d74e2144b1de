"""The notebooks run on the real datasets' layouts by changing parameters only.

Tiny fake MUFAC and RAF-DB folders (random block images laid out exactly like the releases, see
test_datasets_real.py) stand in for the real data, which cannot be downloaded here; notebooks 01
and 03 run on them with the smoke profile through the kit's papermill pipeline.
"""
import json

import pytest

from dlfd_lib.pipeline import run_notebooks
from test_datasets_real import make_mufac, make_rafdb


def _run(name, tmp_path, **params):
    base = {"checkpoint_dir": str(tmp_path / "checkpoints"), "figure_dir": str(tmp_path / "figures"),
            "results_dir": str(tmp_path / "results")}
    run_notebooks("smoke", notebooks=[name], out_dir=tmp_path / "runs", parameters={**base, **params},
                  device="cpu", seed=0, progress_bar=False)
    return tmp_path / "results"


@pytest.mark.notebook
def test_notebooks_01_and_03_on_a_mufac_layout(tmp_path):
    root = tmp_path / "MUFAC"
    make_mufac(root, train_fams=16, per_fam=6, val_fams=3, test_fams=3)
    params = {"dataset": "mufac", "task": "age", "data_root": str(root), "data_options": {"forget_size": 24}}
    results = _run("01_train_original_and_retrained.ipynb", tmp_path, **params)
    ref = json.loads(next(results.glob("01_reference_models_mufac-*.json")).read_text())
    assert {"original", "retrained"} <= set(ref)
    assert next(results.glob("01_duplicates_mufac-*.json"))
    # the layout is what is tested here: one method on the strength front (the chain sweeps two)
    _run("03_unlearning_benchmark.ipynb", tmp_path, methods=["dlfd", "neggrad"], front_methods=["dlfd"], **params)
    bench = json.loads(next(results.glob("03_benchmark_mufac-*.json")).read_text())
    assert {r["model"] for r in bench["rows"]} == {"original", "retrained", "dlfd", "neggrad"}


@pytest.mark.notebook
def test_notebook_01_on_a_rafdb_layout(tmp_path):
    root = tmp_path / "RAF-DB"
    make_rafdb(root, per_class_train=10, per_class_test=3)
    results = _run("01_train_original_and_retrained.ipynb", tmp_path, dataset="rafdb", task="emotion",
                   data_root=str(root))
    ref = json.loads(next(results.glob("01_reference_models_rafdb-*.json")).read_text())
    assert {"original", "retrained"} <= set(ref)
