"""How fast is the kit's DLFD epoch? Three yardsticks on random images of MUFAC's sizes.

(a) seconds per DLFD epoch (the library's ``unlearn("dlfd", ...)``, incl. its monitoring at the
    given cadence; worst case: the dynamic switch never fires, every batch is perturbed);
(b) its ratio to (K + 1) plain fine-tuning epochs over the retain set (K perturbation steps +
    one SGD step per batch is what DLFD does, so 1.0 means "as dear as K+1 fine-tuning
    epochs"; target <= 0.6);
(c) its speed-up over a loop doing what the authors' released code does per batch: per
    perturbation step three forwards (clean retain, perturbed retain, forget) and a full
    backward (weights too), and after every batch a full evaluation of val plus loss passes
    over retain, forget and val and a fresh MIA fit (target >= 10x).

Every loop is timed on a few batches after a warm-up and extrapolated to one epoch
(``retain // batch_size`` batches); CUDA is synchronised around every timing. The released-style
loop is a yardstick kept here, not a library feature; it uses the same precision (bf16
autocast with ``--amp``) and OT code as the kit, so (c) measures what the algorithmic
differences cost, not precision.

    python benchmarks/dlfd_speed.py --device cpu --batches 3 --out results/dlfd_speed_cpu.json
    python benchmarks/dlfd_speed.py --device cuda --image-size 128 --batches 20 --out ...
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlfd_lib.data.splits import (IMAGENET_MEAN, IMAGENET_STD, SplitDataset, TensorSource,  # noqa: E402
                                  UnlearningSplits, eval_transform)
from dlfd_lib.attacks import mia  # noqa: E402
from dlfd_lib.inference import accuracy, predict  # noqa: E402
from dlfd_lib.model import build_model  # noqa: E402
from dlfd_lib.unlearn import method_defaults, unlearn  # noqa: E402
from dlfd_lib.unlearn.dlfd import DLFDMonitor  # noqa: E402
from dlfd_lib.unlearn.ot import ot_distance  # noqa: E402
from dlfd_lib.utils import autocast, resolve_device, to_device  # noqa: E402

N_CLASSES = 8


def random_splits(args) -> UnlearningSplits:
    g = torch.Generator().manual_seed(0)
    size = args.image_size

    def make(n, offset):
        imgs = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        labels = np.arange(n) % N_CLASSES
        return SplitDataset(TensorSource(imgs), labels, eval_transform(size, IMAGENET_MEAN, IMAGENET_STD),
                            identities=np.arange(n) // 10 + offset)

    return UnlearningSplits("random", "age", [f"c{i}" for i in range(N_CLASSES)],
                            make(args.retain, 0), make(args.forget, 10**6), make(args.val, 2 * 10**6),
                            make(args.test, 3 * 10**6), size)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device) -> float:
    sync(device)
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------
def time_dlfd(model, splits, device, args, hp) -> dict:
    """Steady-state seconds per DLFD batch: two library runs that differ only in their number of
    batches (each ends with one monitor), the difference divided by the extra batches."""
    common = dict(profile=args.profile, device=device, seed=0, forget_threshold=-1.0,
                  monitor_every=10**9, **hp)
    short = unlearn("dlfd", model, splits, max_steps=args.warmup, **common)
    long = unlearn("dlfd", model, splits, max_steps=args.warmup + args.batches, **common)
    per_batch = (long.info["seconds"] - short.info["seconds"]) / args.batches
    return {"per_batch_s": per_batch, "short_run_s": short.info["seconds"],
            "long_run_s": long.info["seconds"]}


def time_monitor(model, splits, device, defaults, args) -> float:
    from dlfd_lib.data.view import method_view
    mon = DLFDMonitor(method_view(splits), defaults["monitor_size"], defaults["val_size"],
                      args.eval_batch_size, 0, device, amp=args.amp)
    mon(model)  # warm-up
    t = now(device)
    for _ in range(args.monitor_reps):
        mon(model)
    return (now(device) - t) / args.monitor_reps


def time_finetune(model, splits, device, args) -> float:
    """Seconds per plain fine-tuning batch (train mode, CE, backward, SGD step)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    loader = splits.loader("retain", batch_size=args.batch_size, shuffle=True, drop_last=True)
    it = iter(loader)

    def step():
        x, y = next(it)
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with autocast(device, args.amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t = now(device)
    for _ in range(args.batches):
        step()
    return (now(device) - t) / args.batches


def time_loader(splits, args) -> float:
    """Seconds per retain batch spent in the DataLoader alone (decode/normalise on the CPU)."""
    it = iter(splits.loader("retain", batch_size=args.batch_size, shuffle=True, drop_last=True))
    next(it)
    t = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    return (time.perf_counter() - t) / args.batches


# ---------------------------------------------------------------------------------------------
# the released-style yardstick
def released_step(model, opt, x, y, xf, args, hp, w_t, device):
    """One batch the released way: per step three forwards and a full backward; OT on the clean
    outputs; clamp(x + delta, 0, 1); then the SGD step. Model stays in train mode."""
    delta = torch.zeros_like(x, requires_grad=True)
    ot_kw = dict(reg=hp["ot_reg"], max_iter=hp["ot_iters"], stop_thr=hp["ot_stop_thr"],
                 backend=hp["ot_backend"], grad=hp["ot_grad"])
    for _ in range(hp["K"]):
        with autocast(device, args.amp):
            clean = model(x)
            pert = model(torch.clamp(x + delta, 0, 1))
            forget = model(xf)
        loss = hp["w_f"] * ot_distance(clean.float(), forget.float(), **ot_kw) \
            - w_t * F.cross_entropy(pert.float(), y)
        opt.zero_grad()
        loss.backward()  # weights get gradients too (then discarded)
        with torch.no_grad():
            delta += hp["alpha"] * delta.grad.sign()
            delta.grad = None
    x_star = torch.clamp(x + delta.detach(), 0, 1)
    with autocast(device, args.amp):
        out = model(x_star)
    loss = F.cross_entropy(out.float(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def released_monitor(model, splits, device, args):
    """After every batch: full val accuracy, loss passes over retain, forget and val, MIA fit."""
    res = {}
    for name in ("val", "retain", "forget", "val"):  # the accuracy pass, then the three loss passes
        loader = splits.loader(name, batch_size=args.eval_batch_size, shuffle=False)
        res[name] = predict(model, loader, device, amp=args.amp)
    accuracy(res["val"]["logits"], res["val"]["labels"])
    mia(res["forget"]["losses"], res["val"]["losses"], seed=int(np.random.default_rng().integers(1 << 30)),
        balance=False)
    model.train()


def time_released(model, splits, device, args, hp) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    model.train()
    rl = iter(splits.loader("retain", batch_size=args.batch_size, shuffle=False, drop_last=True))
    fl = iter(splits.loader("forget", batch_size=args.batch_size, shuffle=True, drop_last=True))

    def step():
        x, y = next(rl)
        xf, _ = next(fl)
        released_step(model, opt, to_device(x, device), y.to(device), to_device(xf, device),
                      args, hp, 0.5, device)

    step()  # warm-up
    t = now(device)
    for _ in range(args.released_batches):
        step()
    per_step = (now(device) - t) / args.released_batches
    t = now(device)
    released_monitor(model, splits, device, args)
    monitor = now(device) - t
    return {"per_batch_steps_s": per_step, "per_batch_monitor_s": monitor,
            "per_batch_s": per_step + monitor}


# ---------------------------------------------------------------------------------------------
def time_ot_calls(device, args, hp) -> dict:
    """Per-call seconds of ot_distance forward + backward on (batch, C) logits, per backend."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(args.batch_size, N_CLASSES, generator=g).to(device).requires_grad_(True)
    b = torch.randn(args.batch_size, N_CLASSES, generator=g).to(device)
    out = {}
    for backend in ("pot", "torch", "scaling"):
        for grad in ("autodiff", "envelope"):
            def call():
                d = ot_distance(a, b, reg=hp["ot_reg"], max_iter=hp["ot_iters"],
                                stop_thr=hp["ot_stop_thr"], backend=backend, grad=grad)
                torch.autograd.grad(d, a)
            for _ in range(3):
                call()
            n = 30
            t = now(device)
            for _ in range(n):
                call()
            out[f"{backend}/{grad}"] = (now(device) - t) / n
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=5, help="timed batches per loop (after warm-up)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--released-batches", type=int, default=2)
    p.add_argument("--monitor-reps", type=int, default=2)
    p.add_argument("--retain", type=int, default=8525)
    p.add_argument("--forget", type=int, default=1500)
    p.add_argument("--val", type=int, default=1539)
    p.add_argument("--test", type=int, default=1504)
    p.add_argument("--profile", default="paper", help="DLFD defaults to start from")
    p.add_argument("--K", type=int, default=None, help="perturbation steps (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    p.add_argument("--monitor-every", type=int, default=None)
    p.add_argument("--monitor-size", type=int, default=None)
    p.add_argument("--ot-backend", default=None, choices=("pot", "torch", "scaling"))
    p.add_argument("--ot-grad", default=None, choices=("autodiff", "envelope"))
    p.add_argument("--ot-stop-thr", type=float, default=0.0,
                   help="POT's stop threshold; 0 (default) times the worst case: every Sinkhorn runs "
                        "all its iterations (an untrained model's near-constant outputs would "
                        "otherwise let POT stop after 1 iteration and flatter it)")
    p.add_argument("--compare-ot", action="store_true",
                   help="also time DLFD batches with every OT backend/gradient")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--skip-released", action="store_true")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    d = method_defaults("dlfd", args.profile)
    for key, val in (("K", args.K), ("batch_size", args.batch_size), ("monitor_every", args.monitor_every),
                     ("monitor_size", args.monitor_size), ("ot_backend", args.ot_backend),
                     ("ot_grad", args.ot_grad)):
        if val is not None:
            d[key] = val
    args.batch_size = d["batch_size"]
    d["ot_stop_thr"] = args.ot_stop_thr
    hp = {k: d[k] for k in ("K", "batch_size", "monitor_size", "ot_backend", "ot_grad", "ot_stop_thr")}
    hp.update(amp=args.amp, eval_batch_size=args.eval_batch_size)

    t0 = time.perf_counter()
    splits = random_splits(args)
    model = build_model(N_CLASSES, device)
    n_batches = args.retain // d["batch_size"]
    n_monitors = math.ceil(n_batches / d["monitor_every"])
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"{args.image_size}px, retain {args.retain} -> {n_batches} batches of {d['batch_size']}, "
          f"K={d['K']}, monitor every {d['monitor_every']} ({n_monitors} monitors, "
          f"{d['monitor_size']} forget + {d['monitor_size']} val imgs for the MIA, val acc on {d['val_size'] or 'all'}), "
          f"OT {d['ot_backend']}/{d['ot_grad']}, amp={args.amp}", flush=True)

    res: dict = {"device": str(device), "device_name": torch.cuda.get_device_name(device)
                 if device.type == "cuda" else "cpu", "torch": torch.__version__,
                 "args": vars(args), "dlfd_hparams": d, "n_batches": n_batches, "n_monitors": n_monitors}
    res["ot_call_s"] = time_ot_calls(device, args, d)
    print("OT fwd+bwd per call: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in res["ot_call_s"].items()),
          flush=True)

    dl = time_dlfd(model, splits, device, args, hp)
    mon = time_monitor(model, splits, device, d, args)
    dlfd_epoch = n_batches * dl["per_batch_s"] + n_monitors * mon
    res["dlfd"] = {**dl, "monitor_s": mon, "epoch_s": dlfd_epoch,
                   "epoch_s_without_monitor": n_batches * dl["per_batch_s"]}
    print(f"DLFD: {dl['per_batch_s'] * 1e3:.1f} ms/batch, monitor {mon:.3f} s -> {dlfd_epoch:.1f} s/epoch",
          flush=True)
    if args.compare_ot:
        res["dlfd_by_ot"] = {}
        variants = [(f"{b}/{g}", {"ot_backend": b, "ot_grad": g})
                    for b in ("pot", "torch", "scaling") for g in ("autodiff", "envelope")]
        variants.append(("mean distance (no OT)", {"distance": "mean"}))
        for name, extra in variants:
            r = time_dlfd(model, splits, device, args, {**hp, **extra})
            res["dlfd_by_ot"][name] = r["per_batch_s"]
            print(f"  DLFD with {name}: {r['per_batch_s'] * 1e3:.1f} ms/batch", flush=True)

    res["loader_per_batch_s"] = time_loader(splits, args)
    print(f"data loading alone (CPU transforms, in every loop): {res['loader_per_batch_s'] * 1e3:.1f} ms/batch",
          flush=True)
    ft = time_finetune(build_model(N_CLASSES, device), splits, device, args)
    ft_epoch = n_batches * ft
    ratio = dlfd_epoch / ((d["K"] + 1) * ft_epoch)
    res["finetune"] = {"per_batch_s": ft, "epoch_s": ft_epoch}
    res["ratio_to_K_plus_1_finetune_epochs"] = ratio
    print(f"fine-tune: {ft * 1e3:.1f} ms/batch -> {ft_epoch:.1f} s/epoch; DLFD / ({d['K']}+1) fine-tune "
          f"epochs = {ratio:.3f} (target <= 0.6)", flush=True)

    if not args.skip_released:
        rel = time_released(build_model(N_CLASSES, device), splits, device, args, d)
        rel_epoch = n_batches * rel["per_batch_s"]
        res["released"] = {**rel, "epoch_s": rel_epoch}
        res["speedup_over_released"] = rel_epoch / dlfd_epoch
        print(f"released-style: {rel['per_batch_steps_s'] * 1e3:.1f} ms/batch steps + "
              f"{rel['per_batch_monitor_s']:.2f} s monitor -> {rel_epoch:.0f} s/epoch; speed-up "
              f"{res['speedup_over_released']:.1f}x (target >= 10x)", flush=True)
    res["benchmark_wall_s"] = time.perf_counter() - t0

    rows = [("DLFD epoch (kit)", res["dlfd"]["epoch_s"]),
            ("  of which monitoring", n_monitors * mon),
            (f"(K+1)={d['K'] + 1} fine-tune epochs", (d["K"] + 1) * ft_epoch),
            ("released-style epoch", res.get("released", {}).get("epoch_s", float("nan")))]
    print("\n| loop | seconds per epoch (extrapolated) |\n|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.1f} |")
    print(f"| ratio DLFD / (K+1) fine-tune | {ratio:.3f} (target <= 0.6) |")
    if "speedup_over_released" in res:
        print(f"| speed-up over released | {res['speedup_over_released']:.1f}x (target >= 10x) |")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
