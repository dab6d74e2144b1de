"""The verdict protocol (tune -> evaluate -> fronts -> paired statistics), and DLFD's ablations.

Default: :func:`dlfd_lib.protocol.run_protocol` with the profile's ``protocol`` sizes – every
method tuned with the same Optuna budget on the tuning seeds (validation data only), evaluated
at its chosen setting on the evaluation seeds (the test split read once), swept over its
strength for the trade-off fronts, and paired against DLFD per seed with bootstrap intervals.
Everything finished is kept under ``--out-dir`` (and reference models under ``--ckpt-dir``), so
a cut-off run continues where it stopped: rerun the same command.

    python benchmarks/unlearning_quality.py --profile quick --attacks --collapse --out-dir results/quick --commit
    python benchmarks/unlearning_quality.py --profile quick --attacks --collapse \
        --dataset folder --data-root ~/my_faces --data-options '{"task_column": "age"}'   # your own data
    python benchmarks/unlearning_quality.py --profile paper --device cuda   # the same on a GPU
    python benchmarks/unlearning_quality.py --profile quick --methods dlfd neggrad --trials 4
    python benchmarks/unlearning_quality.py --profile quick --attacks --collapse --ablations --ulira-k 4 \
        --out-dir results/quick --commit      # the verdict: the protocol, then the ablations and U-LiRA
    python benchmarks/unlearning_quality.py --profile quick --legacy --attacks --collapse --ulira-k 4
    python benchmarks/unlearning_quality.py --profile quick --attacks --collapse --ray --workers 2  # on Ray
    python benchmarks/unlearning_quality.py --profile paper --device cuda --ray --address auto  # a cluster

* ``--ray``: the same plan of jobs (``dlfd_lib.plan``) on Ray – a local Ray (``--workers`` jobs at a
  time, ``--cpus-per-job`` cores each) or an existing cluster (``--address``; one GPU per job on
  CUDA) – with the same store entries and numbers as in-process (docs/cluster.md).

* ``--attacks`` / ``--collapse`` (protocol): also the four-attack membership suite and the
  correlation-collapse measures of the references and every tuned method, on every evaluation seed.
* ``--ablations``: after the protocol's stages, notebook 05's DLFD variants on every evaluation
  seed, each on top of DLFD's tuned setting, paired against *DLFD (paper)* (the tuned DLFD), in
  the same store. ``--ulira-k K``: then the per-example test of every model at its tuned setting
  on the first evaluation seed, with K retrained reference models. (With ``--legacy`` both run
  through the earlier per-seed benchmark instead.)
* ``--commit``: ``git add`` and ``git commit`` the protocol's folder after every stage (each
  method's tuning, each evaluation seed, the statistics), so that a stopped run loses at most one
  stage and continues from the committed store on another machine (the verdict's store lives in
  ``results/quick/``, committed; reference checkpoints are retrained where absent).
* ``--dataset`` / ``--data-root`` / ``--data-options``: any dataset the kit loads, as ``dlfd run``
  takes them (``synthetic``, ``mufac``, ``rafdb``, ``folder``); the same tables for your data.
* ``--legacy``: the earlier per-seed benchmark (``dlfd_lib.benchmark.run_benchmark``) at the
  tuned settings, for ``--attacks`` (four membership attacks), ``--collapse`` (correlation-collapse
  measures) and ``--ulira-k K`` (per-example test with K retrained references, first seed).

``--out PREFIX`` writes ``PREFIX_rows.csv`` (and ``PREFIX_collapse.csv``, ``PREFIX_ulira.csv``)
in the legacy and ablation modes; the protocol writes its files into ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

from dlfd_lib.benchmark import SUMMARY_COLUMNS, format_mean_sd, run_benchmark, summarize
from dlfd_lib.profiles import get_profile
from dlfd_lib.unlearn import available_methods


#: the collapse measures printed (mean (sd) over seeds) by the protocol and the legacy mode
COLLAPSE_COLUMNS = ("probe_acc", "probe_forget_acc", "silhouette", "scatter_ratio", "identity_knn_acc",
                    "identity_knn_ref", "cka_to_original_retain", "cka_to_original_forget",
                    "cka_to_original_test")


def attack_report(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean attack numbers per model beside the retrained model's, and each attack's ranking of
    the methods (1 = closest to the retrained model) next to the paper's FS ranking."""
    from dlfd_lib.attacks import ATTACKS, attack_table

    per_model = rows.groupby("model", sort=False).mean(numeric_only=True)
    table = attack_table(per_model.to_dict("index"))
    methods = [m for m in per_model.index if m not in ("original", "retrained")]
    ranks = pd.DataFrame({"paper FS": per_model.loc[methods, "fs"].rank(method="min")})
    for a in ATTACKS:
        ranks[f"{a} |AUC gap|"] = table.xs(a, level="attack").loc[methods, "auc_gap"].abs().rank(method="min")
    return table, ranks.astype(int).sort_values("paper FS")


