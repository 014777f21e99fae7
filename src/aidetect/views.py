"""Views: the colour-space transforms a model sees instead of plain RGB.

The hypothesis under test: generated images look right in RGB but fall apart in
abnormal colour spaces (inverted, then saturated far beyond the natural range).

A view is applied to whole float batches in [0, 1] on the training device, to every
split alike (train, val, test, predict), by the LightningModule. It is part of the
model's hyperparameters, so a checkpoint always evaluates with the view it was trained on.
"""

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

VIEWS = ("none", "inverted", "saturated", "inverted_saturated")


class View(nn.Module):
    """A named preset, e.g. ``View("inverted_saturated", saturation_factor=500)``."""

    def __init__(self, name: str = "none", saturation_factor: float = 1.0):
        super().__init__()
        if name not in VIEWS:
            raise ValueError(f"unknown view aug.name={name!r}; valid names: {', '.join(VIEWS)}")
        try:
            saturation_factor = float(saturation_factor)
        except (TypeError, ValueError):
            raise ValueError(f"aug.saturation_factor must be a number, got {saturation_factor!r}") from None
        if not saturation_factor >= 0:  # also catches NaN
            raise ValueError(
                f"aug.saturation_factor must be >= 0 (1 = unchanged), got {saturation_factor}")
        self.name = name
        self.saturation_factor = saturation_factor
        self.invert = name in ("inverted", "inverted_saturated")
        self.saturate = name in ("saturated", "inverted_saturated")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.invert:
            x = 1.0 - x
        if self.saturate:
            # torchvision blends with the grayscale image and clamps to [0, 1], exactly
            # as the original's per-image transforms.functional.adjust_saturation did.
            x = F.adjust_saturation(x, self.saturation_factor)
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}, saturation_factor={self.saturation_factor}"


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] (how the data is cached) -> float in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images
