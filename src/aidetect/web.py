"""A web page for a detector: upload images, see P(FAKE), the view the model saw and a heat map.

    aidetect web                       # the shipped default detector, http://127.0.0.1:7860
    aidetect web --ckpt best.ckpt --port 8000

Gradio, bound to 127.0.0.1 with analytics off. Uploads arrive as the original files
(gr.File, not gr.Image, which would re-encode them) and are scored by the same function as
``aidetect predict``, so the page and the command give the same numbers. The heat map is
Grad-CAM (Captum's LayerGradCam) on the network's last convolution: where the evidence for
the score sits in the image the model saw; it shows location, not a reason.
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import numpy as np
import torch
from PIL import Image

from aidetect.data.images import open_image
from aidetect.predict import predict_files


def last_conv(net: torch.nn.Module) -> torch.nn.Module:
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolution to explain")
    return convs[-1]


def heat_map(model, image: torch.Tensor) -> np.ndarray:
    """Grad-CAM of P(FAKE) for one uint8 [3, H, W] image at the input size: [H, W] in [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    x = image[None].float().div(255)  # float in [0, 1]: the same forward path as uint8
    with torch.enable_grad():
        cam = LayerGradCam(lambda t: model(t)[:, None], last_conv(model.net))
        attr = cam.attribute(x, target=0, relu_attributions=True)
    attr = LayerAttribution.interpolate(attr, tuple(image.shape[-2:]), interpolate_mode="bilinear")[0, 0]
    attr = attr.detach()
    return (attr / attr.max()).numpy() if attr.max() > 0 else attr.numpy()


def panels(model, path: str, size: int = 256) -> list[tuple[Image.Image, str]]:
    """(image, caption) for the input as the model saw it, its view and the heat map over it."""
    import matplotlib

    from aidetect.grids import view_panels

    x8 = model.prepare([open_image(path)])  # the one decode path, as predict_files decoded it
    what = "input at the model's size"
    if x8.ndim == 5:  # a native-resolution detector scores a k x k grid of crops: show the centre one
        x8, what = x8[:, x8.shape[1] // 2], f"centre crop of the {x8.shape[1]} scored crops (native pixels)"
    x = x8.float() / 255
    scale = max(1, size // max(x8.shape[-2:]))  # small inputs (32x32) shown larger, pixels kept
    big = lambda a: Image.fromarray(a).resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)  # noqa: E731
    seen = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = [(big(seen), what)]
    for name, v in view_panels(model.view, x):
        out.append((big((v[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), f"view: {name}"))
    cam = heat_map(model, x8[0])
    jet = matplotlib.colormaps["jet"](cam)[..., :3]
    overlay = (0.55 * seen / 255 + 0.45 * jet) * 255
    out.append((big(overlay.round().astype(np.uint8)), "Grad-CAM: evidence for FAKE"))
    return out


def build_app(model, ckpt_name: str = "default detector"):
    import gradio as gr

    def score(files, threshold):
        if not files:
            return "", [], []
        paths = [f if isinstance(f, str) else f.name for f in files]
        rows = list(predict_files(model, [Path(p) for p in paths], threshold=threshold))
        lines, table, gallery = [], [], []
        for row in rows:
            name = Path(row["path"]).name
            if row["skipped"]:
                lines.append(f"{name}\tskipped: {row['skipped']}")
                table.append([name, None, "skipped", row["skipped"]])
                continue
            lines.append(f"{name}\t{row['p_fake']:.6f}\t{row['label']}")
            table.append([name, row["p_fake"], row["label"], row["warning"]])
            gallery += [(img, f"{name}: {cap}") for img, cap in panels(model, row["path"])]
        return "\n".join(lines), table, gallery

    hp = model.hparams
    with gr.Blocks(title="ai-image-detector", analytics_enabled=False) as app:
        gr.Markdown(f"# Is this image AI-generated?\nModel: **{ckpt_name}** ({type(model.net).__name__}, view "
                    f"`{model.view.spec()['name']}`, input {model.input_size[0]}x{model.input_size[1]}, "
                    f"{hp.resize}). P(FAKE) is calibrated on validation data; images far from the training "
                    f"data (size, subject, generator) get unreliable scores.")
        with gr.Row():
            files = gr.File(label="images", file_count="multiple", type="filepath", elem_id="upload")
            with gr.Column():
                threshold = gr.Slider(0, 1, value=float(hp.threshold), step=1e-6,
                                      label="threshold on P(FAKE) (default: fitted on validation)")
                button = gr.Button("Score", variant="primary", elem_id="score-button")
        scores = gr.Textbox(label="scores (file, P(FAKE), label)", lines=4, elem_id="scores", interactive=False)
        table = gr.Dataframe(headers=["file", "P(FAKE)", "label", "note"], label="results")
        gallery = gr.Gallery(label="what the model saw: input, view, Grad-CAM", columns=3, height="auto")
        button.click(score, [files, threshold], [scores, table, gallery])
        files.upload(score, [files, threshold], [scores, table, gallery])
    return app


def cmd_web(args) -> int:
    from aidetect.config import ConfigError
    from aidetect.module import load_detector
    from aidetect.predict import resolve_checkpoint

    ckpt = resolve_checkpoint(args.ckpt)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} not found; pass --ckpt CKPT")
    model = load_detector(ckpt)
    app = build_app(model, ckpt.name if args.ckpt else "default detector (modern images)")
    app.launch(server_name="127.0.0.1", server_port=args.port, share=False, inbrowser=False, show_error=True)
    return 0
