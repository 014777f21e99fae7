"""Aligned reconstructions: REAL training images passed through a latent autoencoder, as extra FAKE images.

    git clone https://github.com/madebyollin/taesd ../taesd        # MIT; taesd.py + taef2_*.pth (commit 5cccb12)
    python -m aidetect.data.recon --pool data/broad --taesd ../taesd --out data/broad_recon
    python train.py experiment=modern_detector data.root=data/broad_recon

Every latent-diffusion generator draws its pixels through a VAE decoder: its upsampling leaves traces
that content does not. A REAL photo encoded and decoded by such an autoencoder keeps the photo's content,
framing and camera history and gains only those traces, so a detector trained on the pair cannot use
content and must learn the decoder (Rajan et al., "Aligned datasets improve detection of latent
diffusion-generated images", ICLR 2025). The autoencoder here is TAEF2 (the tiny distilled
autoencoder of FLUX.2's latent space, 2.7M parameters), the one whose weights install offline.

Only REAL rows in the train and val splits (split_seed, no leave-out) are reconstructed, so no test
image's content reaches training; each reconstruction keeps its source's file stem and ``group``, so
it falls in the same split as its source (data/modern.py groups by them). A ``crop`` x ``crop`` window
at native resolution (the image is first brought down to ``max_side`` on its short side if larger; a
seed from the source's sha256 places the window) keeps the CPU cost near a second an image. Output:
``out`` holds the pool's files (hard links) and a MANIFEST.csv with one added row per reconstruction
(family ``recon``, lossless PNG: format-neutral training re-encodes it like every other image). Files
are written atomically and existing ones are kept, so an interrupted run resumes.
"""

import argparse
import csv
import hashlib
import importlib.util
import io
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aidetect.config import ConfigError
from aidetect.data.images import BadImage, open_image
from aidetect.io import atomic_write

log = logging.getLogger(__name__)
SOURCE = "recon_taef2"


