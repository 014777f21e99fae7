"""Views: the colour spaces a model sees instead of plain RGB.

    python train.py aug=inverted_saturated aug.saturation_factor=8

The hypothesis under test: generated images look right in RGB but fall apart in abnormal
colour spaces (inverted, then saturated far beyond the natural range).

A view is a small module registered by name. It maps float batches [B, 3, H, W] in [0, 1]
to [B, out_channels, H, W], on the training device, for every split alike (train, val,
test, predict) and inside the exported model: it belongs to the model and its checkpoint.
Its settings are its constructor's keyword arguments, listed by ``params()``; they travel
as a plain dict ``{"name": ..., **params}`` through the checkpoint, metrics.json, the sweep
report and TensorBoard, so a view with new settings needs no change anywhere else.

Add a view: a subclass here with ``@register("name")`` and ``configs/aug/<name>.yaml``.
"""

from typing import ClassVar

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from aidetect import colour
from aidetect.config import ConfigError, number

VIEWS: dict[str, type["View"]] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        VIEWS[name] = cls
        return cls
    return add


class View(nn.Module):
    """Base class. Subclasses declare ``out_channels`` and ``value_range`` and take their
    settings as keyword arguments (numbers or strings), stored under the same names."""

    name: ClassVar[str]
    out_channels: ClassVar[int] = 3
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def params(self) -> dict:
        """The view's own settings (constructor arguments), as plain values."""
        return {}

    def channel_ranges(self) -> list[tuple[float, float]]:
        """The value range of each output channel (for display); all ``value_range`` by default."""
        return [self.value_range] * self.out_channels

    def spec(self) -> dict:
        return {"name": self.name, **self.params()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params().items())


def _factor(value, setting="aug.saturation_factor") -> float:
    """A saturation factor: a number >= 0 (1 = unchanged; NaN is refused too)."""
    return number(setting, value, float, 0.0)


@register("none")
class Identity(View):
    """Plain RGB: the baseline every other view is compared with."""

    def forward(self, x):
        return x


@register("inverted")
class Inverted(View):
    """1 - x: negative colours."""

    def forward(self, x):
        return 1.0 - x


class _Saturation(View):
    invert: ClassVar[bool]

    def __init__(self, saturation_factor: float = 1.0):
        super().__init__()
        self.saturation_factor = _factor(saturation_factor)

    def params(self):
        return {"saturation_factor": self.saturation_factor}

    def forward(self, x):
        if self.invert:
            x = 1.0 - x
        # torchvision blends with the grayscale image and clamps to [0, 1], exactly as the
        # original's per-image transforms.functional.adjust_saturation did.
        return F.adjust_saturation(x, self.saturation_factor)


@register("saturated")
class Saturated(_Saturation):
    """Saturation scaled by ``saturation_factor`` (blend with grey, clipped)."""

    invert = False


@register("inverted_saturated")
class InvertedSaturated(_Saturation):
    """The original project's view: invert, then scale saturation (blend with grey, clipped)."""

    invert = True


@register("grayscale")
class Grayscale(View):
    """ITU-R 601 luma replicated to 3 channels: no colour at all (a control for colour views)."""

    def forward(self, x):
        return colour.gray(x).expand_as(x)


@register("hsv")
class HSV(View):
    """Hue, saturation, value as the three channels (cylindrical: colour apart from brightness)."""

    def forward(self, x):
        return colour.rgb_to_hsv(x)


@register("ycbcr")
class YCbCr(View):
    """Luma and two chroma channels, the space JPEG compresses in (chroma is subsampled there)."""

    def forward(self, x):
        return colour.rgb_to_ycbcr(x).clamp(0, 1)


@register("lab")
class Lab(View):
    """CIE L*a*b*: perceptually even distances; L/100 in [0, 1], a/128 and b/128 in [-1, 1]."""

    value_range = (-1.0, 1.0)

    def forward(self, x):
        return colour.rgb_to_lab(x).clamp(-1, 1)


@register("hsv_saturated")
class HSVSaturated(View):
    """The original's visualisation script: (optionally invert, then) scale HSV's S channel by
    ``saturation_factor`` and clip to [0, 1], back to RGB. Unlike torchvision's blend with
    grey, hue and value are kept exactly."""

    def __init__(self, saturation_factor: float = 8.0, invert: bool = False):
        super().__init__()
        self.saturation_factor = _factor(saturation_factor)
        self.invert = bool(invert)

    def params(self):
        return {"saturation_factor": self.saturation_factor, "invert": self.invert}

    def forward(self, x):
        hsv = colour.rgb_to_hsv(1.0 - x if self.invert else x)
        h, s, v = hsv.unbind(-3)
        return colour.hsv_to_rgb(torch.stack([h, (s * self.saturation_factor).clamp(0, 1), v], -3)).clamp(0, 1)


@register("hue_rotation")
class HueRotation(View):
    """Every hue turned by ``degrees`` around the colour wheel: abnormal colours, same structure."""

    def __init__(self, degrees: float = 180.0):
        super().__init__()
        self.degrees = number("aug.degrees", degrees)

    def params(self):
        return {"degrees": self.degrees}

    def forward(self, x):
        h, s, v = colour.rgb_to_hsv(x).unbind(-3)
        return colour.hsv_to_rgb(torch.stack([(h + self.degrees / 360.0) % 1.0, s, v], -3)).clamp(0, 1)


