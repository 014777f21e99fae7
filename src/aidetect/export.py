"""Inference-only copies of a detector: the ONNX export (uint8 images in, P(FAKE) out, with the view
and the calibration inside the graph) and the slim checkpoint (`aidetect slim`: no optimizer state).

    aidetect export best.ckpt detector.onnx
    aidetect slim best.ckpt small.ckpt                   # float16 weights, half the size
    python -c "import onnxruntime as ort, numpy as np; s = ort.InferenceSession('detector.onnx'); \\
               print(s.run(None, {'images': np.zeros((1, 3, 32, 32), np.uint8)}))"

The graph takes uint8 [B, 3, H, W] at the checkpoint's input size (resize first, as
``Detector.prepare`` does) and returns P(FAKE) = sigmoid(logit / T). The threshold, input size,
resize policy and label map are in the model's metadata (``session.get_modelmeta()``).
"""

import json
from pathlib import Path

import torch


class Exportable(torch.nn.Module):
    def __init__(self, detector):
        super().__init__()
        self.detector = detector
        self.register_buffer("temperature", torch.tensor(float(detector.hparams.temperature)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.detector(images) / self.temperature)


def export_onnx(detector, path: Path, opset: int = 18) -> Path:
    import onnx

    detector = detector.eval()
    wrapper = Exportable(detector).eval()
    example = torch.zeros(2, 3, *detector.input_size, dtype=torch.uint8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(tmp), input_names=["images"], output_names=["p_fake"],
                          dynamic_shapes={"images": {0: batch}}, opset_version=opset, dynamo=True,
                          external_data=False)
    model = onnx.load(str(tmp))
    hp = detector.hparams
    meta = {"threshold": hp.threshold, "temperature": hp.temperature, "input_size": list(detector.input_size),
            "resize": hp.resize, "labels": dict(hp.labels or {"REAL": 0, "FAKE": 1}), "view": detector.view.spec(),
            "net": dict(hp.net)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def cmd_export(args) -> int:
    from aidetect.module import load_detector

    out = export_onnx(load_detector(args.ckpt), Path(args.out), args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_slim(args) -> int:
    """`aidetect slim CKPT OUT`: an inference-only copy (no optimizer state; float16 weights unless --fp32)."""
    from aidetect.io import torch_save
    from aidetect.module import load_detector

    load_detector(args.ckpt)  # refuses anything that would not load
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    half = not args.fp32
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    slim = {"hyper_parameters": ckpt["hyper_parameters"], "state_dict": state, "aidetect": ckpt["aidetect"]}
    slim["hyper_parameters"] = {**slim["hyper_parameters"], "optimizer": None, "scheduler": None}
    torch_save(slim, Path(args.out))
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size / 1e6:.2f} MB ({'float16' if half else 'float32'} weights)")
    return 0
