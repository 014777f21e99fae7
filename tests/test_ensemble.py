"""`aidetect ensemble`: predictions files combined by their mean logit, scored with true labels."""

import csv
import math

import pytest

from aidetect.cli import main
from aidetect.config import ConfigError
from aidetect.ensemble import combine, read_predictions


def write(path, rows, header=("path", "true_label", "p_fake", "label")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def logit(p):
    return math.log(p / (1 - p))


@pytest.fixture
def members(tmp_path):
    # 4 images; a is FAKE, b REAL, c FAKE, d REAL. Member 1 errs on c and d, member 2 on c only,
    # and member 2 lists its rows in another order: matching is by path.
    one = write(tmp_path / "one.csv", [["a", "FAKE", "0.9", "FAKE"], ["b", "REAL", "0.2", "REAL"],
                                      ["c", "FAKE", "0.3", "REAL"], ["d", "REAL", "0.6", "FAKE"]])
    two = write(tmp_path / "two.csv", [["d", "REAL", "0.1", "REAL"], ["c", "FAKE", "0.4", "REAL"],
                                      ["b", "REAL", "0.45", "REAL"], ["a", "FAKE", "0.7", "FAKE"]])
    return one, two


def test_mean_logit_by_path_and_scores(members, tmp_path, capsys):
    out = tmp_path / "ens.csv"
    assert main(["ensemble", str(members[0]), str(members[1]), "--out", str(out), "--md", str(tmp_path / "t.md")]) == 0
    rows = {r["path"]: r for r in csv.DictReader(open(out))}
    expected = {"a": (0.9, 0.7), "b": (0.2, 0.45), "c": (0.3, 0.4), "d": (0.6, 0.1)}
    for path, (p1, p2) in expected.items():
        mean = 1 / (1 + math.exp(-(logit(p1) + logit(p2)) / 2))
        assert float(rows[path]["p_fake"]) == pytest.approx(mean, abs=1e-6)
        assert rows[path]["label"] == ("FAKE" if mean >= 0.5 else "REAL")
    assert [rows[p]["true_label"] for p in "abcd"] == ["FAKE", "REAL", "FAKE", "REAL"]
    text = capsys.readouterr().out
    assert text.endswith((tmp_path / "t.md").read_text())
    lines = text.splitlines()
    # member 1: 2 of 4 right; AUROC: FAKE scores {0.9, 0.3} against REAL {0.2, 0.6}: 3 of 4 pairs.
    assert lines[1] == "| predictions | images | test acc (FAKE at P(FAKE) >= 0.5) | AUROC |"
    assert f"| {members[0]} | 4 | 0.5000 | 0.7500 |" in lines
    # member 2: 3 of 4 right; FAKE {0.7, 0.4} against REAL {0.45, 0.1}: 3 of 4 pairs.
    assert f"| {members[1]} | 4 | 0.7500 | 0.7500 |" in lines
    # ensemble: a 0.82, b 0.31, c 0.35, d 0.29: right on a, b and d; FAKE {0.82, 0.35} vs REAL {0.31, 0.29}: all pairs
    assert "| **ensemble of 2** (mean logit) | 4 | **0.7500** | **1.0000** |" in lines
    assert "Wrong in every member: 1 images, so no mean of these members' logits can score above 3/4 = 0.7500 " \
           "at P(FAKE) >= 0.5; wrong in at least one: 2." in text
    assert "left out" not in text


def test_unlabelled_predict_output_skips_and_counts_unscored_rows(tmp_path, caplog, capsys):
    header = ("path", "p_fake", "label", "threshold", "width", "height", "warning", "skipped")
    one = write(tmp_path / "one.csv", [["x.jpg", "0.8", "FAKE", "0.5", "", "", "", ""],
                                      ["bad.jpg", "", "", "0.5", "", "", "", "cannot identify image"],
                                      ["y.jpg", "0.2", "REAL", "0.5", "", "", "", ""]], header)
    two = write(tmp_path / "two.csv", [["y.jpg", "0.4", "REAL", "0.5", "", "", "", ""],
                                      ["z.jpg", "0.9", "FAKE", "0.5", "", "", "", ""]], header)
    assert read_predictions(one) == ({"x.jpg": (0.8, None), "y.jpg": (0.2, None)}, 1)
    paths, probs, ensemble, labels, left_out = combine([read_predictions(f)[0] for f in (one, two)])
    assert paths == ["y.jpg"] and labels is None and probs.shape == (2, 1) and left_out == 2  # x and z
    out = tmp_path / "ens.csv"
    assert main(["ensemble", str(one), str(two), "--out", str(out), "--md", str(tmp_path / "t.md")]) == 0
    assert [r["path"] for r in csv.DictReader(open(out))] == ["y.jpg"]
    assert "one.csv: 1 rows without a score" in caplog.text and "2 images are not scored by every member" in caplog.text
    assert "no true labels in the files, so no scores" in capsys.readouterr().out
    assert not (tmp_path / "t.md").exists()


@pytest.mark.parametrize("labelled_first", [True, False])
def test_labels_come_from_whichever_member_has_them(members, tmp_path, capsys, labelled_first):
    header = ("path", "p_fake", "label", "threshold", "width", "height", "warning", "skipped")
    scores = write(tmp_path / "scores.csv", [[p, "0.5", "FAKE", "0.5", "", "", "", ""] for p in "abcd"], header)
    files = [str(members[0]), str(scores)] if labelled_first else [str(scores), str(members[0])]
    assert main(["ensemble", *files]) == 0
    assert "| **ensemble of 2** (mean logit) | 4 |" in capsys.readouterr().out


def test_a_score_of_exactly_one_half_is_fake_everywhere(tmp_path, capsys):
    # 0.3 and 0.7 average to a logit of 0: P(FAKE) 0.5, called FAKE (>= 0.5) in the table and the file
    one = write(tmp_path / "one.csv", [["a", "REAL", "0.3", "REAL"], ["b", "FAKE", "1.000000", "FAKE"],
                                      ["c", "REAL", "0.000000", "REAL"]])
    two = write(tmp_path / "two.csv", [["a", "REAL", "0.7", "FAKE"], ["b", "FAKE", "0.9", "FAKE"],
                                      ["c", "REAL", "0.2", "REAL"]])
    out = tmp_path / "ens.csv"
    assert main(["ensemble", str(one), str(two), "--out", str(out)]) == 0
    rows = {r["path"]: r for r in csv.DictReader(open(out))}
    assert float(rows["a"]["p_fake"]) == 0.5 and rows["a"]["label"] == "FAKE"
    assert 0.99 < float(rows["b"]["p_fake"]) < 1 and 0 < float(rows["c"]["p_fake"]) < 0.01  # finite logits
    text = capsys.readouterr().out
    assert "| **ensemble of 2** (mean logit) | 3 | **0.6667** | **1.0000** |" in text
    assert f"| {two} | 3 | 0.6667 |" in text  # 0.7 on REAL a: wrong


def test_bad_inputs_name_the_file_and_the_fix(members, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["ensemble", str(members[0])])
    assert stop.value.code != 0 and "an ensemble needs at least two predictions files" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="nope.csv: no such predictions file"):
        read_predictions(tmp_path / "nope.csv")
    bad = write(tmp_path / "bad.csv", [["a", "0.5"]], header=("path", "score"))
    with pytest.raises(ConfigError, match="bad.csv: no p_fake column"):
        read_predictions(bad)
    odd = write(tmp_path / "odd.csv", [["a", "fake", "0.5", "FAKE"]])
    with pytest.raises(ConfigError, match="odd.csv: true_label 'fake' for a"):
        read_predictions(odd)
    for value in ("1.5", "-0.1", "nan", "abc"):
        wrong = write(tmp_path / "range.csv", [["a", "FAKE", value, "FAKE"]])
        with pytest.raises(ConfigError, match=f"range.csv: p_fake '{value}' for a is not a probability"):
            read_predictions(wrong)
    twice = write(tmp_path / "twice.csv", [["a", "FAKE", "0.5", "FAKE"], ["a", "FAKE", "0.5", "FAKE"]])
    assert read_predictions(twice)[0] == {"a": (0.5, 1)}  # the same image given twice: one row
    clash = write(tmp_path / "clash.csv", [["a", "FAKE", "0.5", "FAKE"], ["a", "FAKE", "0.6", "FAKE"]])
    with pytest.raises(ConfigError, match="clash.csv: a appears twice with different scores"):
        read_predictions(clash)
    flipped = write(tmp_path / "flipped.csv", [["a", "REAL", "0.9", "FAKE"], ["b", "REAL", "0.2", "REAL"],
                                              ["c", "FAKE", "0.3", "REAL"], ["d", "REAL", "0.6", "FAKE"]])
    with pytest.raises(ConfigError, match="one.csv and .*flipped.csv disagree on the true label of a"):
        combine([read_predictions(members[0])[0], read_predictions(flipped)[0]], [members[0], flipped])
    other = write(tmp_path / "other.csv", [["q", "FAKE", "0.9", "FAKE"]])
    with pytest.raises(ConfigError, match="share no image paths .*other.csv: q"):
        combine([read_predictions(members[0])[0], read_predictions(other)[0]], [members[0], other])
    with pytest.raises(SystemExit):
        main(["ensemble", str(members[0]), str(members[1]), "--out", str(tmp_path / "e.jsonl")])
    assert "name a .csv file" in capsys.readouterr().err


