"""Where does `make demo`'s time go? Per notebook and per cell, from an executed run.

Reads the executed notebooks of one `dlfd run` (``runs/<profile>/``, written by `make demo`)
and its ``provenance.json``: the wall time of every notebook (kernel start included) and the
cells that took longest, each with its first code line, so the phases – imports, data
generation, training, evaluation, UMAP, unlearning runs – can be read off. Nothing is rerun.

    make demo && python benchmarks/demo_time.py --profile quick [--top 6] [--out results/demo_time.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_code_line(source: str) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:90]
    return "(comments only)"


def breakdown(run_dir: Path, top: int) -> dict:
    prov_path = run_dir / "provenance.json"
    if not prov_path.exists():
        raise SystemExit(f"error: {prov_path} not found: run `make demo` (or `dlfd run --out {run_dir}`) first")
    prov = json.loads(prov_path.read_text())
    walls = {}
    for entry in prov.get("notebooks", []):
        if isinstance(entry, dict) and "notebook" in entry:
            walls[entry["notebook"]] = entry.get("wall_s")
    out = {"run_dir": str(run_dir), "notebooks": []}
    for nb_path in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        timed = []
        for i, cell in enumerate(cells):
            d = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if cell.get("cell_type") == "code" and d is not None:
                timed.append({"cell": i, "seconds": round(float(d), 1),
                              "first_line": first_code_line("".join(cell.get("source", "")))})
        cell_sum = sum(c["seconds"] for c in timed)
        out["notebooks"].append({"name": nb_path.name, "wall_s": walls.get(nb_path.name),
                                 "cells_s": round(cell_sum, 1),
                                 "top": sorted(timed, key=lambda c: -c["seconds"])[:top]})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--runs", default=None, help="the run folder (default: runs/<profile>)")
    p.add_argument("--top", type=int, default=6, help="longest cells listed per notebook")
    p.add_argument("--out", default=None, help="also write the breakdown as JSON here")
    args = p.parse_args(argv)
    run_dir = Path(args.runs) if args.runs else ROOT / "runs" / args.profile
    res = breakdown(run_dir, args.top)
    total = 0.0
    for nb in res["notebooks"]:
        wall = nb["wall_s"]
        total += wall or nb["cells_s"]
        print(f"{nb['name']}: {wall if wall is not None else '?'} s wall, {nb['cells_s']} s in cells")
        for c in nb["top"]:
            print(f"   {c['seconds']:7.1f} s  cell {c['cell']:>2}: {c['first_line']}")
    print(f"all notebooks: {total:.0f} s ({total / 60:.1f} min)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
