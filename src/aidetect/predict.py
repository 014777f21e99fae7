"""Score your own images with a trained detector (the shipped default one without --ckpt).

    aidetect predict photo.jpg                          # a table on the terminal
    aidetect predict ~/Pictures "shots/*.png" --out scores.csv      # or .jsonl
    aidetect predict --ckpt outputs/.../best_epoch_003.ckpt folder/ --threshold 0.7

Each file is decoded exactly as training data was (EXIF rotation, alpha on white, 16-bit
scaled, palette/CMYK/grayscale to RGB, then the checkpoint's own input size and resize
policy) and scored through the model's one forward path, with the checkpoint's temperature
and threshold. Files stream through in batches, so memory does not grow with their number;
a file that cannot be read gets a row saying why. The exit code is non-zero only for real
errors (no checkpoint, a path that does not exist, nothing to score), never for a bad image.
"""

import csv
import glob
import io
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from aidetect import LABELS
from aidetect.config import ConfigError
from aidetect.data.images import MIN_SIDE, _array, fit_image, listing_problem, try_open_image

log = logging.getLogger(__name__)

COLUMNS = ["path", "p_fake", "label", "threshold", "width", "height", "warning", "skipped", "verdict", "detector"]
UNCERTAIN = 0.1  # P(FAKE) within this of the threshold: the verdict column says UNCERTAIN
FAR_FROM_TRAINING = 4.0  # warn when an image is scaled by this much or more to reach the input size
NAMES = {v: k for k, v in LABELS.items()}


SHIPPED = {"default": "default.ckpt", "modern": "default.ckpt", "cifake": "cifake.ckpt"}


def default_checkpoint(name: str = "default") -> Path:
    """A detector shipped in the package: ``default`` (= ``modern``: modern generators, native-resolution
    crops; src/aidetect/weights/README.md) or ``cifake`` (32x32 CIFAKE images)."""
    from importlib.resources import files

    return Path(str(files("aidetect") / "weights" / SHIPPED[name]))


def resolve_checkpoint(arg) -> Path:
    """--ckpt: a shipped detector's name (default, modern, cifake) or a checkpoint file; None = default."""
    if arg is None or str(arg) in SHIPPED:
        path = default_checkpoint(str(arg or "default"))
        if not path.is_file():
            raise ConfigError(f"the shipped detector {arg or 'default'!r} is not installed with this copy of aidetect "
                              f"({path} is missing); pass --ckpt CKPT (a checkpoint written by train.py)")
        return path
    return Path(arg)


def find_images(paths) -> "iter[Path | tuple[Path, str]]":
    """Files, folders (recursively) and globs, in a stable order, lazily: a folder of a
    million files is never listed into memory at once. Inside folders every file is
    considered and images are recognised by content, whatever their extension; hidden files
    and folders (not searched), symlinks leaving the folder and files that are not images come
    out as (path, reason), to be reported as skipped, as training skips them."""
    missing = [p for p in paths if not glob.has_magic(str(p)) and not Path(p).exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(map(str, missing))}")
    for p in paths:
        matches = sorted(glob.glob(str(p), recursive=True)) if glob.has_magic(str(p)) else [p]
        if not matches:
            log.warning("%s matches no file", p)
        for m in map(Path, matches):
            if m.is_dir():
                for root, dirs, names in os.walk(m):
                    hidden = sorted(d for d in dirs if d.startswith("."))
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    for n in hidden:
                        yield Path(root) / n, "hidden folder (name starts with a dot; not searched)"
                    for n in sorted(names):
                        f = Path(root) / n
                        problem = listing_problem(f, m)
                        yield f if problem is None else (f, problem)
            else:
                yield m  # named explicitly: tried whatever its extension


