"""Cost of one EMA update of the SmallResNet's weights: Lightning's per-tensor avg_fn against the
foreach multi_avg_fn that aidetect.callbacks.EMA uses. Repeats alternate; medians and the ratio.

    python benchmarks/ema_update.py                      # CPU (and the GPU, when there is one)
    python benchmarks/ema_update.py --width 64 --repeats 7
"""

import argparse
import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from aidetect.callbacks import EMA
from aidetect.models import SmallResNet


def per_update_ms(avg: AveragedModel, net, device, n: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    avg.update_parameters(net)
    sync()
    t = time.perf_counter()
    for _ in range(n):
        avg.update_parameters(net)
    sync()
    return (time.perf_counter() - t) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        net = SmallResNet(width=args.width).to(device)
        tensors = len(list(net.parameters())) + len(list(net.buffers()))
        kinds = {"per-tensor avg_fn (Lightning)": dict(avg_fn=get_ema_avg_fn(0.99)),
                 "foreach multi_avg_fn (aidetect)": EMA(decay=0.99)._kwargs}
        models = {k: AveragedModel(net, use_buffers=True, **kw) for k, kw in kinds.items()}
        times = {k: [] for k in kinds}
        for _ in range(args.repeats):
            for k, avg in models.items():
                times[k].append(per_update_ms(avg, net, device, args.updates))
        print(f"{device.type}: SmallResNet width {args.width}, {tensors} tensors, {args.updates} updates x {args.repeats}")
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"  {k:34s} median {med[k]:.3f} ms/update (range {min(v):.3f}-{max(v):.3f})")
        a, b = med.values()
        print(f"  ratio per-tensor / foreach: {a / b:.2f}")


if __name__ == "__main__":
    main()
