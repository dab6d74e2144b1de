"""Unlearning methods against the original and retrained models, over seeds.

For each seed: build the profile's data, train (or reuse) the original and retrained models,
run each registered method from the original, evaluate everything the same way, and print the
per-seed rows and the mean (sd) over seeds (``dlfd_lib.benchmark``, as notebook 03 does).

    python benchmarks/unlearning_quality.py --profile quick --seeds 0 1 2
    python benchmarks/unlearning_quality.py --profile quick --methods dlfd --seeds 0 1 2

Reference-model checkpoints are shared with ``benchmarks/synthetic_quality.py`` (``--ckpt-dir``).
"""
from __future__ import annotations

import argparse

from dlfd_lib.benchmark import SUMMARY_COLUMNS, format_mean_sd, run_benchmark, summarize
from dlfd_lib.pipeline import get_profile
from dlfd_lib.unlearn import available_methods


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--task", default="age")
    ap.add_argument("--methods", nargs="+", default=None, help=f"default: all ({', '.join(available_methods())})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ckpt-dir", default="runs/quality_checkpoints")
    ap.add_argument("--out", default=None, help="write the per-seed rows as CSV here")
    args = ap.parse_args(argv)

    bench = run_benchmark(get_profile(args.profile), args.profile, args.seeds, methods=args.methods,
                          task=args.task, device=args.device, ckpt_dir=args.ckpt_dir, progress=False)
    rows = bench["rows"]
    for seed, part in rows.groupby("seed"):
        print(f"\nseed {seed}\n" + part.set_index("model")[SUMMARY_COLUMNS].round(4).to_string())
    summary = summarize(rows)
    print(f"\n{args.profile} profile, seeds {args.seeds}: mean (sd) over seeds")
    print(format_mean_sd(summary, digits=4).to_string())
    print("\ngap to the retrained model (mean over seeds of model - retrained)")
    print(summary[[f"{c}_gap" for c in SUMMARY_COLUMNS if f"{c}_gap" in summary]].round(4).to_string())
    if args.out:
        rows.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
