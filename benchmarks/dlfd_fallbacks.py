"""Which state should DLFD keep when no monitored state qualifies? The three rules side by side.

The paper keeps the best validation accuracy among the monitored states with FS <= max_fs and says
nothing for the case where none qualifies. The kit offers three rules (``fallback``): the best
NoMUS on the monitor's validation data (``val_nomus``), the end of the epoch (``last``) and the
lowest forgetting score (``lowest_fs``), and lets the protocol's tuner choose among them on
validation data. This script runs DLFD at one setting (by default the committed verdict's tuned
setting, ``results/quick/tuning/dlfd.json``) once per rule and seed, from the same original model
each time, and prints per rule and seed: which rule selected the state (``selection_rule``: the
paper's rule when a state qualified, else the fallback), the batch kept, the tuner's validation
objective of the kept model (what a rule *may* be judged by), and, for the reader only, its test
accuracy and |MIA - MIA retrained| (what no rule may read).

    python benchmarks/dlfd_fallbacks.py --profile quick --seeds 0 1 2 3 4 \
        --ckpt-dir runs/quality_checkpoints --out results/dlfd_fallbacks_quick.json

The reference models come from ``--ckpt-dir`` (the verdict's are reused when present, else trained).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tuned", default=str(ROOT / "results" / "quick" / "tuning" / "dlfd.json"),
                    help="the DLFD setting to run (a tuning result's JSON; 'none': the profile's preset)")
    ap.add_argument("--ckpt-dir", default="runs/quality_checkpoints")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    import pandas as pd

    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.profiles import get_profile
    from dlfd_lib.tuning import reference_mia_val, validation_objective
    from dlfd_lib.unlearn.dlfd import FALLBACKS

    profile = get_profile(args.profile)
    params = {} if args.tuned == "none" else json.loads(Path(args.tuned).read_text())["params"]
    variants = {f"fallback={f}": {"method": "dlfd", "hparams": {**params, "fallback": f}} for f in FALLBACKS}
    n_mia = profile.protocol["n_mia"]
    objective = {}

    def on_models(seed, splits, models):  # validation only: what the tuner sees
        ref = reference_mia_val(models["retrained"], splits, device=args.device, seed=seed, n_mia=n_mia)
        for label in variants:
            objective[(seed, label)] = validation_objective(models[label], splits, ref, device=args.device,
                                                            seed=seed, n_mia=n_mia)["score"]
        print(f"seed {seed}: {len(variants)} runs done ({time.perf_counter() - t0:.0f} s so far)", flush=True)

    t0 = time.perf_counter()
    bench = run_benchmark(profile, args.seeds, variants=variants, device=args.device, ckpt_dir=args.ckpt_dir,
                          reuse=False, on_models=on_models, progress=False)
    rows = bench["rows"]
    out = []
    for (seed, label), info in bench["infos"].items():
        r = rows[(rows["seed"] == seed) & (rows["model"] == label)].iloc[0]
        out.append({"seed": seed, "fallback": label.split("=", 1)[1], "selection_rule": info["selection_rule"],
                    "switched_at_batch": info["switched_at_batch"], "kept_batch": info["selected_batch"],
                    "val_objective": objective[(seed, label)], "test_acc": float(r["test_acc"]),
                    "abs_mia_gap": float(r["abs_mia_gap"]), "nomus": float(r["nomus"])})
    table = pd.DataFrame(out)
    pd.set_option("display.width", 160)
    print(f"DLFD at {'the preset' if not params else args.tuned}, profile {args.profile}, seeds {args.seeds} "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print(table.round(4).to_string(index=False))
    print("\nmean over seeds:")
    print(table.groupby("fallback")[["val_objective", "test_acc", "abs_mia_gap", "nomus"]].mean().round(4).to_string())
    none = table.groupby("seed")["selection_rule"].apply(lambda s: not s.str.startswith("best_val_acc").any())
    print(f"\nseeds where no monitored state qualified (the fallback decided): {sorted(none[none].index.tolist())}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"profile": args.profile, "seeds": args.seeds, "setting": params,
                                              "rows": out}, indent=1))
        print(f"rows written to {args.out}")


if __name__ == "__main__":
    main()
