"""The one data path: any folder of REAL/ and FAKE/ images, decoded once into memory.

    python train.py data=folder data.root=/path/to/images
    python eval.py ckpt_path=best.ckpt data=folder data.root=/other/images     # scores all of it

Layouts: ``root/{REAL,FAKE}`` or ``root/{train,val|validation,test}/{REAL,FAKE}``.
CIFAKE (data/cifake.py) is this module plus a download and deduplication on by default.

Split order, the same for every dataset (seeds are ``data.split_seed`` + the offset named):
  1. dedup (``data.dedup``): one copy of each byte-identical file per split; val/test files
     whose bytes occur in train are dropped (leakage);
  2. test: the given test/; else a given val/ when there is no test/ (many downloads ship
     train/ + val/ only; a val split is then carved in 5); else ``test_fraction`` of an
     unsplit folder, stratified (seed +3);
  3. subsample the training pool to ``fraction``, stratified (seed +1); the test stays whole;
  4. val: the given val/; else ``val_fraction`` of the training pool, stratified (seed +0;
     from an unsplit folder at data.fraction=1 both fractions are of the whole folder);
  5. val and test are put in one seeded order (seed +2), so ``limit_val_batches`` sees both classes.

``data.pool=true`` ignores the folder's own split folders and pools every image, so that
the split seed draws a different held-out test set each run (repeated stratified splits).
``data.archive`` (a .zip) is extracted once to ``<data_dir>/<name>/raw`` and used as the root.

Evaluation (``setup("test")`` alone, as eval.py does) scores the folder's test/ if present,
else its val/, else every image under REAL/ and FAKE/, whole.

Each split is decoded once, in parallel, at the training resolution (``image_size``,
``resize``) into a uint8 cache file; the cache key covers every file's name, size and
mtime and every setting that changes the pixels, so a changed folder is decoded again.
A file lock makes parallel runs (sweeps, DDP ranks) decode it once.
"""

import hashlib
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from filelock import FileLock
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from aidetect.config import ConfigError, number
from aidetect.data.archive import safe_extract
from aidetect.data.images import RESIZE_POLICIES, MixedSizes, decode_files, list_class_folder
from aidetect.io import torch_save

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: one decode path (issue 31): files by content, skip reasons reworded
VAL_NAMES = ("val", "validation")
SEED_OFFSETS = {"val": 0, "subsample": 1, "eval_order": 2, "test": 3}


def find_layout(root: Path, skipped: list | None = None) -> dict[str, list]:
    """{split: [(path, label)]} for the splits present (an unsplit folder gives 'all'); files
    not used at listing (hidden, symlinks out of ``root``...) go to ``skipped``."""
    if (root / "REAL").is_dir() or (root / "FAKE").is_dir():
        return {"all": list_class_folder(root, skipped, root)}
    found = {}
    for split, names in (("train", ("train",)), ("val", VAL_NAMES), ("test", ("test",))):
        name = next((n for n in names if (root / n).is_dir()), None)
        if name:
            found[split] = list_class_folder(root / name, skipped, root)
    if not found:
        raise ConfigError(f"data.root={root}: expected REAL/ and FAKE/ folders, or train/, val/ (or "
                          f"validation/) and test/ folders each holding REAL/ and FAKE/")
    return found


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


def first_unique(md5s, exclude=frozenset()) -> list[int]:
    """Indices of the first occurrence of each hash, skipping hashes in ``exclude``."""
    seen, keep = set(exclude), []
    for i, h in enumerate(md5s):
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return keep


