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
    assert f"| {members[0]} | 4 | 0.5000 | 0.7500 |" in lines
    # member 2: 3 of 4 right; FAKE {0.7, 0.4} against REAL {0.45, 0.1}: 3 of 4 pairs.
    assert f"| {members[1]} | 4 | 0.7500 | 0.7500 |" in lines
    # ensemble: a 0.82, b 0.31, c 0.35, d 0.29: right on a, b and d; FAKE {0.82, 0.35} vs REAL {0.31, 0.29}: all pairs
    assert "| **ensemble of 2** (mean logit) | 4 | **0.7500** | **1.0000** |" in lines
    assert "Wrong in every member: 1 images, so no mean of these members can score above 0.7500; " \
           "wrong in at least one: 2." in text


def test_unlabelled_predict_output_skips_unscored_rows(tmp_path, caplog):
    header = ("path", "p_fake", "label", "threshold", "width", "height", "warning", "skipped")
    one = write(tmp_path / "one.csv", [["x.jpg", "0.8", "FAKE", "0.5", "", "", "", ""],
                                      ["bad.jpg", "", "", "0.5", "", "", "", "cannot identify image"],
                                      ["y.jpg", "0.2", "REAL", "0.5", "", "", "", ""]], header)
    two = write(tmp_path / "two.csv", [["x.jpg", "0.6", "FAKE", "0.5", "", "", "", ""],
                                      ["y.jpg", "0.4", "REAL", "0.5", "", "", "", ""],
                                      ["z.jpg", "0.9", "FAKE", "0.5", "", "", "", ""]], header)
    assert read_predictions(one) == {"x.jpg": (0.8, None), "y.jpg": (0.2, None)}
    paths, probs, ensemble, labels = combine([read_predictions(one), read_predictions(two)])
    assert paths == ["x.jpg", "y.jpg"] and labels is None and probs.shape == (2, 2)
    assert "1 images are not scored by every member" in caplog.text
    out = tmp_path / "ens.csv"
    assert main(["ensemble", str(one), str(two), "--out", str(out)]) == 0
    assert [r["path"] for r in csv.DictReader(open(out))] == ["x.jpg", "y.jpg"]


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
    flipped = write(tmp_path / "flipped.csv", [["a", "REAL", "0.9", "FAKE"], ["b", "REAL", "0.2", "REAL"],
                                              ["c", "FAKE", "0.3", "REAL"], ["d", "REAL", "0.6", "FAKE"]])
    with pytest.raises(ConfigError, match="disagree on some images' true labels"):
        combine([read_predictions(members[0]), read_predictions(flipped)])
    other = write(tmp_path / "other.csv", [["q", "FAKE", "0.9", "FAKE"]])
    with pytest.raises(ConfigError, match="share no image paths"):
        combine([read_predictions(members[0]), read_predictions(other)])
