"""Shared data machinery: decode image files once into a uint8 tensor cache, then serve
whole batches from memory.

Why: the original decoded every JPEG with PIL on every epoch in one process, which cost
~35% of each CIFAKE epoch. Here decoding happens once, in parallel, and an epoch is pure
tensor indexing.
"""

import hashlib
import io
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import torch
from filelock import FileLock
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from aidetect import LABELS

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
RESIZE_POLICIES = ("resize", "center_crop")


def data_lock(path: Path) -> FileLock:
    """One process at a time prepares a data folder (parallel sweep jobs share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def list_class_folder(folder: Path) -> list[tuple[Path, int]]:
    """Image files under folder/REAL and folder/FAKE, labelled by name (never by sort order)."""
    items = []
    for cls, label in LABELS.items():
        d = folder / cls
        if not d.is_dir():
            raise FileNotFoundError(f"missing class folder {d}: expected {folder}/REAL and {folder}/FAKE")
        items += [(p, label) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    return items


def fit_image(img: Image.Image, size, policy: str) -> Image.Image:
    """Bring an image to ``size`` = (height, width) with the given resize policy."""
    if size is None:
        return img
    h, w = int(size[0]), int(size[1])
    if img.size == (w, h):
        return img
    if policy == "resize":  # stretch, as the original's Resize((720, 1280))
        return img.resize((w, h), Image.BILINEAR)
    elif policy == "center_crop":  # keep aspect: scale to cover, then crop the middle
        scale = max(w / img.width, h / img.height)
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((left, top, left + w, top + h))
    raise ValueError(f"unknown data.resize={policy!r}; valid: {', '.join(RESIZE_POLICIES)}")


def _decode(job):
    path, size, policy = job
    try:
        raw = Path(path).read_bytes()
        md5 = hashlib.md5(raw).hexdigest()
        with Image.open(io.BytesIO(raw)) as im:
            img = fit_image(im.convert("RGB"), size, policy)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy(), md5, None
    except Exception as e:  # corrupt or unreadable: reported and counted by the caller
        return None, None, f"{type(e).__name__}: {e}"


def decode_files(paths, size=None, policy="resize", strict=False, workers=None):
    """Decode image files in parallel into one uint8 tensor [N, 3, H, W].

    Returns (images, kept_indices, md5s, skipped) where skipped lists (path, error) of
    files that could not be decoded; with ``strict`` the first such file raises instead.
    With ``size=None`` every image must already share one size.
    """
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), None if size is None else tuple(size), policy) for p in paths]
    arrays, kept, md5s, skipped = [], [], [], []
    chunk = max(1, min(512, len(jobs) // (workers * 8) or 1))
    with ProcessPoolExecutor(workers) as ex:
        for i, (arr, md5, err) in enumerate(ex.map(_decode, jobs, chunksize=chunk)):
            if err is None and arrays and arr.shape != arrays[0].shape:  # a setting to fix, not a bad file
                raise ValueError(f"{paths[i]} is {arr.shape[2]}x{arr.shape[1]} but {paths[kept[0]]} is "
                                 f"{arrays[0].shape[2]}x{arrays[0].shape[1]}: set data.image_size=[H,W] "
                                 f"to bring every image to one size")
            if err is not None:
                if strict:
                    raise ValueError(f"cannot use image {paths[i]}: {err} (data.strict=true)")
                skipped.append((str(paths[i]), err))
                continue
            arrays.append(arr), kept.append(i), md5s.append(md5)
    if skipped:
        log.warning("skipped %d unreadable images, e.g. %s: %s", len(skipped), *skipped[0])
    if not arrays:
        raise ValueError(f"no readable images among {len(paths)} files")
    return torch.from_numpy(np.stack(arrays)), kept, md5s, skipped


def build_cache(cache_file: Path, splits: dict, size=None, policy="resize", strict=False) -> dict:
    """Decode each split's [(path, label)] list and save it as one torch file, atomically."""
    t0 = time.perf_counter()
    out = {}
    for name, items in splits.items():
        paths = [p for p, _ in items]
        images, kept, md5s, skipped = decode_files(paths, size, policy, strict)
        out[name] = {
            "images": images,
            "labels": torch.tensor([items[i][1] for i in kept], dtype=torch.long),
            "names": [str(Path(paths[i]).relative_to(Path(paths[i]).parents[1])) for i in kept],
            "md5": md5s,
            "skipped": skipped,
        }
    out["decode_seconds"] = time.perf_counter() - t0
    tmp = cache_file.with_name(cache_file.name + f".tmp-{os.getpid()}")
    torch.save(out, tmp)
    os.replace(tmp, cache_file)
    log.info("decoded %s images into %s in %.1f s", sum(len(v["labels"]) for k, v in out.items()
             if isinstance(v, dict)), cache_file, out["decode_seconds"])
    return out


