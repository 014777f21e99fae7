"""aidetect.operating_point: thresholds from validation REAL scores only, and the caught share of the
left-out families at each budget."""

import csv
import json

import numpy as np

from aidetect.operating_point import main, run_table


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true_label", "p_fake", "label"])
        w.writerows([[p, y, f"{s:.6f}", ""] for p, y, s in rows])


def test_budgets_come_from_validation_real_and_catch_left_out_families(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    val_real = np.linspace(0.0, 0.99, 100)  # budget A puts the threshold near 1 - A
    _csv(run / "val_predictions.csv", [(f"v{i}", "REAL", s) for i, s in enumerate(val_real)] + [("vf", "FAKE", 0.99)])
    # test: family "new" scored 0.5-0.95 uniformly, "old" all 0.99; test REAL all 0.97 (must not move thresholds)
    new = np.linspace(0.5, 0.95, 10)
    _csv(run / "predictions.csv", [(f"n{i}", "FAKE", s) for i, s in enumerate(new)]
         + [(f"o{i}", "FAKE", 0.99) for i in range(5)] + [(f"r{i}", "REAL", 0.97) for i in range(50)])
    (run / "metrics.json").write_text(json.dumps({"calibration": {"calibration": {"threshold": 0.9}}}))
    family_of = {**{f"n{i}": "new" for i in range(10)}, **{f"o{i}": "old" for i in range(5)}}
    tb = run_table(run, family_of, ["new"], budgets=(0.05, 0.3))
    own, a05, a30 = tb["rows"]
    assert own["budget"] == "own" and own["threshold"] == 0.9 and own["caught"]["new"] == 0.2  # 0.9, 0.95
    assert 0.93 < a05["threshold"] < 0.95 and abs(a05["val_fpr"] - 0.05) < 1e-9
    assert 0.68 < a30["threshold"] < 0.70 and a30["caught"]["new"] == 0.6
    assert abs(a30["balanced"] - (1 - 0.3 + 0.6) / 2) < 1e-9
    assert tb["n"] == {"new": 10}
    assert tb["auroc"] == {"new": 0.0}  # every "new" image below every REAL test image: ranked, not thresholded
    pool = tmp_path / "pool"
    pool.mkdir()
    with open(pool / "MANIFEST.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "family"])
        w.writerows(family_of.items())
    assert main([str(run), "--pool", str(pool), "--families", "new", "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "Best: A = 0.40" in text and "**A = 0.40**" in text  # "new" is caught steadily more up to A = 0.4


def test_unseen_real_sources_count_their_false_positives_and_combine_with_unseen_families(tmp_path):
    """--real-runs: the left-out REAL source's test images called FAKE per budget (threshold from validation
    REAL only), the other REAL images apart, AUROC of FAKE against each, and the both-unseen balanced accuracy."""
    from aidetect.operating_point import auroc, real_markdown, real_table

    run = tmp_path / "real"
    run.mkdir()
    _csv(run / "val_predictions.csv", [(f"v{i}", "REAL", s) for i, s in enumerate(np.linspace(0.0, 0.99, 100))])
    phone = np.linspace(0.5, 0.95, 10)  # the unseen kind of photo scores high; other REAL low; FAKE between
    _csv(run / "predictions.csv", [(f"p{i}", "REAL", s) for i, s in enumerate(phone)]
         + [(f"r{i}", "REAL", 0.1) for i in range(4)] + [(f"f{i}", "FAKE", 0.8) for i in range(6)])
    source_of = {**{f"p{i}": "phone" for i in range(10)}, **{f"r{i}": "coco" for i in range(4)}}
    rt = real_table(run, source_of, ["phone"], budgets=(0.3,))
    (row,) = rt["rows"]  # no metrics.json: no "own" row
    assert 0.68 < row["threshold"] < 0.70 and row["fpr_unseen"] == 0.6 and row["fpr_other"] == 0.0
    assert (rt["n_unseen"], rt["n_other"], rt["n_fake"]) == (10, 4, 6)
    assert abs(rt["auroc_unseen"] - 0.65) < 1e-6 and rt["auroc_other"] == 1.0  # 6 phone photos below 0.8, 1 tied
    assert auroc(np.array([0.5]), np.array([0.5])) == 0.5  # ties count half
    fam = real_table(run, source_of, ["phone"], budgets=(0.3,), family_of={f"f{i}": "a" for i in range(6)}, families=["a"])
    assert fam["family_auroc_other"] == {"a": 1.0} and abs(fam["family_auroc_unseen"]["a"] - 0.65) < 1e-6
    assert "(only the generator is new): a 1.000; mean 1.000" in real_markdown([fam], [], ["phone"])
    fake_tables = [{"rows": [{"budget": 0.3, "caught": {"a": 0.8, "b": 0.4}}]}]
    md = real_markdown([rt], fake_tables, ["phone"])
    assert "A=0.30: 0.500" in md  # ((1 - 0.6 + 0.8) / 2 + (1 - 0.6 + 0.4) / 2) / 2
    import pytest

    with pytest.raises(SystemExit, match="no REAL test image comes from phne"):  # a misspelt source
        real_table(run, source_of, ["phne"])
    with pytest.raises(SystemExit):  # runs without the sources they left out: refused
        main([str(run), "--pool", str(tmp_path), "--families", "a", "--real-runs", str(run)])
