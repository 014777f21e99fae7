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

from aidetect.config import ConfigError

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

    def spec(self) -> dict:
        return {"name": self.name, **self.params()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params().items())


def _factor(value, setting="aug.saturation_factor") -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting} must be a number, got {value!r}") from None
    if not value >= 0:  # also catches NaN
        raise ConfigError(f"{setting} must be >= 0 (1 = unchanged), got {value}")
    return value


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
        return F.rgb_to_grayscale(x, num_output_channels=3)


def build_view(spec: dict | None = None, **kwargs) -> View:
    """``build_view({"name": "saturated", "saturation_factor": 8})``: a view from plain settings."""
    spec = {**(spec or {}), **kwargs}
    name = spec.pop("name", "none")
    if name not in VIEWS:
        raise ConfigError(f"unknown view aug.name={name!r}; valid names: {', '.join(VIEWS)}")
    try:
        return VIEWS[name](**spec)
    except TypeError:
        import inspect

        allowed = [p for p in inspect.signature(VIEWS[name].__init__).parameters if p != "self"]
        bad = sorted(set(spec) - set(allowed))
        raise ConfigError(f"view {name!r} takes no setting {', '.join('aug.' + b for b in bad)}; "
                          f"its settings: {', '.join('aug.' + a for a in allowed) or 'none'}") from None


def view_params(name: str) -> list[str]:
    """The settings a registered view takes (used to read older metrics files)."""
    import inspect

    return [p for p in inspect.signature(VIEWS[name].__init__).parameters if p not in ("self", "args", "kwargs")]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] (how the data is cached) -> float in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images
