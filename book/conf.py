"""Sphinx configuration of the kit's rendered book (scripts/build_book.py copies this folder and
the executed notebooks into a scratch source folder and runs sphinx-build there)."""
import json
import os
from pathlib import Path

project = "The DLFD study kit"
author = "the DLFD study kit's authors"
copyright = "the DLFD study kit's authors (MIT licence); DLFD: Choi & Na, AAAI 2025"

extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath", "substitution", "html_image"]
nb_execution_mode = "off"          # the notebooks were executed by `make demo`; never re-run here
nb_output_stderr = "remove"        # progress bars and warnings are noise in a book
nb_merge_streams = True
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # notebooks start sections at level 2 after their title

html_theme = "sphinx_book_theme"
html_title = "The DLFD study kit"
html_static_path = ["_static"]
html_favicon = "favicon.svg"
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True, "use_download_button": True}
html_last_updated_fmt = None
html_context = {"default_mode": "light"}

# MathJax offline when build_book.py found it on npm (a published site may use the CDN instead)
if os.environ.get("DLFD_BOOK_MATHJAX") == "local":
    mathjax_path = "mathjax/tex-mml-chtml.js"

# the front page shows where the outputs came from (runs/<profile>/provenance.json)
_prov = Path(__file__).with_name("provenance.json")
_p = json.loads(_prov.read_text()) if _prov.is_file() else {}
_git = _p.get("git") or {}
myst_substitutions = {
    "profile": _p.get("profile", os.environ.get("DLFD_BOOK_PROFILE", "?")),
    "seed": str(_p.get("seed", "?")),
    "device": str((_p.get("environment") or {}).get("device", _p.get("device", "?"))),
    "commit": (_git.get("commit") or "unknown")[:10] + (" (with local changes)" if _git.get("dirty") else ""),
    "finished": str(_p.get("finished") or "?"),
    "walltimes": ", ".join(f"{e['notebook'][:2]}: {e.get('wall_s', float('nan')) / 60:.1f} min"
                           for e in _p.get("notebooks", []) if "wall_s" in e) or "?",
}
