"""Peak memory of `aidetect predict` against the number of files: streaming means flat.

    python benchmarks/predict_memory.py [--ckpt CKPT] [--sizes 1000 10000] [--side 64]

Writes N generated JPEGs (side x side) into a temporary folder, runs `aidetect predict FOLDER
--out scores.csv` in a fresh process for each N, and reports the child's peak resident memory
(getrusage ru_maxrss) and its ratio to the smallest N's. Each N runs in its own process, so the
peaks do not mix.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(np.roll(base, i, axis=0)).resize((side, side), Image.BILINEAR)
        img.save(folder / f"{i:06d}.jpg", quality=90)


def peak_rss_mb(cmd) -> tuple[float, float]:
    """Run cmd in a child, via a wrapper process, so ru_maxrss is that child's alone."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="default: the shipped detector")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--side", type=int, default=64)
    args = ap.parse_args()
    print(f"# predict peak memory; python {sys.version.split()[0]}; images {args.side}x{args.side} JPEG")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            make_images(folder, n, args.side)
            cmd = [sys.executable, "-m", "aidetect.cli", "predict", str(folder), "--out", str(Path(tmp) / f"{n}.csv")]
            if args.ckpt:
                cmd[4:4] = ["--ckpt", args.ckpt]
            mb, seconds = peak_rss_mb(cmd)
            lines = sum(1 for _ in open(Path(tmp) / f"{n}.csv")) - 1
            rows.append((n, mb, seconds, lines))
    base = rows[0][1]
    print("| files | rows written | peak RSS (MB) | ratio to first | seconds |")
    print("|---|---|---|---|---|")
    for n, mb, seconds, lines in rows:
        print(f"| {n} | {lines} | {mb:.0f} | {mb / base:.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
