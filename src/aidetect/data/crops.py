"""Native-resolution crops: the training crop, the evaluation crop set, format-neutral re-encoding.

Resizing a 1024x1024 generator output to 224x224 averages away the pixel-level traces a small
detector can learn from, so the modern data path never resizes by default: training takes one
random ``crop_size`` crop of the image as stored (after an optional random rescale applied to
both classes alike), and evaluation, predict and the web page take a fixed K x K grid of crops
and average their logits into one number per image (``Detector.forward`` on [B, K*K, 3, c, c]).

An image with a side below ``crop_size`` is padded with zeros, never upscaled (upscaling only
the small images, mostly REAL here, would teach the model a class cue); padded images are counted.
"""

import io
import math
import random

import numpy as np
import torch
from PIL import Image, ImageFilter

from aidetect.config import ConfigError

CROP_POLICIES = ("random_crop",)


def pad_to(img: Image.Image, size: int) -> tuple[Image.Image, bool]:
    """Zero-pad (bottom/right) to at least size x size; (image, whether it was padded)."""
    if img.width >= size and img.height >= size:
        return img, False
    out = Image.new("RGB", (max(size, img.width), max(size, img.height)))
    out.paste(img, (0, 0))
    return out, True


def grid_boxes(width: int, height: int, size: int, k: int) -> list[tuple[int, int, int, int]]:
    """k x k crop boxes of size x size, evenly spaced from corner to corner (k=1: the centre)."""
    def starts(n):
        if k == 1:
            return [(n - size) // 2]
        return [round(i * (n - size) / (k - 1)) for i in range(k)]

    return [(x, y, x + size, y + size) for y in starts(height) for x in starts(width)]


def crop_set(img: Image.Image, size: int, k: int) -> tuple[np.ndarray, bool]:
    """uint8 [k*k, 3, size, size]: the evaluation crops of one (RGB) image, and whether it was padded."""
    img, padded = pad_to(img, size)
    arr = np.asarray(img, dtype=np.uint8)
    crops = [arr[t:b, l:r] for l, t, r, b in grid_boxes(img.width, img.height, size, k)]
    return np.stack(crops).transpose(0, 3, 1, 2).copy(), padded


def size_of(src) -> tuple[int, int]:
    """(width, height) of a PIL image or of decoded pixels [H, W, 3] (a memory map from DecodedCache)."""
    return src.size if isinstance(src, Image.Image) else (src.shape[1], src.shape[0])


def region(src, left: int, top: int, right: int, bottom: int) -> Image.Image:
    """The pixels in a box as a PIL image; from decoded pixels only the box's rows are read."""
    if isinstance(src, Image.Image):
        return src.crop((left, top, right, bottom))
    return Image.fromarray(np.ascontiguousarray(src[top:bottom, left:right]))


def as_image(src) -> Image.Image:
    return src if isinstance(src, Image.Image) else Image.fromarray(np.ascontiguousarray(src))


def random_crop(img, size: int, rng: random.Random) -> tuple[np.ndarray, bool]:
    """One random size x size crop of a PIL image or of decoded pixels: uint8 [3, size, size], padded?"""
    w, h = size_of(img)
    if w < size or h < size:
        img, padded = pad_to(as_image(img), size)
        w, h = img.size
    else:
        padded = False
    x, y = rng.randint(0, w - size), rng.randint(0, h - size)
    arr = np.asarray(region(img, x, y, x + size, y + size), dtype=np.uint8)
    return arr.transpose(2, 0, 1).copy(), padded


class FormatNeutral:
    """Every training image of both classes, with probability ``p``: random rescale by a factor in
    ``scale`` (bicubic; never below ``min_side`` px on the short side), then re-encoded as JPEG at a
    quality drawn from ``jpeg_quality`` (``short_side`` = [low, high]: rescale instead to a short side drawn
    from that range, never upscaling), (or, with probability ``webp``, as lossy WebP at a quality
    from the same range), then decoded again. The source's format, size and compression history
    then no longer tell the classes apart (issue 31). Set through ``augment.format_neutral``."""

    def __init__(self, p: float = 1.0, scale=(0.5, 1.0), jpeg_quality=(60, 100), webp: float = 0.0,
                 min_side: int = 0, short_side=None, blur: float = 0.0, blur_sigma=(0.1, 2.0),
                 noise: float = 0.0, noise_sigma=(0.005, 0.03)):
        lo, hi = (float(s) for s in scale)
        qlo, qhi = (int(q) for q in jpeg_quality)
        if not (0 <= float(p) <= 1 and 0 <= float(webp) <= 1):
            raise ConfigError(f"augment.format_neutral: p={p} and webp={webp} are probabilities in [0, 1]")
        if not 0 < lo <= hi <= 4:
            raise ConfigError(f"augment.format_neutral.scale=[low, high] with 0 < low <= high, got {list(scale)}")
        if not 1 <= qlo <= qhi <= 100:
            raise ConfigError(f"augment.format_neutral.jpeg_quality=[low, high] within 1..100, got {list(jpeg_quality)}")
        self.p, self.scale, self.quality, self.webp, self.min_side = float(p), (lo, hi), (qlo, qhi), float(webp), int(min_side)
        # Gaussian blur with probability ``blur`` (sigma from ``blur_sigma``), after the rescale and before
        # the encode, as in Wang et al. (CVPR 2020): traces that survive blur are the ones a detector can
        # still read on resized, softened web copies. Off by default; drawn only when on, so runs without
        # it keep their random stream.
        self.blur, self.blur_sigma = float(blur), tuple(float(v) for v in blur_sigma)
        if not (0 <= self.blur <= 1 and len(self.blur_sigma) == 2 and 0 < self.blur_sigma[0] <= self.blur_sigma[1] <= 8):
            raise ConfigError(f"augment.format_neutral: blur={blur} is a probability in [0, 1] and blur_sigma="
                              f"{list(blur_sigma)} is [low, high] pixels with 0 < low <= high <= 8")
        # Gaussian pixel noise with probability ``noise`` (sigma on [0, 1] from ``noise_sigma``), after the
        # blur and before the encode: light noise is an evasion (it hides FAKE, docs/results/modern.md), so a
        # detector that has seen it on both classes cannot lean on the faint traces it drowns. Off by default;
        # drawn only when on. crop() draws the noise afresh for the window it encodes: the same noise
        # statistics as the whole-image path, not the same noise.
        self.noise, self.noise_sigma = float(noise), tuple(float(v) for v in noise_sigma)
        if not (0 <= self.noise <= 1 and len(self.noise_sigma) == 2 and 0 < self.noise_sigma[0] <= self.noise_sigma[1] <= 0.5):
            raise ConfigError(f"augment.format_neutral: noise={noise} is a probability in [0, 1] and noise_sigma="
                              f"{list(noise_sigma)} is [low, high] on [0, 1] pixels with 0 < low <= high <= 0.5")
        self.short_side = None
        if short_side is not None:
            slo, shi = (int(v) for v in short_side)
            if not 8 <= slo <= shi:
                raise ConfigError(f"augment.format_neutral.short_side=[low, high] pixels, 8 <= low <= high, got {list(short_side)}")
            self.short_side = (slo, shi)

    def params(self) -> dict:
        return {"p": self.p, "scale": list(self.scale), "jpeg_quality": list(self.quality), "webp": self.webp,
                **({"short_side": list(self.short_side)} if self.short_side else {}),
                **({"blur": self.blur, "blur_sigma": list(self.blur_sigma)} if self.blur else {}),
                **({"noise": self.noise, "noise_sigma": list(self.noise_sigma)} if self.noise else {})}

    def _draw(self, img, rng: random.Random) -> tuple[float, int, bool, float, tuple[float, int]]:
        """The scale, quality, codec, blur sigma (0: none) and (noise sigma, noise seed) of one image, in the
        order every path draws them."""
        s = rng.uniform(*self.scale)
        if self.short_side:  # a common target size for both classes, never upscaled: sizes stop telling them apart
            s = min(1.0, rng.uniform(*self.short_side) / min(size_of(img)))
        if self.min_side:
            s = max(s, min(1.0, self.min_side / min(size_of(img))))
        q, webp = rng.randint(*self.quality), rng.random() < self.webp
        sigma = rng.uniform(*self.blur_sigma) if self.blur and rng.random() < self.blur else 0.0
        noise = (rng.uniform(*self.noise_sigma), rng.getrandbits(32)) if self.noise and rng.random() < self.noise else (0.0, 0)
        return s, q, webp, sigma, noise

    @staticmethod
    def _encode(img: Image.Image, q: int, webp: bool, sigma: float = 0.0, noise=(0.0, 0)) -> Image.Image:
        from aidetect.data.images import open_image

        if sigma:
            img = img.filter(ImageFilter.GaussianBlur(sigma))
        if noise[0]:  # the robustness grid's own noise (sigma on [0, 1], seeded), so training sees what it tests
            from aidetect.robustness import corrupt

            img = corrupt(img.convert("RGB"), "noise", noise[0], seed=noise[1])
        buf = io.BytesIO()
        img.save(buf, "WEBP" if webp else "JPEG", quality=q)
        return open_image(buf.getvalue(), min_side=0)

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() >= self.p:
            return img
        s, q, webp, sigma, noise = self._draw(img, rng)
        if abs(s - 1) > 1e-3:
            img = img.resize(_scaled(img.size, s), Image.BICUBIC)
        return self._encode(img, q, webp, sigma, noise)

    def crop(self, img, size: int, rng: random.Random) -> tuple[np.ndarray, bool]:
        """``random_crop(self(img, rng), size, rng)`` with the same draws, at a fraction of the cost:
        only a window around the crop is rescaled, encoded and decoded. The window is aligned to the
        16-px JPEG block grid of the whole rescaled image and has a 16-px margin (chroma upsampling reads
        neighbouring blocks), so for JPEG the crop has the whole-image path's pixels (tests/test_modern.py
        checks it); lossy WebP predicts across blocks, so there it is the same codec and quality on a
        smaller canvas. Both classes take this path alike: it adds no cue.

        ``img`` may also be decoded pixels [H, W, 3] (a memory map from ``DecodedCache``): then only the
        rows the window's filter reads are touched; the same pixels out without a rescale, within 1 of 255
        before the encode with one (tests/test_modern.py)."""
        if rng.random() >= self.p:
            return random_crop(img, size, rng)
        s, q, webp, sigma, noise = self._draw(img, rng)
        iw, ih = size_of(img)
        w, h = _scaled((iw, ih), s) if abs(s - 1) > 1e-3 else (iw, ih)
        if w < size or h < size:  # padded: rare, take the whole-image path
            small = as_image(img)
            small = small.resize((w, h), Image.BICUBIC) if (w, h) != small.size else small
            return random_crop(self._encode(small, q, webp, sigma, noise), size, rng)
        x, y = rng.randint(0, w - size), rng.randint(0, h - size)
        m = 16
        x0, y0 = max(0, (x - m) // m * m), max(0, (y - m) // m * m)
        x1, y1 = min(w, -(-(x + size + m) // m) * m), min(h, -(-(y + size + m) // m) * m)
        if (w, h) != (iw, ih):  # resize only the window; the filter still reads the pixels around it
            sx, sy = iw / w, ih / h
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
            if isinstance(img, Image.Image):
                window = img.resize((x1 - x0, y1 - y0), Image.BICUBIC, box=box)
            else:  # decoded pixels: read only what bicubic reads for this box (its support is 2 output px,
                # 2 * scale input px, each side; clamped to the image, as the filter clamps) and shift the box.
                # The shifted box rounds differently in PIL's fixed-point weights: within 1 of 255 per pixel.
                mx, my = math.ceil(2 * max(sx, 1.0)) + 2, math.ceil(2 * max(sy, 1.0)) + 2
                l, t = max(0, math.floor(box[0]) - mx), max(0, math.floor(box[1]) - my)
                r, b = min(iw, math.ceil(box[2]) + mx), min(ih, math.ceil(box[3]) + my)
                window = region(img, l, t, r, b).resize((x1 - x0, y1 - y0), Image.BICUBIC,
                                                        box=(box[0] - l, box[1] - t, box[2] - l, box[3] - t))
        else:
            window = region(img, x0, y0, x1, y1)
        arr = np.asarray(self._encode(window, q, webp, sigma, noise), dtype=np.uint8)[y - y0:y - y0 + size, x - x0:x - x0 + size]
        return arr.transpose(2, 0, 1).copy(), False


def _scaled(wh: tuple[int, int], s: float) -> tuple[int, int]:
    return max(1, round(wh[0] * s)), max(1, round(wh[1] * s))


def build_format_neutral(spec) -> FormatNeutral | None:
    if not spec:
        return None
    try:
        return FormatNeutral(**dict(spec))
    except TypeError as e:
        raise ConfigError(f"augment.format_neutral: {e}; valid settings: p, scale, short_side, jpeg_quality, webp, min_side, blur, blur_sigma, noise, noise_sigma") from None


def prepare_crops(images, size: int, k: int) -> torch.Tensor:
    """PIL images (RGB, upright) -> uint8 [B, k*k, 3, size, size], as evaluation scores them."""
    return torch.from_numpy(np.stack([crop_set(im, size, k)[0] for im in images]))
