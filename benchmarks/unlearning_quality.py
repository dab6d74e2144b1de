"""Unlearning methods (or DLFD's ablations) against the original and retrained models, over seeds.

For each seed: build the profile's data, train (or reuse) the original and retrained models,
run each registered method from the original, evaluate everything the same way, and print the
per-seed rows and the mean (sd) over seeds (``dlfd_lib.benchmark``, as notebooks 03 and 05 do).

    python benchmarks/unlearning_quality.py --profile quick --seeds 0 1 2
    python benchmarks/unlearning_quality.py --profile quick --methods dlfd --seeds 0 1 2
    python benchmarks/unlearning_quality.py --profile quick --seeds 0 1 2 --attacks --collapse --ulira-k 4
    python benchmarks/unlearning_quality.py --profile quick --seeds 0 1 2 --ablations --attacks

* ``--attacks``: the four membership attacks (loss, confidence, entropy, modified entropy) for
  every model, their AUC gap to the retrained model, and how each attack ranks the methods
  against the paper's forgetting score.
* ``--collapse``: the correlation-collapse measures (``dlfd_lib.collapse``) of every model.
* ``--ulira-k K``: the per-example reference test (``dlfd_lib.ulira``) on the first seed with K
  retrained reference models (K retrainings: ~200 s each on the quick profile on 2 CPU cores).
* ``--ablations``: notebook 05's DLFD variants instead of the registered methods.

Reference-model checkpoints are shared with ``benchmarks/synthetic_quality.py`` (``--ckpt-dir``).
``--out PREFIX`` writes ``PREFIX_rows.csv`` (and ``PREFIX_collapse.csv``, ``PREFIX_ulira.csv``).
"""
from __future__ import annotations

import argparse

import pandas as pd

from dlfd_lib.benchmark import SUMMARY_COLUMNS, format_mean_sd, run_benchmark, summarize
from dlfd_lib.pipeline import get_profile
from dlfd_lib.unlearn import available_methods


def attack_report(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean attack numbers per model beside the retrained model's, and each attack's ranking of
    the methods (1 = closest to the retrained model) next to the paper's FS ranking."""
    from dlfd_lib.metrics import ATTACKS, attack_table

    per_model = rows.groupby("model", sort=False).mean(numeric_only=True)
    table = attack_table(per_model.to_dict("index"))
    methods = [m for m in per_model.index if m not in ("original", "retrained")]
    ranks = pd.DataFrame({"paper FS": per_model.loc[methods, "fs"].rank(method="min")})
    for a in ATTACKS:
        ranks[f"{a} |AUC gap|"] = table.xs(a, level="attack").loc[methods, "auc_gap"].abs().rank(method="min")
    return table, ranks.astype(int).sort_values("paper FS")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--task", default="age")
    ap.add_argument("--methods", nargs="+", default=None, help=f"default: all ({', '.join(available_methods())})")
    ap.add_argument("--ablations", action="store_true", help="run DLFD's ablation variants instead")
    ap.add_argument("--attacks", action="store_true", help="the four-attack membership suite")
    ap.add_argument("--collapse", action="store_true", help="correlation-collapse measures of every model")
    ap.add_argument("--ulira-k", type=int, default=0, help="per-example test with K reference models (first seed)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ckpt-dir", default="runs/quality_checkpoints")
    ap.add_argument("--out", default=None, help="prefix of the CSV files to write")
    args = ap.parse_args(argv)

    variants = None
    if args.ablations:
        from dlfd_lib.unlearn.dlfd import ablation_variants
        variants = ablation_variants()
    collapse_rows = []

    def measure(seed, splits, models):
        from dlfd_lib.collapse import collapse_measures, extract_all
        feats = {name: extract_all(model, splits, device=args.device if args.device != "auto" else None)
                 for name, model in models.items()}
        for name in models:
            r = collapse_measures(None, splits, reference=feats["retrained"], original=feats["original"],
                                  features=feats[name], seed=seed)
            collapse_rows.append({"seed": seed, "model": name, **{k: v for k, v in r.items() if k != "notes"}})

    bench = run_benchmark(get_profile(args.profile), args.profile, args.seeds, methods=args.methods,
                          variants=variants, task=args.task, device=args.device, ckpt_dir=args.ckpt_dir,
                          progress=False, attacks=args.attacks, on_models=measure if args.collapse else None)
    rows = bench["rows"]
    for seed, part in rows.groupby("seed"):
        print(f"\nseed {seed}\n" + part.set_index("model")[SUMMARY_COLUMNS].round(4).to_string())
    summary = summarize(rows)
    print(f"\n{args.profile} profile, seeds {args.seeds}: mean (sd) over seeds")
    print(format_mean_sd(summary, digits=4).to_string())
    print("\ngap to the retrained model (mean over seeds of model - retrained)")
    print(summary[[f"{c}_gap" for c in SUMMARY_COLUMNS if f"{c}_gap" in summary]].round(4).to_string())
    if args.ablations and "DLFD (paper)" in set(rows["model"]):
        vs = summarize(rows, reference="DLFD (paper)")
        print("\ngap to DLFD (paper) (mean over seeds of variant - DLFD (paper))")
        print(vs[[f"{c}_gap" for c in ("test_acc", "mia", "fs", "nomus", "seconds")]].round(4).to_string())
    if args.attacks:
        table, ranks = attack_report(rows)
        print("\nattacks, mean over seeds: acc / AUC / TPR@1%FPR, and the AUC gap to the retrained model")
        print(table[["acc", "auc", "tpr1", "auc_gap"]].unstack("attack").round(3).to_string())
        print("\nranking of the methods (1 = closest to the retrained model)")
        print(ranks.to_string())
    collapse = None
    if collapse_rows:
        collapse = pd.DataFrame(collapse_rows)
        cols = ["probe_acc", "silhouette", "scatter_ratio", "identity_knn_acc", "identity_knn_ref",
                "cka_to_original_retain", "cka_to_original_forget", "cka_to_original_test"]
        print("\ncorrelation-collapse measures, mean (sd) over seeds")
        print(format_mean_sd(summarize(collapse, columns=cols), columns=cols).to_string())
    ulira_summary = None
    if args.ulira_k:
        from dlfd_lib.ulira import train_references, ulira_many, ulira_table
        refs = train_references(bench["splits"], bench["cfg"], args.ulira_k, device=args.device,
                                ckpt_dir=args.ckpt_dir, progress=False)
        ulira_summary = ulira_table(ulira_many(bench["models"], bench["splits"], refs))
        print(f"\nper-example reference test, seed {args.seeds[0]}, K = {args.ulira_k} retrained references")
        print(ulira_summary.round(3).to_string())
    if args.out:
        rows.to_csv(f"{args.out}_rows.csv", index=False)
        if collapse is not None:
            collapse.to_csv(f"{args.out}_collapse.csv", index=False)
        if ulira_summary is not None:
            ulira_summary.to_csv(f"{args.out}_ulira.csv")


if __name__ == "__main__":
    main()
