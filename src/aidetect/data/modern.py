"""Images listed in a manifest (``MANIFEST.csv``): the modern generator pool, FLUX first.

    python train.py data=modern model=lite0_s16 augment=format_neutral
    python train.py data=flux aug=inverted_saturated              # the design card: FLUX vs real
    python train.py data=modern data.leave_out=family:flux        # leave one family out

The manifest has one row per file: path (relative to the manifest's folder), label (FAKE|REAL),
source_name, generator, family, content (photo|art|other), sha256, ... (``aidetect data get``
writes it; ``../shared/data/modern`` ships one). Rows are chosen by column:
``families`` (acts on FAKE rows; REAL rows are all kept), ``content`` (both classes), ``sources``,
and ``leave_out`` (``family:flux``, ``source:coco128``; a list for several): the left-out rows and
every row grouped with them go to the test split only.

Splits are deterministic (``split_seed``) and grouped, so nothing leaks: one group = the same
prompt (the file-name stem before ``.N__``, across generators: FLUX and SDXL share prompts), the
tiles of one grid (``_tileN``, or the manifest's ``group`` column), the same picture at two sizes
(dHash within ``near_bits``). Each group falls in train, val or test by a hash of its key.
Images in ``../shared/data/holdout_hashes.tsv`` (sha256, or dHash within ``holdout_bits``) are
dropped and counted.

Resolution (``resize``): ``random_crop`` (default) trains on one random ``crop_size`` crop at the
image's own resolution and evaluates the mean logit of a fixed ``eval_crops`` x ``eval_crops``
grid of crops (data/crops.py); ``resize`` / ``center_crop`` bring every image to ``image_size``
(the seed's FLUX setup stretched to 720x1280). Training images stream from disk through the
DataLoader workers (memory bounded by the batch); val and test crops are decoded once into memory,
as published and as format-neutral copies (short side ``neutral_side``, JPEG q90), so every
result can be read both ways. ``augment.format_neutral`` re-encodes every training image.
"""

import contextlib
import csv
import hashlib
import json
import logging
import os
import random
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import torch
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from aidetect.config import ConfigError, number
from aidetect.data.crops import CROP_POLICIES, as_image, build_format_neutral, crop_set, random_crop
from aidetect.data.folder import InMemoryImages
from aidetect.data.images import RESIZE_POLICIES, BadImage, fit_image, format_neutral, open_image
from aidetect.io import torch_save

log = logging.getLogger(__name__)

CACHE_VERSION = 1
DECODED_VERSION = 1  # the decoded training pixels (DecodedCache): bump when open_image's output changes
COLUMNS = ("path", "label", "source_name", "family", "content")
_PROMPT = re.compile(r"^(?P<key>.+?)(\.\d+|_tile\d+)?__[0-9a-f]{6,}$")


def default_root() -> Path | None:
    for cand in (Path.cwd().parent / "shared" / "data" / "modern", Path.cwd() / "data" / "modern"):
        if (cand / "MANIFEST.csv").is_file():
            return cand
    return None


def read_manifest(path: Path) -> list[dict]:
    """Rows of a MANIFEST.csv, checked: the columns the splits and filters need, labels FAKE|REAL."""
    if not path.is_file():
        raise ConfigError(f"no manifest at {path}: data.root must hold MANIFEST.csv (written by `aidetect data get`)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ConfigError(f"{path}: {'no rows' if not rows else 'missing columns ' + ', '.join(missing)}; "
                          f"a manifest needs {', '.join(COLUMNS)} (sha256 optional)")
    for i, r in enumerate(rows, 2):
        if r["label"] not in ("FAKE", "REAL"):
            raise ConfigError(f"{path}, line {i}: label={r['label']!r}; labels are FAKE or REAL")
    return rows


def group_key(row: dict) -> str:
    """The prompt (or grid) a file belongs to: the manifest's ``group``, else the file-name stem
    before ``.N__<hash>`` / ``_tileN__<hash>``."""
    if row.get("group"):
        return "g:" + row["group"]
    stem = Path(row["path"]).stem
    m = _PROMPT.match(stem)
    return "p:" + (m.group("key") if m else stem).lower()