def load_image(path: Path, size, policy: str, min_side: int = MIN_SIDE, crops: int = 1, info: dict | None = None):
    """(uint8 [3, H, W] at ``size``, or [crops*crops, 3, h, w] for ``random_crop`` detectors, original
    upright (width, height), None) or (None, None, reason)."""
    if isinstance(path, tuple):  # (path, reason) from find_images
        return None, None, path[1]
    rgb, reason = try_open_image(path, min_side=min_side, info=info)
    if rgb is None:
        return None, None, reason
    if policy == "random_crop":
        from aidetect.data.crops import crop_set

        return crop_set(rgb, size[0], crops)[0], rgb.size, None
    return _array(fit_image(rgb, size, policy)), rgb.size, None


def jpeg_quality(quantization) -> int | None:
    """Approximate JPEG quality (IJG scale) from the luminance quantization table, or None."""
    if not quantization or 0 not in quantization:
        return None
    q = list(quantization[0])
    base = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17,
            22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78,
            87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
    if len(q) != 64:
        return None
    scale = 100 * sum(q) / sum(base)  # IJG: table = base * scale / 100
    return int(round((200 - scale) / 2)) if scale <= 100 else int(round(5000 / scale))


def input_warning(orig, info: dict, size, policy: str) -> str:
    """Inputs a native-resolution detector was not made for: tiny images, heavy recompression."""
    w, h = orig
    notes = []
    if min(w, h) < size[0]:
        notes.append(f"{w}x{h} is smaller than the detector's {size[0]}-px crop (padded): few pixels to judge")
    q = jpeg_quality(info.get("quantization")) if info.get("format") == "JPEG" else None
    if q is not None and q < 70:
        notes.append(f"JPEG quality about {q}: heavy recompression wipes out generator traces")
    return "; ".join(notes)


def scale_warning(orig, size) -> str:
    w, h = orig
    up = max(size[0] / h, size[1] / w)
    down = max(h / size[0], w / size[1])
    if up >= FAR_FROM_TRAINING:
        return f"upscaled {up:.1f}x to the model's {size[0]}x{size[1]}: far from the training resolution"
    if down >= FAR_FROM_TRAINING:
        return f"downscaled {down:.1f}x to the model's {size[0]}x{size[1]}: far from the training resolution"
    return ""


def predict_files(model, paths, threshold: float | None = None, batch_size: int = 64, workers: int | None = None):
    """Yield one row (dict of COLUMNS) per file, in order, scoring ``batch_size`` files at a time."""
    threshold = float(model.hparams.threshold if threshold is None else threshold)
    size, policy = model.input_size, model.hparams.resize
    crops = int(model.hparams.get("eval_crops", 1))
    workers = workers or min(4, os.cpu_count() or 1)
    detector = getattr(model, "detector_id", "")

    def one(p):
        info = {}
        return (*load_image(p, size, policy, crops=crops, info=info), info)

    def flush(batch):
        got = list(pool.map(one, batch))
        infos = [g[3] for g in got]
        loaded = [g[:3] for g in got]
        ok = [i for i, (arr, _, _) in enumerate(loaded) if arr is not None]
        probs = model.predict_proba(torch.from_numpy(np.stack([loaded[i][0] for i in ok]))) if ok else []
        p_of = dict(zip(ok, probs.tolist() if ok else []))
        for i, (path, (_, orig, err)) in enumerate(zip(batch, loaded)):
            path = path[0] if isinstance(path, tuple) else path
            if err is not None:
                yield {"path": str(path), "p_fake": None, "label": None, "threshold": threshold, "width": None,
                       "height": None, "warning": "", "skipped": err, "verdict": None, "detector": detector}
                continue
            p = p_of[i]
            warning = input_warning(orig, infos[i], size, policy) if policy == "random_crop" else scale_warning(orig, size)
            yield {"path": str(path), "p_fake": round(p, 6), "label": NAMES[int(p >= threshold)],
                   "threshold": round(threshold, 6), "width": orig[0], "height": orig[1],
                   "warning": warning, "skipped": "",
                   "verdict": "UNCERTAIN" if abs(p - threshold) < UNCERTAIN else NAMES[int(p >= threshold)],
                   "detector": detector}

    with ThreadPoolExecutor(workers) as pool:  # PIL decoders release the GIL
        batch = []
        for path in paths:
            batch.append(path)
            if len(batch) == batch_size:
                yield from flush(batch)
                batch = []
        if batch:
            yield from flush(batch)


