"""Does DLFD's monitor read signal, not noise? Its forgetting score's sampling sd beside the
switch threshold it is compared with, and beside the test evaluation's sampling sd.

For each seed: the profile's original model (trained or reused from ``--ckpt-dir``), DLFD's
monitor at the profile's preset (forget images against the monitor half of the validation people,
:class:`dlfd_lib.unlearn.dlfd.DLFDMonitor`) and the sampling sd of its forgetting score over
bootstrap resamples of the monitor's own images (:func:`dlfd_lib.stats.mia_sampling_sd`), the switch
threshold the preset applies (relative mode: ``forget_threshold`` × the original's monitored FS)
and the test evaluation's MIA sampling sd (forget against test). The requirement: monitor sd ≤
threshold / 3.

    python benchmarks/monitor_signal.py --profile quick --seeds 0 1 2 3 4 --ckpt-dir runs/quality_checkpoints
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlfd_lib.data import load_splits  # noqa: E402
from dlfd_lib.data.view import method_view  # noqa: E402
from dlfd_lib.metrics import evaluate  # noqa: E402
from dlfd_lib.profiles import get_profile  # noqa: E402
from dlfd_lib.stats import mia_sampling_sd  # noqa: E402
from dlfd_lib.train import TrainConfig, train_or_load  # noqa: E402
from dlfd_lib.unlearn import method_defaults  # noqa: E402
from dlfd_lib.unlearn.dlfd import DLFDMonitor  # noqa: E402
from dlfd_lib.utils import resolve_device  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--ckpt-dir", default="runs/quality_checkpoints")
    ap.add_argument("--n-boot", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    profile = get_profile(args.profile)
    hp = method_defaults("dlfd", profile)
    device = resolve_device(args.device)
    rows = []
    for seed in args.seeds:
        splits = load_splits("synthetic", task="age", profile=profile, seed=seed)
        model, _ = train_or_load("original", splits, TrainConfig.from_profile(profile), seed=seed,
                                 device=device, ckpt_dir=args.ckpt_dir, progress=False)
        mon = DLFDMonitor(method_view(splits), hp["monitor_size"], hp["val_size"], hp["eval_batch_size"], seed,
                          device, amp=False)
        fs = mon(model)["fs"]
        sd = mon.fs_sampling_sd(args.n_boot)
        thr = hp["forget_threshold"] * fs if hp["threshold_mode"] == "relative" else hp["forget_threshold"]
        res = evaluate(model, splits, device=device, seed=seed, return_losses=True)
        test_sd = mia_sampling_sd(res["losses"]["forget"], res["losses"]["test"], n_boot=args.n_boot, seed=seed)
        rows.append({"seed": seed, "monitor_forget": len(mon.forget_idx), "monitor_val": len(mon.mia_val_idx),
                     "monitor_fs": fs, "monitor_fs_sd": sd, "switch_threshold": thr, "threshold_over_3": thr / 3,
                     "signal_ok": sd <= thr / 3, "test_mia": res["mia"], "test_mia_sd": test_sd})
    df = pd.DataFrame(rows).set_index("seed")
    print(df.round(4).to_string())
    print(f"\nmonitor FS sd: median {df['monitor_fs_sd'].median():.4f}; test MIA sd: median "
          f"{df['test_mia_sd'].median():.4f}; sd <= threshold / 3 on {int(df['signal_ok'].sum())} of {len(df)} seeds")
    return df


if __name__ == "__main__":
    main()
