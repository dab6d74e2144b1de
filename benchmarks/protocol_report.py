"""The README's result tables, written from a finished protocol run's files.

``benchmarks/unlearning_quality.py`` (the protocol) leaves ``protocol.json`` in its folder; this
script reads it and prints, as Markdown: the chosen setting of every method with its best
validation score, every model's mean (sd) over the evaluation seeds, the paired differences to
DLFD with their bootstrap intervals and verdicts, the four membership attacks (when the run had
``--attacks``), the correlation-collapse measures (when it had ``--collapse``) and the trade-off front points with the sentences of
:func:`dlfd_lib.fronts.describe_fronts`, the fronts' hypervolumes, the ablations and the
per-example test (when the run had them), the verdict in plain words and the cost by stage.
``--figure`` also draws the fronts (:func:`dlfd_lib.plots.plot_fronts`); ``--readme README.md``
rewrites the README's results block from the run and ``--page docs/verdict.md`` the whole verdict
(by default beside the README: ``docs/verdict.md``). Nothing is recomputed: every number is the run's.

    python benchmarks/protocol_report.py --out-dir results/quick --figure docs/img/verdict_fronts_quick.png --readme README.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlfd_lib.report import (COLLAPSE, _p, ablation_markdown, attack_markdown, collapse_markdown,  # noqa: E402,F401
                             cost_markdown, hypervolume_markdown, intervals_markdown, label,
                             paired_markdown, pending_block, pending_page, per_seed_table, points_markdown,
                             readme_block, summary_table, tuned_table, ulira_markdown, verdict_markdown,
                             verdict_page, write_readme)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="runs/protocol-quick", help="the protocol's folder")
    ap.add_argument("--figure", default=None, help="also save the trade-off fronts here (PNG/PDF)")
    ap.add_argument("--readme", default=None,
                    help="write the results block of this README (between its markers) from the run")
    ap.add_argument("--page", default=None,
                    help="write the whole verdict to this Markdown page (default with --readme: docs/verdict.md "
                         "beside the README)")
    args = ap.parse_args(argv)
    page = Path(args.page) if args.page else (Path(args.readme).parent / "docs" / "verdict.md" if args.readme else None)
    out = Path(args.out_dir)
    path = out / "protocol.json"
    if not path.exists():
        if args.readme:
            write_readme(Path(args.readme), pending_block())
            print(f"{args.readme}: results block says the verdict's run has not finished")
        if page:
            page.write_text(pending_page())
        raise SystemExit(f"{path} does not exist: run `python benchmarks/unlearning_quality.py --out-dir {out}` "
                         "first (the protocol writes protocol.json when it finishes)")
    run = json.loads(path.read_text())
    rows = pd.DataFrame(run["rows"])
    paired = pd.DataFrame(run["paired"])
    points = pd.DataFrame(run["points"])
    cfg = run["config"]
    print(f"protocol: profile {run['profile']}, {run['dataset']}/{run['task']}, tuning seeds {cfg['tuning_seeds']}, "
          f"evaluation seeds {cfg['eval_seeds']}, {cfg['n_trials']} trials per method; "
          f"wall time of this invocation {run['seconds']:.0f} s\n")
    if not paired.empty:
        print("## the verdict\n\n" + verdict_markdown(run) + "\n")
    print("## chosen settings\n\n" + tuned_table(run, out / "tuning") + "\n")
    print("## every model, mean (sd) over the evaluation seeds\n\n" + summary_table(rows) + "\n")
    for metric in ("test_acc", "abs_mia_gap"):
        print(f"## {metric} per seed\n\n" + per_seed_table(rows, metric) + "\n")
    if not paired.empty:
        print("## paired against DLFD (mean difference [Student-t 95 % interval] verdict for the model, "
              "Holm-adjusted p)\n\n" + paired_markdown(paired) + "\n")
        print("## the intervals side by side\n\n" + intervals_markdown(paired) + "\n")
    attacks = attack_markdown(rows)
    if attacks:
        print("## four attacks, mean over the evaluation seeds\n\n" + attacks + "\n")
    collapse = collapse_markdown(pd.DataFrame(run.get("collapse", [])))
    if collapse:
        print("## correlation collapse, mean (sd) over the evaluation seeds\n\n" + collapse + "\n")
        cp = pd.DataFrame(run.get("collapse_paired", []))
        if not cp.empty:
            print("## collapse paired against DLFD\n\n" + paired_markdown(cp, COLLAPSE) + "\n")
    print("## front points (mean over the seeds each was run on)\n\n" + points_markdown(points) + "\n")
    print("\n".join(f"- {s}" for s in run["fronts_text"]))
    hv = hypervolume_markdown(run)
    if hv:
        print("\n## hypervolume of the fronts\n\n" + hv + "\n")
    ab = ablation_markdown(run)
    if ab:
        print("## DLFD's ablations\n\n" + ab + "\n")
    u = ulira_markdown(run)
    if u:
        print("## per-example test\n\n" + u + "\n")
    print("## cost\n\n" + cost_markdown(run) + "\n")
    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        from dlfd_lib.plots import plot_fronts

        ref = {"test_acc": float(rows.loc[rows["model"] == "retrained", "test_acc"].mean())}
        # the ring says "tuned" only for methods the protocol tuned (a method without a search space runs at its defaults)
        fig = plot_fronts(points, reference=ref, tuned=[m for m, hp in run.get("tuned", {}).items() if hp])
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=130, bbox_inches="tight")
        print(f"\nfronts drawn to {args.figure}")
    if args.readme:
        figure = Path(args.figure).as_posix() if args.figure else None
        changed = write_readme(Path(args.readme), readme_block(run, figure))
        print(f"{args.readme}: results block {'rewritten' if changed else 'already up to date'}")
    if page:
        # the figure's path as the page sees it (the page lives in docs/, the figure in docs/img/)
        figure = Path(args.figure).resolve() if args.figure else None
        rel = Path(_relative(figure, page.resolve().parent)).as_posix() if figure else None
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(verdict_page(run, rel))
        print(f"{page}: the whole verdict written")


def _relative(target: Path, start: Path) -> str:
    import os
    return os.path.relpath(target, start)


if __name__ == "__main__":
    main()
