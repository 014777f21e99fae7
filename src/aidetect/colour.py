"""Colour-space conversions on float batches [B, 3, H, W] in [0, 1], and their inverses.

Pure functions, batched, differentiable where the maths is, the same on CPU and GPU; the
views (views.py) are built from them and the tests check each round trip.
"""

import torch

EPS = 1e-8

# torchvision's grayscale weights (ITU-R 601-2 luma), kept identical so that views built on
# "grey" agree with adjust_saturation's blend.
LUMA = (0.2989, 0.587, 0.114)


def gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """HSV with every channel in [0, 1] (hue 0 = red; grey pixels get hue 0, saturation 0)."""
    r, g, b = x.unbind(-3)
    maxc, _ = x.max(-3)
    minc, _ = x.min(-3)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(EPS), torch.zeros_like(maxc))
    d = delta.clamp_min(EPS)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], -3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(-3)
    h6 = (h % 1.0) * 6.0
    i = h6.floor()
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    # The six sectors of the hue circle, as (r, g, b) choices of v, p, q, t.
    r = torch.stack([v, q, p, p, t, v], 0).gather(0, i[None]).squeeze(0)
    g = torch.stack([t, v, v, q, p, p], 0).gather(0, i[None]).squeeze(0)
    b = torch.stack([p, p, t, v, v, q], 0).gather(0, i[None]).squeeze(0)
    return torch.stack([r, g, b], -3)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601, as JPEG stores images: Y, Cb, Cr in [0, 1] (chroma centred on 0.5)."""
    r, g, b = x.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 0.5 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], -3)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    y, cb, cr = ycc.unbind(-3)
    cb, cr = cb - 0.5, cr - 0.5
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -3)


_SRGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                             [0.2126729, 0.7151522, 0.0721750],
                             [0.0193339, 0.1191920, 0.9503041]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])  # D65
_DELTA = 6 / 29
LAB_SCALE = (100.0, 128.0, 128.0)  # L/100 in [0, 1]; a/128 and b/128 within [-1, 1] for sRGB


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", m.to(x), x)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) of sRGB, scaled: L/100, a/128, b/128."""
    lin = torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0) + 0.055) / 1.055) ** 2.4)
    xyz = _mix(_SRGB_TO_XYZ, lin) / _WHITE.to(x)[:, None, None]
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(EPS) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    lab = torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)
    return lab / torch.tensor(LAB_SCALE).to(x)[:, None, None]


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    L, a, b = (lab * torch.tensor(LAB_SCALE).to(lab)[:, None, None]).unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], -3)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29)) * _WHITE.to(lab)[:, None, None]
    lin = _mix(torch.linalg.inv(_SRGB_TO_XYZ), xyz)
    return torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(0) ** (1 / 2.4) - 0.055)