@register("unclipped_saturation")
class UnclippedSaturation(View):
    """Saturation boosted in float (grey + factor * (x - grey)) and each image rescaled to [0, 1]
    by its own min and max, with no clipping: the boost without the 3-bit posterisation."""

    def __init__(self, saturation_factor: float = 8.0):
        super().__init__()
        self.saturation_factor = _factor(saturation_factor)

    def params(self):
        return {"saturation_factor": self.saturation_factor}

    def forward(self, x):
        g = colour.gray(x)
        y = g + self.saturation_factor * (x - g)
        lo = y.amin((-3, -2, -1), keepdim=True)
        hi = y.amax((-3, -2, -1), keepdim=True)
        return (y - lo) / (hi - lo).clamp_min(1e-6)


@register("highpass")
class HighPass(View):
    """The image minus its blur (``kind=blur``, Gaussian) or median (``kind=median``) over a
    ``kernel_size`` window: only fine detail and noise are left, the colour is gone."""

    value_range = (-1.0, 1.0)

    def __init__(self, kind: str = "median", kernel_size: int = 3):
        super().__init__()
        if kind not in ("blur", "median"):
            raise ConfigError(f"aug.kind={kind!r}; valid: blur, median")
        self.kind = kind
        self.kernel_size = number("aug.kernel_size", kernel_size, int, 3)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"aug.kernel_size must be odd, got {self.kernel_size}")

    def params(self):
        return {"kind": self.kind, "kernel_size": self.kernel_size}

    def forward(self, x):
        k = self.kernel_size
        if self.kind == "blur":
            return x - F.gaussian_blur(x, [k, k])
        pad = nn.functional.pad(x, (k // 2,) * 4, mode="reflect")
        patches = pad.unfold(-2, k, 1).unfold(-2, k, 1)  # [B, C, H, W, k, k]
        # the middle of the sorted window (k*k is odd): the same value as .median(), and sort
        # exports to ONNX where median does not
        return x - patches.flatten(-2).sort(-1).values[..., (k * k) // 2]


@register("npr")
class NPR(View):
    """Neighbouring-pixel residual (NPR, CVPR 2024): the image minus its ``scale``x nearest
    down-then-up-sampled copy; exposes the up-sampling pattern generators leave."""

    value_range = (-1.0, 1.0)

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = number("aug.scale", scale, int, 2)

    def params(self):
        return {"scale": self.scale}

    def forward(self, x):
        small = nn.functional.interpolate(x, scale_factor=1 / self.scale, mode="nearest")
        return x - nn.functional.interpolate(small, size=x.shape[-2:], mode="nearest")


@register("fft")
class FFTMagnitude(View):
    """Log-magnitude spectrum of each channel (centred), scaled to [0, 1]: periodic
    generator artefacts show as peaks away from the centre."""

    def forward(self, x):
        mag = torch.fft.fftshift(torch.fft.fft2(x, norm="backward"), dim=(-2, -1)).abs()
        return (torch.log1p(mag) / torch.log1p(torch.tensor(float(x.shape[-2] * x.shape[-1])))).clamp(0, 1)


@register("stacked")
class Stacked(View):
    """RGB plus another view's channels (``other``, as ``aug.spec`` writes it: ``npr``,
    ``inverted_saturated@8``): the network sees both the image and the view."""

    def __init__(self, other: str = "npr"):
        super().__init__()
        from aidetect.config import parse_view_spec

        self.other_spec = str(other)
        self.other = build_view(parse_view_spec(self.other_spec))
        self.out_channels = 3 + self.other.out_channels
        self.value_range = (min(0.0, self.other.value_range[0]), max(1.0, self.other.value_range[1]))

    def params(self):
        return {"other": self.other_spec}

    def channel_ranges(self):
        return [(0.0, 1.0)] * 3 + self.other.channel_ranges()

    def forward(self, x):
        return torch.cat([x, self.other(x)], -3)


def build_view(spec: dict | None = None, **kwargs) -> View:
    """``build_view({"name": "saturated", "saturation_factor": 8})``: a view from plain settings."""
    spec = {**(spec or {}), **kwargs}
    name = spec.pop("name", "none")
    if name not in VIEWS:
        raise ConfigError(f"unknown view aug.name={name!r}; valid names: {', '.join(VIEWS)}")
    allowed = view_params(name)
    bad = sorted(set(spec) - set(allowed))
    if bad:
        raise ConfigError(f"view {name!r} takes no setting {', '.join('aug.' + b for b in bad)}; "
                          f"its settings: {', '.join('aug.' + a for a in allowed) or 'none'}")
    return VIEWS[name](**spec)


def view_params(name: str) -> list[str]:
    """The settings a registered view takes (used to read older metrics files)."""
    import inspect

    return [p for p in inspect.signature(VIEWS[name].__init__).parameters if p not in ("self", "args", "kwargs")]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] (how the data is cached) -> float in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images