# --- aidetect soup: one detector, the mean of several detectors' weights ---------------------

def _detector_file(path, seed, threshold, width=8, half=False):
    import torch

    from aidetect.module import SCHEMA_VERSION, Detector

    torch.manual_seed(seed)
    m = Detector(net={"_target_": "aidetect.models.SeedCifakeCNN", "width": width, "hidden": 16},
                 input_size=(32, 32), threshold=threshold, temperature=0.7)
    hp = {k: (dict(v) if isinstance(v, dict) else v) for k, v in m.hparams.items()}
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in m.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": state,  # calibrated once: a soup must not inherit it
                "aidetect": {"schema_version": SCHEMA_VERSION, "run_config": {"data": {"root": f"pool{seed}"}},
                             "provenance": {"git_commit": f"member{seed}"},
                             "calibration": {"threshold": threshold, "temperature": 0.7}}}, path)
    return path


def test_a_soup_is_the_mean_of_the_weights_and_must_be_recalibrated(tmp_path, capsys):
    import torch

    from aidetect.module import load_detector

    # b is stored in float16, as a shipped detector is: the mean is taken in float32
    a, b = _detector_file(tmp_path / "a.ckpt", 0, 0.3), _detector_file(tmp_path / "b.ckpt", 1, 0.7, half=True)
    assert main(["soup", str(a), str(b), "--out", str(tmp_path / "s.ckpt")]) == 0
    assert "calibrate" in capsys.readouterr().out
    s = torch.load(tmp_path / "s.ckpt", weights_only=True)
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    for k, v in s["state_dict"].items():
        assert torch.allclose(v, (sa[k].float() + sb[k].float()) / 2), k
        assert v.dtype == sa[k].dtype, k
    assert not torch.allclose(sa["net.0.weight"], sb["net.0.weight"].float())  # two different members
    assert s["hyper_parameters"]["threshold"] == 0.5 and s["hyper_parameters"]["temperature"] == 1.0
    assert [m["trained_on"] for m in s["aidetect"]["soup"]] == ["pool0", "pool1"]
    assert [m["provenance"]["git_commit"] for m in s["aidetect"]["soup"]] == ["member0", "member1"]
    assert "calibration" not in s["aidetect"] and s["aidetect"]["provenance"]["git_commit"] != "member0"
    assert s["aidetect"]["run_config"]["data"]["root"] == "pool0"  # the first member's validation split
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():  # a soup of one detector with itself scores as that detector
        main(["soup", str(a), str(a), "--out", str(tmp_path / "aa.ckpt")])
        assert torch.allclose(load_detector(tmp_path / "aa.ckpt")(x), load_detector(a)(x), atol=1e-6)
        assert not torch.allclose(load_detector(tmp_path / "s.ckpt")(x), load_detector(a)(x))


