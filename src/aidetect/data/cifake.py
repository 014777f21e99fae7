"""CIFAKE (Bird & Lotfi 2024): 32x32 CIFAR-10 photos (REAL) vs Stable Diffusion 1.4 (FAKE).

    python train.py data=cifake data.archive=../shared/data/cifake.zip

Getting the data (``prepare_data``, once per data folder): a local archive or folder given
as ``data.archive``, else the Kaggle API. It is extracted atomically to
``<data_dir>/cifake/raw`` and decoded once into ``<data_dir>/cifake/cache-v1.pt``.

CIFAKE holds byte-identical duplicates, 378 of them shared by test and train. By default
(``data.dedup=true``) test images that also occur in train are dropped and one copy of each
duplicate is kept; ``data.dedup=false`` keeps the raw split, comparable to published numbers.
The validation split is carved from train in memory (seeded, stratified): no file moves.
"""

import logging
from pathlib import Path

import torch

from aidetect.data.archive import kaggle_download, safe_extract
from aidetect.data.common import (ImageDataModule, InMemoryImages, build_cache, data_lock,
                                  list_class_folder, stratified_split)

log = logging.getLogger(__name__)

KAGGLE_DATASET = "birdy654/cifake-real-and-ai-generated-synthetic-images"
CACHE_NAME = "cache-v1.pt"


def _first_unique(md5s, exclude=frozenset()):
    """Indices of the first occurrence of each hash, skipping hashes in ``exclude``."""
    seen, keep = set(exclude), []
    for i, h in enumerate(md5s):
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return keep


class CIFAKEDataModule(ImageDataModule):
    def __init__(self, data_dir="data", archive=None, dedup=True, kaggle_api=None, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(data_dir).expanduser() / "cifake"
        self.archive = None if archive is None else Path(archive).expanduser()
        self.dedup = dedup
        self.kaggle_api = kaggle_api  # tests inject a stand-in with the KaggleApi interface
        if self.archive is not None and not self.archive.exists():
            raise FileNotFoundError(
                f"data.archive={archive} does not exist; give the path of cifake.zip (or of a "
                f"folder holding train/ and test/), or leave data.archive unset to use Kaggle")

    @property
    def cache_file(self) -> Path:
        return self.root / CACHE_NAME

    def _raw_folder(self) -> Path:
        if self.archive is not None and self.archive.is_dir():
            return self.archive
        zip_path = self.archive or kaggle_download(KAGGLE_DATASET, self.root / "download", self.kaggle_api)
        return safe_extract(zip_path, self.root / "raw")

    def prepare_data(self):
        with data_lock(self.cache_file):
            if self.cache_file.is_file():
                return
            raw = self._raw_folder()
            for split in ("train", "test"):
                if not (raw / split).is_dir():
                    raise FileNotFoundError(f"{raw} has no {split}/ folder: not the CIFAKE layout "
                                            f"(train/REAL, train/FAKE, test/REAL, test/FAKE)")
            splits = {s: list_class_folder(raw / s) for s in ("train", "test")}
            log.info("decoding CIFAKE once into %s", self.cache_file)
            build_cache(self.cache_file, splits, size=None, strict=self.strict)

    def setup(self, stage=None):
        if self.splits:
            return
        cache = torch.load(self.cache_file, weights_only=False)
        train, test = cache["train"], cache["test"]
        self.counts = {"decode_seconds": round(cache["decode_seconds"], 2),
                       "skipped_unreadable": len(train["skipped"]) + len(test["skipped"])}
        tr = InMemoryImages(train["images"], train["labels"], train["names"])
        te = InMemoryImages(test["images"], test["labels"], test["names"])
        self.counts["raw_train"], self.counts["raw_test"] = len(tr), len(te)
        if self.dedup:
            keep_tr = _first_unique(train["md5"])
            in_train = {train["md5"][i] for i in keep_tr}
            unique_te = _first_unique(test["md5"])
            keep_te = _first_unique(test["md5"], exclude=in_train)
            self.counts.update(train_duplicates_dropped=len(tr) - len(keep_tr),
                               test_in_train_dropped=len(unique_te) - len(keep_te),
                               test_duplicates_dropped=len(te) - len(unique_te))
            tr, te = tr.subset(torch.tensor(keep_tr)), te.subset(torch.tensor(keep_te))
            log.info("dedup: dropped %s", {k: v for k, v in self.counts.items() if "dropped" in k})
        tr = self._subsample(tr)
        rest, val = stratified_split(tr.labels, self.val_fraction, self.split_seed)
        self.splits = {"train": tr.subset(rest), "val": tr.subset(val), "test": te}
        self.counts["dedup"] = self.dedup
        self._shuffle_eval_splits()
        self._count_splits()