def parse_leave_out(spec) -> list[tuple[str, str]]:
    if not spec:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        kind, _, value = str(it).partition(":")
        if kind not in ("family", "source", "content", "generator") or not value:
            raise ConfigError(f"data.leave_out={it!r}: give column:value, e.g. family:flux or source:coco128 "
                              f"(columns: family, source, generator, content)")
        out.append((kind, value))
    return out


def load_holdout(path: Path | None) -> tuple[set, np.ndarray]:
    if path is None or not path.is_file():
        return set(), np.zeros(0, dtype=np.uint64)
    shas, hashes = set(), []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or line.startswith("sha256"):
            continue
        sha, _, dh = line.partition("\t")
        shas.add(sha.strip())
        if dh.strip() and dh.strip() != "-":
            hashes.append(int(dh.strip(), 16))
    return shas, np.array(hashes, dtype=np.uint64)


def near_any(h: int, table: np.ndarray, bits: int) -> bool:
    return bool(len(table)) and int(np.bitwise_count(table ^ np.uint64(h)).min()) <= bits


def _probe(job):
    """(sha256, dhash64, width, height, error) of one file: fully decoded once, so a file that
    would fail in epoch 7 fails here and is listed instead."""
    from aidetect.data.hashing import dhash64

    path, min_side = job
    try:
        raw = Path(path).read_bytes()
        img = open_image(raw, min_side=min_side)
        return hashlib.sha256(raw).hexdigest(), dhash64(img), img.width, img.height, None
    except BadImage as e:
        return None, None, None, None, e.reason
    except Exception as e:  # noqa: BLE001 - anything else about this one file
        return None, None, None, None, f"{type(e).__name__}: {e}"


def _eval_item(job):
    path, policy, size, image_size, k, neutral_side = job
    img = open_image(path, min_side=0)
    out = []
    for im in (img, format_neutral(img, short_side=neutral_side)):
        if policy in CROP_POLICIES:
            arr, padded = crop_set(im, size, k)
        else:
            arr, padded = np.asarray(fit_image(im, image_size, policy), dtype=np.uint8).transpose(2, 0, 1).copy(), False
        out.append((arr, padded))
    return out


