"""Does bf16 autocast pay on *this* CPU? A training step in float32 and in bf16, side by side.

The kit uses bf16 on the CPU only where oneDNN has native bf16 kernels
(:func:`dlfd_lib.utils.cpu_bf16_supported`); this script measures what that choice is about:
the kit's ResNet18 + MLP, channels_last, one SGD step (forward, cross-entropy in float32,
backward, update) on random images, float32 and bf16 alternating twice (float32, bf16, float32,
bf16) so that a drift of the machine shows, and prints images/s beside the detector's verdict.

    python benchmarks/cpu_precision_speed.py                    # quick profile's sizes: 64 px, batch 64
    python benchmarks/cpu_precision_speed.py --image-size 128 --batch 32
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
from dlfd_lib.utils import cpu_bf16_supported  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    model = build_model(args.classes, cpu).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size).to(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,))

    def step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rates: dict[str, list[float]] = {"float32": [], "bf16": []}
    for _ in range(2):
        for name, bf16 in (("float32", False), ("bf16", True)):
            step(bf16)
            t = time.perf_counter()
            for _ in range(args.steps):
                step(bf16)
            rates[name].append(args.batch * args.steps / (time.perf_counter() - t))
    res = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "kit_uses_bf16": cpu_bf16_supported(),
           "threads": torch.get_num_threads(), "image_size": args.image_size, "batch": args.batch,
           "images_per_s": rates}
    for name, r in rates.items():
        print(f"{name:8s} training step: " + " / ".join(f"{v:.0f}" for v in r) + " images/s")
    print(f"bf16 / float32 speed: {min(rates['bf16']) / max(rates['float32']):.2f}–"
          f"{max(rates['bf16']) / min(rates['float32']):.2f}; CPU capability {res['cpu_capability']}, "
          f"{res['threads']} threads; the kit uses {'bf16' if res['kit_uses_bf16'] else 'float32'} here")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
