"""The self-describing checkpoint and the one inference path; eval.py on any folder."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.config import ConfigError
from aidetect.evaluate import evaluate
from aidetect.module import load_detector
from aidetect.train import build_datamodule, train
from conftest import compose_train, make_image


def make_folder(root, n, size=(60, 80), seed=0, splits=("train", "val", "test")):
    rng = np.random.default_rng(seed)
    for split in splits:
        for cls, label in (("REAL", 0), ("FAKE", 1)):
            for i in range(n):
                make_image(root / split / cls / f"{split}_{cls}_{i}.png", label, rng, size)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seed CIFAKE CNN trained 2 epochs at 48x64 (center-cropped from 60x80 PNGs)."""
    tmp = tmp_path_factory.mktemp("trained")
    root = make_folder(tmp / "ds", 12)
    cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp / 'data'}", "data.image_size=[48,64]",
                         "model=seed_cifake_cnn", "aug=inverted_saturated", "aug.saturation_factor=3",
                         "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none",
                         f"output_dir={tmp / 'run'}"])
    metrics = train(cfg)
    return {"cfg": cfg, "root": root, "metrics": metrics, "ckpt": tmp / "run/checkpoints/last.ckpt", "tmp": tmp}


def test_checkpoint_is_plain_and_self_describing(trained):
    ck = torch.load(trained["ckpt"], weights_only=True)
    hp = ck["hyper_parameters"]
    assert hp["input_size"] == [48, 64] and hp["resize"] == "center_crop"
    assert hp["view"] == {"name": "inverted_saturated", "saturation_factor": 3.0}
    assert hp["labels"] == {"REAL": 0, "FAKE": 1}
    assert hp["threshold"] == 0.5 and hp["temperature"] == 1.0
    assert ck["aidetect"]["schema_version"] == 1 and "torch" in ck["aidetect"]["provenance"]["packages"]


def test_scores_pil_images_and_tensors_of_other_sizes_and_modes_like_trainer_test(trained):
    """No Hydra config: the checkpoint alone. The test split's original files (60x80 PNGs)
    scored as PIL images in several modes and as uint8 tensors give the probabilities
    Lightning computes on the cached 48x64 test batches, and the same accuracy."""
    model = load_detector(trained["ckpt"])
    dm = build_datamodule(trained["cfg"].data)
    dm.setup("fit")
    test = dm.splits["test"]
    import lightning as L
    trainer = L.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    reference = torch.cat(trainer.predict(model, dataloaders=dm.test_dataloader()))
    acc = trainer.test(model, dataloaders=dm.test_dataloader(), verbose=False)[0]["test/acc"]

    files = [trained["root"] / n for n in test.names]
    rgb = [Image.open(f) for f in files]
    assert rgb[0].size == (80, 60)  # not the model's 64x48
    for images in (rgb,
                   [im.convert("RGBA") for im in rgb],  # opaque alpha: composited, same pixels
                   [im.convert("CMYK") for im in rgb],  # lossless round trip in Pillow
                   [torch.from_numpy(np.asarray(im)).permute(2, 0, 1).contiguous() for im in rgb]):
        p = model.predict_proba(images)
        torch.testing.assert_close(p, reference, atol=1e-6, rtol=0)
    assert ((p > 0.5).long() == test.labels).float().mean().item() == pytest.approx(acc)
    # The cached uint8 batch itself, at the input size, goes straight through.
    torch.testing.assert_close(model.predict_proba(test.images), reference, atol=1e-6, rtol=0)


def test_grayscale_and_palette_images_are_converted_not_refused(trained):
    model = load_detector(trained["ckpt"])
    im = Image.open(next((trained["root"] / "test/FAKE").iterdir()))
    gray = im.convert("L")
    p_gray = model.predict_proba([gray])
    torch.testing.assert_close(p_gray, model.predict_proba([gray.convert("RGB")]))
    pal = im.convert("P")
    torch.testing.assert_close(model.predict_proba([pal]), model.predict_proba([pal.convert("RGB")]))
    with pytest.raises(ValueError, match="uint8"):
        model.predict_proba([torch.rand(3, 10, 10)])
    g = torch.from_numpy(np.asarray(gray.resize((64, 48))))[None, None]  # a [1, 1, H, W] batch at the input size
    torch.testing.assert_close(model.predict_proba(g), model.predict_proba([gray.resize((64, 48))]))


