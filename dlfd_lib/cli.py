"""The ``dlfd`` command: run the notebooks headlessly, list the profiles.

    dlfd run --profile quick                    # every notebook, executed into runs/quick/
    dlfd run --profile smoke --notebooks 01 03  # a selection, by number or name
    dlfd run -p n_methods=3 --device cpu        # extra notebook parameters (key=value)
    dlfd run --cell-timeout 600                 # stop a cell after 10 minutes (0: never)
    dlfd status [--out DIR]                     # how the last run in a folder went
    dlfd sweep --profile quick --seeds 0 1 2    # seeds x methods (x --trials) as Ray tasks, resumable
    dlfd sweep --address HOST:6379 ...          # the same on a running Ray cluster (or RAY_ADDRESS)
    dlfd profiles [--json]                      # the sizes each profile picks
    dlfd --version

Ctrl-C stops a run cleanly (exit status 130): the message names the notebook and the cell,
and the partly executed notebook is kept.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from . import __version__
from .pipeline import (NotebookFailed, NotebookInterrupted, RunLocked, default_notebooks_dir,
                       parse_value, read_provenance, run_notebooks)
from .profiles import PROFILES


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected key=value with a Python identifier as key, got {text!r}")
    return key.strip(), parse_value(value)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0 (0: no limit), "
                                         f"got {text!r}")
    return value


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"split\": \"identity\"}}': {err}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlfd", description="DLFD study kit: run the notebooks headlessly with papermill.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{run,status,sweep,profiles}")
    sub.required = True

    run = sub.add_parser("run", help="execute the notebooks in order",
                         description="Execute the notebooks in order into runs/<profile>/ "
                                     "and write runs/<profile>/provenance.json.")
    run.add_argument("--profile", choices=list(PROFILES), default="quick",
                     help="sizes for everything (default: quick)")
    run.add_argument("--notebooks", nargs="+", metavar="NB", default=None,
                     help="a selection by number or name, e.g. 01 03 (default: all)")
    run.add_argument("--notebooks-dir", default=None, metavar="DIR",
                     help="folder holding the NN_*.ipynb notebooks (default: notebooks/)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=None, metavar="DIR",
                     help="where executed notebooks go (default: runs/<profile>)")
    run.add_argument("-p", "--param", dest="params", action="append", type=_key_value,
                     default=[], metavar="KEY=VALUE",
                     help="an extra notebook parameter (repeatable); values parse as JSON or "
                          "Python literals, else stay strings")
    run.add_argument("--kernel", default=None,
                     help="Jupyter kernel name (default: a kernel running this Python)")
    run.add_argument("--log-output", action="store_true",
                     help="stream the notebooks' cell output to the terminal")
    run.add_argument("--cell-timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="stop the run when one cell runs longer than this (default: the "
                          "profile's cell_timeout_s; 0: no limit)")

    status = sub.add_parser("status", help="how the last run in a runs folder went",
                            description="Print the provenance of the last run in a runs folder; "
                                        "a run whose process is gone is marked 'interrupted "
                                        "or killed'.")
    status.add_argument("--profile", choices=list(PROFILES), default="quick")
    status.add_argument("--out", default=None, metavar="DIR",
                        help="the runs folder (default: runs/<profile>)")

    sweep = sub.add_parser(
        "sweep", help="seeds x methods (x tuning trials) as Ray tasks, resumable",
        description="The protocol's plan of jobs at a notebook's sizes: reference models first (each trained "
                    "once), each method's Optuna study with --trials (its trials in order, the studies side "
                    "by side), then one job per seed and method: its model at its tuned setting, evaluated "
                    "(one GPU per job on CUDA, --cpus-per-job cores otherwise). Every finished job is kept in "
                    "--out: the same command again runs only what is missing. Writes the rows notebook 03 "
                    "writes (03_benchmark_rows_<tag>.csv). Needs the `ray` extra (pip install -e '.[ray]'), "
                    "except with --no-ray.")
    sweep.add_argument("--profile", choices=list(PROFILES), default="quick",
                       help="sizes for everything and the methods' defaults (default: quick)")
    sweep.add_argument("--dataset", default="synthetic", help="synthetic (default), mufac, rafdb or folder")
    sweep.add_argument("--task", default="age")
    sweep.add_argument("--data-root", default=None, metavar="DIR",
                       help="the dataset's folder (real datasets) or the synthetic cache folder")
    sweep.add_argument("--data-options", type=_json_dict, default={}, metavar="JSON",
                       help='options for load_splits, e.g. \'{"split": "identity"}\'')
    sweep.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                       help="evaluation seeds (default: the profile's protocol eval_seeds)")
    sweep.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                       help="unlearning methods (default: every registered one)")
    sweep.add_argument("--trials", type=int, default=0, metavar="N",
                       help="Optuna trials per method on the tuning seeds (default 0: the profile's "
                            "defaults; the protocol uses the profile's protocol n_trials)")
    sweep.add_argument("--tuning-seeds", type=int, nargs="+", default=None, metavar="SEED",
                       help="seeds the tuning runs on, never evaluated (default: the profile's protocol tuning_seeds)")
    sweep.add_argument("--trial-batch", type=int, default=1, metavar="1",
                       help="kept for old command lines: only 1 (each study's trials run in trial order, as "
                            "the protocol's; the studies of different methods run side by side)")
    sweep.add_argument("--attacks", action="store_true",
                       help="also run the four-attack suite in every evaluation (as notebook 03)")
    sweep.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="auto: one GPU per job when the cluster has GPUs, else the CPU")
    sweep.add_argument("--out", default=None, metavar="DIR",
                       help="the sweep's folder (default: runs/sweep-<profile>); on a cluster every node must see it")
    sweep.add_argument("--ckpt-dir", default="checkpoints", metavar="DIR",
                       help="reference and unlearned models, shared with the notebooks (default: checkpoints)")
    sweep.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray on this machine)")
    sweep.add_argument("--num-cpus", type=int, default=None, metavar="N",
                       help="cores of the local Ray (default: all of them)")
    sweep.add_argument("--cpus-per-job", type=int, default=1, metavar="N",
                       help="cores (and torch threads) per CPU job (default 1)")
    sweep.add_argument("--retries", type=int, default=1, metavar="N",
                       help="times Ray reruns a job whose worker died (default 1); a job that raises is reported")
    sweep.add_argument("--object-store-mb", type=int, default=200, metavar="MB",
                       help="object store of the local Ray (default 200: jobs pass file names, not data)")
    sweep.add_argument("--ray-temp-dir", default=None, metavar="DIR",
                       help="the local Ray's session folder (default: Ray's, /tmp/ray or $RAY_TMPDIR)")
    sweep.add_argument("--no-ray", action="store_true",
                       help="run the jobs one after another in this process (no Ray needed; same files, same numbers)")

    prof = sub.add_parser("profiles", help="show the settings of each profile")
    prof.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def profiles_table() -> str:
    """The profiles as a plain-text table: one row per setting, one column per profile."""
    flat = {name: _flatten({k: v for k, v in p.items() if k != "description"})
            for name, p in PROFILES.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    rows = [["setting", *flat]] + [[k, *(str(f.get(k, "")) for f in flat.values())]
                                   for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{name}: {p.get('description', '')}" for name, p in PROFILES.items()]
    return "\n".join(lines + [""] + notes)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dlfd`` command; returns the exit status (130 after Ctrl-C, with a message and no
    traceback, even when a second Ctrl-C arrives while the run is shutting down)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("dlfd: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "profiles":
        print(json.dumps(PROFILES, indent=2) if args.json else profiles_table())
        return 0

    if args.command == "status":
        return _status(args)

    if args.command == "sweep":
        return _sweep(args)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.log_output:
        logging.getLogger("papermill").setLevel(logging.WARNING)
    timeout = "profile" if args.cell_timeout is None else (args.cell_timeout or None)
    try:
        record = run_notebooks(profile=args.profile, notebooks=args.notebooks,
                               out_dir=args.out, parameters=dict(args.params),
                               kernel_name=args.kernel, device=args.device, seed=args.seed,
                               log_output=args.log_output, notebooks_dir=args.notebooks_dir,
                               cell_timeout=timeout)
    except NotebookFailed as err:
        print(f"dlfd: {err}", file=sys.stderr)
        return 1
    except NotebookInterrupted as err:
        print(f"dlfd: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("dlfd: interrupted", file=sys.stderr)
        return 130
    except RunLocked as err:
        print(f"dlfd: error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as err:
        print(f"dlfd: error: {err}", file=sys.stderr)
        return 2
    total = sum(nb["wall_s"] for nb in record["notebooks"])
    print(f"dlfd: {len(record['notebooks'])} notebook(s) ran in {total:.0f} s; the executed "
          f"notebooks and provenance.json are in {record['out_dir']}")
    return 0


def _sweep(args) -> int:
    from pathlib import Path

    from .profiles import get_profile
    from .sweep import RayMissing, SweepSpec, run_sweep

    profile = get_profile(args.profile)
    proto = profile.get("protocol", {})
    try:
        spec = SweepSpec(profile_name=args.profile, seeds=args.seeds or proto.get("eval_seeds", [0]),
                         methods=args.methods, dataset=args.dataset, task=args.task, data_root=args.data_root,
                         data_options=args.data_options, n_trials=args.trials,
                         tuning_seeds=args.tuning_seeds or proto.get("tuning_seeds", [100]),
                         n_mia=proto.get("n_mia", 3), attacks=args.attacks)
        if args.trial_batch != 1:
            raise ValueError(f"--trial-batch {args.trial_batch}: a sweep now runs each method's trials in trial "
                             f"order, as the protocol does (the studies of different methods run side by side); "
                             f"leave --trial-batch out")
        out = Path(args.out) if args.out else Path("runs") / f"sweep-{args.profile}"
        res = run_sweep(spec, out, profile=profile, ckpt_dir=args.ckpt_dir, device=args.device,
                        use_ray=not args.no_ray, address=args.address, num_cpus=args.num_cpus,
                        cpus_per_job=args.cpus_per_job, retries=args.retries,
                        object_store_mb=args.object_store_mb, ray_temp_dir=args.ray_temp_dir)
    except RayMissing as err:
        print(f"dlfd: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"dlfd: error: {err}", file=sys.stderr)
        return 2
    return 0 if res["rows"] is not None else 1


def _status(args) -> int:
    from pathlib import Path

    out = Path(args.out) if args.out else default_notebooks_dir().resolve().parent / "runs" / args.profile
    if not (out / "provenance.json").is_file():
        print(f"dlfd: no run recorded in {out} (no provenance.json)", file=sys.stderr)
        return 2
    rec = read_provenance(out)
    print(f"{out}: {rec['status']} (profile {rec.get('profile')}, seed {rec.get('seed')}, "
          f"started {rec.get('started')}, finished {rec.get('finished')})")
    for nb in rec.get("notebooks", []):
        print(f"  {nb['notebook']}: {nb['status']}" + (f", {nb['wall_s']} s" if "wall_s" in nb else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
