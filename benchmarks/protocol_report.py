"""The README's result tables, written from a finished protocol run's files.

``benchmarks/unlearning_quality.py`` (the protocol) leaves ``protocol.json`` in its folder; this
script reads it and prints, as Markdown: the chosen setting of every method with its best
validation score, every model's mean (sd) over the evaluation seeds, the paired differences to
DLFD with their bootstrap intervals and verdicts, the four membership attacks (when the run had
``--attacks``), the correlation-collapse measures (when it had ``--collapse``) and the trade-off front points with the sentences of
:func:`dlfd_lib.fronts.describe_fronts`. ``--figure`` also draws the fronts
(:func:`dlfd_lib.plots.plot_fronts`). Nothing is recomputed: every number is the run's.

    python benchmarks/protocol_report.py --out-dir runs/protocol-quick --figure figures/protocol_fronts_quick.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = {"original": "original", "retrained": "retrained", "dlfd": "**DLFD**", "dlfd_released": "DLFD (released code)", "neggrad": "NegGrad",
          "neggrad_plus": "NegGrad+", "unsir": "UNSIR", "bad_teacher": "Bad Teacher", "scrub": "SCRUB",
          "finetune": "Fine-tune", "random_label": "Random-Label", "salun": "SalUn", "cf_k": "CF-k",
          "eu_k": "EU-k"}
SUMMARY = [("retain_acc", "retain acc"), ("forget_acc", "forget acc"), ("test_acc", "test acc"),
           ("mia", "MIA"), ("abs_mia_gap", "abs(MIA − MIA retr.)"), ("avg_gap", "Avg. Gap"),
           ("nomus", "NoMUS"), ("mia_sampling_sd", "MIA sampling sd")]
PAIRED = [("test_acc", "test acc"), ("abs_mia_gap", "abs(MIA gap)"), ("avg_gap", "Avg. Gap"),
          ("nomus", "NoMUS")]
ATTACKS = ("loss", "confidence", "entropy", "mentr")
COLLAPSE = [("probe_acc", "probe acc (test)"), ("probe_forget_acc", "probe acc (forget)"),
            ("silhouette", "silhouette"), ("identity_knn_acc", "identity 1-NN (forget)"),
            ("cka_to_original_test", "CKA to original (test)")]


def label(model: str) -> str:
    return LABELS.get(model, model)


def _ms(mean: float, sd: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f} ({sd:.{digits}f})" if not math.isnan(sd) else f"{mean:.{digits}f}"


def _fmt_hp(params: dict) -> str:
    out = []
    for k, v in params.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        out.append(f"`{k}`={v}")
    return ", ".join(out) if out else "declared defaults (no search space)"


def tuned_table(run: dict, tuning_dir: Path) -> str:
    lines = ["| method | chosen setting | best validation score | trials |", "|---|---|---|---|"]
    for method, params in run["tuned"].items():
        meta = {}
        f = tuning_dir / f"{method}.json"
        if f.exists():
            meta = json.loads(f.read_text())
        value = meta.get("value")
        lines.append(f"| {label(method)} | {_fmt_hp(params)} | "
                     f"{'–' if value is None else f'{value:.4f}'} | {meta.get('n_trials', '–')} |")
    return "\n".join(lines)


def summary_table(rows: pd.DataFrame) -> str:
    cols = [(c, h) for c, h in SUMMARY if c in rows]
    g = rows.groupby("model", sort=False)
    mean, sd = g.mean(numeric_only=True), g.std(ddof=1, numeric_only=True)
    order = ["original", "retrained"] + [m for m in mean.index if m not in ("original", "retrained")]
    head = "| model | " + " | ".join(h for _, h in cols) + " | seconds |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for m in order:
        cells = [_ms(mean.loc[m, c], sd.loc[m, c]) for c, _ in cols]
        secs = mean.loc[m, "seconds"] if "seconds" in mean else float("nan")
        tail = f"{secs:.0f} (training)" if m in ("original", "retrained") else f"{secs:.0f}"
        lines.append(f"| {label(m)} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines)


def per_seed_table(rows: pd.DataFrame, metric: str) -> str:
    wide = rows.pivot_table(index="model", columns="seed", values=metric, sort=False)
    seeds = list(wide.columns)
    lines = ["| model | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for m in wide.index:
        lines.append(f"| {label(m)} | " + " | ".join(f"{wide.loc[m, s]:.3f}" for s in seeds) + " |")
    return "\n".join(lines)


def paired_markdown(paired: pd.DataFrame, metrics=PAIRED) -> str:
    """``paired`` (:func:`dlfd_lib.stats.paired_table`) as Markdown, one column per metric of
    ``metrics`` (``(column, header)`` pairs) that it holds."""
    metrics = [(c, h) for c, h in metrics if c in set(paired["metric"])]
    lines = ["| model − DLFD | " + " | ".join(h for _, h in metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for model, grp in paired.groupby("model", sort=False):
        g = grp.set_index("metric")
        cells = []
        for c, _ in metrics:
            r = g.loc[c]
            cells.append(f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] {r['verdict']}")
        lines.append(f"| {label(model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def attack_markdown(rows: pd.DataFrame) -> str | None:
    cols = [f"mia_{a}_auc" for a in ATTACKS]
    if not all(c in rows for c in cols):
        return None
    mean = rows.groupby("model", sort=False).mean(numeric_only=True)
    order = ["retrained", "original"] + [m for m in mean.index if m not in ("original", "retrained")]
    lines = ["| model | loss AUC | confidence AUC | entropy AUC | m-entropy AUC | entropy TPR@1%FPR |",
             "|---|---|---|---|---|---|"]
    for m in order:
        name = "retrained (target)" if m == "retrained" else label(m)
        cells = [f"{mean.loc[m, c]:.3f}" for c in cols] + [f"{mean.loc[m, 'mia_entropy_tpr1']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collapse_markdown(collapse: pd.DataFrame) -> str | None:
    """Mean (sd) over the evaluation seeds of the correlation-collapse measures (``--collapse``)."""
    cols = [(c, h) for c, h in COLLAPSE if c in collapse]
    if collapse.empty or not cols:
        return None
    g = collapse.groupby("model", sort=False)
    mean, sd = g.mean(numeric_only=True), g.std(ddof=1, numeric_only=True)
    order = ["original", "retrained"] + [m for m in mean.index if m not in ("original", "retrained")]
    lines = ["| model | " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for m in order:
        lines.append(f"| {label(m)} | " + " | ".join(_ms(mean.loc[m, c], sd.loc[m, c]) for c, _ in cols) + " |")
    return "\n".join(lines)


def points_markdown(points: pd.DataFrame) -> str:
    lines = ["| method | setting | strength | test acc | abs(MIA gap) | Avg. Gap | seeds | on its front |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in points.iterrows():
        s = r["strength"]
        s = "–" if s is None or (isinstance(s, float) and math.isnan(s)) else (f"{s:.3g}" if isinstance(s, float) else s)
        lines.append(f"| {label(r['model'])} | {r['setting']} | {s} | {r['test_acc']:.3f} | "
                     f"{r['abs_mia_gap']:.3f} | {r['avg_gap']:.3f} | {int(r['n_seeds'])} | "
                     f"{'yes' if r['on_front'] else ''} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="runs/protocol-quick", help="the protocol's folder")
    ap.add_argument("--figure", default=None, help="also save the trade-off fronts here (PNG/PDF)")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    path = out / "protocol.json"
    if not path.exists():
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
    print("## chosen settings\n\n" + tuned_table(run, out / "tuning") + "\n")
    print("## every model, mean (sd) over the evaluation seeds\n\n" + summary_table(rows) + "\n")
    for metric in ("test_acc", "abs_mia_gap"):
        print(f"## {metric} per seed\n\n" + per_seed_table(rows, metric) + "\n")
    if not paired.empty:
        print("## paired against DLFD (mean difference [bootstrap 95 % interval] verdict for the model)\n\n"
              + paired_markdown(paired) + "\n")
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
    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        from dlfd_lib.plots import plot_fronts

        ref = {"test_acc": float(rows.loc[rows["model"] == "retrained", "test_acc"].mean())}
        fig = plot_fronts(points, reference=ref)
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=130, bbox_inches="tight")
        print(f"\nfronts drawn to {args.figure}")


if __name__ == "__main__":
    main()
