"""Size the verdict protocol before running it: how many runs, and what a slice of them costs.

Counts every run :func:`dlfd_lib.protocol.run_protocol` makes with the profile's ``protocol``
sizes (:func:`dlfd_lib.protocol.protocol_plan`), then times a slice on this machine – one full
evaluation (all splits, float32, plus the attack's bootstrap sd), one tuning-objective
evaluation, and each requested method once from a stand-in original model of evaluation seed 0
(randomly initialised: the cost of a run barely depends on the weights, except DLFD's dynamic
switch, which never fires on a model without memorisation, so DLFD's time is an upper bound) –
and multiplies out. Reference-model training is not timed here (minutes per model on a CPU):
pass its measured seconds with ``--reference-seconds``.

    python benchmarks/protocol_cost.py --profile quick --reference-seconds 230
    python benchmarks/protocol_cost.py --profile quick --methods neggrad dlfd --reference-seconds 230
"""
from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch

from dlfd_lib.data import load_splits
from dlfd_lib.model import build_model
from dlfd_lib.profiles import get_profile
from dlfd_lib.plan import _evaluate_row  # noqa: E402
from dlfd_lib.protocol import ProtocolConfig, protocol_plan
from dlfd_lib.tuning import validation_objective
from dlfd_lib.unlearn import available_methods, unlearn
from dlfd_lib.utils import resolve_device


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--methods", nargs="+", default=None, help="methods to time (default: all)")
    ap.add_argument("--reference-seconds", type=float, default=float("nan"),
                    help="measured training seconds of one reference model")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    cfg = ProtocolConfig.from_profile(profile)
    plan = protocol_plan(cfg)
    device = resolve_device(args.device)
    print(f"{args.profile}: {plan.loc['references', 'evaluation_runs']} reference models, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    splits = load_splits("synthetic", task="age", profile=profile, seed=cfg.eval_seeds[0])
    torch.manual_seed(0)
    stand_in = build_model(splits.num_classes, device).eval()
    t = time.perf_counter()
    _evaluate_row(stand_in, splits, 0, device, cfg.mia_boot, False)
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    validation_objective(stand_in, splits, 0.55, device, 0, cfg.n_mia)
    t_val = time.perf_counter() - t
    print(f"one evaluation (all splits + {cfg.mia_boot} attack resamples): {t_eval:.1f} s; "
          f"one tuning objective: {t_val:.1f} s")
    rows = []
    for m in args.methods or available_methods():
        t = time.perf_counter()
        res = unlearn(m, stand_in, splits, profile=args.profile, device=device, seed=0, progress=False)
        sec = time.perf_counter() - t
        n_tune, n_eval = plan.loc[m, "tuning_runs"], plan.loc[m, "evaluation_runs"]
        rows.append({"method": m, "run_s": sec, "tuning_runs": n_tune, "evaluation_runs": n_eval,
                     "total_s": n_tune * (sec + t_val) + n_eval * (sec + t_eval)})
        print(f"  {m}: {sec:.1f} s per run ({res.info['seconds']:.1f} s inside the method)")
    table = pd.DataFrame(rows).set_index("method")
    n_ref = plan.loc["references", "evaluation_runs"]
    ref_total = n_ref * args.reference_seconds + len(cfg.eval_seeds) * 2 * t_eval
    print(table.round(1).to_string())
    total = table["total_s"].sum() + ref_total
    print(f"\nmethods: {table['total_s'].sum() / 60:.1f} min; references: {n_ref} x "
          f"{args.reference_seconds:.0f} s = {ref_total / 60:.1f} min; total {total / 60:.1f} min")


if __name__ == "__main__":
    main()
