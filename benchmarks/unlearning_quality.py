"""Unlearning methods against the original and retrained models, over seeds.

For each seed: build the profile's data, train (or reuse) the original and retrained models,
run each registered method from the original, evaluate everything the same way, and print the
per-seed rows and the mean and sd over seeds.

    python benchmarks/unlearning_quality.py --profile quick --methods dlfd --seeds 0 1 2

Reference-model checkpoints are shared with ``benchmarks/synthetic_quality.py`` (``--ckpt-dir``).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from dlfd_lib.data import load_splits
from dlfd_lib.metrics import evaluate
from dlfd_lib.pipeline import get_profile
from dlfd_lib.train import TrainConfig, train_or_load
from dlfd_lib.unlearn import available_methods, unlearn

COLUMNS = ["retain_acc", "forget_acc", "test_acc", "mia", "mia_auc", "fs", "nomus", "seconds"]


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

    profile = get_profile(args.profile)
    cfg = TrainConfig.from_profile(profile)
    methods = args.methods or available_methods()
    rows = []
    for seed in args.seeds:
        splits = load_splits("synthetic", task=args.task, profile=profile, seed=seed)
        original = None
        for role in ("original", "retrained"):
            model, meta = train_or_load(role, splits, cfg, seed=seed, device=args.device, ckpt_dir=args.ckpt_dir)
            res = evaluate(model, splits, device=args.device, seed=seed)
            rows.append({"seed": seed, "model": role, **res, "seconds": meta.get("train_seconds")})
            if role == "original":
                original = model
        for name in methods:
            t0 = time.perf_counter()
            result = unlearn(name, original, splits, profile=args.profile, device=args.device, seed=seed,
                             progress=False)
            seconds = time.perf_counter() - t0
            res = evaluate(result.model, splits, device=args.device, seed=seed)
            rows.append({"seed": seed, "model": name, **res, "seconds": seconds})
        print(pd.DataFrame([r for r in rows if r["seed"] == seed]).set_index("model")[COLUMNS].round(4)
              .to_string(), flush=True)
    df = pd.DataFrame(rows)
    order = list(dict.fromkeys(df["model"]))
    agg = df.groupby("model")[COLUMNS].agg(["mean", "std"]).loc[order]
    print(f"\n{args.profile} profile, seeds {args.seeds}: mean (sd) over seeds")
    table = pd.DataFrame({c: [f"{m:.4f} ({s:.4f})" for m, s in zip(agg[(c, 'mean')], agg[(c, 'std')])]
                          for c in COLUMNS}, index=agg.index)
    print(table.to_string())
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
