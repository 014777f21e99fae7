import functools

import pytest
import torch
from torchvision.transforms import functional as TF

from aidetect import colour
from aidetect.config import ConfigError, parse_view_spec
from aidetect.views import VIEWS, View, build_view, to_float
from conftest import SHARED_DATA


@pytest.fixture
def batch():
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_inverted_saturated_matches_torchvision_per_image(batch):
    view = build_view(name="inverted_saturated", saturation_factor=500)
    out = view(batch)
    for i, img in enumerate(batch):
        # The original's per-image PIL-free pipeline: invert, then adjust_saturation.
        expected = TF.adjust_saturation(1 - img, 500)
        # x500 amplifies float rounding of the batched vs single-image grayscale weights.
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_saturated_matches_torchvision(batch):
    torch.testing.assert_close(build_view(name="saturated", saturation_factor=8)(batch), TF.adjust_saturation(batch, 8))


def test_saturation_changes_pixels_and_stays_in_range(batch):
    out = build_view(name="saturated", saturation_factor=500)(batch)
    assert not torch.allclose(out, batch)
    assert out.min() >= 0 and out.max() <= 1


def test_invert_twice_is_identity(batch):
    inv = build_view(name="inverted")
    torch.testing.assert_close(inv(inv(batch)), batch)
    torch.testing.assert_close(inv(batch), 1 - batch)


def test_factor_one_is_identity(batch):
    torch.testing.assert_close(build_view(name="saturated", saturation_factor=1)(batch), batch)
    torch.testing.assert_close(build_view(name="inverted_saturated", saturation_factor=1)(batch), 1 - batch)


def test_none_is_identity(batch):
    assert build_view(name="none")(batch) is batch


def test_factor_zero_gives_grayscale(batch):
    out = build_view(name="saturated", saturation_factor=0)(batch)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(build_view(name="grayscale")(batch), out)


@pytest.mark.parametrize("factor", [-1, float("nan"), "lots"])
def test_bad_factor_is_refused(factor):
    with pytest.raises(ConfigError, match="aug.saturation_factor"):
        build_view(name="saturated", saturation_factor=factor)


def test_unknown_view_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        build_view(name="inverse")
    for name in VIEWS:
        assert name in str(e.value)


def test_a_setting_the_view_does_not_take_is_named():
    with pytest.raises(ConfigError, match="aug.saturation_factor"):
        build_view(name="none", saturation_factor=8)


def real_images(n=16) -> torch.Tensor:
    """CIFAKE test images (half REAL, half FAKE) when ../shared/data is there, else generated ones."""
    return _real_images(n).clone()


@functools.cache  # the archive lists 120,000 files: read them once per session, not once per test
def _real_images(n: int) -> torch.Tensor:
    import io
    import zipfile

    import numpy as np
    from PIL import Image
    if (SHARED_DATA / "cifake.zip").exists():
        with zipfile.ZipFile(SHARED_DATA / "cifake.zip") as zf:
            names = [x for x in zf.namelist() if x.startswith("test/") and x.endswith(".jpg")]
            picks = [x for x in names if "/REAL/" in x][: n // 2] + [x for x in names if "/FAKE/" in x][: n // 2]
            arrays = [np.asarray(Image.open(io.BytesIO(zf.read(x))).convert("RGB")) for x in picks]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 32, 32, generator=g)


def probe_batches() -> dict:
    hues = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.float32)
    return {"zeros": torch.zeros(2, 3, 16, 16), "ones": torch.ones(2, 3, 16, 16),
            "pure_hues": hues[:, :, None, None].expand(6, 3, 16, 16).contiguous(), "real": real_images()}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_every_view_keeps_its_declared_shape_dtype_and_range(name):
    view = build_view(name=name)
    assert isinstance(view, View)
    lo, hi = view.value_range
    for kind, x in probe_batches().items():
        out = view(x)
        assert out.shape == (len(x), view.out_channels, *x.shape[-2:]) and out.dtype == torch.float32, kind
        assert torch.isfinite(out).all() and out.min() >= lo - 1e-6 and out.max() <= hi + 1e-6, kind
        assert torch.equal(out, view(x.clone())), kind  # deterministic
    assert build_view(view.spec()).spec() == view.spec()  # settings round-trip as plain values


