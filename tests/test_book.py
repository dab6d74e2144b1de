"""The rendered book (scripts/build_book.py) and the exercises it folds.

The preparation of the executed notebooks is unit-tested here (no Sphinx needed); building the
site and checking it in headless Chromium is the opt-in ``browser`` test at the end
(``make browser-check`` or ``pytest -m browser``)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


book = _load("build_book")


def _hidden(cell):
    return bool(cell.metadata.get("jupyter", {}).get("source_hidden"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebook_ends_with_exercises_and_folded_answers(path):
    nb = nbformat.read(path, 4)
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                  and c.source.lstrip().startswith("## Exercises")), None)
    assert start is not None, f"{path.name} has no '## Exercises' section"
    cells = nb.cells[start:]
    questions = [c for c in cells if c.cell_type == "markdown" and not _hidden(c)
                 and re.search(r"^\*\*\d\.\*\*", c.source, re.M)]
    answers = [c for c in cells if c.cell_type == "markdown" and _hidden(c)]
    assert 3 <= len(questions) <= 6, f"{path.name}: {len(questions)} exercises"
    assert len(answers) == len(questions), f"{path.name}: {len(questions)} questions, {len(answers)} folded answers"
    assert all(a.source.startswith("**Answer.**") for a in answers)
    assert any(c.cell_type == "code" for c in cells), f"{path.name}: no exercise to run"
    for c in nb.cells:  # committed without outputs, also the new cells
        assert c.cell_type != "code" or (not c.outputs and c.execution_count is None), f"{path.name}: outputs committed"


def test_fold_hidden_turns_answers_into_closed_details_and_leaves_the_rest():
    answer = nbformat.v4.new_markdown_cell("**Answer.** $x = 1$.")
    answer.metadata = {"jupyter": {"source_hidden": True}}
    folded = book.fold_hidden(answer)
    assert folded["source"].startswith('<details class="answer">') and folded["source"].endswith("</details>")
    assert "**Answer.** $x = 1$." in folded["source"] and " open" not in folded["source"]
    assert answer.source == "**Answer.** $x = 1$."  # the input is not changed
    plain = nbformat.v4.new_markdown_cell("a question")
    assert book.fold_hidden(plain)["source"] == "a question"
    code = nbformat.v4.new_code_cell("print(1)")
    code.metadata = {"jupyter": {"source_hidden": True}}
    assert book.fold_hidden(code)["metadata"]["tags"] == ["hide-input"]


def test_prepare_notebook_replaces_widgets_and_drops_their_state():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        book.WIDGET_MIME: {"model_id": "abc"}, "text/plain": "VBox(...)"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    out = book.prepare_notebook(nb)
    assert "widgets" not in out["metadata"]
    assert book.WIDGET_MIME not in out["cells"][0]["outputs"][0]["data"]
    assert "JupyterLab" in out["cells"][0]["outputs"][0]["data"]["text/html"]
    assert out["cells"][0]["outputs"][1]["data"] == {"image/png": "iVBOR"}
    assert book.WIDGET_MIME in cell.outputs[0]["data"]  # the executed notebook is left alone


def test_collect_names_what_is_missing_or_broken(tmp_path):
    with pytest.raises(book.BookError, match="make demo"):
        book.collect(tmp_path / "nowhere")
    runs = tmp_path / "runs"
    runs.mkdir()
    names = book.notebook_names()
    assert names == [p.name for p in NOTEBOOKS]
    for n in names[:-1]:
        nb = nbformat.v4.new_notebook()
        c = nbformat.v4.new_code_cell("1")
        c.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1)]
        nb.cells = [c]
        nbformat.write(nb, runs / n)
    with pytest.raises(book.BookError, match=names[-1]):
        book.collect(runs)
    nb = nbformat.read(runs / names[0], 4)
    nb.cells[0].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    nbformat.write(nb, runs / names[-1])
    with pytest.raises(book.BookError, match="error output.*boom"):
        book.collect(runs)
    nb.cells[0].outputs = []
    nbformat.write(nb, runs / names[-1])
    with pytest.raises(book.BookError, match="no outputs"):
        book.collect(runs)


def test_every_docs_page_is_in_the_books_table_of_contents():
    """The front page's toctrees list every docs/*.md page once (Sphinx would otherwise build an
    orphan page, or stop at a missing one)."""
    index = (ROOT / "book" / "index.md").read_text()
    entries = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.S):
        if ":glob:" not in block:
            entries += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith(":")]
    assert sorted(entries) == book.doc_pages()
    assert "teachers_guide" in entries


def test_docs_pages_land_beside_the_front_page_with_their_links_and_images(tmp_path):
    """What build() hands to Sphinx: the docs pages at the top of the source folder, so that their
    relative links (to each other, to img/) resolve in the book as they do in the repository."""
    names = book.copy_docs(tmp_path)
    assert names == book.doc_pages() and {"teachers_guide", "protocol", "performance"} <= set(names)
    for name in names:
        text = (tmp_path / f"{name}.md").read_text()
        assert text.startswith("# "), f"docs/{name}.md must open with its title"
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target):
                assert (tmp_path / target).exists(), f"docs/{name}.md links to {target}, missing in the book"


@pytest.mark.browser
def test_book_builds_and_every_page_renders_in_chromium(tmp_path):
    """Builds the book from DLFD_BOOK_RUNS, else runs/quick (the last `make demo`), else a fresh
    smoke run, and checks every page in headless Chromium (scripts/book_check.py)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run `make browser-check`")
    pytest.importorskip("playwright", reason="pip install -e '.[browser]' (make browser-check does it)")
    pytest.importorskip("myst_nb", reason="pip install -e '.[book]' (make browser-check does it)")
    runs = Path(os.environ.get("DLFD_BOOK_RUNS", ROOT / "runs" / "quick"))
    try:
        book.collect(runs)
    except book.BookError:
        from dlfd_lib.pipeline import run_notebooks
        runs = tmp_path / "runs"
        params = {"checkpoint_dir": str(tmp_path / "ck"), "figure_dir": str(tmp_path / "fig"),
                  "results_dir": str(tmp_path / "res"), "data_root": str(tmp_path / "cache")}
        run_notebooks("smoke", out_dir=runs, parameters=params, device="cpu", seed=0, progress_bar=False)
    html = tmp_path / "html"
    index = book.build(runs, html, tmp_path / "src")
    assert index.is_file()
    out = ROOT / "figures" / "book_check"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "book_check.py"), "--html", str(html),
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"book check failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    pages = json.loads(proc.stdout[:proc.stdout.rindex("]") + 1])
    assert [p["page"] for p in pages][:2] == ["index.html", "teachers_guide.html"]
    docs = {p["page"]: p for p in pages if not p["page"].startswith("notebooks/") and p["page"] != "index.html"}
    assert set(docs) == {f"{name}.html" for name in book.doc_pages()}
    assert all(p["heading"] for p in docs.values())
    assert docs["dlfd.html"]["figures"] >= 1  # the schematic (docs/img/) reaches the book
    chapters = [p for p in pages if p["page"].startswith("notebooks/")]
    assert len(chapters) == len(NOTEBOOKS)
    assert all(p["figures"] > 0 and p["answers"] >= 3 for p in chapters)
    for shot in ["index.png", "answer_unfolded.png", *(p["page"].replace("/", "_")[:-5] + ".png" for p in chapters)]:
        assert (out / shot).stat().st_size > 10_000, f"{shot} missing or empty"