def write_predictions(path: Path, names, probs, threshold: float, labels=None) -> None:
    """predictions.csv of a scored split (train.py, eval.py): one row per image."""
    from aidetect.io import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "true_label", "p_fake", "label"])
    for i, (name, p) in enumerate(zip(names, probs.tolist())):
        w.writerow([name, "" if labels is None else NAMES[int(labels[i])], f"{p:.6f}", NAMES[int(p >= threshold)]])
    atomic_write(Path(path), buf.getvalue().encode())


class Sink:
    """Rows to a .csv, a .jsonl or the terminal, written as they come (streaming)."""

    def __init__(self, out: Path | None):
        self.out = out
        self.kind = "table" if out is None else {".csv": "csv", ".jsonl": "jsonl"}.get(out.suffix.lower())
        if self.kind is None:
            raise ConfigError(f"--out {out}: give a file ending in .csv or .jsonl")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = out.with_name(f".{out.name}.partial")
            self.f = open(self.tmp, "w", newline="")
            if self.kind == "csv":
                self.w = csv.DictWriter(self.f, COLUMNS)
                self.w.writeheader()
        else:
            self.f = sys.stdout
            print(f"{'P(FAKE)':>8}  {'verdict':9}  path", file=self.f)

    def write(self, row):
        if self.kind == "csv":
            self.w.writerow({k: "" if v is None else v for k, v in row.items()})
        elif self.kind == "jsonl":
            self.f.write(json.dumps(row) + "\n")
        else:
            score = f"{row['p_fake']:8.4f}" if row["p_fake"] is not None else f"{'-':>8}"
            note = row["skipped"] and f"  (skipped: {row['skipped']})" or row["warning"] and f"  ({row['warning']})"
            print(f"{score}  {row['verdict'] or '-':9}  {row['path']}{note or ''}", file=self.f, flush=True)

    def close(self, ok: bool):
        if self.out is not None:
            self.f.close()
            if ok:  # the finished file appears in one step; an interrupted run leaves only .partial
                os.replace(self.tmp, self.out)


def cmd_predict(args) -> int:
    from tqdm import tqdm

    from aidetect.module import load_detector

    ckpt = resolve_checkpoint(args.ckpt)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold {args.threshold}: give a probability between 0 and 1")
    model = load_detector(ckpt)
    print(f"detector: {model.detector_id}", file=sys.stderr)
    torch.set_grad_enabled(False)
    files = find_images(args.paths)
    first = next(files, None)
    if first is None:
        raise ConfigError(f"no image files under {', '.join(args.paths)} (nothing there to score)")
    import itertools

    sink = Sink(Path(args.out) if args.out else None)
    counts = {"scored": 0, "skipped": 0, "FAKE": 0, "warned": 0}
    ok = False
    try:
        bar = tqdm(desc="scoring", unit="img", file=sys.stderr, disable=None if args.out else True, mininterval=1)
        for row in predict_files(model, itertools.chain([first], files), args.threshold, args.batch_size):
            sink.write(row)
            bar.update()
            counts["skipped" if row["skipped"] else "scored"] += 1
            counts["FAKE"] += row["label"] == "FAKE"
            counts["warned"] += bool(row["warning"])
        bar.close()
        ok = True
    finally:
        sink.close(ok)
    print(f"{counts['scored']} scored ({counts['FAKE']} FAKE at threshold "
          f"{args.threshold if args.threshold is not None else model.hparams.threshold:.3f}), "
          f"{counts['skipped']} skipped, {counts['warned']} far from the training resolution"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0
