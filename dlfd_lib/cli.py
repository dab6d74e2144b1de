"""The ``dlfd`` command: run the notebooks headlessly, list the profiles.

    dlfd run --profile quick                    # every notebook, executed into runs/quick/
    dlfd run --profile smoke --notebooks 01 03  # a selection, by number or name
    dlfd run -p n_methods=3 --device cpu        # extra notebook parameters (key=value)
    dlfd profiles [--json]                      # the sizes each profile picks
    dlfd --version
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from typing import Any, Sequence

from . import __version__
from .pipeline import PROFILES, NotebookFailed, run_notebooks


def _parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true``/``True`` -> True, ``[1,2]`` -> [1, 2], else text."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected key=value with a Python identifier as key, got {text!r}")
    return key.strip(), _parse_value(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlfd", description="DLFD study kit: run the notebooks headlessly with papermill.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{run,profiles}")
    sub.required = True

    run = sub.add_parser("run", help="execute the notebooks in order",
                         description="Execute the notebooks in order into runs/<profile>/ "
                                     "and write runs/<profile>/provenance.json.")
    run.add_argument("--profile", choices=list(PROFILES), default="quick",
                     help="sizes for everything (default: quick)")
    run.add_argument("--notebooks", nargs="+", metavar="NB", default=None,
                     help="a selection by number or name, e.g. 01 03 (default: all)")
    run.add_argument("--notebooks-dir", default=None, metavar="DIR",
                     help="folder holding the NN_*.ipynb notebooks (default: notebooks/)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=None, metavar="DIR",
                     help="where executed notebooks go (default: runs/<profile>)")
    run.add_argument("-p", "--param", dest="params", action="append", type=_key_value,
                     default=[], metavar="KEY=VALUE",
                     help="an extra notebook parameter (repeatable); values parse as JSON or "
                          "Python literals, else stay strings")
    run.add_argument("--kernel", default=None,
                     help="Jupyter kernel name (default: a kernel running this Python)")
    run.add_argument("--log-output", action="store_true",
                     help="stream the notebooks' cell output to the terminal")

    prof = sub.add_parser("profiles", help="show the settings of each profile")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def profiles_table() -> str:
    """The profiles as a plain-text table: one row per setting, one column per profile."""
    flat = {name: _flatten({k: v for k, v in p.items() if k != "description"})
            for name, p in PROFILES.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    rows = [["setting", *flat]] + [[k, *(str(f.get(k, "")) for f in flat.values())]
                                   for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{name}: {p.get('description', '')}" for name, p in PROFILES.items()]
    return "\n".join(lines + [""] + notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "profiles":
        print(json.dumps(PROFILES, indent=2) if args.json else profiles_table())
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.log_output:
        logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        record = run_notebooks(profile=args.profile, notebooks=args.notebooks,
                               out_dir=args.out, parameters=dict(args.params),
                               kernel_name=args.kernel, device=args.device, seed=args.seed,
                               log_output=args.log_output, notebooks_dir=args.notebooks_dir)
    except NotebookFailed as err:
        print(f"dlfd: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        print(f"dlfd: error: {err}", file=sys.stderr)
        return 2
    total = sum(nb["wall_s"] for nb in record["notebooks"])
    print(f"dlfd: {len(record['notebooks'])} notebook(s) ran in {total:.0f} s; the executed "
          f"notebooks and provenance.json are in {record['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
