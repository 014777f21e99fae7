"""Using a trained detector: predict, calibration, per-image eval, robustness, audit, views."""

import csv
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.calibrate import best_threshold, calibrate_model, fit_temperature
from aidetect.config import ConfigError
from aidetect.evaluate import evaluate
from aidetect.module import load_detector
from aidetect.predict import load_image
from aidetect.data.images import try_open_image
from aidetect.robustness import corrupt
from aidetect.train import build_datamodule, train
from conftest import ROOT, compose_train
from test_inference import make_folder  # noqa: F401  (also used by test_web)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seed CIFAKE CNN, 2 epochs at 32x32, calibrated by train.py on its validation split."""
    tmp = tmp_path_factory.mktemp("predict")
    root = make_folder(tmp / "ds", 16, size=(32, 32))  # native 32x32: a resize would blur away the FAKE checkerboard
    cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp / 'data'}", "data.image_size=[32,32]",
                         "model=seed_cifake_cnn", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                         "logger=none", f"output_dir={tmp / 'run'}"])
    metrics = train(cfg)
    assert metrics["test"]["auroc"] > 0.9, metrics["test"]  # a model that learned: the scores below mean something
    best = next((tmp / "run/checkpoints").glob("best_*.ckpt"))
    return {"cfg": cfg, "root": root, "metrics": metrics, "ckpt": best, "tmp": tmp}


def aidetect(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "aidetect.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --- calibration ----------------------------------------------------------------------------

def test_train_stores_threshold_and_temperature_in_the_tested_checkpoint(trained):
    cal = trained["metrics"]["calibration"]["calibration"]
    hp = torch.load(trained["ckpt"], weights_only=True)["hyper_parameters"]
    assert hp["temperature"] == pytest.approx(cal["temperature"]) and hp["threshold"] == pytest.approx(cal["threshold"])
    model = load_detector(trained["ckpt"])
    assert model.hparams.threshold == pytest.approx(cal["threshold"])
    test = trained["metrics"]["test"]
    for key in ("acc", "acc_at_threshold", "ece", "auroc", "average_precision", "tpr_at_5fpr"):
        assert key in test, key
    assert (trained["tmp"] / "run/reliability.png").is_file()
    rows = list(csv.DictReader(open(trained["tmp"] / "run/predictions.csv")))
    assert len(rows) == trained["metrics"]["data"]["test"] == 32
    # predictions.csv reuses trainer.test's logits: they must be each file's own fp32 P(FAKE), in order
    from aidetect.predict import predict_files
    fresh = {Path(r["path"]).relative_to(trained["root"]).as_posix(): r["p_fake"]
             for r in predict_files(model, [trained["root"] / r["path"] for r in rows])}
    assert max(abs(float(r["p_fake"]) - fresh[r["path"]]) for r in rows) <= 1e-6


def test_test_pass_keeps_each_images_logit_in_split_order(trained):
    """run_test hands calibration the logits trainer.test computed (no second pass over the test
    split): they are logits_of's, image for image; under bf16 it keeps none (recomputed in fp32)."""
    import lightning as L

    from aidetect.calibrate import logits_of
    from aidetect.train import build_datamodule, run_test

    model = load_detector(trained["ckpt"])
    dm = build_datamodule(trained["cfg"].data, default_size=model.input_size)
    dm.setup("fit")
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    results, logits = run_test(trainer, model, dm)
    assert logits is not None and len(logits) == len(dm.splits["test"]) == 32
    assert torch.allclose(logits, logits_of(model, dm.splits["test"].images), atol=1e-5)
    assert results["test/acc"] == pytest.approx(((logits > 0).long() == dm.splits["test"].labels).float().mean().item())
    bf16 = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, precision="bf16-mixed")
    assert run_test(bf16, model, dm)[1] is None and model.kept_test_logits is None


def test_fitted_temperature_recovers_a_known_overconfidence():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, generator=g) * 2
    y = torch.bernoulli(z.sigmoid(), generator=g).long()
    assert fit_temperature(4 * z, y) == pytest.approx(4, rel=0.1)  # logits 4x too large -> T ~ 4
    assert fit_temperature(z, y) == pytest.approx(1, rel=0.1)


