"""Real augmentations (flips, crops, JPEG re-compression, CutMix, and SAFE's rotation, colour
jitter and patch masking): training split only.

    python train.py augment=standard          # configs/augment/standard.yaml

Not to be confused with the view (``aug=``): a view is part of the model and is applied
to every split and at inference; an augmentation perturbs training batches only, on the
uint8 images, before the view. Batched, on the training device, drawn from torch's global
RNG (seeded by ``seed``), so a run is repeatable.

CutMix is the one that changes the targets, so the module's training step applies the
per-image augmentations and then ``mix`` to the (images, labels) batch (mixing first, a crop
would shift the box away from its target). It is torchvision's (one box and one ratio per
batch, the box taken from the previous image in the batch); the target becomes the FAKE share
of each image's pixels. Unlike MixUp, it leaves every pixel as some real or generated image had
it, and pixel-level detail is what the small detectors look at; torchvision's MixUp does not
take uint8 batches either.

``rot90``, ``jitter`` and ``mask`` follow SAFE (Li et al., KDD 2025, "Improving synthetic image
detection towards generalization: an image transformation perspective"), who found that a detector
trained on one generator carried further to unseen ones when colour and orientation stopped being
cues (ColorJitter, RandomRotation) and when random 16-px patches were blanked out, so that no one
region of the crop can be relied on. Rotation here is by multiples of 90 degrees only: it moves
pixels without resampling them, where an arbitrary angle would interpolate (or, with nearest
neighbours, duplicate) the very pixel correlations the detector reads.
"""

import torch
from torch import nn

from aidetect.config import ConfigError