def stratified_split(labels: torch.Tensor, fraction: float, seed: int):
    """Seeded split of indices into (rest, picked), picking ``fraction`` of each class."""
    g = torch.Generator().manual_seed(seed)
    rest, picked = [], []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * fraction)
        picked.append(idx[:k]), rest.append(idx[k:])
    return torch.cat(rest).sort().values, torch.cat(picked).sort().values


class InMemoryImages(Dataset):
    """uint8 images held in memory, indexed with a whole list of indices per batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names=None):
        assert len(images) == len(labels)
        self.images, self.labels, self.names = images, labels, names

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    def subset(self, idx: torch.Tensor) -> "InMemoryImages":
        names = None if self.names is None else [self.names[i] for i in idx.tolist()]
        return InMemoryImages(self.images[idx], self.labels[idx], names)


class ImageDataModule(L.LightningDataModule):
    """Base for the in-memory datamodules: subclasses fill ``self.splits`` in ``setup``."""

    def __init__(self, batch_size=32, num_workers=0, val_fraction=0.2, split_seed=0,
                 fraction=1.0, strict=False):
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"data.fraction must be in (0, 1], got {fraction}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.fraction, self.strict = fraction, strict
        self.splits: dict[str, InMemoryImages] = {}
        self.counts: dict = {}  # goes into the run's metrics.json

    def _subsample(self, ds: InMemoryImages) -> InMemoryImages:
        if self.fraction >= 1:
            return ds
        _, keep = stratified_split(ds.labels, self.fraction, self.split_seed + 1)
        return ds.subset(keep)

    def _loader(self, split, shuffle):
        if split not in self.splits:
            raise RuntimeError(f"no {split!r} split; call setup() first")
        ds = self.splits[split]
        base = RandomSampler(ds) if shuffle else SequentialSampler(ds)
        # batch_size=None + a BatchSampler: one tensor gather per batch, no per-image collate.
        return DataLoader(ds, batch_size=None, sampler=BatchSampler(base, self.batch_size, False),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def predict_dataloader(self):
        return self._loader("test", False)

    def fixed_examples(self, split="val", n=8):
        """The same n images (half REAL, half FAKE) every call: for image grids."""
        ds = self.splits[split]
        idx = [i for c in (0, 1) for i in (ds.labels == c).nonzero().squeeze(1)[: n // 2].tolist()]
        return ds.images[idx], ds.labels[idx]

    def _shuffle_eval_splits(self):
        """Fix one seeded order for val/test, so limit_val_batches sees both classes."""
        g = torch.Generator().manual_seed(self.split_seed + 2)
        for name in ("val", "test"):
            if name in self.splits:
                self.splits[name] = self.splits[name].subset(torch.randperm(len(self.splits[name]), generator=g))

    def _count_splits(self):
        for name, ds in self.splits.items():
            self.counts[name] = len(ds)
            self.counts[f"{name}_fake"] = int(ds.labels.sum())
