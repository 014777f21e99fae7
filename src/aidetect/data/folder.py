"""Any folder of REAL/ and FAKE/ images, e.g. a dataset made by `aidetect flux build`.

    python train.py data=folder data.root=/path/to/images model=seed_flux_cnn
    python train.py data=flux                     # data/flux/dataset, 720x1280, batch 16

Layouts: ``root/{REAL,FAKE}`` (split here: seeded, stratified, 80/10/10 by default) or
``root/{train,val|validation,test}/{REAL,FAKE}`` (used as given). With train/ and val/ but
no test/ (as many downloaded sets), the given val/ becomes the held-out test split and a
new val split is carved from train for checkpoint selection; a lone train/ is split three ways.

High-resolution images are decoded once, in parallel, at the training resolution
(``image_size``, ``resize``) into a uint8 cache under ``<data_dir>/folder-cache``, so
decoding never starves training. The cache key covers every file's name, size and mtime
and the settings, so a changed folder is decoded again.
"""

import hashlib
import json
import logging
from pathlib import Path

import torch

from aidetect.data.common import (RESIZE_POLICIES, ImageDataModule, InMemoryImages, build_cache, data_lock,
                                  list_class_folder, stratified_split)

log = logging.getLogger(__name__)

VAL_NAMES = ("val", "validation")


def find_layout(root: Path) -> dict[str, list]:
    """{split: [(path, label)]} for the splits present (an unsplit folder gives 'all')."""
    if (root / "REAL").is_dir() or (root / "FAKE").is_dir():
        return {"all": list_class_folder(root)}
    found = {}
    if (root / "train").is_dir():
        found["train"] = list_class_folder(root / "train")
    for name in VAL_NAMES:
        if (root / name).is_dir():
            found["val"] = list_class_folder(root / name)
            break
    if (root / "test").is_dir():
        found["test"] = list_class_folder(root / "test")
    if "train" not in found:
        raise FileNotFoundError(f"data.root={root}: expected REAL/ and FAKE/ folders, or train/, val/ (or "
                                f"validation/) and test/ folders each holding REAL/ and FAKE/")
    return found


class FolderDataModule(ImageDataModule):
    def __init__(self, root, data_dir="data", image_size=None, resize="center_crop", test_fraction=0.1, **kw):
        kw.setdefault("val_fraction", 0.1)
        super().__init__(**kw)
        if root is None:
            raise ValueError("data.root is not set: give the folder holding REAL/ and FAKE/ (or split folders)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={root} is not a folder")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown data.resize={resize!r}; valid: {', '.join(RESIZE_POLICIES)}")
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.resize, self.test_fraction = resize, test_fraction
        self.cache_dir = Path(data_dir).expanduser() / "folder-cache"

    def _key(self, layout) -> str:
        h = hashlib.sha256(json.dumps([str(self.root.resolve()), self.image_size, self.resize]).encode())
        for split, items in sorted(layout.items()):
            for p, label in items:
                st = p.stat()
                h.update(f"{split}|{p.name}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    @property
    def cache_file(self) -> Path:
        return self.cache_dir / f"{self.root.name}-{self._key(find_layout(self.root))}.pt"

    def prepare_data(self):
        cache = self.cache_file
        with data_lock(cache):
            if not cache.is_file():
                log.info("decoding %s at %s once into %s", self.root, self.image_size or "native size", cache)
                build_cache(cache, find_layout(self.root), self.image_size, self.resize, self.strict)

    def setup(self, stage=None):
        if self.splits:
            return
        cache = torch.load(self.cache_file, weights_only=False)
        sets = {k: InMemoryImages(v["images"], v["labels"], v["names"]) for k, v in cache.items() if isinstance(v, dict)}
        self.counts = {"decode_seconds": round(cache["decode_seconds"], 2),
                       "skipped_unreadable": sum(len(v["skipped"]) for v in cache.values() if isinstance(v, dict))}
        if "all" in sets:
            sets["train"] = sets.pop("all")
        if "test" not in sets and "val" in sets:
            log.warning("%s has no test/ split: its val/ split is used as the held-out test set, "
                        "and a val split is carved from train", self.root)
            sets["test"] = sets.pop("val")
            self.counts["test_from"] = "val/ folder"
        carved_test = "test" not in sets
        if carved_test:  # seeded and stratified, like every split here
            rest, test = stratified_split(sets["train"].labels, self.test_fraction, self.split_seed)
            sets["train"], sets["test"] = sets["train"].subset(rest), sets["train"].subset(test)
        if "val" not in sets:
            frac = self.val_fraction / (1 - self.test_fraction) if carved_test else self.val_fraction
            rest, val = stratified_split(sets["train"].labels, frac, self.split_seed + 10)
            sets["val"], sets["train"] = sets["train"].subset(val), sets["train"].subset(rest)
        sets["train"] = self._subsample(sets["train"])
        self.splits = sets
        self._shuffle_eval_splits()
        self._count_splits()
