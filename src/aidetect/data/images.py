"""Image files -> uint8 tensors: one decoding path for training data and for inference.

``open_image`` is the one function that decodes an image file in this package (training,
eval, predict, web, robustness, grids, audit, the FLUX pipeline; ``probe_image`` reads a
header only). Files are recognised by content, and a file that cannot be used raises
``BadImage`` with a short reason. The dataset cache (decoded once, in parallel) and
``Detector.predict_proba`` both call ``to_rgb`` and ``fit_image`` here, so an image scored at
inference is bit-identical to the same file seen in training.
"""

import hashlib
import io
import logging
import os
import re
import struct
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from aidetect import LABELS
from aidetect.config import ConfigError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}  # usual names; files are
# recognised by content (``sniff_format``), so an image under any name is used
RESIZE_POLICIES = ("resize", "center_crop")


class MixedSizes(ConfigError):
    """Images of different sizes and no ``data.image_size`` to bring them to one."""


MIN_SIDE = 8  # pixels: smaller images carry no usable detail (data.min_side)


def listing_problem(p: Path, root: Path, content: bool = True) -> str | None:
    """Why a file in an image folder is not used, or None. Files are recognised by content,
    not by extension (``content``: the first bytes are read; an empty file or one that is no
    image format we decode gets its reason here, before decoding)."""
    if p.name.startswith("."):
        return "hidden file (name starts with a dot)"
    if p.is_symlink():
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop
            return "broken symlink (its target does not exist or loops)"
        if not target.is_relative_to(root.resolve()):
            return f"symlink pointing outside the data folder (to {target})"
    if p.is_dir():
        return "a folder (sub-folders are not searched)"
    if not p.is_file():
        return "not a regular file (a pipe, socket or device)"
    if content:
        try:
            with open(p, "rb") as f:
                head = f.read(512)
        except OSError as e:
            return f"cannot read the file: {e.strerror or type(e).__name__}"
        if not head:
            return "empty file (0 bytes)"
        if sniff_format(head) is None:
            return _not_an_image(head)
    return None


def list_class_folder(folder: Path, skipped: list | None = None, root: Path | None = None) -> list[tuple[Path, int]]:
    """Image files under folder/REAL and folder/FAKE, labelled by name (never by sort order).
    Every entry is considered and images are recognised by content (a GIF, an extensionless
    JPEG); hidden files, sub-folders, files that are not images and symlinks leaving ``root``
    (the dataset folder) are not used: each is appended to ``skipped`` as (path, reason)."""
    items = []
    root = Path(root or folder)
    for cls in LABELS:
        if not (folder / cls).is_dir():
            raise ConfigError(f"missing class folder {folder / cls}: expected {folder}/REAL and {folder}/FAKE")
    for cls, label in LABELS.items():
        d = folder / cls
        found = []
        for p in sorted(d.iterdir()):
            problem = listing_problem(p, root)
            if problem is None:
                found.append((p, label))
            elif skipped is not None:
                skipped.append((str(p), problem))
        if not found:
            raise ConfigError(f"class folder {d} holds no images (JPEG, PNG, WebP, GIF, BMP or TIFF files): add "
                              f"images to it, or point data.root at a folder where both classes have some")
        items += found
    return items


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB. EXIF orientation applied; transparency composited
    on white; 16-bit grayscale scaled to 8 bits (not clipped); palette, CMYK, L converted."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


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
    raise ConfigError(f"unknown data.resize={policy!r}; valid: {', '.join(RESIZE_POLICIES)}")


# --- the one decode path ----------------------------------------------------------------------
# Every tool that reads an image file (training, predict, eval, web, robustness, grids, audit,
# the FLUX pipeline) goes through ``open_image`` (pixels) or ``probe_image`` (header only), so
# both classes, and a file at training and at inference, are decoded by the same code. A test
# fails if ``Image.open`` is called anywhere else in the package.

MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # PIL's own hard limit (about 179M pixels)