def test_overconfident_model_gets_temperature_above_one_and_lower_ece(trained):
    """The trained model with its last layer scaled 20x (logits 20x) on validation labels with
    a fifth flipped: confidently wrong on many images, so T > 1 must help."""
    model = load_detector(trained["ckpt"])
    last = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(20), last.bias.mul_(20)
    dm = build_datamodule(trained["cfg"].data)
    dm.setup("fit")
    val = dm.splits["val"]
    labels = val.labels.clone()
    labels[::5] = 1 - labels[::5]
    report = calibrate_model(model, val.images, labels)
    assert report["temperature"] > 1
    assert report["val_ece_after"] < report["val_ece_before"]


def test_threshold_maximises_balanced_accuracy_on_imbalanced_scores():
    # 90 REAL scored 0.0-0.6, 10 FAKE scored 0.55-0.95: 0.5 misses none of FAKE but calls REAL fake.
    probs = torch.cat([torch.linspace(0, 0.6, 90), torch.linspace(0.65, 0.95, 10)])
    labels = torch.cat([torch.zeros(90), torch.ones(10)]).long()
    t = best_threshold(probs, labels)
    assert 0.6 < t < 0.65  # between the last REAL and the first FAKE score


def test_threshold_at_fpr_calls_at_most_that_share_of_real_fake():
    from aidetect.calibrate import threshold_at_fpr

    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(200, generator=g) * 0.7, 0.3 + torch.rand(50, generator=g) * 0.7
    probs, labels = torch.cat([real, fake]), torch.cat([torch.zeros(200), torch.ones(50)]).long()
    for a in (0.0, 0.05, 0.1, 0.3):
        t = threshold_at_fpr(probs, labels, a)
        fpr = float((real >= t).float().mean())
        assert fpr <= a + 1e-6 and (real >= t).sum() == int(a * 200), (a, t, fpr)
        lower = real[real < t].max()  # the next REAL score down would exceed the budget
        assert float((real >= lower).float().mean()) > a
    assert threshold_at_fpr(probs, labels, 0.05) < threshold_at_fpr(probs, labels, 0.01)
    with pytest.raises(ValueError, match="max_fpr"):
        threshold_at_fpr(probs, labels, 1.0)


def test_threshold_equals_a_brute_force_search_and_scales():
    """Against balanced accuracy computed image by image at every midpoint; ties (rounded scores)
    go to the midpoint nearest 0.5. 100k scores must not need an N x N table."""
    from aidetect.calibrate import balanced_accuracy

    g = torch.Generator().manual_seed(0)
    for n, decimals in ((300, 1), (300, 2), (500, 6)):
        labels = (torch.rand(n, generator=g) < 0.3).long()
        probs = ((torch.rand(n, generator=g) + 0.25 * labels).clamp(0, 1) * 10**decimals).round() / 10**decimals
        values = probs.double().unique(sorted=True)
        cands = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
        bal = torch.tensor([balanced_accuracy(probs.double(), labels, float(c)) for c in cands], dtype=torch.float64)
        ties = (bal >= bal.max() - 1e-6).nonzero().squeeze(1)
        expected = float(cands[ties[(cands[ties] - 0.5).abs().argmin()]].clamp(0, 1))
        assert best_threshold(probs, labels) == pytest.approx(expected, abs=1e-9)
    big = torch.rand(100_000, generator=g)
    assert 0 <= best_threshold(big, (big > 0.3).long()) <= 1


# --- predict -----------------------------------------------------------------------------------

