"""ONNX export: every view inside the graph, uint8 in, calibrated P(FAKE) out, checked with
onnxruntime against the PyTorch path on real images (CIFAKE and the StyleGAN2 faces)."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.export import export_onnx
from aidetect.module import Detector
from aidetect.views import VIEWS, view_params
from conftest import SHARED_DATA

try:
    import onnxruntime as ort
except ImportError:  # the dev extra installs it; CI must not skip silently
    import os
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("onnxruntime is not installed (pip install -e '.[export]')", allow_module_level=True)


def real_images(archive, n, size):
    """n REAL and n FAKE test images from a shared archive, at ``size`` as the model takes them."""
    from aidetect.data.images import prepare_images

    if not archive.is_file():
        pytest.skip(f"{archive} is not here")
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        picks = [m for cls in ("REAL", "FAKE") for m in [x for x in names if f"/{cls}/" in x
                                                          and x.lower().endswith(".jpg")][:n]]
        pil = [Image.open(io.BytesIO(z.read(m))) for m in picks]
    return prepare_images(pil, size, "center_crop")


def spread(detector, images):
    """Random weights give nearly equal logits, and P(FAKE) nearly equal everywhere, where any
    graph would agree: centre the logits (last bias) and scale them (temperature) so the
    probabilities spread over (0, 1) and the comparison has teeth."""
    with torch.no_grad():
        logits = detector(images)
        last = [m for m in detector.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias -= logits.mean()
    detector.hparams.temperature = float(logits.std()) / 2
    return detector


@pytest.mark.parametrize("view", [v if v == "inverted_saturated" else pytest.param(v, marks=pytest.mark.slow)
                                  for v in sorted(VIEWS)])  # the original view in the fast tier, every view in the full suite
def test_every_view_exports_with_probabilities_within_1e_4(view, tmp_path):
    images = real_images(SHARED_DATA / "cifake.zip", 8, (32, 32))
    torch.manual_seed(0)
    spec = {"name": view, **({"saturation_factor": 8.0} if "saturation_factor" in view_params(view) else {})}
    det = spread(Detector(net={"_target_": "aidetect.models.SeedCifakeCNN"}, view=spec, input_size=[32, 32]).eval(),
                 images)
    path = export_onnx(det, tmp_path / f"{view}.onnx")
    session = ort.InferenceSession(str(path))
    ref = det.predict_proba(images).numpy()
    got = session.run(None, {"images": images.numpy()})[0]
    assert got.shape == ref.shape and got.dtype == np.float32
    assert ref.std() > 0.2  # spread, so the comparison means something
    assert np.abs(got - ref).max() <= 1e-4
    one = session.run(None, {"images": images[:1].numpy()})[0]  # any batch size
    assert np.abs(one - ref[:1]).max() <= 1e-4


@pytest.mark.slow
def test_export_carries_threshold_size_and_labels_on_high_resolution_faces(tmp_path):
    images = real_images(SHARED_DATA / "faces_stylegan2_300.zip", 4, (160, 160))
    torch.manual_seed(1)
    det = Detector(net={"_target_": "aidetect.models.SmallResNet", "width": 16, "stem_stride": 2},
                   view={"name": "inverted_saturated", "saturation_factor": 8.0}, input_size=[160, 160],
                   threshold=0.37).eval()
    det = spread(det, images)
    path = export_onnx(det, tmp_path / "faces.onnx")
    session = ort.InferenceSession(str(path))
    got = session.run(None, {"images": images.numpy()})[0]
    assert np.abs(got - det.predict_proba(images).numpy()).max() <= 1e-4
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["threshold"] == 0.37 and meta["input_size"] == [160, 160] and meta["labels"]["FAKE"] == 1
    assert meta["view"] == {"name": "inverted_saturated", "saturation_factor": 8.0}