def _protocol(args):
    from dlfd_lib.protocol import ProtocolConfig, run_protocol

    cfg = ProtocolConfig.from_profile(get_profile(args.profile), methods=args.methods, n_trials=args.trials,
                                      eval_seeds=args.seeds, tuning_seeds=args.tuning_seeds,
                                      n_strengths=args.strengths, attacks=args.attacks or None,
                                      collapse=args.collapse or None, ablations=args.ablations or None,
                                      ulira_k=args.ulira_k or None, tuned_from=args.tuned_from)
    print(f"protocol on {args.profile}: tuning seeds {cfg.tuning_seeds}, evaluation seeds {cfg.eval_seeds}, "
          f"{cfg.n_trials} trials per method, {cfg.n_strengths} strengths per front -> {args.out_dir}")
    from dlfd_lib.executors import make_executor
    executor = make_executor(ray=args.ray, address=args.address, workers=args.workers,
                             cpus_per_job=args.cpus_per_job)
    try:
        r = run_protocol(args.profile, args.out_dir, cfg, dataset=args.dataset, task=args.task,
                         data_root=args.data_root, data_options=args.data_options, device=args.device,
                         ckpt_dir=args.ckpt_dir, progress=False, executor=executor,
                         on_stage=(lambda stage: commit_store(args.out_dir, stage)) if args.commit else None)
    finally:
        executor.close()
    cols = ["retain_acc", "forget_acc", "test_acc", "mia", "mia_sampling_sd", "fs", "abs_mia_gap", "avg_gap",
            "nomus", "seconds"]
    print(f"\nmean (sd) over evaluation seeds {cfg.eval_seeds}")
    s = r["summary"]
    print(pd.DataFrame({c: [f"{m:.3f} ({v:.3f})" for m, v in zip(s[c], s[f"{c}_sd"])] for c in cols if c in s},
                       index=s.index).to_string())
    print(f"\nevery method against {cfg.baseline}, paired by seed: mean difference, Student-t 95 % interval "
          f"(the verdict's), percentile bootstrap interval, p and Holm-adjusted p per metric")
    print(r["paired"].round(4).to_string(index=False))
    if len(r["hypervolume_paired"]):
        print("\nhypervolume of each method's front per front seed (test acc vs 1 - |MIA - MIA retrained|, "
              "reference point acc 0, closeness 0.5), paired against the baseline")
        print(r["hypervolume_paired"].round(4).to_string(index=False))
    print("\ntrade-off fronts (test accuracy vs |MIA - MIA retrained|, mean over evaluation seeds)")
    print(r["points"].round(4).to_string(index=False))
    print("\n" + "\n".join(r["fronts_text"]))
    if cfg.collapse:
        c = r["collapse"]
        ccols = [k for k in COLLAPSE_COLUMNS if k in c]
        print("\ncorrelation collapse, mean (sd) over evaluation seeds")
        print(format_mean_sd(summarize(c, columns=ccols), columns=ccols).to_string())
        print(r["collapse_paired"].round(4).to_string(index=False))
    if len(r["ablations_paired"]):
        print("\nDLFD's ablations (each on top of its tuned setting), paired against the tuned DLFD")
        print(r["ablations_paired"].round(4).to_string(index=False))
    if len(r["ulira"]):
        print(f"\nper-example test, seed {cfg.eval_seeds[0]}, K = {cfg.ulira_k} retrained references")
        print(r["ulira"].round(3).to_string(index=False))
    print(f"\nchosen settings: {r['tuned']}")
    print(f"wall time {r['seconds']:.0f} s; files in {args.out_dir}")