_MAGIC = (  # (prefix, offset, PIL format): files are recognised by content, not by name
    (b"\xff\xd8\xff", 0, "JPEG"), (b"\x89PNG\r\n\x1a\n", 0, "PNG"), (b"GIF87a", 0, "GIF"), (b"GIF89a", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"), (b"MM\x00*", 0, "TIFF"),
)
_BMP_HEADERS = {12, 16, 40, 52, 56, 64, 108, 124}  # DIB header sizes: "BM" alone is too common a start
_NOT_SUPPORTED = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
                  b"avif": "AVIF", b"avis": "AVIF"}


class BadImage(ValueError):
    """A file that is not used, with a short human reason (``.reason``, also ``str(e)``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sniff_format(head: bytes) -> str | None:
    """The PIL format name of an image file from its first 18+ bytes (JPEG, PNG, WEBP, GIF,
    BMP, TIFF), or None if it is none of them."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "BMP"
    for magic, at, fmt in _MAGIC:
        if head[at:at + len(magic)] == magic:
            return fmt
    return None


def _not_an_image(raw: bytes) -> str:
    if raw[4:8] == b"ftyp" and raw[8:12] in _NOT_SUPPORTED:
        return f"{_NOT_SUPPORTED[raw[8:12]]} image: format not supported (convert it to PNG or JPEG)"
    head = raw[:8]
    if raw.lstrip()[:5].lower() in (b"<?xml", b"<svg ") and b"<svg" in raw[:4096].lower():
        return "SVG (vector) image: not supported"
    return f"not an image (starts with {head!r})"


