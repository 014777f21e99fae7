"""Robustness grid: each corruption applied to the decoded original file, before the
checkpoint's own resizing, as a re-saved or edited file would reach the detector.

    python eval.py ckpt_path=best.ckpt data=faces robustness=standard

Scored at the threshold the checkpoint carries (fitted on clean validation data, never
re-tuned here): accuracy, AUROC, average precision, TPR at 5% FPR and ECE per corruption,
written as robustness.csv, robustness.md and robustness.png beside eval's metrics.json, and each
corruption's per-image scores as robustness/predictions_<name>.csv (split per generator by
``python -m aidetect.breakdown --pool DATA_ROOT FILE:THRESHOLD``).
"""

import csv
import io
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from aidetect.config import ConfigError
from aidetect.data.images import _array, fit_image, format_neutral, open_image, try_open_image

log = logging.getLogger(__name__)


def corrupt(img: Image.Image, kind: str, value=None, seed: int = 0) -> Image.Image:
    """One corruption of an RGB image; ``value`` is its strength (quality, factor, sigma)."""
    if kind == "clean":
        return img
    elif kind in ("jpeg", "webp"):
        buf = io.BytesIO()
        img.save(buf, format=kind.upper(), quality=int(value))
        return open_image(buf.getvalue(), min_side=0)
    elif kind == "downscale":  # to 1/value and back up, bilinear both ways
        w, h = img.size
        small = img.resize((max(1, round(w / value)), max(1, round(h / value))), Image.BILINEAR)
        return small.resize((w, h), Image.BILINEAR)
    elif kind == "blur":  # Pillow's radius is the Gaussian's standard deviation
        return img.filter(ImageFilter.GaussianBlur(radius=float(value)))
    elif kind == "noise":  # sigma on [0, 1]; seeded per image, so a re-run sees the same noise
        x = np.asarray(img, dtype=np.float32) / 255
        x = x + np.random.default_rng(seed).normal(0, float(value), x.shape).astype(np.float32)
        return Image.fromarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8))
    elif kind == "grayscale":
        return img.convert("L").convert("RGB")
    elif kind == "format_neutral":  # [short side, JPEG quality]: both classes processed alike (issue 31)
        short_side, quality = value if value is not None else (512, 90)
        return format_neutral(img, int(short_side), int(quality))
    elif kind == "grade":  # brightness, contrast, saturation multipliers, in that order
        b, c, s = value
        img = ImageEnhance.Brightness(img).enhance(b)
        img = ImageEnhance.Contrast(img).enhance(c)
        return ImageEnhance.Color(img).enhance(s)
    elif kind == "corner_star":  # [size, opacity]: a visible-watermark shortcut probe (below)
        try:
            size, opacity = value if value is not None else (0.055, 0.7)
        except TypeError:
            raise ConfigError(f"corner_star: value={value!r}; give [size, opacity], e.g. [0.055, 0.7]") from None
        return corner_star(img, float(size), float(opacity))
    elif kind == "trim_bottom":  # cut away the bottom `value` x the short side (where corner marks sit)
        try:
            ok = 0 <= float(value) < 0.5
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"trim_bottom: value={value!r}; give the fraction of the short side to cut, e.g. 0.1")
        w, h = img.size
        return img.crop((0, 0, w, h - int(float(value) * min(w, h))))
    raise ConfigError(f"unknown corruption kind {kind!r}; valid: clean, jpeg, webp, downscale, blur, noise, "
                      f"grayscale, grade, format_neutral, corner_star, trim_bottom")


