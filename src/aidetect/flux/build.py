"""Generated + real image pools -> the training layout train/validation/test/{REAL,FAKE}.

    aidetect flux build --fake data/flux/generated --real data/flux/real --out data/flux/dataset

Both classes go through the very same processing: decoded, converted to RGB, brought to
``image_size`` with one resize policy, saved as JPEG at one quality with no metadata. A
detector must not be able to tell the classes apart by file format, size, JPEG quality or
EXIF instead of by generator artefacts. The split is stratified and seeded (80/10/10 by
default). The output folder appears only when complete.
"""

import json
import logging
import os
import random
import shutil
from collections import Counter
from pathlib import Path

from aidetect.faults import point
from aidetect.data.images import MIN_SIDE, BadImage, fit_image, listing_problem, open_image, probe_image
from aidetect.flux.store import sha256

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def pool(folder: Path, skipped: list | None = None) -> list[Path]:
    """The pool's image files, recognised by content; hidden files, folders, files that are
    not images and symlinks leaving the pool go to ``skipped`` with the reason, as training
    skips them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image pool {folder} does not exist")
    files = []
    for p in sorted(folder.iterdir()):
        problem = listing_problem(p, folder)
        if problem is None:
            files.append(p)
        elif skipped is not None:
            skipped.append(f"{p}: {problem}")
    if not files:
        raise FileNotFoundError(f"no images (JPEG, PNG, WebP, GIF, BMP or TIFF files) in {folder}")
    return files


def split_counts(n: int, fractions) -> list[int]:
    counts = [int(n * f) for f in fractions]
    counts[0] += n - sum(counts)  # rounding remainder goes to train
    return counts


def describe(files: list[Path]) -> dict:
    """What the raw pool looks like: the differences a detector could cheat with."""
    fmts, sizes, aspects, unreadable = Counter(), Counter(), Counter(), 0
    for p in files:
        try:
            h = probe_image(p)
        except BadImage:  # listed with its reason when the build tries to decode it
            unreadable += 1
            continue
        fmts[h["format"]] += 1
        sizes[f"{h['width']}x{h['height']}"] += 1
        aspects[round(h["width"] / h["height"], 2)] += 1
    return {"formats": dict(fmts), "sizes": dict(sizes.most_common(5)), "n_sizes": len(sizes),
            "aspect_ratios": dict(aspects.most_common(5)), "unreadable": unreadable}


def warnings_for(summary: dict) -> list[str]:
    real, fake = summary["REAL"]["source"], summary["FAKE"]["source"]
    out = []
    if set(real["formats"]) != set(fake["formats"]):
        out.append(f"source formats differ: REAL {real['formats']} vs FAKE {fake['formats']} (normalised to JPEG)")
    if set(real["aspect_ratios"]) != set(fake["aspect_ratios"]):
        out.append(f"aspect ratios differ: REAL {real['aspect_ratios']} vs FAKE {fake['aspect_ratios']}: "
                   f"resize=center_crop keeps content undistorted, resize=resize stretches them differently")
    if set(real["sizes"]) != set(fake["sizes"]):
        out.append(f"source sizes differ (REAL {real['n_sizes']} sizes, FAKE {fake['n_sizes']}): "
                   f"resampling amounts differ between classes")
    n_real, n_fake = summary["REAL"]["n"], summary["FAKE"]["n"]
    if max(n_real, n_fake) > 1.5 * min(n_real, n_fake):
        out.append(f"classes are unbalanced: {n_real} REAL vs {n_fake} FAKE")
    return out


def build(fake_dir, real_dir, out_dir, image_size=(720, 1280), resize="center_crop", jpeg_quality=95,
          splits=(0.8, 0.1, 0.1), seed=0, force=False) -> dict:
    out_dir = Path(out_dir)
    if abs(sum(splits) - 1) > 1e-6 or len(splits) != 3:
        raise ValueError(f"build.splits={list(splits)} must be three fractions summing to 1")
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} exists; pass --force to rebuild it")
    unlisted = {"REAL": [], "FAKE": []}
    pools = {"REAL": pool(real_dir, unlisted["REAL"]), "FAKE": pool(fake_dir, unlisted["FAKE"])}
    tmp = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    for stale in out_dir.parent.glob(f".{out_dir.name}.building-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    summary, rows = {"image_size": list(image_size), "resize": resize, "jpeg_quality": jpeg_quality, "seed": seed}, []
    rng = random.Random(seed)
    try:
        for cls, files in pools.items():
            order = files[:]
            rng.shuffle(order)
            counts = split_counts(len(order), splits)
            summary[cls] = {"n": len(order), "source": describe(order), "skipped": list(unlisted[cls])}
            start = 0
            for split, k in zip(SPLITS, counts):
                (tmp / split / cls).mkdir(parents=True, exist_ok=True)
                for src in order[start:start + k]:
                    try:
                        raw = src.read_bytes()
                        img = fit_image(open_image(raw, min_side=MIN_SIDE), image_size, resize)
                    except (OSError, BadImage) as e:  # unreadable, truncated, a bomb: listed, not fatal
                        summary[cls]["skipped"].append(f"{src}: {getattr(e, 'reason', None) or e}")
                        continue
                    name = f"{sha256(raw)[:16]}.jpg"
                    img.save(tmp / split / cls / name, "JPEG", quality=jpeg_quality)  # no exif/icc passed on
                    rows.append({"file": f"{split}/{cls}/{name}", "split": split, "label": cls,
                                 "source": str(src), "source_sha256": sha256(raw)})
                start += k
        summary["counts"] = {s: {c: sum(1 for r in rows if r["split"] == s and r["label"] == c) for c in pools}
                             for s in SPLITS}
        summary["warnings"] = warnings_for(summary)
        (tmp / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        point("build:before_rename")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in summary["warnings"]:
        log.warning(w)
    return summary
