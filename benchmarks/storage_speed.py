"""Training speed streaming from disk (data.storage=disk) against in memory (the default), on CIFAKE.

    python benchmarks/storage_speed.py --archive ../shared/data/cifake.zip [--repeats 2] [--fraction 0.25]

Runs train.py's real path for one epoch (seed CIFAKE CNN, batch 32, view none, no test, no
calibration) alternately with each storage, in one process after a warm-up that builds both
caches, and reports images/s per run and the disk/memory ratio of the medians. Same machine,
same run: the ratio is what matters on a noisy machine.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def epoch(storage: str, archive: str, data_dir: str, fraction: float, out: Path) -> float:
    from conftest import compose_train

    from aidetect.train import train

    cfg = compose_train([f"data.archive={archive}", f"data.data_dir={data_dir}", f"data.storage={storage}",
                         f"data.fraction={fraction}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                         "logger=none", "test=false", "calibrate=false", f"output_dir={out}"])
    m = train(cfg)
    return m["images_per_second"][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", default=str(ROOT.parent / "shared/data/cifake.zip"))
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.25, help="share of the training pool (1.0: all 79,264)")
    args = ap.parse_args()
    import logging

    logging.disable(logging.INFO)
    import torch

    print(f"# storage speed: torch {torch.__version__}, {torch.get_num_threads()} threads; CIFAKE fraction {args.fraction}")
    rates = {"memory": [], "disk": []}
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("memory", "disk"):  # warm-up: builds each cache, not timed
            epoch(storage, args.archive, args.data_dir, 0.02, Path(tmp) / f"warm-{storage}")
        for r in range(args.repeats):
            for storage in ("memory", "disk") if r % 2 == 0 else ("disk", "memory"):
                rate = epoch(storage, args.archive, args.data_dir, args.fraction, Path(tmp) / f"{storage}-{r}")
                rates[storage].append(rate)
                print(f"run {r} {storage:6}: {rate:8.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median: memory {med['memory']:.1f}, disk {med['disk']:.1f} images/s; disk/memory = {med['disk'] / med['memory']:.3f}")


if __name__ == "__main__":
    main()