def corner_star(img: Image.Image, size: float = 0.055, opacity: float = 0.7) -> Image.Image:
    """A white four-point star blended into the bottom-right corner, like the visible mark
    Gemini puts on Nano Banana images (its width ``size`` x the short side, its centre 0.065 x
    the short side in from both edges; measured on marked images of the `wider` pool). Pasted
    on every test image, it shows whether a detector learned the mark: REAL photos it calls
    FAKE only because of the star are a shortcut, not a generator trace."""
    w, h = img.size
    s = min(w, h)
    r = max(2.0, size * s / 2)
    cx, cy = w - 0.065 * s, h - 0.065 * s
    x0, y0 = max(0, int(cx - r) - 1), max(0, int(cy - r) - 1)  # only the star's box: a 24 MP photo stays cheap
    x1, y1 = min(w, int(cx + r) + 2), min(h, int(cy + r) + 2)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    x, y = np.abs(xs - cx) / r, np.abs(ys - cy) / r
    alpha = opacity * ((x ** 0.6 + y ** 0.6) <= 1).astype(np.float32)[..., None]  # p < 1: concave sides
    out = np.array(img.convert("RGB"))
    box = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (box * (1 - alpha) + 255 * alpha).round().astype(np.uint8)
    return Image.fromarray(out)


def _load(job):
    path, kind, value, seed, size, policy = job
    img, reason = try_open_image(path)
    if img is None:
        return None, reason
    img = corrupt(img, kind, value, seed)
    if policy.startswith("random_crop"):  # a native-resolution detector: its k x k crop grid of the corrupted file
        from aidetect.data.crops import crop_set

        return crop_set(img, size[0], int(policy.partition(":")[2] or 1))[0], None
    return _array(fit_image(img, size, policy)), None


