"""Training and evaluation throughput (images/s): the per-image data path against the in-memory,
batch-augmented one, side by side in one run.

For each data source – the embedded synthetic faces (pixels already in memory) and, with
``--folder``, the same images written as PNG files behind a CSV and read by the ``folder`` loader
(what a user with their own faces has) – and for each data path

* ``per-image``: a torch ``DataLoader`` (``num_workers=0``) decoding each file and running the
  torchvision transforms one image at a time, in the training process (the kit before);
* ``in-memory``: the split decoded once into a uint8 tensor, batches cut from it and augmented a
  whole batch at a time with per-image parameters (``dlfd_lib.data.batches``, the default now),

it times the data alone (augmented training batches), a training step (forward, backward, SGD
step, bf16 autocast and channels_last as ``train_model`` does) and evaluation (a plain forward
over un-augmented batches), each over ``--batches`` batches after one warm-up batch. The one-off
decode of the in-memory path is timed and reported on its own. Ratios are within one run.

    python benchmarks/train_speed.py --device cpu --folder --out results/train_speed_cpu.json
    python benchmarks/train_speed.py --device cuda --image-size 128 --batch-size 32 --folder
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlfd_lib.data import load_splits  # noqa: E402
from dlfd_lib.model import build_model  # noqa: E402
from dlfd_lib.profiles import get_profile  # noqa: E402
from dlfd_lib.train import TrainConfig, make_optimizer  # noqa: E402
from dlfd_lib.unlearn.loop import batch_ce  # noqa: E402
from dlfd_lib.utils import autocast, resolve_device, to_device  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def write_folder(splits, root: Path) -> Path:
    """The retain/forget/val/test images of ``splits`` as PNG files plus a CSV
    (path,label,identity,split), in the layout the ``folder`` loader reads."""
    from PIL import Image
    rows = ["path,label,identity,split"]
    for split in ("retain", "forget", "val", "test"):
        d = splits.split(split)
        imgs = splits.images_uint8(split)
        for i in range(len(d)):
            rel = f"{split}/{i:05d}.png"
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(imgs[i].permute(1, 2, 0).numpy()).save(root / rel)
            rows.append(f"{rel},{splits.class_names[d.labels[i]]},p{d.identities[i]},{split}")
    (root / "faces.csv").write_text("\n".join(rows) + "\n")
    return root / "faces.csv"


def time_batches(loader, batches: int, step=None):
    """Images/s over ``batches`` batches after one warm-up batch (``step`` runs on each)."""
    it = iter(loader)
    x, y = next(it)
    if step:
        step(x, y)
    n, t0 = 0, time.perf_counter()
    for b in range(batches):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        if step:
            step(x, y)
        n += len(y)
    return n / (time.perf_counter() - t0)


def measure(splits, in_memory: bool, args, device) -> dict:
    cfg = TrainConfig(batch_size=args.batch_size)
    torch.manual_seed(0)
    model = build_model(splits.num_classes, device).to(memory_format=torch.channels_last)
    opt, _ = make_optimizer(model, cfg, total_steps=10**6)
    out = {"path": "in-memory" if in_memory else "per-image"}
    t0 = time.perf_counter()
    kw = dict(batch_size=args.batch_size, in_memory=in_memory,
              device=device if in_memory else None)
    train_loader = splits.loader("train", augment=True, shuffle=True, seed=0, drop_last=True, **kw)
    eval_loader = splits.loader("val", batch_size=256, in_memory=in_memory,
                                device=device if in_memory else None)
    out["decode_s"] = time.perf_counter() - t0  # one-off: decode + resize into memory

    out["data_img_s"] = time_batches(train_loader, args.batches)

    def train_step(x, y):
        model.train()
        loss = batch_ce(model, x, y, device, amp=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)

    out["train_img_s"] = time_batches(train_loader, args.batches, train_step)

    @torch.no_grad()
    def eval_step(x, y):
        model.eval()
        with autocast(device, True):
            model(to_device(x, device)).float().argmax(1)
        sync(device)

    out["eval_img_s"] = time_batches(eval_loader, max(2, args.batches // 4), eval_step)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", default="quick", help="sizes of the synthetic faces")
    ap.add_argument("--image-size", type=int, default=None, help="default: the profile's")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8, help="timed batches per measurement")
    ap.add_argument("--folder", action="store_true", help="also time the PNG-folder data source")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    profile = get_profile(args.profile)
    over = {"image_size": args.image_size} if args.image_size else {}
    synth = load_splits("synthetic", profile=profile, seed=0, **over)
    sources = [("synthetic (in memory)", lambda: synth)]
    tmp = None
    if args.folder:
        tmp = tempfile.TemporaryDirectory(prefix="dlfd-train-speed-")
        csv = write_folder(synth, Path(tmp.name))
        size = synth.image_size

        def folder():  # a fresh load each time, so no decode is cached across paths
            return load_splits("folder", task="age", data_root=csv, image_size=size)
        sources.append((f"PNG folder ({len(synth.train) + len(synth.val) + len(synth.test)} files)", folder))
    rows = []
    for name, make in sources:
        for in_memory in (False, True):
            r = {"source": name, **measure(make(), in_memory, args, device)}
            rows.append(r)
            print(f"{name:28s} {r['path']:10s} data {r['data_img_s']:7.0f} img/s   "
                  f"train {r['train_img_s']:6.0f} img/s   eval {r['eval_img_s']:6.0f} img/s   "
                  f"(decode {r['decode_s']:.1f} s)", flush=True)
    for name, _ in sources:
        a, b = [r for r in rows if r["source"] == name]
        print(f"{name}: in-memory / per-image  data {b['data_img_s'] / a['data_img_s']:.2f}x  "
              f"train {b['train_img_s'] / a['train_img_s']:.2f}x  eval {b['eval_img_s'] / a['eval_img_s']:.2f}x")
    meta = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
            "image_size": synth.image_size, "batches": args.batches, "torch": torch.__version__}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if tmp:
        tmp.cleanup()
    return rows


if __name__ == "__main__":
    main()
