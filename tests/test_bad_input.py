"""A bad-input corpus, made here, through every tool: training (data=folder), eval.py, predict,
audit and the FLUX build. Each file has its expected outcome: skipped with a reason (listed in
skipped.csv, counted in metrics.json) or used with the right pixels."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.config import ConfigError
from aidetect.data.images import list_class_folder
from aidetect.evaluate import evaluate
from aidetect.train import build_datamodule, train
from conftest import ROOT, compose_train, make_image
from test_predict import png_claiming_size

SKIPPED = {  # name -> words the reason must contain (short and clear: no exception repr)
    "truncated.jpg": "truncated JPEG", "zero.jpg": "empty file (0 bytes)",
    "text.jpg": "not an image (starts with b'this is ')", "bomb.png": "decompression bomb",
    "tiny.png": "minimum side", "outside.jpg": "symlink", ".hidden.jpg": "hidden", "folder.jpg": "folder",
    "notes.txt": "not an image (starts with b'shot on ')",
}
USED = ["png inside.jpg", "gray.png", "rgba.png", "palette.png", "cmyk.jpg", "sixteen.png", "rotated.jpg",
        "ünïcödé name.jpg", "anim.gif", "IMG_0002"]  # files are recognised by content, not by extension


def make_corpus(folder, outside):
    """The bad and odd files, into ``folder`` (a class folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    buf = folder / "full.jpg"
    good.save(buf, quality=90)
    (folder / "truncated.jpg").write_bytes(buf.read_bytes()[:300])
    buf.unlink()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture")
    png_claiming_size(folder / "bomb.png", 30000, 30000)
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    outside.parent.mkdir(parents=True, exist_ok=True)
    good.save(outside)
    os.symlink(outside, folder / "outside.jpg")
    good.save(folder / ".hidden.jpg")
    (folder / "folder.jpg").mkdir()
    good.save(folder / "png inside.jpg", format="PNG")
    Image.new("L", (40, 40), 77).save(folder / "gray.png")
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(folder / "rgba.png")  # transparent: white
    pal = Image.new("P", (40, 40))
    pal.putpalette([10, 200, 30] + [0] * 765)
    pal.save(folder / "palette.png")
    Image.new("CMYK", (40, 40), (0, 0, 0, 0)).save(folder / "cmyk.jpg", quality=100)
    Image.fromarray(np.full((40, 40), 257 * 200, dtype=np.uint16)).save(folder / "sixteen.png")
    upright = Image.new("RGB", (40, 20), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif, quality=100)
    good.save(folder / "ünïcödé name.jpg", quality=90)
    Image.new("RGB", (40, 40), (30, 60, 90)).save(folder / "anim.gif")
    Image.new("RGB", (40, 40), (200, 100, 50)).save(folder / "IMG_0002", "JPEG", quality=95)  # no extension
    (folder / "notes.txt").write_text("shot on a phone, uploaded as is")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    root = tmp / "ds"
    rng = np.random.default_rng(1)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(24):
            make_image(root / cls / f"{i}.png", label, rng, (40, 40))
    make_corpus(root / "FAKE", tmp / "elsewhere" / "secret.jpg")
    return root


def skipped_rows(path):
    return {os.path.basename(r["path"]): r["reason"] for r in csv.DictReader(open(path))}


@pytest.mark.slow
def test_training_skips_and_lists_every_bad_file_and_uses_the_odd_ones(dataset, tmp_path):
    cfg = compose_train(["data=folder", f"data.root={dataset}", f"data.data_dir={tmp_path / 'data'}",
                         "data.image_size=[32,32]", "model=seed_cifake_cnn", "trainer.max_epochs=1",
                         "trainer.enable_progress_bar=false", "logger=none", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    rows = skipped_rows(tmp_path / "run/skipped.csv")
    assert set(rows) == set(SKIPPED)
    for name, word in SKIPPED.items():
        assert word in rows[name] and rows[name], (name, rows[name])
        assert "0x" not in rows[name] and "Error" not in rows[name], rows[name]
    assert m["data"]["skipped_unreadable"] == len(SKIPPED)
    total = sum(m["data"][k] for k in ("train", "val", "test"))
    assert total == 48 + len(USED)  # every odd-but-valid file was used


def test_used_files_have_the_right_pixels(dataset, tmp_path):
    dm = build_datamodule(compose_train(["data=folder", f"data.root={dataset}", f"data.data_dir={tmp_path}",
                                         "data.image_size=[40,40]", "data.resize=resize"]).data)
    dm.setup("test")  # the whole folder; only rotated.jpg (40x20 upright) is resized
    ds = dm.splits["test"]
    px = {os.path.basename(n): ds.images[i] for i, n in enumerate(ds.names)}
    assert set(USED) <= set(px)
    assert (px["gray.png"] == 77).all() and (px["sixteen.png"] == 200).all()
    assert (px["rgba.png"] == 255).all()  # transparent pixels composited on white
    assert px["palette.png"][:, 5, 5].tolist() == [10, 200, 30] and (px["cmyk.jpg"] >= 250).all()
    assert px["anim.gif"][:, 5, 5].tolist() == [30, 60, 90]
    assert (px["IMG_0002"][:, 5, 5].int() - torch.tensor([200, 100, 50])).abs().max() <= 3
    rot = px["rotated.jpg"]  # stored rotated (20 wide, 40 high); upright, the white square is top left
    assert rot[:, 3, 3].min() > 200 and rot[:, 35, 35].max() < 50 and rot[:, 3, 35].max() < 50


def test_strict_mode_stops_at_the_first_bad_file_naming_it(dataset, tmp_path):
    cfg = compose_train(["data=folder", f"data.root={dataset}", f"data.data_dir={tmp_path / 'data'}",
                         "data.image_size=[32,32]", "data.strict=true", "model=seed_cifake_cnn", "trainer.max_epochs=1", "logger=none",
                         f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"data.strict=true") as e:
        train(cfg)
    assert any(name in str(e.value) for name in SKIPPED)


def test_an_empty_class_folder_is_a_clear_message(tmp_path):
    (tmp_path / "REAL").mkdir()
    (tmp_path / "FAKE").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "REAL/a.png")
    with pytest.raises(ConfigError, match="FAKE holds no images"):
        list_class_folder(tmp_path)


@pytest.mark.slow
def test_eval_predict_audit_and_flux_build_report_the_same_skips(dataset, tmp_path):

    cfg = compose_train(["data=folder", f"data.root={dataset}", f"data.data_dir={tmp_path / 'data'}",
                         "data.image_size=[32,32]", "model=seed_cifake_cnn", "trainer.max_epochs=1",
                         "trainer.enable_progress_bar=false", "logger=none", f"output_dir={tmp_path / 'run'}"])
    train(cfg)
    ckpt = next((tmp_path / "run/checkpoints").glob("best_*.ckpt"))
    ev = evaluate(compose_train([f"ckpt_path={ckpt}", "data=folder", f"data.root={dataset}",
                                 f"data.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false",
                                 "logger=none", "split=whole",  # the training folder itself, every image of it
                                 f"output_dir={tmp_path / 'eval'}"], config="eval"))
    assert set(skipped_rows(tmp_path / "eval/skipped.csv")) == set(SKIPPED)
    assert ev["data"]["test"] == 48 + len(USED)

    cli = lambda *a: subprocess.run([sys.executable, "-m", "aidetect.cli", *map(str, a)], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    r = cli("predict", "--ckpt", ckpt, dataset / "FAKE", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    rows = {os.path.basename(x["path"]): x for x in csv.DictReader(open(tmp_path / "p.csv"))}
    skipped = {k for k, v in rows.items() if v["skipped"]}
    # predict searches folders recursively, so a folder named like an image is searched, not skipped
    assert skipped == set(SKIPPED) - {"folder.jpg"}
    assert all(rows[name]["p_fake"] for name in USED)

    r = cli("audit", dataset, "--out", tmp_path / "audit.json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "audit.json").read_text())
    assert {os.path.basename(p) for p in report["unreadable"]} >= {"truncated.jpg", "zero.jpg", "text.jpg", "bomb.png",
                                                                   "notes.txt"}

    from aidetect.flux.build import build

    real = tmp_path / "real_pool"
    real.mkdir()
    for i in range(12):
        make_image(real / f"r{i}.jpg", 0, np.random.default_rng(i), (40, 40))
    summary = build(dataset / "FAKE", real, tmp_path / "built", image_size=(32, 32))
    text = json.dumps(summary)
    for name in ("truncated.jpg", "zero.jpg", "text.jpg", "bomb.png", "notes.txt"):
        assert name in text, name
    built = sum(c["FAKE"] for c in summary["counts"].values())
    assert built == 24 + len(USED)  # the GIF and the extensionless JPEG are in the built set


def test_broken_and_looping_symlinks_are_skipped_not_fatal(tmp_path):
    from aidetect.data.images import list_class_folder

    for cls in ("REAL", "FAKE"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (20, 20)).save(tmp_path / cls / "ok.png")
    os.symlink(tmp_path / "REAL" / "gone.png", tmp_path / "REAL" / "dangling.png")
    os.symlink(tmp_path / "FAKE" / "loop.png", tmp_path / "FAKE" / "loop.png")
    skipped = []
    items = list_class_folder(tmp_path, skipped)
    assert len(items) == 2 and {os.path.basename(p) for p, _ in skipped} == {"dangling.png", "loop.png"}
    assert all("broken symlink" in why for _, why in skipped)