def load_autoencoder(taesd_dir: Path, name: str = "taef2"):
    """``TAESD`` from ``taesd_dir/taesd.py`` with ``{name}_encoder.pth`` / ``{name}_decoder.pth`` beside it."""
    taesd_dir = Path(taesd_dir)
    files = [taesd_dir / f for f in ("taesd.py", f"{name}_encoder.pth", f"{name}_decoder.pth")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"--taesd {taesd_dir}: missing {', '.join(missing)}; clone "
                          f"https://github.com/madebyollin/taesd there (its weights are in the repository)")
    spec = importlib.util.spec_from_file_location("taesd", files[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TAESD(str(files[1]), str(files[2])).eval()


def window(img: Image.Image, crop: int, max_side: int, seed: str) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The image at native resolution (short side at most ``max_side``), then a ``crop`` x ``crop`` window
    (sides a multiple of 8, the autoencoder's stride) placed by ``seed``; returns it and its box."""
    if min(img.size) > max_side:
        s = max_side / min(img.size)
        img = img.resize((max(8, round(img.width * s)), max(8, round(img.height * s))), Image.BICUBIC)
    w, h = min(crop, img.width) // 8 * 8, min(crop, img.height) // 8 * 8
    if w < 8 or h < 8:
        raise BadImage(f"smaller than 8 px after scaling ({img.width}x{img.height})")
    rng = random.Random(seed)
    x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
    return img.crop((x, y, x + w, y + h)), (x, y, x + w, y + h)


@torch.no_grad()
def reconstruct(model, img: Image.Image) -> Image.Image:
    """Encode and decode one image ([0, 1] in and out, as TAESD expects)."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    y = model.decoder(model.encoder(x)).clamp(0, 1)
    return Image.fromarray((y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def source_rows(pool: Path, split_seed: int = 0, holdout="auto", data_dir="data") -> tuple[list[dict], list[str]]:
    """The manifest's rows and the paths of the REAL rows in train or val, as data=modern splits them."""
    from aidetect.data.modern import ModernDataModule, read_manifest

    dm = ModernDataModule(root=pool, split_seed=split_seed, holdout=holdout, num_workers=0, data_dir=data_dir)
    splits = dm.assign(dm.select())
    keep = sorted(r["path"] for s in ("train", "val") for r in splits[s] if r["label"] == "REAL")
    return read_manifest(pool / "MANIFEST.csv"), keep


def link_pool(pool: Path, out: Path, rows: list[dict]) -> None:
    """Every file of the pool into ``out`` (a hard link; a copy across file systems)."""
    for r in rows:
        src, dst = pool / r["path"], out / r["path"]
        if dst.exists() or not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            atomic_write(dst, src.read_bytes())


def recon_path(row: dict) -> str:
    """Same file stem (hence the same prompt group) as the source, under the source's folder name."""
    return f"FAKE/{SOURCE}/{row['source_name']}/{Path(row['path']).stem}.png"


def build(pool: Path, out: Path, taesd_dir: Path, crop: int = 256, max_side: int = 768, limit: int | None = None,
          split_seed: int = 0, holdout="auto", threads: int | None = None, name: str = "taef2",
          data_dir="data") -> dict:
    pool, out = Path(pool), Path(out)
    if out.resolve() == pool.resolve():
        raise ConfigError(f"--out {out} is the pool itself: write the pool with reconstructions to a new folder")
    rows, keep = source_rows(pool, split_seed, holdout, data_dir)
    if limit is not None and limit < len(keep):
        keep = sorted(random.Random(split_seed).sample(keep, limit))
    by_path = {r["path"]: r for r in rows}
    link_pool(pool, out, rows)
    if threads:
        torch.set_num_threads(threads)
    model = load_autoencoder(taesd_dir, name)
    added, made, skipped, t0 = [], 0, [], time.time()
    for i, p in enumerate(keep):
        src = by_path[p]
        rel = recon_path(src)
        dst = out / rel
        try:
            img = open_image(pool / p)
            win, box = window(img, crop, max_side, src["sha256"] or p)
        except (BadImage, OSError) as e:
            skipped.append((p, str(e)))
            continue
        if not dst.exists():
            buf = io.BytesIO()
            reconstruct(model, win).save(buf, "PNG")
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dst, buf.getvalue())
            made += 1
        data = dst.read_bytes()
        added.append({**{k: src.get(k, "") for k in src}, "path": rel, "label": "FAKE", "source_name": SOURCE,
                      "generator": f"{name}-reconstruction", "family": "recon", "sha256": hashlib.sha256(data).hexdigest(),
                      "width": win.width, "height": win.height, "bytes": len(data), "dhash64": "", "source_sha256": "",
                      "pixel_sha256": "", "group": src.get("group", ""),
                      "note": f"{name} (madebyollin/taesd) encode-decode of {p}, box {box} after short side <= {max_side}"})
        if (i + 1) % 50 == 0:
            log.info("%d/%d reconstructed (%.2f s an image)", i + 1, len(keep), (time.time() - t0) / max(made, 1))
    cols = list(rows[0].keys())
    for extra in ("group", "dhash64", "source_sha256", "pixel_sha256"):
        if extra not in cols:
            cols.append(extra)
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, extrasaction="ignore", restval="")
    w.writeheader()
    w.writerows(rows + added)
    atomic_write(out / "MANIFEST.csv", buf.getvalue().encode())
    report = {"pool": str(pool), "out": str(out), "real_train_val": len(keep), "reconstructed": len(added),
              "made_now": made, "skipped": skipped, "seconds": round(time.time() - t0, 1)}
    log.info("%s", report)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=Path, required=True, help="a pool folder holding MANIFEST.csv")
    ap.add_argument("--out", type=Path, required=True, help="new pool folder: the pool's files + reconstructions")
    ap.add_argument("--taesd", type=Path, required=True, help="a clone of github.com/madebyollin/taesd")
    ap.add_argument("--name", default="taef2", help="weights prefix in --taesd (taef2, taesd, taesdxl, ...)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--max-side", type=int, default=768)
    ap.add_argument("--limit", type=int, default=None, help="reconstruct only this many (a seeded sample)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        build(a.pool, a.out, a.taesd, a.crop, a.max_side, a.limit, a.split_seed, threads=a.threads, name=a.name)
    except ConfigError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