def corrupted_images(paths, kind, value, size, policy, workers=None):
    """uint8 [N, 3, H, W] of every file under one corruption, and the indices that failed."""
    jobs = [(str(p), kind, value, i, tuple(size), policy) for i, p in enumerate(paths)]
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as ex:
        out = list(ex.map(_load, jobs, chunksize=max(1, len(jobs) // (workers * 8) or 1)))
    failed = [i for i, (a, _) in enumerate(out) if a is None]
    arrays = [a for a, _ in out if a is not None]
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, *size, dtype=torch.uint8), failed


def _neutral(job):
    path, short_side, quality = job
    img, reason = try_open_image(path)
    return (None, reason) if img is None else (format_neutral(img, short_side, quality), None)


def format_neutral_scores(model, paths, labels: torch.Tensor, threshold: float, published: torch.Tensor | None = None,
                          short_side: int = 512, quality: int = 90, out: Path | None = None, names=None,
                          workers=None, block: int = 256) -> dict:
    """Score test copies where both classes are processed alike (``format_neutral``: short side
    ``short_side``, then JPEG at ``quality``), beside the files as published (``published``:
    their P(FAKE), same order): the gap is what format, size and compression were worth.

    Copies go through ``model.prepare`` (the checkpoint's own size and resize or crop policy),
    a block of files at a time, so memory stays bounded. With ``out``, the copies' per-image
    scores are written to predictions_format_neutral.csv."""
    from aidetect.calibrate import score
    from aidetect.predict import write_predictions

    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), int(short_side), int(quality)) for p in paths]
    probs, kept, failed = [], [], []
    with ProcessPoolExecutor(workers) as ex:
        for start in range(0, len(jobs), block):
            done = list(ex.map(_neutral, jobs[start:start + block], chunksize=max(1, block // (workers * 4))))
            imgs = [img for img, _ in done if img is not None]
            failed += [(start + i, why) for i, (img, why) in enumerate(done) if img is None]
            kept += [start + i for i, (img, _) in enumerate(done) if img is not None]
            if imgs:
                probs.append(model.predict_proba(imgs).float().cpu())
    probs = torch.cat(probs) if probs else torch.empty(0)
    kept_t = torch.tensor(kept, dtype=torch.long)
    row = {"short_side": int(short_side), "jpeg_quality": int(quality), "failed": len(failed),
           "failed_examples": [[str(paths[i]), why] for i, why in failed[:5]],
           **score(probs, labels[kept_t], threshold)}
    if published is not None:  # the same files as published, for a paired comparison
        pub = score(published[kept_t].float().cpu(), labels[kept_t], threshold)
        row["published"] = pub
        row["delta"] = {k: row[k] - pub[k] for k in ("acc_at_threshold", "balanced_acc_at_threshold", "auroc")
                        if k in row and k in pub}
    if out is not None:
        names = [str(p) for p in paths] if names is None else list(names)
        write_predictions(out / "predictions_format_neutral.csv", [names[i] for i in kept], probs, threshold,
                          labels[kept_t])
    log.info("format-neutral copies (short side %d, JPEG q%d): acc %.4f auroc %.4f (%d failed)", short_side,
             quality, row["acc_at_threshold"], row.get("auroc", float("nan")), len(failed))
    return row


def run_grid(model, paths, labels: torch.Tensor, corruptions: list[dict], out: Path, threshold: float,
             title: str = "", names=None) -> list[dict]:
    """With ``names`` (the test split's names, as in predictions.csv), each corruption's per-image
    scores go to robustness/predictions_<name>.csv, so ``python -m aidetect.breakdown`` can split
    a corruption's effect per generator and per content."""
    from aidetect.calibrate import logits_of, score
    from aidetect.predict import write_predictions

    names_seen = ["clean"] + [str(c["name"]) for c in corruptions]
    for n in names_seen[1:]:  # each name becomes a file name: predictions_<name>.csv
        if not re.fullmatch(r"[\w.\-]+", n) or n == "clean" or names_seen.count(n) > 1:
            raise ConfigError(f"robustness corruption name {n!r}: give each corruption a unique name of letters, "
                              f"digits, '.', '_' or '-' ('clean' is the grid's own first row)")
    if names is not None:  # a re-run with another grid must not leave the last grid's files behind
        for old in (out / "robustness").glob("predictions_*.csv"):
            old.unlink()
    rows = []
    for c in [{"name": "clean", "kind": "clean"}] + [dict(c) for c in corruptions]:
        policy = model.hparams.resize if model.hparams.resize != "random_crop" else \
            f"random_crop:{model.hparams.get('eval_crops', 1)}"
        images, failed = corrupted_images(paths, c["kind"], c.get("value"), model.input_size, policy)
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[failed] = False
        probs = model.probability(logits_of(model, images))
        row = {"corruption": c["name"], **score(probs, labels[keep], threshold), "failed": len(failed)}
        if names is not None:
            kept = keep.nonzero().flatten().tolist()
            write_predictions(out / "robustness" / f"predictions_{c['name']}.csv", [names[i] for i in kept], probs,
                              threshold, labels[keep])
        log.info("robustness %-12s acc %.4f auroc %.4f", c["name"], row["acc_at_threshold"], row.get("auroc", float("nan")))
        rows.append(row)
    write_tables(rows, out, threshold, title)
    return rows


COLUMNS = ["corruption", "n", "acc_at_threshold", "detection_at_threshold", "fpr_at_threshold", "auroc",
           "average_precision", "tpr_at_5fpr", "ece"]


def write_tables(rows, out: Path, threshold: float, title: str):
    from aidetect.io import atomic_write, save_figure

    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS + ["balanced_acc_at_threshold", "failed"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(out / "robustness.csv", buf.getvalue().encode())
    clean = rows[0]
    md = [f"Threshold {threshold:.4f} (fixed on clean validation data). Δ = change in accuracy from clean.", "",
          "| corruption | accuracy | Δ | FAKE detected | REAL called FAKE | AUROC | AP | TPR@5%FPR | ECE |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda k: f"{r[k]:.4f}" if k in r else "n/a"  # noqa: E731
        md.append(f"| {r['corruption']} | {f('acc_at_threshold')} | {r['acc_at_threshold'] - clean['acc_at_threshold']:+.4f} "
                  f"| {f('detection_at_threshold')} | {f('fpr_at_threshold')} "
                  f"| {f('auroc')} | {f('average_precision')} | {f('tpr_at_5fpr')} | {f('ece')} |")
    atomic_write(out / "robustness.md", ("\n".join(md) + "\n").encode())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["corruption"] for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["acc_at_threshold"] for r in rows], 0.4, label="accuracy at threshold")
    ax.bar(x + 0.2, [r.get("auroc", np.nan) for r in rows], 0.4, label="AUROC")
    ax.axhline(0.5, ls=":", c="grey", lw=1)
    ax.set_xticks(x, names, rotation=40, ha="right")
    ax.set(ylim=(0, 1), title=f"{title} robustness".strip())
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out / "robustness.png")
