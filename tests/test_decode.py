"""The one decode path (issue 31): ``open_image`` for every format and every bad file, files
recognised by content, ``format_neutral``, and no other ``Image.open`` in the package."""

import ast
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from aidetect.data.images import (BadImage, format_neutral, list_class_folder, open_image, probe_image,
                                  sniff_format, try_open_image)
from conftest import ROOT

RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # 64 wide, 48 high


def encode(img, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(width, height) -> bytes:
    """A valid 1x1 PNG whose header claims another size."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def diff(img, ref) -> float:
    return float(np.abs(np.asarray(img, dtype=np.int16) - np.asarray(ref, dtype=np.int16)).mean())


# --- one file of each format ------------------------------------------------------------------

LOSSLESS = {"PNG": {}, "WEBP": {"lossless": True}, "BMP": {}, "TIFF": {}, "GIF": {}}


@pytest.mark.parametrize("fmt", list(LOSSLESS))
def test_lossless_formats_decode_to_the_exact_pixels(fmt):
    src = Image.fromarray(NOISE)
    if fmt == "GIF":  # 256 colours at most: a palette image is stored exactly
        src = src.quantize(64).convert("RGB")
    img = open_image(encode(src, fmt, **LOSSLESS[fmt]))
    assert img.mode == "RGB" and img.size == (64, 48)
    assert np.array_equal(np.asarray(img), np.asarray(src))


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})])
def test_lossy_formats_decode_close_to_the_source(fmt, kw):
    smooth = Image.fromarray(np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, 0).repeat(3, 2))
    img = open_image(encode(smooth, fmt, **kw))
    assert img.mode == "RGB" and img.size == (64, 48) and diff(img, smooth) < 3


def test_modes_alpha_palette_sixteen_bit_cmyk_and_exif_orientation():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))  # transparent: white, in PNG and in lossless WebP alike
    for raw in (encode(rgba, "PNG"), encode(rgba, "WEBP", lossless=True, exact=True)):
        px = np.asarray(open_image(raw))
        assert px[0, 0].tolist() == [255, 255, 255] and px[5, 5].tolist() == [255, 0, 0]
    pal = Image.new("P", (16, 16))
    pal.putpalette([10, 200, 30] + [0] * 765)
    assert np.asarray(open_image(encode(pal, "PNG")))[3, 3].tolist() == [10, 200, 30]
    pal.info["transparency"] = 0  # a palette entry marked transparent: white
    assert np.asarray(open_image(encode(pal, "PNG", transparency=0)))[3, 3].tolist() == [255, 255, 255]
    sixteen = Image.fromarray(np.full((16, 16), 257 * 100, dtype=np.uint16))
    assert (np.asarray(open_image(encode(sixteen, "PNG"))) == 100).all()  # scaled, not clipped
    assert (np.asarray(open_image(encode(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), "JPEG", quality=100))) >= 250).all()
    upright = Image.new("RGB", (40, 20), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 8, 8))  # a white square top left
    for orientation, stored in ((6, upright.transpose(Image.Transpose.ROTATE_90)),
                                (3, upright.transpose(Image.Transpose.ROTATE_180)),
                                (8, upright.transpose(Image.Transpose.ROTATE_270))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        raw = encode(stored, "JPEG", exif=exif, quality=100)
        img = open_image(raw)
        assert img.size == (40, 20), orientation
        px = np.asarray(img)
        assert px[3, 3].min() > 200 and px[15, 35].max() < 50, orientation
        assert (probe_image(raw)["width"], probe_image(raw)["height"]) == (40, 20)


def test_info_reports_the_file_as_stored():
    info = {}
    open_image(encode(Image.fromarray(NOISE), "JPEG", quality=80), info=info)
    assert info["format"] == "JPEG" and (info["width"], info["height"]) == (64, 48) and info["mode"] == "RGB"
    assert info["quantization"] and info["exif"] is False and info["frames"] == 1
    info = {}
    open_image(encode(Image.fromarray(NOISE), "WEBP", lossless=True), info=info)
    assert info["format"] == "WEBP" and info["quantization"] is None


def test_as_stored_keeps_mode_alpha_and_orientation_with_the_same_checks():
    rgba = Image.new("RGBA", (16, 8), (255, 0, 0, 0))
    img = open_image(encode(rgba, "PNG"), as_stored=True)
    assert img.mode == "RGBA" and img.size == (16, 8) and img.getpixel((1, 1)) == (255, 0, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert open_image(encode(Image.new("RGB", (16, 8)), "JPEG", exif=exif), as_stored=True).size == (16, 8)
    with pytest.raises(BadImage, match="truncated PNG"):
        open_image(encode(Image.fromarray(NOISE), "PNG")[:3000], as_stored=True)


def test_the_first_frame_of_an_animation():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(buf.getvalue()))[4, 4].tolist() == [255, 0, 0]


# --- the bad-image corpus: each skip has a short, clear reason ---------------------------------

def corpus() -> dict:
    jpeg, png = encode(Image.fromarray(NOISE), "JPEG"), encode(Image.fromarray(NOISE), "PNG")
    webp, gif = encode(Image.fromarray(NOISE), "WEBP"), encode(Image.fromarray(NOISE).quantize(64), "GIF")
    return {  # name -> (bytes, words the reason must contain)
        "empty": (b"", "empty file (0 bytes)"),
        "text": (b"this is not a picture", "not an image (starts with b'this is '"),
        "pdf": (b"%PDF-1.7\n...", "not an image (starts with b'%PDF-1.7"),
        "html": (b"<!DOCTYPE html><html>", "not an image"),
        "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC image: format not supported"),
        "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "jpeg header only": (jpeg[:40], "truncated JPEG"),
        "truncated png": (png[: len(png) // 2], "truncated PNG"),
        "truncated webp": (webp[: len(webp) // 2], "truncated WebP"),
        "truncated gif": (gif[: len(gif) // 2], "truncated GIF"),
        "bomb": (bomb_png(30000, 30000), "decompression bomb: 900M pixels exceeds the 179M-pixel limit"),
        "bad magic tail": (b"\xff\xd8\xff" + b"\x00" * 200, "JPEG"),
        "tiny": (encode(Image.new("RGB", (1, 1)), "PNG"), "1x1 is smaller than the minimum side of 8 px"),
    }


@pytest.mark.parametrize("name", list(corpus()))
def test_each_bad_file_is_refused_with_its_reason(name):
    raw, words = corpus()[name]
    with pytest.raises(BadImage) as e:
        open_image(raw)
    assert words in e.value.reason, e.value.reason
    assert str(e.value) == e.value.reason
    assert "0x" not in e.value.reason and "BytesIO" not in e.value.reason and "Error" not in e.value.reason
    assert try_open_image(raw) == (None, e.value.reason)


def test_own_pixel_limit_names_the_size_and_missing_files_are_reasons(tmp_path):
    raw = encode(Image.new("RGB", (200, 100)), "PNG")
    assert try_open_image(raw, max_pixels=10_000)[1] == "decompression bomb: 200x100 (0M pixels) exceeds the 0M-pixel limit"
    assert open_image(raw, min_side=0, max_pixels=None).size == (200, 100)
    assert try_open_image(tmp_path / "gone.jpg")[1] == "cannot read the file: No such file or directory"
    assert try_open_image(tmp_path)[1] == "a folder, not a file"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never padded: a truncated file is refused


# --- recognised by content, not by name -------------------------------------------------------

def test_sniffing_by_magic_bytes():
    img = Image.fromarray(NOISE)
    for fmt, kw in (("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {})):
        assert sniff_format(encode(img, fmt, **kw)[:16]) == fmt
    assert sniff_format(b"II\x00*\x00\x00\x00\x08") is None  # little-endian mark, big-endian magic
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") is None  # a RIFF that is no WebP
    assert sniff_format(b"BMW is a car maker, not a bitmap") is None  # "BM" needs a DIB header size after it


def test_a_gif_and_an_extensionless_jpeg_are_used_anything_else_is_skipped_with_a_reason(tmp_path):
    for cls in ("REAL", "FAKE"):
        (tmp_path / cls).mkdir()
        Image.fromarray(NOISE).save(tmp_path / cls / "a.png")
    Image.fromarray(NOISE).quantize(64).save(tmp_path / "FAKE" / "anim.gif")
    Image.fromarray(NOISE).save(tmp_path / "FAKE" / "IMG_0001", "JPEG")  # no extension
    Image.fromarray(NOISE).save(tmp_path / "REAL" / "photo.png", "JPEG")  # a JPEG named .png
    (tmp_path / "REAL" / "notes.txt").write_text("shot on a Pixel 8")
    (tmp_path / "REAL" / "empty.jpg").write_bytes(b"")
    (tmp_path / "REAL" / "sub").mkdir()
    skipped = []
    items = list_class_folder(tmp_path, skipped)
    assert {p.name for p, _ in items} == {"a.png", "anim.gif", "IMG_0001", "photo.png"}
    why = {Path(p).name: r for p, r in skipped}
    assert why == {"notes.txt": "not an image (starts with b'shot on ')", "empty.jpg": "empty file (0 bytes)",
                   "sub": "a folder (sub-folders are not searched)"}


def test_predict_lists_every_file_of_a_folder(tmp_path):
    from aidetect.predict import find_images, load_image

    Image.fromarray(NOISE).quantize(64).save(tmp_path / "anim.gif")
    Image.fromarray(NOISE).save(tmp_path / "IMG_0001", "JPEG")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".cache").mkdir()
    Image.fromarray(NOISE).save(tmp_path / ".cache" / "thumb.jpg")
    found = list(find_images([tmp_path]))
    rows = {Path(f[0] if isinstance(f, tuple) else f).name: load_image(f, (32, 32), "resize") for f in found}
    assert set(rows) == {"anim.gif", "IMG_0001", "notes.txt", ".cache"}
    assert rows["anim.gif"][0].shape == (3, 32, 32) and rows["IMG_0001"][0].shape == (3, 32, 32)
    assert rows["notes.txt"][2].startswith("not an image") and "hidden folder" in rows[".cache"][2]


# --- format-neutral copies --------------------------------------------------------------------

def test_format_neutral_processes_every_format_alike():
    src = Image.fromarray(np.repeat(np.repeat(NOISE, 8, 0), 8, 1))  # 512 x 384
    copies = [format_neutral(open_image(encode(src, fmt, **kw))) for fmt, kw in
              (("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}))]
    assert all(c.size == (683, 512) and c.mode == "RGB" for c in copies)  # short side 512, aspect kept
    assert all(np.array_equal(np.asarray(c), np.asarray(copies[0])) for c in copies)  # lossless sources: identical
    assert format_neutral(Image.new("RGB", (1000, 2000)), short_side=256).size == (256, 512)
    assert format_neutral(Image.new("RGBA", (64, 32), (0, 0, 0, 0)), 32).getpixel((5, 5))[0] >= 250  # alpha: white
    a, b = format_neutral(src, quality=90), format_neutral(src, quality=90)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # deterministic


def test_format_neutral_is_a_robustness_corruption_too():
    from aidetect.robustness import corrupt

    img = Image.fromarray(NOISE)
    assert corrupt(img, "format_neutral", [96, 90]).size == (128, 96)
    assert corrupt(img, "format_neutral").size == (683, 512)


# --- the one decode path: no other Image.open in the package -----------------------------------

def image_open_calls(source: str) -> list[int]:
    """Lines of ``Image.open`` / ``PIL.Image.open`` uses and ``from PIL.Image import open``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "open":
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "Image") or (
                    isinstance(base, ast.Attribute) and base.attr == "Image"):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "PIL.Image" and \
                any(a.name == "open" for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_check_finds_every_spelling():
    src = ("from PIL import Image\nimport PIL\nfrom PIL.Image import open as o\n"
           "Image.open('a')\nPIL.Image.open('b')\nf = Image.open\nopen('c')\n")
    assert image_open_calls(src) == [3, 4, 5, 6]


def test_no_image_open_outside_the_one_decode_function():
    package = ROOT / "src" / "aidetect"
    found = {}
    for path in sorted(package.rglob("*.py")):
        lines = image_open_calls(path.read_text())
        if path == package / "data" / "images.py":
            assert len(lines) == 1, f"images.py opens images in {len(lines)} places: {lines}"
            continue
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"Image.open outside data/images.py (use open_image or probe_image): {found}"


# --- format-neutral evaluation (issue 31, item 3) ----------------------------------------------

def biased_folder(root: Path, n: int = 8) -> Path:
    """REAL as PNG at 60x80, FAKE as WebP at 64x64: format and size give the label away."""
    from conftest import make_image

    rng = np.random.default_rng(3)
    (root / "test" / "FAKE").mkdir(parents=True)
    for i in range(n):
        make_image(root / "test" / "REAL" / f"r{i}.png", 0, rng, (60, 80))
        make_image(root / "tmp" / f"f{i}.png", 1, rng, (64, 64))
        Image.open(root / "tmp" / f"f{i}.png").save(root / "test" / "FAKE" / f"f{i}.webp", quality=80)
    import shutil

    shutil.rmtree(root / "tmp")
    return root


def test_eval_scores_format_neutral_copies_beside_the_files_as_published(tmp_path):
    import csv

    from aidetect.evaluate import evaluate
    from aidetect.predict import default_checkpoint
    from conftest import compose_train

    root = biased_folder(tmp_path / "ds")
    base = [f"ckpt_path={default_checkpoint('cifake')}", "data=folder", f"data.root={root}",
            f"data.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false", "logger=none"]
    m = evaluate(compose_train(base + ["format_neutral=true", f"output_dir={tmp_path / 'e1'}"], config="eval"))
    fn = m["format_neutral"]
    assert (fn["short_side"], fn["jpeg_quality"], fn["failed"], fn["n"]) == (512, 90, 0, 16)
    assert fn["published"]["n"] == 16 and fn["published"]["acc_at_threshold"] == pytest.approx(m["test"]["acc_at_threshold"])
    assert fn["delta"]["acc_at_threshold"] == pytest.approx(fn["acc_at_threshold"] - fn["published"]["acc_at_threshold"])
    rows = list(csv.DictReader(open(tmp_path / "e1" / "predictions_format_neutral.csv")))
    assert len(rows) == 16 and {r["true_label"] for r in rows} == {"REAL", "FAKE"}
    m = evaluate(compose_train(base + ["format_neutral={short_side:48,quality:75}", f"output_dir={tmp_path / 'e2'}"],
                               config="eval"))
    assert (m["format_neutral"]["short_side"], m["format_neutral"]["jpeg_quality"]) == (48, 75)
    m = evaluate(compose_train(base + [f"output_dir={tmp_path / 'e3'}"], config="eval"))
    assert m["format_neutral"] is None  # off by default: the published files only


def test_audit_format_neutral_copies_share_format_quality_and_short_side(tmp_path):
    from aidetect.audit import audit

    report = audit(biased_folder(tmp_path / "ds"), format_neutral=True)
    published = report["classes"]
    assert published["test/REAL"]["formats"] == "PNG 100%" and published["test/FAKE"]["formats"] == "WEBP 100%"
    copies = report["format_neutral"]["classes"]
    assert copies["test/REAL"]["formats"] == copies["test/FAKE"]["formats"] == "JPEG 100%"
    assert copies["test/REAL"]["jpeg_quality"] == copies["test/FAKE"]["jpeg_quality"] == "median 90, range 90-90"
    assert copies["test/REAL"]["sizes"] == "683x512 100%" and copies["test/FAKE"]["sizes"] == "512x512 100%"
    assert "metadata_classifier" in report["format_neutral"]
