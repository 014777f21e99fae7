import pytest
import torch
from torchvision.transforms import functional as TF

from aidetect.views import VIEWS, View, to_float


@pytest.fixture
def batch():
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_inverted_saturated_matches_torchvision_per_image(batch):
    view = View("inverted_saturated", 500)
    out = view(batch)
    for i, img in enumerate(batch):
        # The original's per-image PIL-free pipeline: invert, then adjust_saturation.
        expected = TF.adjust_saturation(1 - img, 500)
        # x500 amplifies float rounding of the batched vs single-image grayscale weights.
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_saturated_matches_torchvision(batch):
    torch.testing.assert_close(View("saturated", 8)(batch), TF.adjust_saturation(batch, 8))


def test_saturation_changes_pixels_and_stays_in_range(batch):
    out = View("saturated", 500)(batch)
    assert not torch.allclose(out, batch)
    assert out.min() >= 0 and out.max() <= 1


def test_invert_twice_is_identity(batch):
    inv = View("inverted")
    torch.testing.assert_close(inv(inv(batch)), batch)
    torch.testing.assert_close(inv(batch), 1 - batch)


def test_factor_one_is_identity(batch):
    torch.testing.assert_close(View("saturated", 1)(batch), batch)
    torch.testing.assert_close(View("inverted_saturated", 1)(batch), 1 - batch)


def test_none_is_identity(batch):
    assert View("none", 500)(batch) is batch


def test_factor_zero_gives_grayscale(batch):
    out = View("saturated", 0)(batch)
    torch.testing.assert_close(out[:, 0], out[:, 1])


@pytest.mark.parametrize("factor", [-1, float("nan"), "lots"])
def test_bad_factor_is_refused(factor):
    with pytest.raises(ValueError, match="aug.saturation_factor"):
        View("saturated", factor)


def test_unknown_view_lists_valid_names():
    with pytest.raises(ValueError) as e:
        View("inverse")
    for name in VIEWS:
        assert name in str(e.value)


def test_to_float_scales_uint8():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([0.0, 1.0]))