def commit_store(folder, stage: str) -> bool:
    """``git add`` ``folder`` and commit it (message: the stage), if anything changed. A failing git
    (no repository, no identity) is reported and the run goes on."""
    folder = Path(folder)
    try:
        subprocess.run(["git", "add", "--", str(folder)], check=True, capture_output=True, text=True)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", str(folder)])
        if staged.returncode == 0:
            return False
        subprocess.run(["git", "commit", "-q", "-m", f"results: {folder.as_posix()} – {stage} (protocol store)",
                        "--", str(folder)], check=True, capture_output=True, text=True)
        return True
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"--commit: could not commit {folder} after '{stage}': {getattr(e, 'stderr', '') or e}")
        return False


def _data_options(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--data-options must be a JSON object, e.g. "
                                         f"'{{\"split\": \"identity\"}}': {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--data-options must be a JSON object ({...})")
    return value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--task", default="age")
    ap.add_argument("--dataset", default="synthetic", help="synthetic, mufac, rafdb or folder (as dlfd run)")
    ap.add_argument("--data-root", default=None, help="the dataset's folder (real datasets)")
    ap.add_argument("--data-options", type=_data_options, default=None,
                    help="JSON object of loader options, e.g. '{\"split\": \"identity\"}'")
    ap.add_argument("--commit", action="store_true",
                    help="git-commit the protocol's folder after every stage (the committed verdict store)")
    ap.add_argument("--methods", nargs="+", default=None, help=f"default: all ({', '.join(available_methods())})")
    ap.add_argument("--ablations", action="store_true",
                    help="also DLFD's ablation variants on every evaluation seed (after the protocol)")
    ap.add_argument("--legacy", action="store_true", help="the per-seed benchmark (for --attacks/--collapse/--ulira-k)")
    ap.add_argument("--attacks", action="store_true", help="the four-attack membership suite")
    ap.add_argument("--collapse", action="store_true",
                    help="correlation-collapse measures of the references and every tuned method")
    ap.add_argument("--ulira-k", type=int, default=0,
                    help="also the per-example test with K retrained reference models (first evaluation seed)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="evaluation seeds (default: the profile's)")
    ap.add_argument("--tuning-seeds", type=int, nargs="+", default=None, help="default: the profile's")
    ap.add_argument("--trials", type=int, default=None, help="Optuna trials per method (default: the profile's)")
    ap.add_argument("--strengths", type=int, default=None, help="points per front (default: the profile's)")
    ap.add_argument("--tuned-from", default=None,
                    help="with --trials 0: the chosen settings of an earlier tuning (e.g. results/quick/tuning)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ray", action="store_true",
                    help="run the protocol's jobs on Ray (a local Ray of --workers x --cpus-per-job cores, or "
                         "the cluster at --address / RAY_ADDRESS); the same numbers as in-process")
    ap.add_argument("--address", default=None, help="an existing Ray cluster (e.g. 'auto' on one of its nodes)")
    ap.add_argument("--workers", type=int, default=None, help="local Ray: jobs at a time (default: the CPU count)")
    ap.add_argument("--cpus-per-job", type=int, default=1, help="Ray on CPUs: cores (and torch threads) per job")
    ap.add_argument("--ckpt-dir", default="runs/quality_checkpoints")
    ap.add_argument("--out-dir", default=None, help="the protocol's folder (default runs/protocol-<profile>)")
    ap.add_argument("--out", default=None, help="prefix of the CSV files to write (legacy / ablations)")
    args = ap.parse_args(argv)
    args.out_dir = args.out_dir or f"runs/protocol-{args.profile}"
    if not args.legacy:
        return _protocol(args)

    from dlfd_lib.protocol import ProtocolConfig
    from dlfd_lib.stats import add_reference_gaps, paired_table
    from dlfd_lib.tuning import load_tuned

    cfg = ProtocolConfig.from_profile(get_profile(args.profile), eval_seeds=args.seeds)
    seeds = cfg.eval_seeds
    tuned = load_tuned(f"{args.out_dir}/tuning")
    print(f"tuned settings from {args.out_dir}/tuning: {sorted(tuned) or 'none (declared defaults)'}")
    variants = None
    if args.ablations:
        from dlfd_lib.unlearn.dlfd import ablation_variants
        variants = ablation_variants(base=tuned.get("dlfd", {}))
    collapse_rows = []

    def measure(seed, splits, models):
        from dlfd_lib.collapse import collapse_measures
        from dlfd_lib.inference import extract_all
        feats = {name: extract_all(model, splits, device=args.device if args.device != "auto" else None)
                 for name, model in models.items()}
        for name in models:
            r = collapse_measures(None, splits, reference=feats["retrained"], original=feats["original"],
                                  features=feats[name], seed=seed)
            collapse_rows.append({"seed": seed, "model": name, **{k: v for k, v in r.items() if k != "notes"}})

    bench = run_benchmark(get_profile(args.profile), seeds, methods=args.methods,
                          method_overrides=tuned, variants=variants, task=args.task, device=args.device,
                          ckpt_dir=args.ckpt_dir, progress=False, attacks=args.attacks,
                          on_models=measure if args.collapse else None)
    rows = add_reference_gaps(bench["rows"])
    for seed, part in rows.groupby("seed"):
        print(f"\nseed {seed}\n" + part.set_index("model")[SUMMARY_COLUMNS].round(4).to_string())
    summary = summarize(rows)
    print(f"\n{args.profile} profile, seeds {seeds}: mean (sd) over seeds")
    print(format_mean_sd(summary, digits=4).to_string())
    baseline = "DLFD (paper)" if args.ablations else "dlfd"
    if baseline in set(rows["model"]):
        print(f"\npaired against {baseline}: mean difference over seeds and bootstrap 95 % interval")
        print(paired_table(rows[rows["model"] != "original"], baseline=baseline).round(4).to_string(index=False))
    if args.attacks:
        table, ranks = attack_report(rows)
        print("\nattacks, mean over seeds: acc / AUC / TPR@1%FPR, and the AUC gap to the retrained model")
        print(table[["acc", "auc", "tpr1", "auc_gap"]].unstack("attack").round(3).to_string())
        print("\nranking of the methods (1 = closest to the retrained model)")
        print(ranks.to_string())
    collapse = None
    if collapse_rows:
        collapse = pd.DataFrame(collapse_rows)
        cols = list(COLLAPSE_COLUMNS)
        print("\ncorrelation-collapse measures, mean (sd) over seeds")
        print(format_mean_sd(summarize(collapse, columns=cols), columns=cols).to_string())
    ulira_summary = None
    if args.ulira_k:
        from dlfd_lib.ulira import train_references, ulira_many, ulira_table
        refs = train_references(bench["splits"], bench["cfg"], args.ulira_k, device=args.device,
                                ckpt_dir=args.ckpt_dir, progress=False)
        ulira_summary = ulira_table(ulira_many(bench["models"], bench["splits"], refs))
        print(f"\nper-example reference test, seed {seeds[0]}, K = {args.ulira_k} retrained references")
        print(ulira_summary.round(3).to_string())
    if args.out:
        rows.to_csv(f"{args.out}_rows.csv", index=False)
        if collapse is not None:
            collapse.to_csv(f"{args.out}_collapse.csv", index=False)
        if ulira_summary is not None:
            ulira_summary.to_csv(f"{args.out}_ulira.csv")


if __name__ == "__main__":
    main()
