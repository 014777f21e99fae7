"""Bias audit: can anything but the pixels tell REAL from FAKE in this dataset?

    aidetect audit data/faces                 # a folder of REAL/ and FAKE/ (or split folders)
    aidetect audit data/cifake/raw --out audit.json

Per split and class: formats, sizes, aspect ratios, JPEG quality estimates, EXIF presence
and file sizes; exact duplicates (same bytes) and near duplicates (same 64-bit difference
hash of the decoded image) within and across classes and splits. Then a classifier that
sees only metadata (format, width, height, JPEG quality, bytes, bytes per pixel, EXIF),
scored by 5-fold cross-validated balanced accuracy: at or above ``WARN_AT`` a detector
trained on these files may learn the files, not the generator, and the audit says so.
"""

import logging
import os
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from aidetect import LABELS
from aidetect.config import ConfigError
from aidetect.data.hashing import dhash64 as dhash  # the project's one 64-bit dHash

log = logging.getLogger(__name__)

WARN_AT = 0.65  # cross-validated balanced accuracy of the metadata classifier that triggers the warning
NAMES = {v: k for k, v in LABELS.items()}
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

# The IJG (libjpeg) luminance table at quality 50; other qualities scale it (jpeg_quality_scaling).
_IJG = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
_TABLE_SUMS = np.array([np.clip((_IJG * (5000 / q if q < 50 else 200 - 2 * q) + 50) // 100, 1, 255).sum()
                        for q in range(1, 101)])


def jpeg_quality(im) -> int | None:
    """The IJG quality whose scaled luminance table is closest to the file's (by sum, so the
    table's storage order does not matter); None for non-JPEG files. ``im``: a PIL image as
    opened, or its quantization tables (``open_image``'s ``info["quantization"]``)."""
    tables = im if isinstance(im, dict) or im is None else getattr(im, "quantization", None)
    if not tables or 0 not in tables:
        return None
    return int(np.abs(_TABLE_SUMS - np.sum(tables[0])).argmin()) + 1


def inspect_file(path: str, format_neutral: tuple[int, int] | None = None) -> dict:
    """One file's metadata, hashes and thumbnail; with ``format_neutral`` = (short side, JPEG
    quality), those of its format-neutral copy (``data.images.format_neutral``) instead."""
    import hashlib

    from aidetect.data.images import BadImage, format_neutral_jpeg, open_image

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        return {"path": path, "bytes": 0, "md5": None, "error": f"cannot read the file: {e.strerror or type(e).__name__}"}
    info: dict = {}
    try:  # the one decode path, as training decodes it; the metadata as the file stores it
        if format_neutral is not None:
            raw = format_neutral_jpeg(open_image(raw, min_side=0), *format_neutral)
        rgb, error = open_image(raw, min_side=0, info=info), None
    except BadImage as e:
        rgb, error = None, e.reason
    row = {"path": path, "bytes": len(raw), "md5": hashlib.md5(raw).hexdigest()}
    if rgb is None:
        row["error"] = error
        return row
    row.update(format=info["format"], width=info["width"], height=info["height"], mode=info["mode"],
               exif=info["exif"], jpeg_quality=jpeg_quality(info["quantization"]))
    row["dhash"] = dhash(rgb)
    row["thumb"] = np.asarray(rgb.convert("L").resize((16, 16), Image.BILINEAR), dtype=np.uint8).tobytes()
    return row


def collect(folder: Path, format_neutral: tuple[int, int] | None = None) -> list[dict]:
    from functools import partial

    from aidetect.data.folder import find_layout

    listing: list = []
    if (folder / "MANIFEST.csv").is_file():  # a pool (aidetect data get, ../shared/data/modern): one folder per source
        from aidetect.data.modern import read_manifest

        items = [("all", str(folder / r["path"]), LABELS[r["label"]]) for r in read_manifest(folder / "MANIFEST.csv")]
    else:
        layout = find_layout(folder, listing)
        items = [(split, str(p), label) for split, files in layout.items() for p, label in files]
    with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
        rows = list(ex.map(partial(inspect_file, format_neutral=format_neutral), [p for _, p, _ in items],
                           chunksize=max(1, len(items) // 64 or 1)))
    for (split, _, label), row in zip(items, rows):
        row.update(split=split, label=label)
    return rows + [{"path": p, "error": f"not used: {why}", "split": "-", "label": -1, "bytes": 0} for p, why in listing]


def _top(counter: Counter, n=3) -> str:
    total = sum(counter.values())
    return ", ".join(f"{k} {v / total:.0%}" for k, v in counter.most_common(n)) + (" ..." if len(counter) > n else "")


def describe(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    q = [r["jpeg_quality"] for r in ok if r.get("jpeg_quality")]
    sizes = [r["bytes"] for r in ok]
    return {"n": len(rows), "unreadable": len(rows) - len(ok),
            "formats": _top(Counter(r["format"] for r in ok)),
            "sizes": _top(Counter(f"{r['width']}x{r['height']}" for r in ok)),
            "aspect_ratios": _top(Counter(f"{r['width'] / r['height']:.2f}" for r in ok)),
            "jpeg_quality": f"median {statistics.median(q):g}, range {min(q)}-{max(q)}" if q else "no JPEG",
            "exif": f"{sum(r['exif'] for r in ok) / max(1, len(ok)):.0%}",
            "file_bytes": f"median {statistics.median(sizes):.0f}, mean {statistics.mean(sizes):.0f}" if sizes else "-",
            "bytes_per_pixel": round(statistics.median(r["bytes"] / (r["width"] * r["height"]) for r in ok), 3) if ok else None}


NEAR_BITS = 8  # candidate pairs: dHashes at most this many of 64 bits apart ...
NEAR_DIFF = 4.0  # ... confirmed when their 16x16 grey thumbnails differ by at most this (mean, of 255)


def near_groups(rows: list[dict]) -> dict:
    """Union of all pairs whose dHashes differ in at most NEAR_BITS bits (numpy popcount, in
    blocks: about n^2/2 comparisons, so capped by --near-dup-limit)."""
    h = np.array([r["dhash"] for r in rows], dtype=np.uint64)
    thumbs = np.stack([np.frombuffer(r["thumb"], dtype=np.uint8) for r in rows]).astype(np.int16) if rows else None
    from aidetect.data.hashing import components

    edges = []
    for start in range(0, len(h), 512):
        dist = np.bitwise_count(h[start:start + 512, None] ^ h[None, :])
        for a, b in zip(*np.nonzero(dist <= NEAR_BITS)):
            i = start + int(a)
            # aligned faces or plain backgrounds share coarse hashes: the thumbnails decide
            if i < b and np.abs(thumbs[i] - thumbs[b]).mean() <= NEAR_DIFF:
                edges.append((i, int(b)))
    return {i: int(g) for i, g in enumerate(components(len(rows), edges))}


def duplicates(rows: list[dict], key: str) -> dict:
    """Groups of files sharing ``key`` (md5: same bytes; dhash: near-identical pictures):
    counted within a class, across classes (one picture labelled both ways) and across
    splits (leakage)."""
    groups: dict = {}
    if key == "dhash":
        rows = [r for r in rows if r.get("dhash") is not None]
        for i, root in near_groups(rows).items():
            groups.setdefault(root, []).append(rows[i])
    else:
        for r in rows:
            if r.get(key) is not None:
                groups.setdefault(r[key], []).append(r)
    out = {"within_class": 0, "across_classes": 0, "across_splits": 0, "examples": []}
    for g in groups.values():
        if len(g) < 2:
            continue
        labels, splits = {r["label"] for r in g}, {r["split"] for r in g}
        out["across_classes" if len(labels) > 1 else "within_class"] += len(g) - 1
        out["across_splits"] += len(splits) > 1
        if len(out["examples"]) < 5:
            out["examples"].append([r["path"] for r in g[:3]])
    return out


def features(rows: list[dict]) -> np.ndarray:
    fmt = lambda f: FORMATS.index(f) if f in FORMATS else len(FORMATS)  # noqa: E731
    return np.array([[fmt(r["format"]), r["width"], r["height"], r["width"] / r["height"],
                      r.get("jpeg_quality") or -1, r["bytes"], r["bytes"] / (r["width"] * r["height"]),
                      int(r["exif"])] for r in rows], dtype=np.float64)


def metadata_classifier(rows: list[dict], seed: int = 0) -> dict:
    """5-fold cross-validated balanced accuracy of a gradient-boosted classifier on metadata alone."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    ok = [r for r in rows if "error" not in r]
    y = np.array([r["label"] for r in ok])
    if len(set(y)) < 2 or min(np.bincount(y)) < 5:
        return {"balanced_accuracy": None, "note": "needs at least 5 readable images per class"}
    scores = cross_val_score(HistGradientBoostingClassifier(max_iter=100, random_state=seed), features(ok), y,
                             cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="balanced_accuracy")
    return {"balanced_accuracy": round(float(scores.mean()), 4), "folds": [round(float(s), 4) for s in scores],
            "features": ["format", "width", "height", "aspect", "jpeg_quality", "bytes", "bytes_per_pixel", "exif"],
            "warn_at": WARN_AT, "flagged": bool(scores.mean() >= WARN_AT)}


FORMAT_NEUTRAL = (512, 90)  # short side, JPEG quality: data.images.format_neutral's defaults


def audit(folder: Path, near_dup_limit: int = 20000, format_neutral: bool = False) -> dict:
    """The audit of ``folder``; with ``format_neutral``, the metadata classifier is scored
    again on copies where both classes are processed alike (short side 512, then JPEG q90),
    beside the files as published: what is left there (aspect ratio, JPEG size of the
    content) is not a format shortcut, and what disappears was one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give one holding REAL/ and FAKE/ (or split folders)")
    rows = collect(folder)
    report = {"folder": str(folder), "images": len(rows), "classes": {}}
    for split in sorted({r["split"] for r in rows}):
        for label in (0, 1):
            sel = [r for r in rows if r["split"] == split and r["label"] == label]
            if sel:
                report["classes"][f"{split}/{NAMES[label]}"] = describe(sel)
    report["exact_duplicates"] = duplicates(rows, "md5")
    if len(rows) <= near_dup_limit:
        report["near_duplicates"] = duplicates(rows, "dhash")
        report["near_duplicates"]["note"] = f"dHash within {NEAR_BITS} of 64 bits and 16x16 thumbnails within {NEAR_DIFF:g}/255 (includes exact duplicates)"
    else:
        report["near_duplicates"] = {"note": f"skipped: more than {near_dup_limit} images (--near-dup-limit)"}
    report["unreadable"] = [r["path"] for r in rows if "error" in r][:20]
    for r in rows:
        r.pop("thumb", None)
    report["metadata_classifier"] = metadata_classifier(rows)
    if format_neutral:
        copies = collect(folder, FORMAT_NEUTRAL)
        report["format_neutral"] = {
            "short_side": FORMAT_NEUTRAL[0], "jpeg_quality": FORMAT_NEUTRAL[1],
            "classes": {f"{split}/{NAMES[label]}": describe(sel) for split in sorted({r["split"] for r in copies})
                        for label in (0, 1) for sel in [[r for r in copies if r["split"] == split and r["label"] == label]]
                        if sel},
            "metadata_classifier": metadata_classifier(copies)}
    return report


def print_report(report: dict) -> None:
    print(f"audit of {report['folder']}: {report['images']} images")
    for name, d in report["classes"].items():
        print(f"  {name:14} n={d['n']:<6} formats: {d['formats']}; sizes: {d['sizes']}; aspect: {d['aspect_ratios']}")
        print(f"  {'':14} JPEG quality: {d['jpeg_quality']}; EXIF: {d['exif']}; bytes: {d['file_bytes']}; "
              f"bytes/pixel: {d['bytes_per_pixel']}")
    for kind in ("exact_duplicates", "near_duplicates"):
        d = report[kind]
        if "within_class" in d:
            print(f"  {kind.replace('_', ' ')}: {d['within_class']} within a class, {d['across_classes']} across "
                  f"classes, {d['across_splits']} groups across splits")
        else:
            print(f"  {kind.replace('_', ' ')}: {d['note']}")
    m = report["metadata_classifier"]
    n = (report.get("format_neutral") or {}).get("metadata_classifier")
    if n and n["balanced_accuracy"] is not None:
        fn = report["format_neutral"]
        print(f"  on format-neutral copies (short side {fn['short_side']}, JPEG q{fn['jpeg_quality']}): metadata-only "
              f"balanced accuracy {n['balanced_accuracy']:.3f} (what is left: aspect ratio, JPEG size of the content)")
    if m["balanced_accuracy"] is None:
        print(f"  metadata classifier: {m['note']}")
        return
    print(f"  metadata-only classifier (format, size, JPEG quality, bytes, EXIF): balanced accuracy "
          f"{m['balanced_accuracy']:.3f} (5-fold CV; chance 0.5)")
    if m["flagged"]:
        print(f"WARNING: file metadata alone separates REAL from FAKE (balanced accuracy {m['balanced_accuracy']:.3f} "
              f">= {WARN_AT}); a detector trained here may learn formats or compression, not generation. "
              f"Re-encode both classes alike or report this beside its accuracy.")


def cmd_audit(args) -> int:
    report = audit(Path(args.folder), args.near_dup_limit, getattr(args, "format_neutral", False))
    print_report(report)
    if args.out:
        from aidetect.io import write_json

        write_json(Path(args.out), report)
    return 0