def _read(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    p = Path(source)
    try:
        return p.read_bytes()
    except IsADirectoryError:
        raise BadImage("a folder, not a file") from None
    except OSError as e:
        raise BadImage(f"cannot read the file: {e.strerror or type(e).__name__}") from None


def _message(e: Exception) -> str:
    """An exception's message without object reprs (``<_io.BytesIO object at 0x...>``)."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(e)).strip(" :")
    return text or type(e).__name__


def _header(raw: bytes, max_pixels: int | None):
    """(lazy PIL image, format) for the bytes, or BadImage: content sniffed, size checked."""
    if not raw:
        raise BadImage("empty file (0 bytes)")
    fmt = sniff_format(raw[:32])
    if fmt is None:
        raise BadImage(_not_an_image(raw))
    if fmt == "WEBP" and len(raw) < int.from_bytes(raw[4:8], "little") + 8:
        raise BadImage(f"truncated WebP (the file ends after {len(raw)} of {int.from_bytes(raw[4:8], 'little') + 8} bytes)")
    try:
        im = Image.open(io.BytesIO(raw), formats=[fmt])
    except Image.DecompressionBombError as e:
        n = re.search(r"\((\d+) pixels\)", str(e))
        raise BadImage(f"decompression bomb: {int(n.group(1)) / 1e6:.0f}M pixels exceeds the "
                       f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f}M-pixel limit" if n else f"decompression bomb: {_message(e)}") from None
    except Exception as e:
        if len(raw) < 64 or "truncated" in str(e).lower() or isinstance(e, (EOFError, struct.error)):
            raise BadImage(f"truncated {fmt} ({len(raw)} bytes: the file ends inside its header)") from None
        raise BadImage(f"corrupt {fmt} header ({_message(e)})") from None
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise BadImage(f"decompression bomb: {w}x{h} ({w * h / 1e6:.0f}M pixels) exceeds the "
                       f"{max_pixels / 1e6:.0f}M-pixel limit")
    return im, fmt


def _upright_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    try:
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation: rotated by 90 degrees
            return h, w
    except Exception:  # unreadable EXIF: the pixels as stored
        pass
    return w, h


def probe_image(source: Path | str | bytes, *, max_pixels: int | None = MAX_PIXELS) -> dict:
    """Header only, no pixels decoded: {format, width, height (upright, EXIF rotation
    counted), mode, bytes}. BadImage, with its reason, if the file is not a usable image."""
    raw = _read(source)
    im, fmt = _header(raw, max_pixels)
    with im:
        w, h = _upright_size(im)
        return {"format": fmt, "width": w, "height": h, "mode": im.mode, "bytes": len(raw)}


def open_image(source: Path | str | bytes, *, min_side: int = MIN_SIDE, max_pixels: int | None = MAX_PIXELS,
               info: dict | None = None, as_stored: bool = False) -> Image.Image:
    """The one decode path: a file (path or its bytes) -> fully decoded, upright 8-bit RGB.

    Recognised by content (JPEG, PNG, WebP lossy and lossless, GIF, BMP, TIFF), whatever its
    name. EXIF orientation applied; alpha composited on white; 16-bit scaled to 8 bits;
    palette, CMYK, grayscale converted (``to_rgb``). Multi-frame files (GIF, TIFF, animated
    WebP) give their first frame. Truncated files are refused, never padded (PIL's
    ``LOAD_TRUNCATED_IMAGES`` stays off). Raises ``BadImage`` with a short reason: empty file,
    not an image (with its first bytes), unsupported format, decompression bomb (more than
    ``max_pixels``), smaller than ``min_side`` on a side (0: no limit), truncated or corrupt.

    ``info``, if given, is filled with the file as stored: format, mode, width, height
    (before rotation), bytes, exif (bool), frames, and JPEG quantization tables.

    ``as_stored=True``: the same checks and the same full decode, but the pixels as the file
    stores them (its mode, no EXIF rotation, alpha kept), for tools that hash or cut stored
    pixels (data/pool.py's tiles); everything that scores or trains uses the RGB default.
    """
    raw = _read(source)
    im, fmt = _header(raw, max_pixels)
    keep = False
    try:
        w, h = im.size
        if min_side and min(w, h) < min_side:
            raise BadImage(f"{w}x{h} is smaller than the minimum side of {min_side} px")
        if info is not None:
            try:
                exif = bool(im.getexif())
            except Exception:
                exif = False
            info.update(format=fmt, mode=im.mode, width=w, height=h, bytes=len(raw), exif=exif,
                        frames=getattr(im, "n_frames", 1), quantization=getattr(im, "quantization", None))
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise BadImage(f"decompression bomb: {_message(e)}") from None
        except Exception as e:  # PIL's plugins raise many kinds (OSError, SyntaxError, struct.error...)
            msg = _message(e)
            if "truncated" in msg.lower() or isinstance(e, EOFError) or "broken data stream" in msg:
                raise BadImage(f"truncated {fmt} (the file ends before its image data, after {len(raw)} bytes)") from None
            if "decompressed data too large" in msg.lower():
                raise BadImage(f"decompression bomb: a {fmt} chunk decompresses too large") from None
            raise BadImage(f"corrupt {fmt} ({msg})") from None
        if as_stored:
            keep = True  # decoded in full; closing it would drop its pixels
            return im
        try:
            return to_rgb(im)
        except Exception as e:
            raise BadImage(f"cannot convert {fmt} ({im.mode}) to RGB: {_message(e)}") from None
    finally:
        if not keep:
            im.close()


def try_open_image(source, **kw) -> tuple[Image.Image | None, str | None]:
    """``open_image`` that never raises for a bad file: (image, None) or (None, reason)."""
    try:
        return open_image(source, **kw), None
    except BadImage as e:
        return None, e.reason


def format_neutral_jpeg(img: Image.Image, short_side: int = 512, quality: int = 90) -> bytes:
    """The JPEG file ``format_neutral`` decodes: the short side brought to ``short_side``
    (bicubic, aspect kept), then JPEG at ``quality`` (4:2:0, no EXIF, no ICC profile)."""
    img = to_rgb(img)
    scale = short_side / min(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size != img.size:
        img = img.resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(quality), subsampling="4:2:0")
    return buf.getvalue()


def format_neutral(img: Image.Image, short_side: int = 512, quality: int = 90) -> Image.Image:
    """A copy processed alike whatever the class's source format: short side brought to
    ``short_side`` (bicubic, aspect kept), then JPEG at ``quality`` (4:2:0, no metadata) and
    decoded back through ``open_image``. Evaluating on such copies removes format, size and
    compression shortcuts (issue 31); aspect ratio is kept, so it is not removed."""
    return open_image(format_neutral_jpeg(img, short_side, quality), min_side=0)


def _array(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def prepare_images(images, size, policy: str) -> torch.Tensor:
    """PIL images and/or uint8 tensors ([3|1|4, H, W] or [H, W], or one [B, C, H, W] batch)
    of any size -> uint8 [B, 3, H, W] at ``size``, as the dataset cache would hold them."""
    from torchvision.transforms.functional import to_pil_image

    if isinstance(images, (Image.Image, torch.Tensor)) and not (isinstance(images, torch.Tensor) and images.ndim == 4):
        images = [images]  # one image; a 4-d tensor is a batch and iterates as images
    out = []
    for im in images:
        if isinstance(im, torch.Tensor):
            if im.dtype != torch.uint8:
                raise ValueError(f"image tensors must be uint8 (0-255), got {im.dtype}")
            im = to_pil_image(im if im.ndim == 3 else im[None])
        if not isinstance(im, Image.Image):
            raise TypeError(f"expected a PIL image or a uint8 tensor, got {type(im).__name__}")
        out.append(_array(fit_image(to_rgb(im), size, policy)))
    if not out:
        return torch.empty(0, 3, *size, dtype=torch.uint8)
    return torch.from_numpy(np.stack(out))


def _decode(job):
    path, size, policy, min_side = job
    try:
        raw = _read(path)
        md5 = hashlib.md5(raw).hexdigest()
        return _array(fit_image(open_image(raw, min_side=min_side), size, policy)), md5, None
    except BadImage as e:  # reported and counted by the caller
        return None, None, e.reason + (" (data.min_side)" if "minimum side" in e.reason else "")
    except Exception as e:  # a decoder fault open_image did not foresee: still a skip, never a crash
        return None, None, f"cannot decode ({type(e).__name__}: {_message(e)})"


def iter_decode(paths, size=None, policy="resize", workers=None, min_side=MIN_SIDE):
    """(index, uint8 [3, H, W] or None, md5, error) for each file, in order, decoded in parallel."""
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), None if size is None else tuple(size), policy, int(min_side)) for p in paths]
    chunk = max(1, min(512, len(jobs) // (workers * 8) or 1))
    with ProcessPoolExecutor(workers) as ex:
        for i, (arr, md5, err) in enumerate(ex.map(_decode, jobs, chunksize=chunk)):
            yield i, arr, md5, err


def decode_files(paths, size=None, policy="resize", strict=False, workers=None, min_side=MIN_SIDE):
    """Decode image files in parallel into one uint8 tensor [N, 3, H, W].

    Returns (images, kept_indices, md5s, skipped) where skipped lists (path, error) of
    files that could not be decoded; with ``strict`` the first such file raises instead.
    With ``size=None`` every image must already share one size (else ``MixedSizes``).
    """
    arrays, kept, md5s, skipped = [], [], [], []
    if True:  # (one indentation level kept from the in-line pool this replaced)
        for i, arr, md5, err in iter_decode(paths, size, policy, workers, min_side):
            if err is None and arrays and arr.shape != arrays[0].shape:
                raise MixedSizes(f"{paths[i]} is {arr.shape[2]}x{arr.shape[1]} but {paths[kept[0]]} is "
                                 f"{arrays[0].shape[2]}x{arrays[0].shape[1]}: set data.image_size=[H,W] "
                                 f"to bring every image to one size")
            if err is not None:
                if strict:
                    raise ConfigError(f"cannot use image {paths[i]}: {err} (data.strict=true)")
                skipped.append((str(paths[i]), err))
                continue
            arrays.append(arr), kept.append(i), md5s.append(md5)
    if skipped:
        log.warning("skipped %d unreadable images, e.g. %s: %s", len(skipped), *skipped[0])
    images = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return images, kept, md5s, skipped