class InMemoryImages(Dataset):
    """uint8 images (a tensor in memory, or DiskImages read per batch) and their labels, indexed
    with a whole list of indices per batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names=None, md5=None):
        assert len(images) == len(labels)
        self.images, self.labels, self.names, self.md5 = images, labels, names, md5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    def subset(self, idx) -> "InMemoryImages":
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = idx.tolist()
        images = self.images[idx] if isinstance(self.images, torch.Tensor) else self.images.take(idx)  # disk: lazy
        return InMemoryImages(images, self.labels[idx],
                              None if self.names is None else [self.names[i] for i in pick],
                              None if self.md5 is None else [self.md5[i] for i in pick])


class ShardSampler(Sampler):
    """Batches of one rank's share of a split, for DDP.

    Evaluation: indices rank, rank + world, ...: disjoint, covering the split, no padding, so a
    split of odd size is scored exactly once (torchmetrics sums the ranks' counts). Training: one
    permutation per epoch, seeded by (seed, epoch) and so the same on every rank, cut into equal
    shares; the few images that do not divide evenly are left out of that epoch (a different
    few each epoch), because every rank must take the same number of steps.
    """

    def __init__(self, n: int, batch_size: int, rank: int, world: int, shuffle: bool, seed: int = 0):
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before each epoch
        self.epoch = epoch

    def indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world))
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        share = self.n // self.world
        return order[self.rank * share:(self.rank + 1) * share].tolist()

    def __iter__(self):
        idx = self.indices()
        for i in range(0, len(idx), self.batch_size):
            yield idx[i:i + self.batch_size]

    def __len__(self):
        k = len(self.indices()) if not self.shuffle else self.n // self.world
        return -(-k // self.batch_size)


class FolderDataModule(L.LightningDataModule):
    def __init__(self, root=None, data_dir="data", image_size=None, resize="center_crop", batch_size=32,
                 num_workers=0, val_fraction=0.1, test_fraction=0.1, split_seed=0, fraction=1.0,
                 dedup=False, strict=False, name=None, missing_hint=None, archive=None, pool=False,
                 min_side=8, storage="memory", default_size=None):
        super().__init__()
        self.archive = None if archive is None else Path(archive).expanduser()
        if self.archive is not None and not self.archive.exists():
            raise ConfigError(f"data.archive={archive} does not exist; give the path of a .zip (or of a folder) "
                              f"holding REAL/ and FAKE/ or split folders" + (f". {missing_hint}" if missing_hint else ""))
        if self.archive is not None and root is None:  # extracted under data_dir on first use
            root = self.archive if self.archive.is_dir() else \
                Path(data_dir).expanduser() / (name or self.archive.stem) / "raw"
        batch_size, num_workers, split_seed = (number(f"data.{k}", v, int) for k, v in
                                               (("batch_size", batch_size), ("num_workers", num_workers),
                                                ("split_seed", split_seed)))
        fraction, val_fraction, test_fraction = (number(f"data.{k}", v, float) for k, v in
                                                 (("fraction", fraction), ("val_fraction", val_fraction),
                                                  ("test_fraction", test_fraction)))
        for setting, value, ok in (("data.fraction", fraction, 0 < fraction <= 1),
                                   ("data.val_fraction", val_fraction, 0 < val_fraction < 1),
                                   ("data.test_fraction", test_fraction, 0 < test_fraction < 1),
                                   ("data.batch_size", batch_size, batch_size >= 1),
                                   ("data.num_workers", num_workers, num_workers >= 0)):
            if not ok:
                raise ConfigError(f"{setting}={value} is out of range (fractions in (0, 1], batch size >= 1)")
        if resize not in RESIZE_POLICIES:
            raise ConfigError(f"unknown data.resize={resize!r}; valid: {', '.join(RESIZE_POLICIES)}")
        if image_size is not None:
            try:
                image_size = tuple(int(s) for s in image_size)
            except (TypeError, ValueError):
                image_size = ()
            if len(image_size) != 2 or min(image_size) < 1:
                raise ConfigError(f"data.image_size: give [height, width] in pixels, e.g. data.image_size=[224,224]")
        self.image_size, self.resize = image_size, resize
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.fraction, self.dedup, self.strict, self.pool = fraction, dedup, strict, bool(pool)
        self.min_side = number("data.min_side", min_side, int)
        if storage not in ("memory", "disk"):
            raise ConfigError(f"data.storage={storage!r}; valid: memory (decoded split in RAM, the default), "
                              f"disk (streamed from a raw file: sets bigger than memory)")
        self.storage = storage
        self.listing_skipped: list[tuple[str, str]] = []  # files not even decoded (hidden, symlinks out)
        self.data_dir = Path(data_dir).expanduser()
        self.root = None if root is None else Path(root).expanduser()
        self._check_root(root, missing_hint)
        self.name = name or (self.root.name if self.root else "folder")
        # the network's default input size (train.py/eval.py pass it): used when the images' sizes differ
        # and data.image_size is unset
        self.default_size = None if default_size is None else tuple(int(s) for s in default_size)
        self.splits: dict[str, InMemoryImages] = {}
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files that could not be used
        self.data_report: dict = {}  # split sizes, decode and dedup tallies: metrics.json "data"

    def _check_root(self, root, hint):
        if self.archive is not None:  # the folder appears in prepare_data
            return
        if root is None:
            raise ConfigError("data.root is not set: give the folder holding REAL/ and FAKE/ (or split folders)")
        if not self.root.is_dir():
            raise ConfigError(f"data.root={root} is not a folder. " + (hint or "Point data.root at a folder "
                              "holding REAL/ and FAKE/ (or train/, val/, test/ folders that do)."))

    # --- the cache -------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "folder-cache"

    def _cache_file(self, split: str, items, size) -> Path:
        h = hashlib.sha256(json.dumps([CACHE_VERSION, str(self.root.resolve()), split, size,
                                       self.resize if size else None, self.min_side]).encode())
        for p, label in items:
            st = p.stat()
            h.update(f"{p.relative_to(self.root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return self.cache_dir / f"{self.root.name}-{split}-{h.hexdigest()[:16]}.pt"

    def _load(self, split: str, items, size) -> dict:
        if self.storage == "disk":
            return self._load_disk(split, items, size)
        cache = self._cache_file(split, items, size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache) + ".lock"):
            for stale in cache.parent.glob(f".{cache.name}.tmp-*"):  # a killed writer's; we hold the lock
                stale.unlink(missing_ok=True)
            if not cache.is_file():
                log.info("decoding %d images of %s/%s at %s once into %s", len(items), self.root, split,
                         "x".join(map(str, size)) if size else "native size", cache)
                t0 = time.perf_counter()
                paths = [p for p, _ in items]
                images, kept, md5s, skipped = decode_files(paths, size, self.resize, self.strict,
                                                           min_side=self.min_side)
                torch_save({"images": images, "labels": torch.tensor([items[i][1] for i in kept], dtype=torch.long),
                            "names": [str(paths[i].relative_to(self.root)) for i in kept], "md5": md5s,
                            "skipped": skipped, "decode_seconds": time.perf_counter() - t0}, cache)
            data = torch.load(cache, weights_only=True)
        if self.strict and data["skipped"]:  # the cache was built by a non-strict run
            path, reason = data["skipped"][0]
            raise ConfigError(f"cannot use image {path}: {reason} (data.strict=true)")
        return data

    def _load_disk(self, split: str, items, size) -> dict:
        """Like _load, but the images are decoded straight into a raw file and read back per batch."""
        from aidetect.data.disk import DiskImages, write_disk_cache
        from aidetect.data.images import iter_decode

        meta = self._cache_file(split, items, size).with_suffix(".disk.pt")
        raw = meta.with_suffix("").with_suffix(".u8")
        meta.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(meta) + ".lock"):
            for stale in meta.parent.glob(f".{raw.name}.tmp-*"):
                stale.unlink(missing_ok=True)
            if not meta.is_file():
                paths = [p for p, _ in items]
                log.info("decoding %d images of %s/%s to disk once: %s", len(items), self.root, split, raw)

                def checked():
                    for i, arr, md5, err in iter_decode(paths, size, self.resize, min_side=self.min_side):
                        if err is not None and self.strict:
                            raise ConfigError(f"cannot use image {paths[i]}: {err} (data.strict=true)")
                        yield i, arr, md5, err

                shape, kept, md5s, skipped, seconds = write_disk_cache(raw, checked(), len(items))
                torch_save({"count": len(kept), "shape": list(shape),
                            "labels": torch.tensor([items[i][1] for i in kept], dtype=torch.long),
                            "names": [str(paths[i].relative_to(self.root)) for i in kept], "md5": md5s,
                            "skipped": [(str(paths[i]), e) for i, e in skipped], "decode_seconds": seconds}, meta)
            data = torch.load(meta, weights_only=True)
        data["images"] = DiskImages(raw, data["count"], data["shape"])
        if self.strict and data["skipped"]:
            path, reason = data["skipped"][0]
            raise ConfigError(f"cannot use image {path}: {reason} (data.strict=true)")
        return data

    def _decode_all(self, layout: dict) -> dict:
        """Every split of the layout, at one size: data.image_size; else the native size if all
        images share it; else the network's default input size (with a warning)."""
        try:
            loaded = {k: self._load(k, v, self.image_size) for k, v in layout.items()}
            sizes = {tuple(v["images"].shape[-2:]) for v in loaded.values() if len(v["labels"])}
            if len(sizes) > 1:
                raise MixedSizes(f"the splits of {self.root} have different image sizes {sorted(sizes)}: "
                                 f"set data.image_size=[H,W] to bring every image to one size")
        except MixedSizes as e:
            if self.image_size is not None or self.default_size is None:
                raise
            log.warning("%s; data.image_size is not set, so using the network's default input size %s "
                        "(data.resize=%s)", e, list(self.default_size), self.resize)
            self.image_size = tuple(self.default_size)
            loaded = {k: self._load(k, v, self.image_size) for k, v in layout.items()}
        return loaded

    # --- splits ----------------------------------------------------------------------------
    def layout(self) -> dict:
        self.listing_skipped = []
        found = find_layout(self.root, self.listing_skipped)
        if self.strict and self.listing_skipped:
            path, reason = self.listing_skipped[0]
            raise ConfigError(f"cannot use {path}: {reason} (data.strict=true)")
        if self.pool and "all" not in found:  # one pool, split here by split_seed (repeated splits)
            found = {"all": sorted((item for items in found.values() for item in items), key=lambda i: str(i[0]))}
        return found

    def prepare_data(self):
        """Extract ``data.archive`` once (atomic, under a lock); decoding happens in setup."""
        if self.archive is None or self.archive.is_dir():
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root.parent / "prepare.lock")):
            if not self.root.is_dir():
                safe_extract(self.archive, self.root)

    def setup(self, stage=None):
        if self.splits:
            return
        layout = self.layout()
        if stage == "test":  # eval.py: score one whole split of the folder
            name = next(k for k in ("test", "val", "all", "train") if k in layout)
            need = {name: layout[name], **({"train": layout["train"]} if self.dedup and "train" in layout
                                            and name != "train" else {})}
            sets = self._sets(self._decode_all(need))
            test = sets[name]
            if "train" in sets and name != "train":
                test = self._dedup(sets["train"], test, "test")[1]
            self.splits = {"test": test}
            self.data_report["test_from"] = {"all": "REAL/ and FAKE/ (whole folder)"}.get(name, f"{name}/ folder")
        else:
            self.splits = self._fit_splits(self._sets(self._decode_all(layout)))
            self._shuffle_eval_splits()
        for name, ds in sorted(self.splits.items(), key=lambda kv: ("test", "val", "train").index(kv[0])):
            if len(ds) == 0:
                raise ConfigError(f"the {name} split of {self.root} is empty ({self.data_report}): add images, or "
                                  f"raise data.{'test' if name == 'test' else 'val'}_fraction")
            self.data_report[name] = len(ds)
            self.data_report[f"{name}_fake"] = int(ds.labels.sum())
        self.data_report["image_size"] = list(self.input_size)

    def _sets(self, loaded: dict) -> dict:
        self.skipped = list(self.listing_skipped) + [tuple(s) for v in loaded.values() for s in v["skipped"]]
        self.data_report = {"name": self.name, "decode_seconds": round(sum(v["decode_seconds"] for v in loaded.values()), 2),
                       "skipped_unreadable": len(self.skipped), "dedup": self.dedup}
        sets = {k: InMemoryImages(v["images"], v["labels"], v["names"], v["md5"]) for k, v in loaded.items()}
        for k, v in sets.items():
            self.data_report[f"raw_{k}"] = len(v)
        return sets

    def _dedup(self, train: InMemoryImages | None, other: InMemoryImages, name: str):
        """One copy of each file in ``other``, none that also occurs in ``train``."""
        unique = first_unique(other.md5)
        keep = first_unique(other.md5, exclude=set() if train is None else set(train.md5))
        self.data_report[f"{name}_duplicates_dropped"] = len(other) - len(unique)
        if train is not None:
            self.data_report[f"{name}_in_train_dropped"] = len(unique) - len(keep)
        return train, other.subset(keep)

    def _fit_splits(self, sets: dict) -> dict:
        pool = sets.get("train", sets.get("all"))
        if pool is None:
            raise ConfigError(f"data.root={self.root} has no train/ folder (nor REAL/ and FAKE/) to train on")
        key = "train" if "train" in sets else "all"
        if self.dedup:
            keep = first_unique(pool.md5)
            self.data_report[f"{key}_duplicates_dropped"] = len(pool) - len(keep)
            pool = pool.subset(keep)
            for name in ("test", "val"):
                if name in sets:
                    sets[name] = self._dedup(pool, sets[name], name)[1]
            log.info("dedup: dropped %s", {k: v for k, v in self.data_report.items() if "dropped" in k})
        val, test = sets.get("val"), sets.get("test")
        carved_test = False
        if test is None and val is not None:
            log.warning("%s has no test/ split: its val/ split is used as the held-out test set, "
                        "and a val split is carved from train", self.root)
            test, val = val, None
            self.data_report["test_from"] = "val/ folder"
        elif test is None:
            pool, test = self._carve(pool, self.test_fraction, "test")
            carved_test = True
        if self.fraction < 1:
            _, keep = stratified_split(pool.labels, self.fraction, self.split_seed + SEED_OFFSETS["subsample"])
            pool = pool.subset(keep)
        if val is None:
            frac = self.val_fraction / (1 - self.test_fraction) if carved_test else self.val_fraction
            pool, val = self._carve(pool, frac, "val")
        return {"train": pool, "val": val, "test": test}

    def _carve(self, pool: InMemoryImages, fraction: float, name: str):
        rest, picked = stratified_split(pool.labels, fraction, self.split_seed + SEED_OFFSETS[name])
        return pool.subset(rest), pool.subset(picked)

    def _shuffle_eval_splits(self):
        g = torch.Generator().manual_seed(self.split_seed + SEED_OFFSETS["eval_order"])
        for name in ("val", "test"):
            self.splits[name] = self.splits[name].subset(torch.randperm(len(self.splits[name]), generator=g))

    def peek_size(self, per_class: int = 3) -> tuple[int, int] | None:
        """The size training will use, known before decoding: data.image_size, else the native
        size read from a few image headers per class and split (EXIF rotation counted); None
        when they differ (the network's default size will be used) or cannot be read."""
        from aidetect.data.images import BadImage, probe_image

        if self.image_size is not None:
            return tuple(self.image_size)
        sizes = set()
        for items in self.layout().values():
            for label in (0, 1):
                for p in [p for p, lab in items if lab == label][:per_class]:
                    try:
                        h = probe_image(p)  # the header only; EXIF rotation counted
                    except BadImage:  # unreadable: decoding will skip and report it
                        continue
                    sizes.add((h["height"], h["width"]))
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def input_size(self) -> tuple[int, int]:
        """The [H, W] every image of this data was brought to."""
        ds = next(iter(self.splits.values()))
        return tuple(ds.images.shape[-2:])

    # --- loaders ---------------------------------------------------------------------------
    def _loader(self, split, shuffle):
        if split not in self.splits:
            raise RuntimeError(f"no {split!r} split; call setup() first")
        ds = self.splits[split]
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # DDP: each rank its own disjoint share
            if getattr(trainer._accelerator_connector, "use_distributed_sampler", False):
                raise ConfigError("several devices with Lightning's distributed sampler would shard the data twice: "
                                  "use trainer=ddp (it sets trainer.use_distributed_sampler=false), e.g. "
                                  "trainer=ddp trainer.accelerator=gpu trainer.devices=4")
            import os  # the run's seed (seed_everything sets it), so each seed of a sweep shuffles differently

            sampler = ShardSampler(len(ds), self.batch_size, trainer.global_rank, trainer.world_size, shuffle,
                                   seed=int(os.environ.get("PL_GLOBAL_SEED", self.split_seed)))
        else:
            base = RandomSampler(ds) if shuffle else SequentialSampler(ds)
            sampler = BatchSampler(base, self.batch_size, False)
        # batch_size=None + a batch sampler: one tensor gather per batch, no per-image collate.
        return DataLoader(ds, batch_size=None, sampler=sampler,
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