def test_a_soup_of_different_networks_is_refused_naming_both_files(tmp_path):
    a = _detector_file(tmp_path / "a.ckpt", 0, 0.5)
    wide = _detector_file(tmp_path / "wide.ckpt", 1, 0.5, width=16)
    with pytest.raises(ConfigError, match=r"wide\.ckpt has net=.*a\.ckpt.*same network"):
        from aidetect.soup import soup

        soup([a, wide], tmp_path / "s.ckpt")
    with pytest.raises(ConfigError, match="at least two"):
        soup([a], tmp_path / "s.ckpt")
    with pytest.raises(ConfigError, match="--bn-batches -1"):
        soup([a, a], tmp_path / "s.ckpt", bn_batches=-1)
    assert not (tmp_path / "s.ckpt").exists()


def test_a_soup_can_refit_its_batch_norm_statistics_on_the_first_members_training_data(tmp_path):
    import torch
    from omegaconf import OmegaConf

    from aidetect.module import SCHEMA_VERSION, Detector, load_detector
    from aidetect.runs import build_datamodule
    from conftest import compose_train
    from test_inference import make_folder

    root = make_folder(tmp_path / "ds", 4, size=(32, 32))  # 8 training images: one batch of 8
    cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                         "data.image_size=[32,32]", "data.batch_size=8", "model=small_resnet", "model.net.width=8",
                         "model.net.depths=[1]"])
    run_config = {"data": OmegaConf.to_container(cfg.data, resolve=True)}
    files = []
    elsewhere = {"data": {**run_config["data"], "root": str(tmp_path / "no_such_pool")}}
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = Detector(net=OmegaConf.to_container(cfg.model.net), input_size=(32, 32))
        for mod in m.modules():  # running statistics far from the data's, as after training on another pool
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.fill_(5.0 + seed)
        hp = {k: (dict(v) if isinstance(v, dict) else v) for k, v in m.hparams.items()}
        files.append(tmp_path / f"m{seed}.ckpt")
        torch.save({"hyper_parameters": hp, "state_dict": m.state_dict(),
                    "aidetect": {"schema_version": SCHEMA_VERSION, "run_config": run_config if seed == 0 else elsewhere,
                                 "provenance": None}}, files[-1])
    assert main(["soup", *map(str, files), "--out", str(tmp_path / "plain.ckpt")]) == 0
    assert main(["soup", *map(str, files), "--bn-batches", "1", "--out", str(tmp_path / "bn.ckpt")]) == 0
    plain, bn = (torch.load(tmp_path / n, weights_only=True) for n in ("plain.ckpt", "bn.ckpt"))
    for k, v in plain["state_dict"].items():  # the weights are the same mean; only batch-norm statistics move
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, bn["state_dict"][k]), k
    assert torch.allclose(plain["state_dict"]["net.stem.1.running_mean"], torch.full((8,), 5.5))
    assert bn["aidetect"]["soup_bn_batches"] == 1
    # the first batch norm's running mean is now the mean of what it sees on the training images
    model = load_detector(tmp_path / "bn.ckpt")
    seen = []
    model.net.stem[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].mean((0, 2, 3))))
    dm = build_datamodule(OmegaConf.create(run_config["data"]))
    dm.setup("fit")
    images, _ = next(iter(dm.train_dataloader()))
    assert len(images) == 8
    with torch.no_grad():
        model(images, augment=False)
    assert torch.allclose(model.net.stem[1].running_mean, seen[0], atol=1e-4)
    # without a run config the training data is unknown: a clear error, not a crash
    ck = torch.load(files[0], weights_only=True)
    ck["aidetect"]["run_config"] = None
    torch.save(ck, tmp_path / "anon.ckpt")
    with pytest.raises(ConfigError, match="no run config"):
        from aidetect.soup import soup

        soup([tmp_path / "anon.ckpt", files[1]], tmp_path / "x.ckpt", bn_batches=1)
