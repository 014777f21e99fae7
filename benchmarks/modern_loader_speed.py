"""Training throughput on data=modern against the same model's training step on tensors in memory,
and the loader's peak memory at 1x and 4x the pool (issue 28, item 5).

    python benchmarks/modern_loader_speed.py --root data/grown [--n 960] [--repeats 2] [--crop 128] [--decoded-cache]
        [--augment format_neutral|none]

Both rows run the shipped recipe's step (experiment=modern_detector: EfficientNet-Lite0 cut at stride
16, AdamW, batch 32, channels-last) on 2 threads, alternated and repeated (median reported):

  memory   the step on uint8 crops already in memory (one batch drawn from the loader beforehand, reused);
  loader   the same step fed by ModernDataModule.train_dataloader(): 2 worker processes decode each
           file, re-encode it format-neutrally (augment=format_neutral) and take one random native crop,
           as train.py's training epochs do (Lightning's own loop and callbacks not included).
  loader_alone  the same loader with no step: what its 2 workers deliver when they have the cores.

--augment none: the loader without the format-neutral re-encode (data=modern's own path: a random native crop
and a flip), the setting issue 28 named before the shipped recipe added the re-encode.
--decoded-cache: the loader reads each training image's pixels from data.decoded_cache (DecodedCache in
src/aidetect/data/modern.py) instead of decoding the file; every training image is decoded into it before
the timed rows (its time is reported), so they time the steady state of every epoch after the first. This
fills the real data/modern-cache/decoded-v1 with the pool's training split (about 3 bytes a pixel); for
--rss a separate child fills a temporary cache first, so the peaks measured are those of reading it.

The ratio loader / memory is issue 28's figure (target >= 0.85). --rss runs, in a fresh child each, one
pass of --n images through the loader over --rss-rows rows of the pool's manifest and over a manifest
listing each of them 4 times (the same files, so the dataset grows 4x while the images per batch stay the same): peak
resident memory of the child and its workers (getrusage), which must stay flat (target within 10%).
Not a timed test: this machine's speed moves, so read the spread.
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def build(root: str, crop: int, workers: int, n: int, decoded_cache: bool = False, augment: str = "format_neutral"):
    from aidetect.config import compose
    from aidetect.module import Detector, build_recipe
    from aidetect.runs import build_datamodule
    from aidetect.train import plain

    cfg = compose("train", ["experiment=modern_detector", f"data.root={root}", f"data.crop_size={crop}",
                            f"data.num_workers={workers}", f"data.epoch_size={n}", "data.holdout=none",
                            f"data.decoded_cache={str(decoded_cache).lower()}", f"augment={augment}"])
    dm = build_datamodule(cfg.data)
    dm.assign = _train_only(dm.assign)
    dm.setup("fit")
    torch.manual_seed(0)
    model = Detector(net=plain(cfg.model.net), view={"name": "none"}, optimizer=plain(cfg.model.optimizer),
                     input_size=(crop, crop), channels_last=True)
    recipe = build_recipe(model.hparams.optimizer, None, model.parameters(), total_steps=10_000)
    opt = recipe["optimizer"] if isinstance(recipe, dict) else recipe
    return dm, model, opt


def _train_only(assign):
    """The benchmark times the training path only: val/test splits are not decoded."""
    def wrapped(rows):
        parts = assign(rows)
        return {"train": parts["train"]}
    return wrapped


def step(model, opt, x, y):
    loss = model.loss(model(x), y.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def memory_row(model, opt, batch, n: int) -> float:
    x, y = batch
    steps = n // len(x)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y)
    return steps * len(x) / (time.perf_counter() - t0)


def loader_row(model, opt, dm, n: int) -> float:
    model.train()
    seen, t0 = 0, time.perf_counter()
    for x, y in dm.train_dataloader():
        step(model, opt, x, y)
        seen += len(x)
        if seen >= n:
            break
    return seen / (time.perf_counter() - t0)


def loader_alone_row(dm, n: int) -> float:
    """The loader with no model: how fast 2 workers decode, re-encode and crop when they have the cores."""
    seen, t0 = 0, time.perf_counter()
    for x, _ in dm.train_dataloader():
        seen += len(x)
        if seen >= n:
            break
    return seen / (time.perf_counter() - t0)


def warm_cache(dm) -> float:
    """Decode every training image into the decoded cache (what the first epoch does on the way); seconds."""
    ds, t0 = dm.train_set, time.perf_counter()
    for path, key in zip(ds.paths, ds.keys):
        ds.cache.get(path, key)
    return time.perf_counter() - t0


def rss_child(root: str, crop: int, n: int, decoded_cache: bool, fill_only: bool = False,
              augment: str = "format_neutral") -> None:
    """One pass of n images through the loader (no model); prints peak RSS of this process and its children.
    fill_only: decode the training split into the decoded cache and stop (run in its own child first, so
    the measuring child's peaks are those of reading the cache)."""
    dm, _, _ = build(root, crop, 2, n, decoded_cache, augment)
    if fill_only:
        warm_cache(dm)
        return
    for i, _ in enumerate(dm.train_dataloader()):
        pass
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"self_mb": round(me, 1), "worker_mb": round(kids, 1)}))


