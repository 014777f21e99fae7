"""Throughput of `aidetect predict` on 1024x1024 JPEGs against decode + model alone.

    python benchmarks/predict_throughput.py [--ckpt CKPT] [--n 96] [--side 1024] [--repeats 3]

Writes N generated photo-like JPEGs (side x side, quality 90) into a temporary folder, loads
the detector once, then times, interleaved and repeated (the median is reported):

  decode + model alone: every file through the one decode path (``predict.load_image``:
      ``open_image`` then the checkpoint's resize or crop grid), on the same thread pool predict uses, then
      the model on the decoded batch; the two timed apart and added (no overlap, no listing,
      no output);
  predict: ``find_images`` (every file sniffed by content) -> ``predict_files`` (batches of
      --batch-size) -> a .csv written by predict's own ``Sink``, as `aidetect predict FOLDER
      --out scores.csv` does after start-up.

The ratio predict / (decode + model) is issue 31's figure (target >= 0.8). Process start and
checkpoint loading are not in either figure (reported apart). Not a timed test: a shared
machine's numbers move, so read the spread.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_images(folder: Path, n: int, side: int) -> None:
    """Photo-like content (smooth colour fields, edges and sensor-like noise): JPEG decode cost
    depends on content, so not flat colour, not pure noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(n):
        a, b, c = rng.uniform(0.5, 3, 3)
        base = np.stack([np.sin(a * 6 * x + i), np.cos(b * 5 * y - i), np.sin(c * 4 * (x + y))], -1) * 90 + 128
        base[(x - 0.5) ** 2 + (y - 0.4) ** 2 < rng.uniform(0.02, 0.08)] *= 0.5  # a disc with hard edges
        base += rng.normal(0, 6, base.shape)
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def time_alone(model, files, size, policy, workers, batch_size):
    from aidetect.predict import load_image

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:  # predict's own decode pool
        # the checkpoint's crop grid (k x k crops per image for a native-crop detector), as predict decodes it
        crops = int(model.hparams.get("eval_crops", 1))
        loaded = list(pool.map(lambda p: load_image(p, size, policy, crops=crops), files))
    t_decode = time.perf_counter() - t0
    batch = torch.from_numpy(np.stack([a for a, _, _ in loaded]))
    t0 = time.perf_counter()
    for i in range(0, len(batch), batch_size):
        model.predict_proba(batch[i:i + batch_size])
    return t_decode, time.perf_counter() - t0


def time_predict(model, folder, out, batch_size, workers):
    from aidetect.predict import Sink, find_images, predict_files

    t0 = time.perf_counter()
    sink = Sink(out)
    n = 0
    for row in predict_files(model, find_images([str(folder)]), batch_size=batch_size, workers=workers):
        sink.write(row)
        n += not row["skipped"]
    sink.close(True)
    return time.perf_counter() - t0, n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="default: the shipped detector")
    ap.add_argument("--n", type=int, default=96, help="number of JPEGs")
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64, help="predict's default")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from aidetect.module import load_detector
    from aidetect.predict import default_checkpoint

    torch.set_grad_enabled(False)
    workers = min(4, os.cpu_count() or 1)  # predict_files' default
    t0 = time.perf_counter()
    model = load_detector(Path(args.ckpt) if args.ckpt else default_checkpoint())
    t_load = time.perf_counter() - t0
    size, policy = model.input_size, model.hparams.resize
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, args.n, args.side)
        files = sorted(folder.iterdir())
        mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
        time_predict(model, folder, Path(tmp) / "warm.csv", args.batch_size, workers)  # warm: page cache, allocator
        alone, pred = [], []
        for _ in range(args.repeats):  # interleaved, so a busy neighbour slows both alike
            d, m = time_alone(model, files, size, policy, workers, args.batch_size)
            alone.append((d, m))
            t, n = time_predict(model, folder, Path(tmp) / "scores.csv", args.batch_size, workers)
            assert n == args.n, f"predict scored {n} of {args.n}"
            pred.append(t)
    rate = lambda t: args.n / t  # noqa: E731
    r_alone = [rate(d + m) for d, m in alone]
    r_pred = [rate(t) for t in pred]
    ratios = [p / a for p, a in zip(r_pred, r_alone)]
    print(f"# predict throughput; python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {workers} decode threads, device {model.device}")
    print(f"# {args.n} JPEGs {args.side}x{args.side} q90 ({mb:.2f} MB each); model input {size[0]}x{size[1]} "
          f"({policy}), batch {args.batch_size}; checkpoint loaded in {t_load:.2f} s; median of {args.repeats}")
    print()
    print("| figure | images/s (median) | spread (min-max) |")
    print("|---|---|---|")
    print(f"| decode alone | {statistics.median(rate(d) for d, _ in alone):.1f} | "
          f"{min(rate(d) for d, _ in alone):.1f}-{max(rate(d) for d, _ in alone):.1f} |")
    print(f"| model alone | {statistics.median(rate(m) for _, m in alone):.1f} | "
          f"{min(rate(m) for _, m in alone):.1f}-{max(rate(m) for _, m in alone):.1f} |")
    print(f"| decode + model alone | {statistics.median(r_alone):.1f} | {min(r_alone):.1f}-{max(r_alone):.1f} |")
    print(f"| predict (listing, decode, model, csv) | {statistics.median(r_pred):.1f} | "
          f"{min(r_pred):.1f}-{max(r_pred):.1f} |")
    print(f"| ratio predict / (decode + model) | {statistics.median(ratios):.3f} | "
          f"{min(ratios):.3f}-{max(ratios):.3f} |")


if __name__ == "__main__":
    main()