def png_claiming_size(path, width, height):
    """A valid 1x1 PNG whose header claims another size (a decompression bomb's shape)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))


@pytest.fixture
def every_mode(tmp_path):
    d = tmp_path / "inputs"
    (d / "sub").mkdir(parents=True)
    Image.new("L", (40, 30), 77).save(d / "gray.png")
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent blue: white on the composite
    rgba.save(d / "rgba.png")
    pal = Image.new("P", (40, 30))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(1, (0, 0, 40, 30))
    pal.save(d / "palette.png")
    Image.new("CMYK", (40, 30), (0, 0, 0, 0)).save(d / "cmyk.jpg", quality=100)  # no ink: white
    Image.fromarray(np.full((30, 40), 257 * 100, dtype=np.uint16)).save(d / "sixteen.png")  # -> 100
    upright = Image.new("RGB", (40, 30), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 10, 10))  # a white square at the top left
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored rotated; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(d / "sub" / "rotated.jpg", exif=exif, quality=100)
    png_claiming_size(d / "bomb.png", 20000, 20000)
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not an image: listed as skipped, with its reason")
    return d


def test_every_input_mode_decodes_to_the_right_pixels(every_mode):
    d = every_mode
    px = lambda name: load_image(d / name, None, "resize")  # noqa: E731  native size, no resizing
    arr, size, err = px("gray.png")
    assert err is None and size == (40, 30) and (arr == 77).all()
    arr, _, _ = px("rgba.png")
    assert arr[:, 0, 0].tolist() == [255, 255, 255] and arr[:, 5, 5].tolist() == [255, 0, 0]
    assert px("palette.png")[0][:, 3, 3].tolist() == [10, 200, 30]
    assert (px("cmyk.jpg")[0] >= 250).all()
    assert (px("sixteen.png")[0] == 100).all()
    arr, size, _ = px("sub/rotated.jpg")
    assert size == (40, 30)  # upright again: 40 wide, 30 high
    assert arr[:, 2, 2].min() > 200 and arr[:, 27, 37].max() < 50  # white square back at the top left
    assert "decompression bomb" in px("bomb.png")[2]
    assert px("broken.jpg")[0] is None


@pytest.mark.slow
def test_predict_cli_scores_a_folder_streams_rows_and_skips_bad_files(trained, every_mode, tmp_path):
    out = tmp_path / "scores.csv"
    r = aidetect("predict", "--ckpt", trained["ckpt"], every_mode, "--out", out, "--batch-size", "3")
    assert r.returncode == 0, r.stderr
    rows = {p.split("/")[-1]: row for row in csv.DictReader(open(out)) for p in [row["path"]]}
    assert set(rows) == {"gray.png", "rgba.png", "palette.png", "cmyk.jpg", "sixteen.png", "rotated.jpg",
                         "bomb.png", "broken.jpg", "notes.txt"}  # every file of the folder, recognised by content
    assert rows["bomb.png"]["skipped"] and rows["broken.jpg"]["skipped"] and not rows["bomb.png"]["p_fake"]
    assert rows["notes.txt"]["skipped"].startswith("not an image (starts with")
    model = load_detector(trained["ckpt"])
    for name in ("gray.png", "rgba.png", "rotated.jpg"):
        row = rows[name]
        p = model.predict_proba([Image.open(row["path"])]).item()
        assert float(row["p_fake"]) == pytest.approx(p, abs=1e-6)
        assert row["label"] == ("FAKE" if p >= model.hparams.threshold else "REAL")
    assert "3 skipped" in r.stderr
    # The terminal table, a JSON-lines file, a glob, a threshold override.
    r = aidetect("predict", "--ckpt", trained["ckpt"], str(every_mode / "*.png"), "--threshold", "0")
    labels = [line.split()[1] for line in r.stdout.splitlines()[1:]]
    assert r.returncode == 0 and labels.count("FAKE") == 4 and "bomb.png" in r.stdout
    r = aidetect("predict", "--ckpt", trained["ckpt"], every_mode / "gray.png", "--out", tmp_path / "a.jsonl")
    assert json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])["path"].endswith("gray.png")


@pytest.mark.slow
def test_predict_exit_codes_only_for_real_errors(trained, tmp_path):
    r = aidetect("predict", "--ckpt", trained["ckpt"], tmp_path / "missing.jpg")
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "empty").mkdir()
    r = aidetect("predict", "--ckpt", trained["ckpt"], tmp_path / "empty")
    assert r.returncode == 2 and "no image files" in r.stderr
    r = aidetect("predict", "--ckpt", tmp_path / "nope.ckpt", tmp_path)
    assert r.returncode == 2 and "is not a file" in r.stderr
    (tmp_path / "empty" / "x.jpg").write_bytes(b"junk")
    r = aidetect("predict", "--ckpt", trained["ckpt"], tmp_path / "empty")
    assert r.returncode == 0 and "1 skipped" in r.stderr


def test_small_images_warn_far_from_training_resolution(trained, tmp_path):
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "tiny.png")  # the smallest side predict takes
    Image.new("RGB", (6, 6), (10, 20, 30)).save(tmp_path / "tinier.png")
    r = aidetect("predict", "--ckpt", trained["ckpt"], tmp_path / "tiny.png", tmp_path / "tinier.png")
    assert r.returncode == 0 and "upscaled 4.0x" in r.stdout and "smaller than the minimum side of 8 px" in r.stdout


def test_eval_per_image_probabilities_equal_predict(trained, tmp_path):
    root = make_folder(tmp_path / "other", 6, size=(50, 70), seed=7, splits=("test",))
    cfg = compose_train([f"ckpt_path={trained['ckpt']}", "data=folder", f"data.root={root}",
                         f"data.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false", "logger=none",
                         f"output_dir={tmp_path / 'eval'}"], config="eval")
    m = evaluate(cfg)
    assert m["threshold"] == pytest.approx(load_detector(trained["ckpt"]).hparams.threshold)
    ev = {r["path"]: float(r["p_fake"]) for r in csv.DictReader(open(tmp_path / "eval/predictions.csv"))}
    out = tmp_path / "p.csv"
    assert aidetect("predict", "--ckpt", trained["ckpt"], root, "--out", out).returncode == 0
    pr = {str(__import__("pathlib").Path(r["path"]).relative_to(root)): float(r["p_fake"])
          for r in csv.DictReader(open(out))}
    assert set(ev) == set(pr) and len(ev) == 12
    assert max(abs(ev[k] - pr[k]) for k in ev) <= 1e-6


# --- robustness -------------------------------------------------------------------------------

def test_corruptions_do_what_they_say():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    a = lambda im: np.asarray(im, dtype=np.int16)  # noqa: E731
    g = a(corrupt(img, "grayscale"))
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert corrupt(img, "downscale", 4).size == img.size
    assert np.abs(a(corrupt(img, "jpeg", 50)) - a(img)).mean() > np.abs(a(corrupt(img, "jpeg", 95)) - a(img)).mean()
    n1, n2 = a(corrupt(img, "noise", 0.05, seed=3)), a(corrupt(img, "noise", 0.05, seed=3))
    assert (n1 == n2).all() and 5 < (n1 - a(img)).std() < 20  # sigma 0.05 * 255 = 12.75, less where clipped
    assert a(corrupt(img, "blur", 2)).std() < a(img).std()
    with pytest.raises(ConfigError, match="valid"):
        corrupt(img, "sepia")


def test_the_corner_star_marks_only_the_bottom_right_corner():
    img = Image.new("RGB", (400, 200), (20, 40, 60))
    d = np.asarray(corrupt(img, "corner_star", [0.1, 0.7]), dtype=np.int16) - np.asarray(img, dtype=np.int16)
    ys, xs = np.nonzero(d.any(-1))
    # short side 200: a star 20 px wide centred 13 px in from the right and bottom edges
    assert abs(xs.mean() - (400 - 13)) < 1.5 and abs(ys.mean() - (200 - 13)) < 1.5
    assert xs.max() - xs.min() <= 20 and ys.max() - ys.min() <= 20
    assert (d >= 0).all() and np.abs(d[200 - 13, 400 - 13] - 0.7 * np.array([235, 215, 195])).max() <= 1
    assert 20 < len(xs) < 0.5 * 20 * 20  # concave sides: far less than its bounding square
    faint = np.asarray(corrupt(img, "corner_star", [0.1, 0.35]), dtype=np.int16) - np.asarray(img, dtype=np.int16)
    assert (faint[200 - 13, 400 - 13] < d[200 - 13, 400 - 13]).all()
    tall = np.asarray(corrupt(Image.new("L", (100, 300), 0), "corner_star", [0.1, 1.0]))  # portrait, greyscale in
    assert tall.shape == (300, 100, 3) and (tall[300 - 7, 100 - 7] == 255).all() and tall[:280].max() == 0
    with pytest.raises(ConfigError, match=r"\[size, opacity\]"):
        corrupt(img, "corner_star", 0.05)


def test_trim_bottom_cuts_the_bottom_of_the_short_side_and_keeps_the_rest_untouched():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 400, 3), dtype=np.uint8))
    cut = corrupt(img, "trim_bottom", 0.1)
    assert cut.size == (400, 180)  # a tenth of the short side (200), from the bottom only
    assert (np.asarray(cut) == np.asarray(img)[:180]).all()
    assert corrupt(img.transpose(Image.TRANSPOSE), "trim_bottom", 0.1).size == (200, 380)
    for bad in (None, 0.5, -0.1, [0.1, 0.2], "a tenth"):
        with pytest.raises(ConfigError, match="trim_bottom"):
            corrupt(img, "trim_bottom", bad)


@pytest.mark.parametrize("grid", ["modern", "shortcuts", "standard"])
def test_every_corruption_in_the_shipped_grids_runs(grid):
    """A typo in a robustness YAML (a kind or a value's shape) fails here, not after an hour of scoring."""
    cfg = compose_train(["data=folder", f"robustness={grid}"], config="eval")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    names = [c.name for c in cfg.robustness.corruptions]
    assert len(set(names)) == len(names)
    for c in cfg.robustness.corruptions:
        v = c.get("value")
        v = list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
        w, h = corrupt(img, c.kind, v).size
        assert w == img.width and (h == img.height or c.kind == "trim_bottom" and h < img.height), c.name
    if grid != "standard":
        assert "corner_star" in names
    if grid == "shortcuts":
        assert "trim_bottom" in names


def test_robustness_per_image_files_skip_unreadable_images_and_keep_names_and_labels_aligned(trained, tmp_path):
    from aidetect.robustness import run_grid

    root = make_folder(tmp_path / "rob", 3, size=(48, 48), seed=4, splits=("test",))
    paths = sorted(root.glob("test/*/*"))
    broken = root / "test/FAKE/broken.png"
    broken.write_bytes(b"not an image")
    paths.insert(1, broken)  # second place: a mis-aligned filter would shift every later row
    labels = torch.tensor([int(p.parent.name == "FAKE") for p in paths])  # FAKE = 1, REAL = 0
    names = [str(p.relative_to(root)) for p in paths]
    out = tmp_path / "grid"
    (out / "robustness").mkdir(parents=True)
    (out / "robustness/predictions_stale.csv").write_text("from an older grid")
    model = load_detector(trained["ckpt"])
    grid = [{"name": "jpeg50", "kind": "jpeg", "value": 50}, {"name": "blur2", "kind": "blur", "value": 2}]
    rows = run_grid(model, paths, labels, grid, out, 0.5, names=names)
    assert [r["failed"] for r in rows] == [1, 1, 1]
    files = {p.name for p in (out / "robustness").iterdir()}
    assert files == {"predictions_clean.csv", "predictions_jpeg50.csv", "predictions_blur2.csv"}
    single = {}
    for p, y in zip(paths, labels.tolist()):  # each file's rows must be the images' own scores, one at a time
        if p != broken:
            single[str(p.relative_to(root))] = (float(model.predict_proba([try_open_image(p)[0]])[0]), y)
    got = list(csv.DictReader(open(out / "robustness/predictions_clean.csv")))
    assert [r["path"] for r in got] == [n for n in names if n != str(broken.relative_to(root))]
    for r in got:
        p_one, y = single[r["path"]]
        assert abs(float(r["p_fake"]) - p_one) < 1e-3 and r["true_label"] == ("FAKE" if y else "REAL")
        assert r["label"] == ("FAKE" if float(r["p_fake"]) >= 0.5 else "REAL")
    for bad in ([{"name": "a/b", "kind": "blur", "value": 1}], [{"name": "clean", "kind": "blur", "value": 1}],
                [{"name": "x", "kind": "blur", "value": 1}, {"name": "x", "kind": "jpeg", "value": 50}]):
        with pytest.raises(ConfigError, match="unique name"):
            run_grid(model, paths, labels, bad, out, 0.5, names=names)


def test_eval_robustness_grid_writes_tables_at_the_fixed_threshold(trained, tmp_path):
    root = make_folder(tmp_path / "rob", 5, size=(48, 48), seed=9, splits=("test",))
    cfg = compose_train([f"ckpt_path={trained['ckpt']}", "data=folder", f"data.root={root}",
                         f"data.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false", "logger=none",
                         f"output_dir={tmp_path / 'eval'}", "robustness=standard"], config="eval")
    m = evaluate(cfg)
    names = [r["corruption"] for r in m["robustness"]]
    assert names == ["clean", "jpeg95", "jpeg75", "jpeg50", "webp75", "down2", "down4", "blur1", "blur2",
                     "noise0.02", "noise0.05", "grayscale", "grade"]
    assert m["robustness"][0]["acc_at_threshold"] == pytest.approx(m["test"]["acc_at_threshold"])
    rows = list(csv.DictReader(open(tmp_path / "eval/robustness.csv")))
    assert len(rows) == 13 and (tmp_path / "eval/robustness.png").is_file()
    assert f"{m['threshold']:.4f}" in (tmp_path / "eval/robustness.md").read_text()
    # per image, per corruption, for a per-generator breakdown; the clean grid row re-scores predictions.csv
    clean = {r["path"]: float(r["p_fake"]) for r in csv.DictReader(open(tmp_path / "eval/robustness/predictions_clean.csv"))}
    plain = {r["path"]: float(r["p_fake"]) for r in csv.DictReader(open(tmp_path / "eval/predictions.csv"))}
    assert clean.keys() == plain.keys() and max(abs(clean[k] - plain[k]) for k in clean) < 1e-3
    noisy = {r["path"]: float(r["p_fake"]) for r in csv.DictReader(open(tmp_path / "eval/robustness/predictions_noise0.05.csv"))}
    assert noisy.keys() == plain.keys() and noisy != clean
    # which way accuracy fell: accuracy is the class-weighted mix of detection and (1 - false positives)
    n_fake, n_real = len(list(root.glob("test/FAKE/*"))), len(list(root.glob("test/REAL/*")))
    for r in rows:
        mix = (n_fake * float(r["detection_at_threshold"]) + n_real * (1 - float(r["fpr_at_threshold"]))) / (n_fake + n_real)
        assert mix == pytest.approx(float(r["acc_at_threshold"]), abs=1e-6), r["corruption"]


# --- audit and views ------------------------------------------------------------------------------

def test_audit_flags_a_folder_where_format_gives_the_label_away(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(30):
        # smooth random pictures (4x4 noise upscaled): distinct, and their dHash survives JPEG
        img = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((24, 24), Image.BICUBIC)
        (tmp_path / "biased/REAL").mkdir(parents=True, exist_ok=True)
        (tmp_path / "biased/FAKE").mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / f"biased/REAL/{i}.jpg", quality=90)
        img.save(tmp_path / f"biased/FAKE/{i}.png")  # the same pixels, another format
        (tmp_path / "fair/REAL").mkdir(parents=True, exist_ok=True)
        (tmp_path / "fair/FAKE").mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / f"fair/REAL/{i}.png")
        img.save(tmp_path / f"fair/FAKE/{i}.png")
    r = aidetect("audit", tmp_path / "biased", "--out", tmp_path / "a.json")
    assert r.returncode == 0 and "WARNING" in r.stdout
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["metadata_classifier"]["balanced_accuracy"] >= 0.95
    assert report["classes"]["all/REAL"]["formats"] == "JPEG 100%"
    assert report["near_duplicates"]["across_classes"] == 30  # same picture, both labels
    assert report["exact_duplicates"]["across_classes"] == 0  # different bytes
    r = aidetect("audit", tmp_path / "fair", "--out", tmp_path / "b.json")
    report = json.loads((tmp_path / "b.json").read_text())
    assert "WARNING" not in r.stdout and report["metadata_classifier"]["balanced_accuracy"] < 0.65
    assert report["exact_duplicates"]["across_classes"] == 30