def rss_rows(root: Path, crop: int, n: int, base: int, decoded_cache: bool = False,
             augment: str = "format_neutral") -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = list(csv.DictReader(open(root / "MANIFEST.csv", newline="")))[::-1][:base]  # both classes
        for k in (1, 4):
            pool = Path(tmp) / f"x{k}"
            pool.mkdir()
            for d in ("FAKE", "REAL"):
                (pool / d).symlink_to((root / d).resolve())
            with open(pool / "MANIFEST.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                for i in range(k):
                    for r in rows:  # the same file under a new name and hash: a distinct row, same pixels
                        w.writerow({**r, "sha256": f"{r['sha256'][:60]}{i:04d}"})
            child = [sys.executable, __file__, "--rss-child", str(pool), "--crop", str(crop), "--n", str(n),
                     "--augment", augment, *(["--decoded-cache"] if decoded_cache else [])]
            if decoded_cache:
                subprocess.run([*child, "--fill-only"], capture_output=True, text=True, check=True, cwd=tmp)
            res = subprocess.run(child, capture_output=True, text=True, check=True, cwd=tmp)
            out[f"x{k}"] = {"rows": len(rows) * k, **json.loads(res.stdout.strip().splitlines()[-1])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="data/grown")
    ap.add_argument("--n", type=int, default=960, help="images per timed row")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rss", action="store_true", help="also the loader's peak memory at 1x and 4x the pool")
    ap.add_argument("--rss-rows", type=int, default=1500, help="rows of the pool's manifest taken as 1x")
    ap.add_argument("--decoded-cache", action="store_true", help="read training pixels from data.decoded_cache")
    ap.add_argument("--augment", default="format_neutral", choices=["format_neutral", "none"],
                    help="the training loader's augmentation (none: random crop and flip only)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    ap.add_argument("--fill-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="write the result as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    if a.rss_child:
        return rss_child(a.rss_child, a.crop, a.n, a.decoded_cache, a.fill_only, a.augment)
    dm, model, opt = build(a.root, a.crop, 2, a.n * (a.repeats + 1), a.decoded_cache, a.augment)
    warm_s = warm_cache(dm) if a.decoded_cache else None
    batch = next(iter(dm.train_dataloader()))
    memory_row(model, opt, batch, 64)  # warm-up (allocator, kernels)
    rates = {"memory": [], "loader": [], "loader_alone": []}
    for _ in range(a.repeats):
        rates["memory"].append(memory_row(model, opt, batch, a.n))
        rates["loader"].append(loader_row(model, opt, dm, a.n))
        rates["loader_alone"].append(loader_alone_row(dm, a.n))
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {"root": a.root, "n": a.n, "crop": a.crop, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "decoded_cache": a.decoded_cache, "augment": a.augment, "cache_fill_s": warm_s, "train_images": len(dm.train_set),
              "images_per_second": rates, "median": med, "ratio_loader_over_memory": med["loader"] / med["memory"]}
    if a.rss:
        result["peak_rss"] = rss_rows(Path(a.root), a.crop, a.n, a.rss_rows, a.decoded_cache, a.augment)
    print(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
