import pytest
import torch
from torchvision.transforms import functional as TF

from aidetect.config import ConfigError, parse_view_spec
from aidetect.views import VIEWS, View, build_view, to_float, view_params


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


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_every_view_declares_shape_range_and_settings(name, batch):
    params = {p: 2.0 for p in view_params(name)}
    view = build_view(name=name, **params)
    assert isinstance(view, View)
    out = view(batch)
    assert out.shape == (4, view.out_channels, 16, 16) and out.dtype == torch.float32
    lo, hi = view.value_range
    assert out.min() >= lo and out.max() <= hi
    assert view.spec() == {"name": name, **params}  # settings round-trip as plain values
    assert build_view(view.spec()).spec() == view.spec()


def test_view_spec_strings():
    assert parse_view_spec("none") == {"name": "none"}
    assert parse_view_spec("inverted_saturated@500") == {"name": "inverted_saturated", "saturation_factor": 500.0}
    with pytest.raises(ConfigError, match="aug.spec"):
        parse_view_spec("saturated@lots")


def test_to_float_scales_uint8():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([0.0, 1.0]))