@pytest.mark.slow
def test_views_cli_renders_any_image_with_a_training_view_or_a_checkpoint(trained, every_mode, tmp_path):
    r = aidetect("views", every_mode / "rgba.png", "aug=inverted_saturated", "aug.saturation_factor=8",
                 "--out", tmp_path / "v.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "v.png").height > 2 * 96  # original + view rows, upscaled
    r = aidetect("views", every_mode / "gray.png", "--ckpt", trained["ckpt"], "--out", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    r = aidetect("views", every_mode / "gray.png", "aug=sepia")
    assert r.returncode == 2 and "aug=sepia" in r.stderr


def test_the_default_detector_ships_small_calibrated_and_predicts_without_a_checkpoint(every_mode):
    from aidetect.predict import default_checkpoint

    path = default_checkpoint("cifake")  # the CIFAKE detector, still shipped by name (--ckpt cifake)
    assert path.is_file() and path.stat().st_size <= 2_000_000
    model = load_detector(path)
    assert model.hparams.temperature != 1.0 and model.hparams.threshold != 0.5  # fitted on validation
    r = aidetect("predict", every_mode / "gray.png", every_mode / "rgba.png")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3 and "2 scored" in r.stderr


@pytest.mark.parametrize("pool", ["true", "false"])  # false: training carves val and test out of the flat folder
@pytest.mark.slow
def test_eval_on_the_checkpoints_own_pooled_set_scores_only_what_training_held_out(tmp_path, pool):
    root = make_folder(tmp_path / "pool", 15, splits=("all",))
    for cls in ("REAL", "FAKE"):  # an unsplit folder: REAL/ and FAKE/ at the top
        (root / "all" / cls).rename(root / cls)
    common = ["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}", f"data.pool={pool}",
              "data.name=pool", "data.split_seed=7", "trainer.enable_progress_bar=false", "logger=none"]
    m = train(compose_train(common + ["model=seed_cifake_cnn", "data.image_size=[32,32]", "trainer.max_epochs=1",
                                      f"output_dir={tmp_path / 'run'}"]))
    ckpt = next((tmp_path / "run/checkpoints").glob("best_*.ckpt"))
    held = evaluate(compose_train([f"ckpt_path={ckpt}", *[c for c in common if "split_seed" not in c],
                                   f"output_dir={tmp_path / 'e1'}"], config="eval"))
    assert held["data"]["test"] == m["data"]["test"] == 4 and "held-out" in held["data"]["test_from"]
    assert held["test"]["acc"] == pytest.approx(m["test"]["acc"])
    whole = evaluate(compose_train([f"ckpt_path={ckpt}", *common, "split=whole", f"output_dir={tmp_path / 'e2'}"],
                                   config="eval"))
    assert whole["data"]["test"] == 30


def test_calibrate_any_checkpoint_on_the_data_it_was_trained_with(trained, tmp_path):
    import shutil

    ck = tmp_path / "copy.ckpt"
    shutil.copy(trained["ckpt"], ck)
    r = aidetect("calibrate", ck, "--out", tmp_path / "cal")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    hp = torch.load(ck, weights_only=True)["hyper_parameters"]
    assert hp["threshold"] == pytest.approx(report["calibration"]["threshold"])
    assert report["calibration"]["n_val"] == trained["metrics"]["data"]["val"]  # the same validation split
    assert (tmp_path / "cal/reliability.png").is_file()


@pytest.mark.slow
def test_test_ckpt_last_stores_the_calibration_in_last_ckpt(tmp_path):
    root = make_folder(tmp_path / "ds", 10)
    m = train(compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                             "data.image_size=[32,32]", "model=seed_cifake_cnn", "trainer.max_epochs=1", "test_ckpt=last",
                             "trainer.enable_progress_bar=false", "logger=none", f"output_dir={tmp_path / 'run'}"]))
    hp = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["temperature"] == pytest.approx(m["calibration"]["calibration"]["temperature"])


@pytest.mark.slow
def test_without_a_test_split_the_calibration_still_goes_into_the_best_checkpoint(tmp_path):
    """test=false: the run calibrates the weights users load by default (best_*.ckpt), not last.ckpt."""
    root = make_folder(tmp_path / "ds", 10)
    m = train(compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                             "data.image_size=[32,32]", "model=seed_cifake_cnn", "trainer.max_epochs=2", "test=false",
                             "trainer.enable_progress_bar=false", "logger=none", f"output_dir={tmp_path / 'run'}"]))
    best = next((tmp_path / "run/checkpoints").glob("best_*.ckpt"))
    hp = torch.load(best, weights_only=True)["hyper_parameters"]
    assert m["test"] == {} and m["tested_checkpoint"] == "none"
    assert hp["threshold"] == pytest.approx(m["calibration"]["calibration"]["threshold"])
    assert hp["temperature"] == pytest.approx(m["calibration"]["calibration"]["temperature"])
