"""Image grids people can read: the originals and what each view makes of them.

    aidetect views data/cifake/raw/test --out docs/views_cifake.png

Used by the TensorBoard view grid (callbacks.ViewGrid) and by ``aidetect views``. Small
images are upscaled (nearest, so pixels stay pixels), every column is labelled REAL or
FAKE, every row with its view, and a view with more than 3 channels gets one row per
group of 3 channels, each mapped from the view's declared value range to [0, 1].
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from aidetect import LABELS

NAMES = {v: k for k, v in LABELS.items()}


def view_panels(view, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(label, [B, 3, H, W] in [0, 1]) for each group of up to 3 channels the view outputs."""
    with torch.no_grad():
        out = view(x)
    lo, hi = (torch.tensor(r, dtype=out.dtype, device=out.device)[:, None, None]
              for r in zip(*view.channel_ranges()))
    out = ((out - lo) / (hi - lo)).clamp(0, 1)
    name = view.name + "".join(f" {v:g}" if isinstance(v, float) else f" {k}" if v is True else ""
                               if v is False else f" {v}" for k, v in view.params().items())
    panels = []
    for c in range(0, out.shape[1], 3):
        group = out[:, c:c + 3]
        if group.shape[1] < 3:  # 1 or 2 channels: shown as grey, one panel per channel
            panels += [(f"{name} [ch {c + i}]", group[:, i:i + 1].expand(-1, 3, -1, -1)) for i in range(group.shape[1])]
        else:
            panels.append((name if out.shape[1] == 3 else f"{name} [ch {c}-{c + 2}]", group))
    return panels


def render_grid(rows: list[tuple[str, torch.Tensor]], labels, min_tile: int = 96, max_tile: int = 256,
                pad: int = 2) -> Image.Image:
    """One row per (name, [B, 3, H, W] in [0, 1]); columns labelled REAL/FAKE from ``labels``
    (0/1), or with the given strings (file names, scores)."""
    h, w = rows[0][1].shape[-2:]
    scale = max(1, -(-min_tile // max(h, w)))  # integer upscale for small images
    th, tw = h * scale, w * scale
    if max(th, tw) > max_tile:
        th, tw = round(th * max_tile / max(th, tw)), round(tw * max_tile / max(th, tw))
    lines = max((len(lab.split("\n")) for lab in labels if isinstance(lab, str)), default=1)
    left, top = 150, 6 + 12 * lines
    n = rows[0][1].shape[0]
    canvas = Image.new("RGB", (left + n * (tw + pad) + pad, top + len(rows) * (th + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, lab in enumerate(labels):
        text = lab if isinstance(lab, str) else NAMES[int(lab)]
        colour = (0, 0, 0) if isinstance(lab, str) else (200, 0, 0) if int(lab) else (0, 100, 0)
        text = "\n".join(line[: max(8, tw // 6)] for line in text.split("\n"))
        draw.multiline_text((left + pad + j * (tw + pad) + 2, 3), text, fill=colour, spacing=1)
    for i, (name, imgs) in enumerate(rows):
        y = top + pad + i * (th + pad)
        draw.text((4, y + th // 2 - 6), name[:24], fill="black")
        for j, img in enumerate(imgs):
            tile = Image.fromarray((img.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
            resample = Image.NEAREST if scale > 1 else Image.BILINEAR
            canvas.paste(tile.resize((tw, th), resample), (left + pad + j * (tw + pad), y))
    return canvas


def open_images(paths) -> list[Image.Image]:
    """Named image files through the one decode path; a file that is no usable image is a
    clear ConfigError naming it and why."""
    from aidetect.config import ConfigError
    from aidetect.data.images import BadImage, open_image

    out = []
    for p in paths:
        try:
            out.append(open_image(p))
        except BadImage as e:
            raise ConfigError(f"cannot use image {p}: {e.reason}") from None
    return out


def views_figure(folder: Path, out: Path, views=None, n: int = 4, size: int = 128) -> Image.Image:
    """n REAL and n FAKE images from folder/{REAL,FAKE}: the original, then one row per view."""
    from aidetect.data.images import list_class_folder, prepare_images
    from aidetect.views import VIEWS, build_view, view_params

    if views is None:  # every view at its defaults; the saturation views at factors 8 and 500
        views = [build_view(name=v, **({"saturation_factor": f} if f else {})) for v in VIEWS if v != "none"
                 for f in ((8, 500) if "saturation_factor" in view_params(v) else (None,))]
    items = list_class_folder(Path(folder))
    picks = [(p, c) for c in (0, 1) for p in [p for p, lab in items if lab == c][:n]]
    pil = open_images([p for p, _ in picks])
    imgs = [prepare_images(im, None, "resize")[0] for im in pil]
    if len({im.shape for im in imgs}) > 1 or max(imgs[0].shape[-2:]) > size:  # unify, for a readable figure
        imgs = [prepare_images(im, (size, size), "center_crop")[0] for im in pil]
    x = torch.stack(imgs).float() / 255  # the view at the image's own resolution, as the model sees it
    rows = [("RGB", x)] + [panel for v in views for panel in view_panels(v, x)]
    grid = render_grid(rows, [c for _, c in picks])
    grid.save(out)
    return grid


def image_views_figure(paths, out: Path, views=None, model=None, size: int = 256) -> Image.Image:
    """Any image files: the original beside each view. With a checkpoint (``model``), its own
    view at its input size and resize policy, exactly what the network sees, and P(FAKE)."""
    from aidetect.data.images import prepare_images

    pil = open_images(paths)
    if model is not None:
        x8 = model.prepare(pil)
        views = [model.view] + list(views or [])
        probs = model.predict_proba(x8)
        captions = [f"{Path(p).name}\nP(FAKE) {q:.3f}" for p, q in zip(paths, probs.tolist())]
    else:
        x8 = prepare_images(pil, (size, size), "center_crop")
        captions = [Path(p).name for p in paths]
        if not views:
            from aidetect.views import build_view

            views = [build_view(name="inverted_saturated", saturation_factor=8)]
    x = x8.float() / 255
    rows = [("original", x)] + [panel for v in views for panel in view_panels(v, x)]
    grid = render_grid(rows, captions)
    grid.save(out)
    return grid


def cmd_views(args) -> int:
    from aidetect.config import ConfigError, compose, parse_view_spec, view_spec
    from aidetect.views import build_view

    settings = [a for a in args.inputs if "=" in a]
    paths = [Path(a) for a in args.inputs if "=" not in a]
    if not paths:
        raise ConfigError("give a folder holding REAL/ and FAKE/, or image files")
    views = [build_view(parse_view_spec(v)) for v in args.views] if args.views else None
    if settings:  # composed like train.py's command line, so aug defaults and data's view_defaults apply
        cfg = compose("train", settings)
        from omegaconf import OmegaConf

        views = (views or []) + [build_view(view_spec(OmegaConf.to_container(cfg.aug, resolve=True)))]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(map(str, missing))}")
    if len(paths) == 1 and paths[0].is_dir() and not args.ckpt:
        views_figure(paths[0], Path(args.out), views, n=args.n)
    else:
        model = None
        if args.ckpt:
            from aidetect.module import load_detector

            model = load_detector(args.ckpt)
        image_views_figure(paths, Path(args.out), views, model=model)
    print(f"wrote {args.out}")
    return 0
