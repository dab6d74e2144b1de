"""The 2-worker local Ray sweep against the sequential path, side by side, on one profile.

    python benchmarks/sweep_speed.py --profile smoke                      # every method, seeds 0 1
    python benchmarks/sweep_speed.py --profile quick --methods dlfd neggrad --seeds 0
    python benchmarks/sweep_speed.py --profile quick --methods dlfd finetune neggrad --seeds 0 100 \
        --references-from runs/quality_checkpoints    # the unlearning fan-out alone, references reused

Three runs of the same work, each from empty folders (nothing reused; the synthetic data cache
is warmed first so no run pays for drawing the faces, and an untimed ``run_benchmark`` of the first
seed into a scratch folder runs before them, so that the run timed first does not alone pay this
process's first-use costs – imports, oneDNN's kernels for each shape; ``--no-warmup`` leaves it
out, and the first path timed then pays them):

* ``run_benchmark`` – the sequential path of notebook 03, one process, torch on every core;
* ``sweep --no-ray`` – the sweep's jobs one after another in this process (same threads);
* ``sweep`` on a local Ray with ``--workers`` workers of ``cores // workers`` threads each.

``--references-from DIR`` copies the seeds' reference checkpoints found in ``DIR`` (e.g. a
protocol run's ``runs/quality_checkpoints``) into each run's empty checkpoint folder first, so
that on the quick profile the three runs time the unlearning and evaluation jobs alone instead
of spending most of an hour retraining the same reference models three times.

It prints wall seconds, the speed-up over ``run_benchmark``, Ray's start-up (timed apart: it is
paid once per sweep) and the job timeline of the Ray run (when the reference phase ended, the
longest job), and checks that the three give the same rows (seconds aside). With ``--json`` the
numbers are also written to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-warmup", action="store_true", help="time the first path cold (see above)")
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--json", default=None, metavar="FILE")
    parser.add_argument("--references-from", default=None, metavar="DIR",
                        help="reuse the seeds' reference checkpoints from DIR in every run (see above)")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from dlfd_lib.benchmark import run_benchmark
    from dlfd_lib.data import load_splits
    from dlfd_lib.profiles import get_profile
    from dlfd_lib.sweep import SweepSpec, run_sweep, start_local_ray
    from dlfd_lib.unlearn import available_methods

    profile = get_profile(args.profile)
    methods = args.methods or available_methods()
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sweep-speed-"))
    data_root = work / "data"
    for seed in args.seeds:  # warm the data cache: no run pays for drawing the faces
        load_splits("synthetic", profile=profile, seed=seed, data_root=data_root)
    torch.set_num_threads(cores)
    results = {}
    copied = []
    if args.references_from:
        from dlfd_lib.train import TrainConfig, checkpoint_path
        cfg = TrainConfig.from_profile(profile)
        for seed in args.seeds:
            splits = load_splits("synthetic", profile=profile, seed=seed, data_root=data_root)
            for role in ("original", "retrained"):
                name = Path(checkpoint_path(work, splits, role, cfg, seed, "cpu")[0]).name
                src = Path(args.references_from) / name
                if not src.is_file():
                    raise SystemExit(f"--references-from: {src} does not exist (seed {seed}, {role}); train it "
                                     "first (e.g. the protocol or notebook 01 with this profile) or drop the option")
                for run in ("ckpt-warmup", "ckpt-seq", "ckpt-local", "ckpt-ray"):
                    (work / run).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, work / run / name)
                copied.append(name)

    if not args.no_warmup:  # untimed: the process's first-use costs, paid before any timed run
        run_benchmark(profile, args.seeds[:1], methods=methods, device="cpu", progress=False,
                      ckpt_dir=work / "ckpt-warmup", data_root=str(data_root))
    t0 = time.perf_counter()
    seq = run_benchmark(profile, args.seeds, methods=methods, device="cpu", progress=False,
                        ckpt_dir=work / "ckpt-seq", data_root=str(data_root))
    results["run_benchmark (1 process)"] = {"wall_s": time.perf_counter() - t0, "threads": cores}

    spec = SweepSpec(args.profile, seeds=args.seeds, methods=methods, data_root=str(data_root))
    t0 = time.perf_counter()
    local = run_sweep(spec, work / "out-local", profile=profile, ckpt_dir=work / "ckpt-local", device="cpu",
                      use_ray=False, log=None)
    results["sweep --no-ray (1 process)"] = {"wall_s": time.perf_counter() - t0, "threads": cores}

    import ray
    t0 = time.perf_counter()
    start_local_ray(num_cpus=args.workers * threads)
    init_s = time.perf_counter() - t0
    stamps = []

    def log(msg):
        stamps.append((time.perf_counter(), msg))

    t0 = time.perf_counter()
    on_ray = run_sweep(spec, work / "out-ray", profile=profile, ckpt_dir=work / "ckpt-ray", device="cpu",
                       cpus_per_job=threads, log=log)
    ray_s = time.perf_counter() - t0
    ray.shutdown()
    done = [(t - t0, m.split()[1]) for t, m in stamps if m.startswith("done ")]
    refs_end = max((t for t, j in done if j.startswith("reference/")), default=float("nan"))
    results[f"sweep on a local Ray ({args.workers} workers x {threads} threads)"] = {
        "wall_s": ray_s, "threads": threads, "ray_start_s": init_s, "references_done_at_s": refs_end,
        "first_job_done_at_s": done[0][0] if done else float("nan")}

    base = results["run_benchmark (1 process)"]["wall_s"]
    for name, r in results.items():
        r["speedup"] = base / r["wall_s"]
    ray_key = next(k for k in results if k.startswith("sweep on"))
    results[ray_key]["speedup_with_start"] = base / (ray_s + init_s)

    def numbers(rows):
        return rows.drop(columns="seconds").reset_index(drop=True)
    same_local = numbers(local["rows"]).equals(numbers(seq["rows"]))
    same_ray = numbers(on_ray["rows"]).round(12).equals(numbers(seq["rows"]).round(12))
    jobs = seq["rows"][["seed", "model", "seconds"]]
    longest = jobs.sort_values("seconds", ascending=False).head(3)

    print(f"profile {args.profile}, seeds {args.seeds}, {len(methods)} methods, {cores} cores "
          f"(load average at the end {os.getloadavg()[0]:.1f})"
          + (f"; reference models reused from {args.references_from} ({len(copied)} files)" if copied else ""))
    table = pd.DataFrame(results).T
    print(table.round(2).to_string())
    print(f"rows equal to run_benchmark's: --no-ray {same_local}, Ray {same_ray} (Ray jobs run at {threads} "
          f"thread(s), run_benchmark at {cores}: a different thread count may round differently)")
    print(f"work in run_benchmark's rows: references {jobs[jobs.model.isin(['original', 'retrained'])].seconds.sum():.1f} s, "
          f"methods {jobs[~jobs.model.isin(['original', 'retrained'])].seconds.sum():.1f} s; longest: "
          + ", ".join(f"{r.model} seed {r.seed} {r.seconds:.1f} s" for r in longest.itertuples()))
    if args.json:
        Path(args.json).write_text(json.dumps({"profile": args.profile, "seeds": args.seeds, "methods": methods,
                                               "results": results, "same_rows": {"local": same_local, "ray": same_ray}},
                                              indent=2, default=float))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