class DecodedCache:
    """Each training image decoded once and kept as its uint8 pixels [H, W, 3] in ``<folder>/<sha256>.npy``
    (keyed by the file's content: a changed file gets a new entry), read back as a memory map, so a crop
    reads only the rows it needs and the page cache, not the process, holds the pixels: resident memory
    stays flat as the pool grows. ``data.decoded_cache=true``. The whole-file decode is most of the loader's
    work on a 2-core machine (docs/performance.md); this spends about 3 bytes a pixel of disk instead (the
    broad pool's training split: about 15 GB). Entries are written atomically (two workers writing one
    write the same bytes); an unreadable entry is decoded again; a failed write (disk full) is logged and
    training goes on from the decoded image. The folder name carries ``DECODED_VERSION``: bump it when
    ``open_image``'s output changes. Not bit-identical to decoding each epoch when format-neutral training
    rescales: the windowed bicubic from the array rounds within 1 of 255 (FormatNeutral.crop)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, path: str, key: str) -> np.ndarray:
        f = self.folder / f"{key}.npy"
        try:
            arr = np.load(f, mmap_mode="r")
            if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
                return arr
            log.warning("decoded cache entry %s holds %s %s, not uint8 [H, W, 3]: decoding %s again",
                        f, arr.dtype, arr.shape, path)
        except FileNotFoundError:
            pass
        except Exception as e:  # empty (EOFError), truncated or damaged (ValueError, OSError): decode again
            log.warning("decoded cache entry %s unreadable (%s): decoding %s again", f, e, path)
        arr = np.asarray(open_image(path, min_side=0), dtype=np.uint8)
        tmp = f.with_name(f".{f.name}.tmp-{os.getpid()}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, f)
        except OSError as e:  # disk full, read-only: this image is not cached, training goes on
            log.warning("decoded cache: could not write %s (%s); %s is decoded each time", f, e, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return arr


class CropTrainSet(Dataset):
    """Training images decoded per item (in the DataLoader workers), or read from a ``DecodedCache``:
    format-neutral re-encoding, then a random native-resolution crop (or the resize policy), then a random
    horizontal flip."""

    def __init__(self, paths, labels, policy, crop_size, image_size, neutral=None, hflip=0.5, cache=None, keys=None):
        self.paths, self.labels = [str(p) for p in paths], torch.as_tensor(labels, dtype=torch.long)
        self.policy, self.crop_size, self.image_size = policy, crop_size, image_size
        self.neutral, self.hflip = neutral, float(hflip)
        self.cache, self.keys = cache, keys
        if cache is not None and (keys is None or len(keys) != len(self.paths)):
            raise ValueError("a decoded cache needs one key (the file's sha256) per path")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        rng = random.Random(int(torch.randint(0, 2 ** 62, ())))  # torch's RNG: seeded per worker by Lightning
        img = open_image(self.paths[i], min_side=0) if self.cache is None else self.cache.get(self.paths[i], self.keys[i])
        if self.neutral is not None and self.policy in CROP_POLICIES:
            arr, _ = self.neutral.crop(img, self.crop_size, rng)  # re-encodes only a window around the crop
        elif self.policy in CROP_POLICIES:
            arr, _ = random_crop(img, self.crop_size, rng)
        else:
            img = as_image(img)
            if self.neutral is not None:
                img = self.neutral(img, rng)
            arr = np.asarray(fit_image(img, self.image_size, self.policy), dtype=np.uint8).transpose(2, 0, 1).copy()
        if rng.random() < self.hflip:
            arr = arr[:, :, ::-1].copy()
        return torch.from_numpy(arr), self.labels[i]


def cache_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def evict_eval_caches(folder: Path, budget: float, keep: Path | None = None) -> list[Path]:
    """Delete the val/test crop caches (``*-val-*.pt``, ``*-test-*.pt``) unused longest until the rest fit in
    ``budget`` bytes: every leave-out split has its own (GBs each), so a sweep would otherwise fill the disk.
    A cache another process holds (its lock taken) is never deleted. Returns the deleted files."""
    files = sorted((f for pat in ("*-val-*.pt", "*-test-*.pt") for f in Path(folder).glob(pat) if f != keep),
                   key=lambda f: f.stat().st_mtime)
    total, gone = sum(f.stat().st_size for f in files), []
    for f in files:
        if total <= budget:
            break
        try:
            with FileLock(str(f) + ".lock", timeout=0):
                size = f.stat().st_size
                f.unlink()
        except (Timeout, FileNotFoundError):
            continue
        total -= size
        gone.append(f)
        log.info("evicted the crop cache %s (%.1f GB; data.eval_cache_gb caps them)", f.name, size / 1e9)
    return gone


class ModernDataModule(L.LightningDataModule):
    def __init__(self, root=None, name="modern", families=None, content=None, sources=None, leave_out=None,
                 resize="random_crop", crop_size=224, eval_crops=3, image_size=None, batch_size=32, num_workers=2,
                 val_fraction=0.1, test_fraction=0.1, split_seed=0, balance=None, fraction=1.0,
                 holdout="auto", holdout_bits=4, near_bits=4, format_neutral=None, neutral_side=512, hflip=0.5,
                 strict=False, min_side=8, data_dir="data", missing_hint=None, max_per_source=None, epoch_size=None,
                 default_size=None, decoded_cache=False, eval_cache_gb=20):
        super().__init__()
        if root is None:
            root = default_root()
            if root is None:
                raise ConfigError("data=modern: no image pool found at ../shared/data/modern (beside the checkout) "
                                  "nor at data/modern: build one with `aidetect data get shared_modern` (or "
                                  "`aidetect data get grown`), or set data.root=/path/to/pool holding MANIFEST.csv"
                                  + (f". {missing_hint}" if missing_hint else ""))
        self.root = Path(root).expanduser()
        if not (self.root / "MANIFEST.csv").is_file():
            raise ConfigError(f"data.root={root} holds no MANIFEST.csv: build a pool with `aidetect data get NAME` "
                              f"(it writes one), or point data.root at such a folder")
        if resize not in CROP_POLICIES + RESIZE_POLICIES:
            raise ConfigError(f"unknown data.resize={resize!r}; valid: {', '.join(CROP_POLICIES + RESIZE_POLICIES)}")
        if resize in RESIZE_POLICIES and image_size is None:  # else the network's default input size
            if default_size is None:
                raise ConfigError(f"data.resize={resize} needs data.image_size=[H,W] (or data.resize=random_crop)")
            image_size = default_size
        self.name, self.resize = name, resize
        self.crop_size, self.eval_crops = number("data.crop_size", crop_size, int), number("data.eval_crops", eval_crops, int)
        if self.crop_size < 8 or self.eval_crops < 1:
            raise ConfigError(f"data.crop_size={crop_size} (>= 8 px) and data.eval_crops={eval_crops} (>= 1: a k x k grid)")
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.batch_size, self.num_workers = number("data.batch_size", batch_size, int), number("data.num_workers", num_workers, int)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each in (0, 1), "
                              f"together below 1")
        self.split_seed, self.fraction = int(split_seed), float(fraction)
        self.families = None if families is None else [str(f) for f in ([families] if isinstance(families, str) else families)]
        self.content = None if content is None else [str(c) for c in ([content] if isinstance(content, str) else content)]
        self.sources = None if sources is None else [str(s) for s in ([sources] if isinstance(sources, str) else sources)]
        self.leave_out = parse_leave_out(leave_out)
        if balance not in (None, "class", "class_content", "class_family"):
            raise ConfigError(f"data.balance={balance!r}; valid: null, class (each class half of every epoch), "
                              f"class_family (each class half; FAKE families and REAL sources by sqrt of size), "
                              f"class_content (each label x content cell equally often)")
        self.balance = balance
        self.holdout = holdout
        self.holdout_bits, self.near_bits = int(holdout_bits), int(near_bits)
        self.neutral = build_format_neutral(format_neutral)
        self.neutral_side, self.hflip = int(neutral_side), float(hflip)
        self.strict, self.min_side, self.data_dir = bool(strict), int(min_side), Path(data_dir)
        if not isinstance(decoded_cache, bool):
            raise ConfigError(f"data.decoded_cache={decoded_cache!r}: true (decode each training image once, keep its "
                              f"pixels under {self.data_dir}/modern-cache/decoded-v{DECODED_VERSION}) or false")
        self.decoded_cache = decoded_cache
        self.eval_cache_gb = number("data.eval_cache_gb", eval_cache_gb, float)
        if self.eval_cache_gb < 0:
            raise ConfigError(f"data.eval_cache_gb={eval_cache_gb}: the disk the val/test crop caches may keep, in GB "
                              f"(>= 0; 0 keeps none but the newest)")
        self.max_per_source = max_per_source
        self.epoch_size = None if epoch_size is None else number("data.epoch_size", epoch_size, int)
        self.splits: dict[str, InMemoryImages] = {}
        self.rows: dict[str, list[dict]] = {}
        self.skipped: list[tuple[str, str]] = []
        self.data_report: dict = {}
        self.train_set: CropTrainSet | None = None

    # --- what the model sees -----------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return (self.crop_size, self.crop_size) if self.resize in CROP_POLICIES else self.image_size

    def peek_size(self):
        return self.input_size

    def prepare_data(self):
        pass

    # --- rows -----------------------------------------------------------------------------
    def _holdout_file(self) -> Path | None:
        if self.holdout in (None, False, "none"):
            return None
        if self.holdout != "auto":
            p = Path(str(self.holdout)).expanduser()
            if not p.is_file():
                raise ConfigError(f"data.holdout={self.holdout}: no such file (a TSV of sha256 and dhash64), or "
                                  f"data.holdout=auto | none")
            return p
        for cand in (self.root.parent / "holdout_hashes.tsv", self.root.parent.parent / "holdout_hashes.tsv",
                     Path.cwd().parent / "shared" / "data" / "holdout_hashes.tsv"):
            if cand.is_file():
                return cand
        return None

    def _probed(self, rows) -> dict:
        """path -> (sha256, dhash64, w, h, error), cached under data_dir by file size and mtime."""
        cache = self.data_dir / "modern-cache" / f"probe-{hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]}.json"
        cache.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache) + ".lock"):
            known = json.loads(cache.read_text()) if cache.is_file() else {}
            todo, stamp = [], {}
            for r in rows:
                p = self.root / r["path"]
                try:
                    st = p.stat()
                    stamp[r["path"]] = f"{st.st_size}:{st.st_mtime_ns}"
                except OSError:
                    stamp[r["path"]] = "missing"
                if known.get(r["path"], {}).get("stamp") != stamp[r["path"]]:
                    todo.append(r["path"])
            if todo:
                log.info("checking %d images of %s once (decode, sha256, dHash)", len(todo), self.root)
                with ProcessPoolExecutor(min(4, os.cpu_count() or 1)) as ex:
                    for rel, res in zip(todo, ex.map(_probe, [(str(self.root / t), self.min_side) for t in todo],
                                                     chunksize=16)):
                        known[rel] = {"stamp": stamp[rel], "res": list(res)}
                tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
                tmp.write_text(json.dumps(known))
                os.replace(tmp, cache)
        return {r["path"]: tuple(known[r["path"]]["res"]) for r in rows}

    def select(self) -> list[dict]:
        """The manifest's usable rows, each with ``label`` 0/1, ``group`` and ``split``."""
        rows = read_manifest(self.root / "MANIFEST.csv")
        self.data_report = {"name": self.name, "root": str(self.root), "manifest_rows": len(rows)}
        if self.families is not None:
            rows = [r for r in rows if r["label"] == "REAL" or r["family"] in self.families]
        if self.content is not None:
            rows = [r for r in rows if r["content"] in self.content]
        if self.sources is not None:
            rows = [r for r in rows if r["source_name"] in self.sources]
        if not rows:
            raise ConfigError(f"no rows of {self.root}/MANIFEST.csv match data.families={self.families}, "
                              f"data.content={self.content}, data.sources={self.sources}")
        probed = self._probed(rows)
        shas, table = load_holdout(self._holdout_file())
        kept, dropped_holdout = [], 0
        for r in rows:
            sha, dh, w, h, err = probed[r["path"]]
            if err is not None:
                if self.strict:
                    raise ConfigError(f"cannot use image {self.root / r['path']}: {err} (data.strict=true)")
                self.skipped.append((str(self.root / r["path"]), err))
                continue
            if sha in shas or (dh is not None and near_any(dh, table, self.holdout_bits)):
                dropped_holdout += 1
                continue
            kept.append(dict(r, sha=sha, dhash=dh, width=w, height=h, y=int(r["label"] == "FAKE")))
        self.data_report |= {"skipped_unreadable": len(self.skipped), "holdout_dropped": dropped_holdout}
        if self.max_per_source:
            rng, by = random.Random(self.split_seed), {}
            for r in kept:
                by.setdefault(r["source_name"], []).append(r)
            kept = [r for rs in by.values() for r in (rs if len(rs) <= self.max_per_source
                                                       else rng.sample(rs, int(self.max_per_source)))]
        self._group(kept)
        return kept

    def _group(self, rows):
        """Union of prompt/grid keys, exact copies (sha256) and near copies (dHash within near_bits)."""
        from aidetect.data.hashing import components

        first, edges = {}, []
        for i, r in enumerate(rows):
            for key in (group_key(r), "s:" + r["sha"]):
                edges.append((i, first.setdefault(key, i)))
        h = np.array([r["dhash"] for r in rows], dtype=np.uint64)
        for i in range(len(rows)):
            edges += [(i, i + 1 + j) for j in np.nonzero(np.bitwise_count(h[i + 1:] ^ h[i]) <= self.near_bits)[0].tolist()]
        roots = {}
        for r, label in zip(rows, components(len(rows), edges)):
            roots.setdefault(int(label), []).append(r)
        for members in roots.values():
            key = min(group_key(m) for m in members)
            for m in members:
                m["group"] = key
        self.data_report["groups"] = len(roots)

    def assign(self, rows) -> dict[str, list[dict]]:
        leave = self.leave_out
        left_groups = {r["group"] for r in rows if any(
            r[{"family": "family", "source": "source_name", "generator": "generator", "content": "content"}[k]] == v
            for k, v in leave)}
        if leave and not left_groups:
            raise ConfigError(f"data.leave_out={self.leave_out}: no row matches (families: "
                              f"{sorted({r['family'] for r in rows})}, sources: {sorted({r['source_name'] for r in rows})})")
        out = {"train": [], "val": [], "test": []}
        for r in rows:
            if r["group"] in left_groups:
                out["test"].append(r)
                continue
            u = int.from_bytes(hashlib.sha256(f"{self.split_seed}|{r['group']}".encode()).digest()[:8], "big") / 2 ** 64
            out["test" if u < self.test_fraction else "val" if u < self.test_fraction + self.val_fraction else "train"].append(r)
        if self.fraction < 1:
            rng = random.Random(self.split_seed + 1)
            out["train"] = [r for r in out["train"] if rng.random() < self.fraction]
        for r in out["test"]:
            r["left_out"] = r["group"] in left_groups
        return out

    # --- setup ----------------------------------------------------------------------------
    def _eval_tensors(self, split: str, rows) -> tuple[torch.Tensor, torch.Tensor, int]:
        policy, size = self.resize, self.crop_size
        key = hashlib.sha256(json.dumps([CACHE_VERSION, str(self.root.resolve()), split, policy, size, self.image_size,
                                         self.eval_crops, self.neutral_side, [(r["path"], r["sha"]) for r in rows]]
                                        ).encode()).hexdigest()[:16]
        cache = self.data_dir / "modern-cache" / f"{self.name}-{split}-{key}.pt"
        cache.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache) + ".lock"):
            if not cache.is_file():
                log.info("decoding the %s split (%d images) once: %s", split, len(rows), cache)
                jobs = [(str(self.root / r["path"]), policy, size, self.image_size, self.eval_crops, self.neutral_side)
                        for r in rows]
                pub = neu = None
                padded = 0
                with ProcessPoolExecutor(min(4, os.cpu_count() or 1)) as ex:
                    # filled as results arrive: memory is the two tensors, not also a list of every crop set
                    for i, ((a, pad), (b, _)) in enumerate(ex.map(_eval_item, jobs, chunksize=4)):
                        if pub is None:
                            pub = torch.empty((len(jobs), *a.shape), dtype=torch.uint8)
                            neu = torch.empty((len(jobs), *b.shape), dtype=torch.uint8)
                        pub[i], neu[i] = torch.from_numpy(a), torch.from_numpy(b)
                        padded += pad
                evict_eval_caches(cache.parent, self.eval_cache_gb * 1e9 - cache_bytes(pub, neu), keep=cache)
                try:
                    torch_save({"published": pub, "neutral": neu, "padded": padded}, cache)
                except OSError as e:  # disk full: this run goes on from memory, the next one decodes again
                    log.warning("could not write the %s split's crop cache %s (%s); going on without it", split, cache, e)
                    return pub, neu, padded
            os.utime(cache)  # its last use: the caches unused longest are evicted first
            data = torch.load(cache, weights_only=True)
        return data["published"], data["neutral"], int(data["padded"])

    def setup(self, stage=None):
        if self.splits:
            return
        rows = self.select()
        parts = self.assign(rows)
        if stage == "test" and not self.leave_out:  # eval.py: the test split
            parts = {"test": parts["test"]}
        for name in ("train", "val", "test"):
            if name in parts and (not parts[name] or len({r["y"] for r in parts[name]}) < 2) and name != "train":
                if name == "test" and parts[name] and self.leave_out:
                    continue  # a left-out REAL (or FAKE) source alone is still a test
                raise ConfigError(f"the {name} split of {self.root} has {len(parts[name])} images and not both classes: "
                                  f"loosen data.families/content/sources or raise data.{name}_fraction")
        self.rows = parts
        for name in ("val", "test"):
            if name not in parts:
                continue
            rs = parts[name]
            pub, neu, padded = self._eval_tensors(name, rs)
            y = torch.tensor([r["y"] for r in rs], dtype=torch.long)
            names = [r["path"] for r in rs]
            self.splits[name] = InMemoryImages(pub, y, names, [r["sha"] for r in rs])
            self.splits[f"{name}_neutral"] = InMemoryImages(neu, y, names, [r["sha"] for r in rs])
            self.data_report[f"{name}_padded"] = padded
        if "train" in parts:
            tr = parts["train"]
            cache = DecodedCache(self.data_dir / "modern-cache" / f"decoded-v{DECODED_VERSION}") if self.decoded_cache else None
            self.train_set = CropTrainSet([self.root / r["path"] for r in tr], [r["y"] for r in tr], self.resize,
                                          self.crop_size, self.image_size, self.neutral, self.hflip,
                                          cache, [r["sha"] for r in tr])
            if cache is not None:
                done = sum((cache.folder / f"{r['sha']}.npy").is_file() for r in tr)
                self.data_report["decoded_cache"] = f"{cache.folder}: {done} of {len(tr)} training images decoded so far"
            self.data_report["train_padded"] = sum(min(r["width"], r["height"]) < self.crop_size for r in tr) \
                if self.resize in CROP_POLICIES else 0
        for name, rs in parts.items():
            self.data_report[name] = len(rs)
            self.data_report[f"{name}_fake"] = sum(r["y"] for r in rs)
            self.data_report[f"{name}_by_family"] = _tally(rs, "family")
            self.data_report[f"{name}_by_content"] = _tally(rs, "content")
        self.data_report["image_size"] = list(self.input_size)
        self.data_report["resize"] = self.resize
        if self.resize in CROP_POLICIES:
            self.data_report["eval_crops"] = f"{self.eval_crops}x{self.eval_crops} grid of {self.crop_size}px crops, mean logit"
        if self.neutral is not None:
            self.data_report["format_neutral"] = self.neutral.params()
        log.info("modern data: %s", {k: v for k, v in self.data_report.items() if not k.endswith(("_family", "_content"))})

    # --- loaders --------------------------------------------------------------------------
    def train_dataloader(self):
        ds = self.train_set
        if ds is None:
            raise RuntimeError("no train split; call setup('fit') first")
        sampler = None
        if self.epoch_size and not self.balance:
            from torch.utils.data import RandomSampler

            sampler = RandomSampler(ds, replacement=False, num_samples=min(self.epoch_size, len(ds)))
        if self.balance:
            rows = self.rows["train"]
            sampler = WeightedRandomSampler(self.sample_weights(rows), num_samples=self.epoch_size or len(rows),
                                            replacement=True)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=len(ds) > self.batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def sample_weights(self, rows: list[dict]) -> list[float]:
        """Per training row, for ``balance``: class = each class half of every draw; class_content = each
        label x content cell equally often; class_family = each class half, and inside it each FAKE family
        (each REAL source) drawn in proportion to the square root of its size: small generators are seen
        more often than their count gives, without repeating a handful of images endlessly."""
        from collections import Counter

        if self.balance == "class_family":
            cell = [(r["y"], r["family"] if r["y"] else r["source_name"]) for r in rows]
            freq = Counter(cell)
            z = {y: sum(n ** 0.5 for c, n in freq.items() if c[0] == y) for y in {c[0] for c in freq}}
            return [1.0 / (freq[c] ** 0.5 * z[c[0]]) for c in cell]
        cell = [(r["y"],) if self.balance == "class" else (r["y"], r["content"]) for r in rows]
        freq = Counter(cell)
        return [1.0 / freq[c] for c in cell]

    def _eval_loader(self, split):
        from torch.utils.data import BatchSampler, SequentialSampler

        ds = self.splits[split]
        return DataLoader(ds, batch_size=None, sampler=BatchSampler(SequentialSampler(ds), self.batch_size, False))

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def predict_dataloader(self):
        return self._eval_loader("test")

    def fixed_examples(self, split="val", n=8):
        ds = self.splits[split]
        idx = [i for c in (0, 1) for i in (ds.labels == c).nonzero().squeeze(1)[: n // 2].tolist()]
        x = ds.images[idx]
        return (x[:, 0] if x.ndim == 5 else x), ds.labels[idx]


def _tally(rows, col):
    out = {}
    for r in rows:
        k = f"{r['label']}:{r[col]}"
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))
