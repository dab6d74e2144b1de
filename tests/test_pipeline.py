"""Profiles, the `dlfd` CLI and papermill orchestration, on throwaway notebooks.

These start real Jupyter kernels (a few seconds each), so the notebooks are one or two cells.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from dlfd_lib import __version__, pipeline
from dlfd_lib.cli import build_parser, main
from dlfd_lib.pipeline import NotebookFailed, run_notebooks, select_notebooks
from dlfd_lib.profiles import PROFILES, get_profile


# ---------------------------------------------------------------------------------- helpers

def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """cells: (kind, source) with kind 'md', 'code' or 'params' (a parameters-tagged cell)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


PARAMS = 'profile = "quick"\nseed = 123\ndevice = "auto"\nfactor = 1'

CHECKS = """\
import json, os, sys
assert profile == "smoke", profile
assert seed == 7 and factor == 3 and device == "cpu", (seed, factor, device)
with open("ran.json", "w") as fh:  # cwd is the notebooks folder
    json.dump({"executable": sys.executable,
               "jupyter_path": os.environ.get("JUPYTER_PATH", "")}, fh)
"""


@pytest.fixture
def ok_dir(tmp_path: Path) -> Path:
    nbs = tmp_path / "nbs"
    write_notebook(nbs / "01_ok.ipynb", [("md", "# ok"), ("params", PARAMS), ("code", CHECKS)])
    return nbs


@pytest.fixture
def failing_dir(tmp_path: Path) -> Path:
    nbs = tmp_path / "nbs"
    write_notebook(nbs / "01_breaks.ipynb", [
        ("md", "# this one breaks in its second code cell"),
        ("params", PARAMS),
        ("md", "a step"),
        ("code", "x = 1\ny = x / 0"),
        ("code", "print('never runs')"),
    ])
    write_notebook(nbs / "02_after.ipynb", [("params", PARAMS), ("code", "open('02.ran', 'w')")])
    return nbs


# -------------------------------------------------------------------------------------- CLI

def test_cli_parses_run_arguments():
    args = build_parser().parse_args(
        ["run", "--profile", "smoke", "--notebooks", "01", "03", "--device", "cpu",
         "--seed", "5", "--out", "x", "-p", "n=3", "-p", "name=abc", "-p", "flag=true",
         "--notebooks-dir", "nbs"])
    assert args.command == "run" and args.profile == "smoke"
    assert args.notebooks == ["01", "03"] and args.device == "cpu" and args.seed == 5
    assert args.out == "x" and args.notebooks_dir == "nbs"
    assert dict(args.params) == {"n": 3, "name": "abc", "flag": True}
    defaults = build_parser().parse_args(["run"])
    assert defaults.profile == "quick" and defaults.notebooks is None
    assert defaults.device == "auto" and defaults.seed == 0


@pytest.mark.parametrize("argv", [["run", "-p", "novalue"], ["run", "--profile", "huge"],
                                  ["run", "--device", "tpu"], []])
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_cli_version_and_profiles(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    assert main(["profiles", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == PROFILES
    assert main(["profiles"]) == 0
    table = capsys.readouterr().out
    assert "data.image_size" in table and "paper" in table


# -------------------------------------------------------------------------------- selection

def test_select_notebooks(tmp_path):
    for name in ("01_a.ipynb", "02_b.ipynb", "10_c.ipynb", "notes.ipynb"):
        write_notebook(tmp_path / name, [("code", "pass")])
    assert [p.name for p in pipeline.discover_notebooks(tmp_path)] == [
        "01_a.ipynb", "02_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in select_notebooks(["02", "01_a", "10_c.ipynb"], tmp_path)] == [
        "02_b.ipynb", "01_a.ipynb", "10_c.ipynb"]
    with pytest.raises(ValueError, match="available: 01_a.ipynb, 02_b.ipynb"):
        select_notebooks(["07"], tmp_path)
    with pytest.raises(ValueError, match="ambiguous"):
        select_notebooks(["0"], tmp_path)
    with pytest.raises(FileNotFoundError, match="notebooks-dir"):
        select_notebooks(None, tmp_path / "missing")


def test_reserved_parameters_are_refused(ok_dir, tmp_path):
    with pytest.raises(ValueError, match="seed"):
        run_notebooks("smoke", notebooks_dir=ok_dir, out_dir=tmp_path / "out",
                      parameters={"seed": 1})


# ------------------------------------------------------------------------ papermill, for real

def test_run_notebooks_succeeds_and_records_provenance(ok_dir, tmp_path):
    out = tmp_path / "out"
    record = run_notebooks("smoke", notebooks_dir=ok_dir, out_dir=out, seed=7, device="cpu",
                           parameters={"factor": 3}, progress_bar=False)
    assert record["status"] == "ok"
    assert (out / "01_ok.ipynb").is_file()
    ran = json.loads((ok_dir / "ran.json").read_text())
    assert ran["executable"] == sys.executable  # the notebooks ran in this interpreter
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "ok" and prov["profile"] == "smoke" and prov["seed"] == 7
    assert prov["settings"] == get_profile("smoke")
    assert prov["kit_version"] == __version__ and prov["finished"]
    assert prov["environment"]["python"] == sys.version.split()[0]
    [entry] = prov["notebooks"]
    assert entry["notebook"] == "01_ok.ipynb" and entry["status"] == "ok"
    assert entry["wall_s"] >= 0
    assert not list(out.glob(".provenance.json.*"))  # no temporary file left behind


def test_private_kernel_when_no_kernelspec_runs_this_python(ok_dir, tmp_path, monkeypatch):
    from dlfd_lib.notebook_run import kernel
    monkeypatch.setattr(kernel, "_runs_this_python", lambda argv0: False)
    before = os.environ.get("JUPYTER_PATH")
    record = run_notebooks("smoke", notebooks_dir=ok_dir, out_dir=tmp_path / "out", seed=7,
                           device="cpu", parameters={"factor": 3}, progress_bar=False)
    assert record["kernel_name"] == pipeline.KERNEL_NAME
    ran = json.loads((ok_dir / "ran.json").read_text())
    assert ran["executable"] == sys.executable and "dlfd-kernel-" in ran["jupyter_path"]
    assert os.environ.get("JUPYTER_PATH") == before


def test_failing_cell_is_named(failing_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NotebookFailed) as err:
        run_notebooks("smoke", notebooks_dir=failing_dir, out_dir=out, progress_bar=False)
    msg = str(err.value)
    assert "01_breaks.ipynb" in msg
    assert "cell 4 (code cell 2)" in msg and "ZeroDivisionError" in msg
    assert "x = 1" in msg and str(out / "01_breaks.ipynb") in msg
    assert err.value.cell_index == 4 and err.value.ename == "ZeroDivisionError"
    assert (out / "01_breaks.ipynb").is_file()
    assert not (failing_dir / "02.ran").exists()  # the run stops at the first failure
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "failed"
    assert [e["status"] for e in prov["notebooks"]] == ["failed"]


def test_cli_run_failure_exits_nonzero(failing_dir, tmp_path, capsys):
    code = main(["run", "--profile", "smoke", "--notebooks-dir", str(failing_dir),
                 "--notebooks", "01", "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "01_breaks.ipynb" in err and "code cell 2" in err