@pytest.mark.parametrize("to, back", [(colour.rgb_to_hsv, colour.hsv_to_rgb),
                                      (colour.rgb_to_ycbcr, colour.ycbcr_to_rgb),
                                      (colour.rgb_to_lab, colour.lab_to_rgb)])
def test_colour_space_round_trips(to, back):
    for kind, x in probe_batches().items():
        torch.testing.assert_close(back(to(x)), x, atol=2e-4, rtol=0, msg=kind)


def test_known_colour_values():
    red = torch.tensor([1.0, 0, 0])[None, :, None, None]
    torch.testing.assert_close(colour.rgb_to_hsv(red).flatten(), torch.tensor([0.0, 1, 1]))
    lab = colour.rgb_to_lab(red).flatten() * torch.tensor(colour.LAB_SCALE)
    torch.testing.assert_close(lab, torch.tensor([53.24, 80.09, 67.20]), atol=0.05, rtol=0)  # textbook sRGB red
    white = torch.ones(1, 3, 1, 1)
    torch.testing.assert_close(colour.rgb_to_ycbcr(white).flatten(), torch.tensor([1.0, 0.5, 0.5]))


def test_inversion_and_saturation_nearly_commute():
    """saturate(1 - x) = 1 - saturate(x) up to torchvision's grey weights summing to 0.9999,
    an offset the factor multiplies: measured on real images."""
    x = real_images()
    for factor, bound in ((8, 2e-3), (500, 0.06)):
        sat = build_view(name="saturated", saturation_factor=factor)
        diff = (sat(1 - x) - (1 - sat(x))).abs()
        assert diff.max() <= bound, (factor, diff.max())
    exact = (0.2989 + 0.587 + 0.114)
    assert exact == pytest.approx(0.9999)


def test_factor_500_leaves_a_few_bits_of_hue():
    x = real_images()
    out = build_view(name="inverted_saturated", saturation_factor=500)(x)
    clipped = ((out <= 1e-6) | (out >= 1 - 1e-6)).float().mean().item()
    assert clipped > 0.9  # almost every channel value is 0 or 1: about a 3-bit colour map


def test_hsv_saturation_view_matches_the_per_pixel_formula():
    import colorsys
    x = real_images(4)
    for invert in (False, True):
        out = build_view(name="hsv_saturated", saturation_factor=3, invert=invert)(x)
        src = 1 - x if invert else x
        for b, i, j in ((0, 0, 0), (1, 5, 7), (2, 31, 3), (3, 16, 16)):
            h, s, v = colorsys.rgb_to_hsv(*src[b, :, i, j].tolist())
            expected = colorsys.hsv_to_rgb(h, min(1.0, s * 3), v)
            torch.testing.assert_close(out[b, :, i, j], torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)


def test_residual_views_are_zero_on_flat_images_and_stacked_adds_channels():
    flat = torch.full((2, 3, 16, 16), 0.3)
    for name in ("npr", "highpass"):
        assert build_view(name=name)(flat).abs().max() < 1e-6
    assert build_view(name="highpass", kind="blur", kernel_size=5)(flat).abs().max() < 1e-6
    stacked = build_view(name="stacked", other="inverted_saturated@8")
    assert stacked.out_channels == 6
    x = real_images(2)
    torch.testing.assert_close(stacked(x)[:, 3:], build_view(name="inverted_saturated", saturation_factor=8)(x))
    with pytest.raises(ConfigError, match="kernel_size must be odd"):
        build_view(name="highpass", kernel_size=4)


def test_view_spec_strings():
    assert parse_view_spec("none") == {"name": "none"}
    assert parse_view_spec("inverted_saturated@500") == {"name": "inverted_saturated", "saturation_factor": 500.0}
    with pytest.raises(ConfigError, match="aug.spec"):
        parse_view_spec("saturated@lots")


def test_to_float_scales_uint8():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([0.0, 1.0]))