def test_a_checkpoint_cannot_name_code_to_run(trained, tmp_path):
    ck = torch.load(trained["ckpt"], weights_only=True)
    ck["hyper_parameters"]["net"]["_target_"] = "os.system"
    bad = tmp_path / "bad.ckpt"
    torch.save(ck, bad)
    with pytest.raises(ConfigError, match="not a network"):
        load_detector(bad)
    with pytest.raises(ConfigError, match="is not a file"):
        load_detector(tmp_path / "missing.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(trained["ckpt"].read_bytes()[:1000])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_detector(cut)


def eval_cfg(trained, tmp_path, root, *extra):
    return compose_train([f"ckpt_path={trained['ckpt']}", "data=folder", f"data.root={root}",
                          f"data.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false", "logger=none",
                          f"output_dir={tmp_path / 'eval'}", *extra], config="eval")


def test_eval_scores_a_test_only_folder_whole(trained, tmp_path):
    root = make_folder(tmp_path / "only_test", 5, size=(70, 70), seed=3, splits=("test",))
    m = evaluate(eval_cfg(trained, tmp_path, root))
    assert m["data"]["test"] == 10 and m["data"]["test_from"] == "test/ folder"
    assert m["data"]["image_size"] == [48, 64]  # the checkpoint's size and policy, not the folder's
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["data"]["test"] == 10


def test_eval_scores_a_flat_folder_whole_and_lists_skipped_files(trained, tmp_path):
    flat = tmp_path / "flat"
    for split in ("train", "val", "test"):  # every image of the training folder, no split folders
        src = make_folder(tmp_path / "src", 3, seed=4, splits=(split,)) / split
        for cls in ("REAL", "FAKE"):
            (flat / cls).mkdir(parents=True, exist_ok=True)
            for f in (src / cls).iterdir():
                shutil.copy(f, flat / cls / f.name)
    (flat / "FAKE/broken.png").write_bytes(b"not an image")
    m = evaluate(eval_cfg(trained, tmp_path, flat))
    assert m["data"]["test"] == 18 and m["data"]["skipped_unreadable"] == 1
    assert "REAL/ and FAKE/" in m["data"]["test_from"]
    skipped = (tmp_path / "eval/skipped.csv").read_text().splitlines()
    assert len(skipped) == 2 and "broken.png" in skipped[1]
    with pytest.raises(ConfigError, match="takes exactly \\[48, 64\\]"):  # a fixed-size network
        evaluate(eval_cfg(trained, tmp_path, flat, "data.image_size=[32,32]"))


def test_eval_flip_tta_scores_the_mean_logit_of_each_image_and_its_mirror(trained, tmp_path):
    root = make_folder(tmp_path / "only_test", 6, size=(70, 70), seed=5, splits=("test",))
    plain = evaluate(eval_cfg(trained, tmp_path / "plain", root))
    m = evaluate(eval_cfg(trained, tmp_path / "tta", root, "tta=flip"))
    assert plain["tta"] == "none" and m["tta"] == "flip"
    model = load_detector(trained["ckpt"])
    assert "tta" not in torch.load(trained["ckpt"], weights_only=True)["hyper_parameters"]  # eval-time only
    rows = (tmp_path / "tta/eval/predictions.csv").read_text().splitlines()[1:]
    names = [r.split(",")[0] for r in rows]
    got = torch.tensor([float(r.split(",")[2]) for r in rows])  # path,true_label,p_fake,label
    x = model.prepare([Image.open(root / n) for n in names])
    with torch.no_grad():  # the view (inverted_saturated) sees the mirrored image, then the two logits are averaged
        want = model.probability((model(x) + model(x.flip(-1))) / 2)
        alone = model.probability(model(x))
    assert torch.allclose(got, want, atol=1e-5)  # 6 decimals in the file
    assert (got - alone).abs().max() > 5e-5  # not mirror-symmetric images: TTA moved the (barely trained) scores
    with pytest.raises(ConfigError, match="tta='rotate'; valid: none, flip"):
        evaluate(eval_cfg(trained, tmp_path / "bad", root, "tta=rotate"))


def test_flip_tta_mirrors_the_image_before_the_view_and_averages_logits():
    """The FFT view's log-magnitude does not commute with a mirror (the mirrored spectrum is shifted
    by one bin), so mirroring the view's output instead of the image would give other logits; with
    logits scaled well away from 0, averaging probabilities instead of logits would too."""
    from aidetect.module import Detector
    from aidetect.views import to_float

    torch.manual_seed(0)
    det = Detector(net={"_target_": "aidetect.models.SeedCifakeCNN"}, view={"name": "fft"}, input_size=[32, 32]).eval()
    with torch.no_grad():
        last = [m for m in det.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
        last.weight *= 3000
        last.bias -= det(x).mean()  # centred, spread over several units
        plain, mirrored = det(x), det(x.flip(-1))
        view_then_flip = det.net(det.view(to_float(x)).flip(-1).contiguous(memory_format=det.memory_format)).squeeze(1)
        flip = Detector(net={"_target_": "aidetect.models.SeedCifakeCNN"}, view={"name": "fft"}, input_size=[32, 32],
                        tta="flip").eval()
        flip.load_state_dict(det.state_dict())
        got = flip(x)
    assert plain.std() > 0.5 and (mirrored - plain).abs().max() > 1
    assert torch.allclose(got, (plain + mirrored) / 2, atol=1e-4)
    assert (view_then_flip - mirrored).abs().max() > 0.1  # so the order of mirror and view is tested
    assert (got - torch.logit((plain.sigmoid() + mirrored.sigmoid()) / 2)).abs().max() > 0.05
