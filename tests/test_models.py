import pytest
import torch

from aidetect.models import build_model, count_parameters


def test_flux_cnn_has_the_original_parameter_count():
    assert count_parameters(build_model("seed_flux_cnn")) == 2_389_313


def test_cifake_cnn_shape():
    net = build_model("seed_cifake_cnn")
    assert net(torch.rand(5, 3, 32, 32)).shape == (5, 1)


@pytest.mark.parametrize("size", [(144, 256), (300, 300)])
def test_flux_cnn_takes_any_resolution(size):
    assert build_model("seed_flux_cnn")(torch.rand(2, 3, *size)).shape == (2, 1)


def test_unknown_model():
    with pytest.raises(ValueError, match="seed_cifake_cnn"):
        build_model("resnet")
