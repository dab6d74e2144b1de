"""Build the kit's rendered book: a static HTML site from the *executed* notebooks of the last
``make demo`` run (``runs/<profile>/``), with Sphinx + MyST-NB (nothing is re-executed).

    python scripts/build_book.py --profile quick            # -> book/_build/html/index.html
    python scripts/build_book.py --runs runs/smoke --out /tmp/book

Steps:

1. check that every ``notebooks/NN_*.ipynb`` has an executed copy in the runs folder (else it
   stops and says to run ``make demo``), and that none holds an error output;
2. copy the book's own pages (``book/``: ``conf.py``, the front page), the documentation pages
   (``docs/*.md`` with their images, the teacher's guide among them; the front page's toctree
   lists them) and a prepared copy of each executed notebook into a scratch source folder
   (``book/_build/src``): cells whose source is hidden in JupyterLab
   (``metadata.jupyter.source_hidden``, the exercises' answers) become folded ``<details>``
   blocks; ipywidgets outputs, which need a live kernel, become a note saying so (they would
   otherwise make the page fetch the widget manager from a CDN);
3. make MathJax available offline: ``npm install mathjax@3`` once into ``book/_build/npm``
   (a package registry, at install time), copied into the site's ``_static/``; without npm the
   site falls back to MathJax from its CDN, which is fine for a published site;
4. ``sphinx-build -b html``.

The output (``book/_build/``) is git-ignored. ``make book`` installs the ``book`` extra first.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
DOCS = ROOT / "docs"
#: the book's own files, copied beside the documentation pages
BOOK_FILES = ("conf.py", "index.md", "favicon.svg")
MATHJAX_SPEC = "mathjax@3.2.2"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p class=\"widget-note\"><em>An interactive ipywidgets explorer is displayed here "
               "when the notebook runs in JupyterLab (<code>make lab</code>); a static page cannot "
               "run it.</em></p>")


class BookError(RuntimeError):
    pass


def notebook_names() -> list[str]:
    return sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def doc_pages() -> list[str]:
    """The documentation pages (``docs/*.md``) by name without ``.md``; the book renders each one
    at its top level, beside the front page (``<name>.html``)."""
    return sorted(p.stem for p in DOCS.glob("*.md"))


def copy_docs(work: Path) -> list[str]:
    """Copy ``docs/*.md`` and ``docs/img/`` into the book's source folder ``work`` (top level, so
    that the pages' links to each other and to ``img/`` work in the book as in the repository);
    a page whose name collides with one of the book's own files is a BookError."""
    names = doc_pages()
    for name in names:
        if f"{name}.md" in BOOK_FILES:
            raise BookError(f"docs/{name}.md collides with book/{name}.md: rename the page")
        shutil.copy2(DOCS / f"{name}.md", work / f"{name}.md")
    if (DOCS / "img").is_dir():
        shutil.copytree(DOCS / "img", work / "img")
    return names


def fold_hidden(cell: dict) -> dict:
    """A hidden-source cell as the book shows it: a markdown cell becomes a folded ``<details>``
    block (its first bold 'Answer.' stays inside); a code cell gets myst-nb's ``hide-input`` tag."""
    cell = copy.deepcopy(cell)
    if not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
        return cell
    if cell["cell_type"] == "markdown":
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = ("<details class=\"answer\">\n<summary>Answer (click to unfold)</summary>\n\n"
                          + src.strip() + "\n\n</details>")
    elif cell["cell_type"] == "code":
        tags = cell["metadata"].setdefault("tags", [])
        if "hide-input" not in tags:
            tags.append("hide-input")
    return cell


def strip_widgets(cell: dict) -> dict:
    """Replace ipywidgets outputs by a static note (text/html)."""
    if cell["cell_type"] != "code":
        return cell
    cell = copy.deepcopy(cell)
    for out in cell.get("outputs", []):
        data = out.get("data")
        if data and WIDGET_MIME in data:
            out["data"] = {"text/html": WIDGET_NOTE, "text/plain": "(interactive explorer)"}
    return cell


def error_outputs(nb: dict) -> list[str]:
    """Descriptions of the error outputs of an executed notebook (empty: none)."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return found


def prepare_notebook(nb: dict) -> dict:
    """The book's copy of one executed notebook: answers folded, widgets replaced, the widget
    state (which would load the widget manager from a CDN) dropped."""
    nb = copy.deepcopy(nb)
    nb["cells"] = [strip_widgets(fold_hidden(c)) for c in nb["cells"]]
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def collect(runs: Path) -> dict[str, dict]:
    """{name: executed notebook} for every notebook of the kit, or BookError naming what is missing."""
    if not runs.is_dir():
        raise BookError(f"{runs} does not exist: run `make demo` (or `dlfd run --profile <name>`) first; "
                        f"the book is built from the executed notebooks it writes there")
    names = notebook_names()
    missing = [n for n in names if not (runs / n).is_file()]
    if missing:
        raise BookError(f"{runs} lacks the executed notebook(s) {missing}: run `make demo` "
                        f"(all notebooks) before `make book`")
    nbs = {}
    for n in names:
        nb = json.loads((runs / n).read_text())
        errors = error_outputs(nb)
        if errors:
            raise BookError(f"{runs / n} holds error output ({'; '.join(errors[:3])}): fix the run "
                            f"and run `make demo` again")
        if not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"):
            raise BookError(f"{runs / n} has no outputs: it is not an executed notebook")
        nbs[n] = nb
    return nbs


def offline_mathjax(cache: Path) -> Path | None:
    """The folder of MathJax's ``es5`` build from npm (installed once into ``cache``), or None."""
    es5 = cache / "node_modules" / "mathjax" / "es5"
    if (es5 / "tex-mml-chtml.js").is_file():
        return es5
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the book will load MathJax from its CDN", file=sys.stderr)
        return None
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), MATHJAX_SPEC],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (es5 / "tex-mml-chtml.js").is_file():
        print(f"npm install {MATHJAX_SPEC} failed ({proc.stderr.strip()[-300:]}): the book will load "
              f"MathJax from its CDN", file=sys.stderr)
        return None
    return es5


def build(runs: Path, out: Path, work: Path, profile: str | None = None, mathjax: bool = True) -> Path:
    """Assemble the sources in ``work`` and build the HTML site into ``out``; returns index.html."""
    nbs = collect(runs)
    if work.exists():
        shutil.rmtree(work)
    (work / "notebooks").mkdir(parents=True)
    for page in BOOK_FILES:
        shutil.copy2(BOOK / page, work / page)
    copy_docs(work)
    for name, nb in nbs.items():
        (work / "notebooks" / name).write_text(json.dumps(prepare_notebook(nb), indent=1))
    provenance = runs / "provenance.json"
    if provenance.is_file():
        shutil.copy2(provenance, work / "provenance.json")
    static = work / "_static"
    static.mkdir()
    es5 = offline_mathjax(BOOK / "_build" / "npm") if mathjax else None
    if es5 is not None:
        shutil.copytree(es5, static / "mathjax")
    env = {"DLFD_BOOK_PROFILE": profile or runs.name, "DLFD_BOOK_MATHJAX": "local" if es5 else "cdn"}
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", str(work), str(out)]
    import os
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BookError(f"sphinx-build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if proc.stderr.strip():
        print(proc.stderr.strip()[-3000:], file=sys.stderr)
    return out / "index.html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", help="read runs/<profile>/ (default: quick, as make demo)")
    ap.add_argument("--runs", type=Path, default=None, help="folder of executed notebooks (overrides --profile)")
    ap.add_argument("--out", type=Path, default=BOOK / "_build" / "html")
    ap.add_argument("--no-offline-mathjax", action="store_true", help="load MathJax from its CDN")
    args = ap.parse_args(argv)
    runs = args.runs or ROOT / "runs" / args.profile
    try:
        index = build(runs, args.out, BOOK / "_build" / "src", profile=None if args.runs else args.profile,
                      mathjax=not args.no_offline_mathjax)
    except BookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"book written to {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
