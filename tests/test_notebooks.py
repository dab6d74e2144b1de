"""Papermill smoke run of every notebook on the smallest profile (`smoke`).

Each notebook in notebooks/ is executed headlessly through the kit's own pipeline with its
outputs (checkpoints, figures, results, data cache) redirected into a temporary folder, so a
test run writes nothing into the repository.

The five notebooks share one such folder and run in *reverse* order, 05 first, in one
pytest-xdist worker (group ``notebook-chain``). Notebook k therefore never finds what notebooks
1..k-1 write – each is shown to run on its own, without its predecessors – while every later
run reuses what an earlier one saved, as in ``make demo`` (the reference models trained once by
05; 04's unlearned models taken by 03 and 02, which the test checks in 02's output). The
notebook reading the cache is tested by the same notebook's cache-miss path in another run;
the look-up itself by tests/test_benchmark.py.
"""
import json
from pathlib import Path

import pytest

from dlfd_lib.pipeline import run_notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
#: the order of the chain: last notebook first, so none can depend on a predecessor's files
CHAIN = NOTEBOOKS[::-1]

#: notebook-specific smoke parameters: the optional per-example test of notebook 03 with K = 2, and
#: a protocol folder of the test's own for 03 and 05 (their default lies in the repository's runs/)
SMOKE_EXTRA = {"03_unlearning_benchmark.ipynb": {"ulira_k": 2, "protocol_dir": "{shared}/protocol"},
               "05_ablations.ipynb": {"protocol_dir": "{shared}/protocol"}}
_ran: list[str] = []  # the notebooks this session has already run in the shared folder


def test_every_numbered_notebook_is_found():
    assert NOTEBOOKS == ["01_train_original_and_retrained.ipynb", "02_correlation_collapse.ipynb",
                         "03_unlearning_benchmark.ipynb", "04_feature_distributions.ipynb",
                         "05_ablations.ipynb"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook-chain")


def _outputs(executed: Path) -> str:
    cells = json.loads(executed.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))


@pytest.mark.notebook
@pytest.mark.xdist_group("notebook-chain")
@pytest.mark.parametrize("name", CHAIN)
def test_notebook_runs_on_smoke_profile(name, shared):
    params = {"checkpoint_dir": str(shared / "checkpoints"), "figure_dir": str(shared / "figures"),
              "results_dir": str(shared / "results"), "data_root": str(shared / "cache")}
    params.update({k: v.format(shared=shared) if isinstance(v, str) else v
                   for k, v in SMOKE_EXTRA.get(name, {}).items()})
    before = {p.name for p in (shared / "figures").glob("*.png")}, {p.name for p in (shared / "results").glob("*.json")}
    record = run_notebooks("smoke", notebooks=[name], out_dir=shared / "runs", parameters=params,
                           device="cpu", seed=0, progress_bar=False)
    _ran.append(name)
    executed = shared / "runs" / name
    assert executed.exists()
    prefix = name[:2] + "_"
    figures = {p.name for p in (shared / "figures").glob(prefix + "*.png")} - before[0]
    results = {p.name for p in (shared / "results").glob(prefix + "*.json")} - before[1]
    assert figures, "the notebook saved no figure"
    assert results, "the notebook saved no results"
    assert record is not None
    if name.startswith("03_"):
        assert any(r.startswith("03_attacks_") for r in results)
        assert any(r.startswith("03_ulira_") for r in results)
    if name.startswith("02_") and "04_feature_distributions.ipynb" in _ran:
        # 02's four methods (NegGrad, UNSIR, Bad Teacher, DLFD) were unlearned by 04 and 03 already
        text = _outputs(executed)
        assert text.count("reused from") == 4 and "unlearned now" not in text, text
