"""Does ``torch.compile`` pay for the kit's two hot steps? Eager against compiled, side by side.

The two steps every long run is made of: a reference-training / fine-tuning step (forward,
cross-entropy, backward with weight gradients, SGD) and a DLFD δ-step (eval-mode forward of
the perturbed batch, backward to the input only). Both at the kit's precision (bf16 autocast,
channels_last), on random images, timed after a warm-up that includes the compilation; the
eager model is timed before *and* after the compiled one, so a drift of the machine shows.

    python benchmarks/compile_speed.py --device cpu                       # quick profile's sizes
    python benchmarks/compile_speed.py --device cuda --image-size 128 --batch 32 --steps 50
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlfd_lib.model import build_model  # noqa: E402
from dlfd_lib.utils import autocast, resolve_device  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, n: int, warmup: int, device) -> tuple[float, float]:
    """(seconds per step, seconds of the warm-up)."""
    t = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    return (time.perf_counter() - t) / n, warm


def make_steps(compiled: bool, batch: int, size: int, classes: int, device):
    torch.manual_seed(0)
    model = build_model(classes, device=device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fwd = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def train_step():
        model.train()
        with autocast(device):
            loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def delta_step():
        model.eval()
        delta = torch.zeros_like(x, requires_grad=True)
        with autocast(device):
            loss = F.cross_entropy(fwd(x + delta), y)
        (g,) = torch.autograd.grad(loss, delta)
        return g

    return train_step, delta_step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    rows = []
    for label, compiled in (("eager", False), ("compiled", True), ("eager again", False)):
        train_step, delta_step = make_steps(compiled, args.batch, args.image_size, args.classes, device)
        for kind, step in (("training step", train_step), ("δ-step", delta_step)):
            sec, warm = time_steps(step, args.steps, args.warmup, device)
            rows.append({"model": label, "step": kind, "ms": 1000 * sec, "images_per_s": args.batch / sec,
                         "warmup_s": warm})
            print(f"{label:12s} {kind:14s} {1000 * sec:8.1f} ms  {args.batch / sec:7.0f} img/s  "
                  f"(warm-up {warm:.1f} s)", flush=True)
    for kind in ("training step", "δ-step"):
        eager = [r["ms"] for r in rows if r["step"] == kind and r["model"] != "compiled"]
        comp = next(r["ms"] for r in rows if r["step"] == kind and r["model"] == "compiled")
        print(f"{kind}: compiled / eager = {comp / (sum(eager) / len(eager)):.3f} "
              f"(eager before/after {eager[0]:.1f} / {eager[1]:.1f} ms)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "rows": rows},
                                             indent=1))


if __name__ == "__main__":
    main()