class Augment(nn.Module):
    """``hflip``: probability of a horizontal flip; ``crop_padding``: pixels of reflect
    padding before a random crop back to the input size (0 = off); ``jpeg``: probability
    of JPEG re-compression at a quality drawn from ``jpeg_quality`` = [low, high]; ``cutmix``:
    probability that a training batch is CutMixed: the box's nominal area share is 1 - lam,
    lam ~ Beta(``cutmix_alpha``, ``cutmix_alpha``); the box is clipped at the image's edges and the
    target uses the clipped area. ``rot90``: probability of a rotation by 90, 180 or 270 degrees
    (only 180 for a non-square batch); ``jitter``: probability of a colour jitter, brightness,
    contrast and saturation each scaled by a factor in [1 - ``jitter_strength``, 1 + ``jitter_strength``];
    ``mask``: probability that a share in ``mask_ratio`` = [low, high] of the image's
    ``mask_patch``-px grid cells is set to black."""

    def __init__(self, hflip: float = 0.0, crop_padding: int = 0, jpeg: float = 0.0, jpeg_quality=(60, 95),
                 cutmix: float = 0.0, cutmix_alpha: float = 1.0, rot90: float = 0.0, jitter: float = 0.0,
                 jitter_strength: float = 0.5, mask: float = 0.0, mask_ratio=(0.0, 0.75), mask_patch: int = 16,
                 format_neutral: dict | None = None):
        super().__init__()
        # Applied in the data loader (data/crops.py FormatNeutral, read by data=modern), not here on
        # batches: it re-encodes each whole image before its crop. Kept so params() reports it.
        self.format_neutral = dict(format_neutral) if format_neutral else None
        for name, p in (("hflip", hflip), ("jpeg", jpeg), ("cutmix", cutmix), ("rot90", rot90), ("jitter", jitter),
                        ("mask", mask)):
            if not 0 <= float(p) <= 1:
                raise ConfigError(f"augment.{name} is a probability in [0, 1], got {p}")
        if int(crop_padding) < 0:
            raise ConfigError(f"augment.crop_padding must be >= 0 pixels, got {crop_padding}")
        lo, hi = (int(q) for q in jpeg_quality)
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(f"augment.jpeg_quality=[low, high] within 1..100, got {list(jpeg_quality)}")
        if not float(cutmix_alpha) > 0:
            raise ConfigError(f"augment.cutmix_alpha is the Beta distribution's parameter, > 0; got {cutmix_alpha}")
        if not 0 <= float(jitter_strength) < 1:
            raise ConfigError(f"augment.jitter_strength scales brightness, contrast and saturation by 1 +- it: "
                              f"in [0, 1), got {jitter_strength}")
        mlo, mhi = (float(r) for r in mask_ratio)
        if not 0 <= mlo <= mhi <= 1:
            raise ConfigError(f"augment.mask_ratio=[low, high] shares of the image within 0..1, got {list(mask_ratio)}")
        if int(mask_patch) < 1:
            raise ConfigError(f"augment.mask_patch is the masked squares' side in pixels, >= 1; got {mask_patch}")
        self.rot90, self.jitter, self.jitter_strength = float(rot90), float(jitter), float(jitter_strength)
        self.mask, self.mask_ratio, self.mask_patch = float(mask), (mlo, mhi), int(mask_patch)
        self._jitter = None
        if self.jitter:
            from torchvision.transforms import v2

            s = self.jitter_strength
            self._jitter = v2.ColorJitter(brightness=s, contrast=s, saturation=s)
        self.hflip, self.crop_padding, self.jpeg, self.jpeg_quality = float(hflip), int(crop_padding), float(jpeg), (lo, hi)
        self.cutmix, self.cutmix_alpha = float(cutmix), float(cutmix_alpha)
        self._cutmix = None
        if self.cutmix:
            from torchvision.transforms import v2

            self._cutmix = v2.CutMix(alpha=self.cutmix_alpha, num_classes=2)

    @property
    def active(self) -> bool:
        return bool(self.hflip or self.crop_padding or self.jpeg or self.cutmix or self.rot90 or self.jitter
                    or self.mask)

    def params(self) -> dict:
        out = {"hflip": self.hflip, "crop_padding": self.crop_padding, "jpeg": self.jpeg,
               "jpeg_quality": list(self.jpeg_quality)}
        if self.format_neutral:
            out["format_neutral"] = self.format_neutral
        if self.cutmix:  # only when on, so the settings of runs without it read as before
            out |= {"cutmix": self.cutmix, "cutmix_alpha": self.cutmix_alpha}
        if self.rot90:
            out["rot90"] = self.rot90
        if self.jitter:
            out |= {"jitter": self.jitter, "jitter_strength": self.jitter_strength}
        if self.mask:
            out |= {"mask": self.mask, "mask_ratio": list(self.mask_ratio), "mask_patch": self.mask_patch}
        return out

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [B, 3, H, W] and 0/1 labels -> (images, float targets = FAKE share of the pixels)."""
        if not self.cutmix or len(x) < 2 or float(torch.rand(())) >= self.cutmix:
            return x, y.float()
        x, onehot = self._cutmix(x, y.long())  # one-hot over (REAL = 0, FAKE = 1)
        return x, onehot[:, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> uint8 [B, 3, H, W]."""
        if self.jpeg:
            x = self._jpeg(x)
        if self.crop_padding:
            x = self._crop(x)
        if self.hflip:
            flip = torch.rand(len(x), device=x.device) < self.hflip
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.rot90:
            x = self._rot90(x)
        if self.jitter:
            pick = (torch.rand(len(x)) < self.jitter).nonzero().squeeze(1).tolist()
            if pick:
                x = x.clone()
                for i in pick:  # one draw of the factors (and of their order) per image
                    x[i] = self._jitter(x[i])
        if self.mask:
            x = self._mask(x)
        return x

    def _rot90(self, x):
        h, w = x.shape[-2:]
        pick = (torch.rand(len(x)) < self.rot90).nonzero().squeeze(1).tolist()
        if not pick:
            return x
        ks = torch.randint(1, 4, (len(pick),)).tolist() if h == w else [2] * len(pick)
        x = x.clone()
        for i, k in zip(pick, ks):
            x[i] = torch.rot90(x[i], k, dims=(-2, -1))
        return x

    def _mask(self, x):
        p = self.mask_patch
        h, w = x.shape[-2:]
        rows, cols = h // p, w // p
        pick = (torch.rand(len(x)) < self.mask).nonzero().squeeze(1).tolist()
        if not pick or not rows or not cols:
            return x
        lo, hi = self.mask_ratio
        ratios = (lo + (hi - lo) * torch.rand(len(pick))).tolist()
        keep = torch.ones(len(x), 1, rows * cols, device=x.device, dtype=x.dtype)
        for i, r in zip(pick, ratios):
            cells = torch.randperm(rows * cols)[:int(rows * cols * r)]
            keep[i, 0, cells.to(x.device)] = 0
        # cell grid -> pixels; a border narrower than one patch is never masked
        keep = keep.view(len(x), 1, rows, cols).repeat_interleave(p, -2).repeat_interleave(p, -1)
        keep = nn.functional.pad(keep, (0, w - cols * p, 0, h - rows * p), value=1)
        return x * keep

    def _crop(self, x):
        p = self.crop_padding
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x.float(), (p, p, p, p), mode="reflect").to(x.dtype)
        dy = torch.randint(0, 2 * p + 1, (len(x),)).tolist()
        dx = torch.randint(0, 2 * p + 1, (len(x),)).tolist()
        return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])

    def _jpeg(self, x):
        from torchvision.io import decode_jpeg, encode_jpeg

        pick = (torch.rand(len(x)) < self.jpeg).nonzero().squeeze(1).tolist()
        if not pick:
            return x
        qualities = torch.randint(self.jpeg_quality[0], self.jpeg_quality[1] + 1, (len(pick),)).tolist()
        x = x.clone()
        for i, q in zip(pick, qualities):
            x[i] = decode_jpeg(encode_jpeg(x[i].cpu(), quality=q)).to(x.device)
        return x


def build_augment(spec: dict | None) -> Augment:
    try:
        return Augment(**(spec or {}))
    except TypeError as e:
        raise ConfigError(f"augment: {e}; valid settings: hflip, crop_padding, jpeg, jpeg_quality, cutmix, "
                          "cutmix_alpha, rot90, jitter, jitter_strength, mask, mask_ratio, mask_patch, format_neutral") from None
