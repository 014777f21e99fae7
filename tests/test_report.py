"""Aggregation of sweeps: a real -m sweep into tmp_path, and hand-made sweep folders."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from aidetect.report import aggregate
from conftest import make_kaggle_layout, run_script


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    data = make_kaggle_layout(tmp / "src")
    out = tmp / "multirun"
    r = run_script("train.py", "-m", f"data.archive={data}", f"data.data_dir={tmp / 'data'}", "data.batch_size=16",
                   "trainer.enable_progress_bar=false", "trainer.max_epochs=2", "aug=spec",
                   "aug.spec=none,saturated@2,saturated@8", "seed=0,1", f"hydra.sweep.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def job_metrics(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


@pytest.mark.slow
def test_sweep_writes_table_and_plot(sweep):
    for name in ("results.csv", "results.md", "results.png"):
        assert (sweep / name).is_file() and (sweep / name).stat().st_size > 0
    rows = list(csv.DictReader(open(sweep / "results.csv")))
    assert [(r["view"], r["saturation_factor"]) for r in rows] == [("none", ""), ("saturated", "2.0"),
                                                                   ("saturated", "8.0")]
    assert all(r["n"] == "2" and r["seeds"] == "0 1" for r in rows)


@pytest.mark.slow
def test_table_numbers_come_from_the_jobs(sweep):
    jobs = job_metrics(sweep)
    assert len(jobs) == 6
    rows = {(r["view"], r["saturation_factor"]): r for r in csv.DictReader(open(sweep / "results.csv"))}
    for (view, factor), row in rows.items():
        accs = {j["seed"]: j["test"]["acc"] for j in jobs
                if j["view"]["name"] == view and (view == "none" or j["view"]["saturation_factor"] == float(factor))}
        vals = [accs[0], accs[1]]
        mean = sum(vals) / 2
        assert float(row["test_acc_mean"]) == pytest.approx(mean, abs=1e-6)
        sd = stats.tstd(vals)
        assert float(row["test_acc_std"]) == pytest.approx(sd, abs=1e-6)
        half = stats.t.ppf(0.975, 1) * sd / math.sqrt(2)
        assert float(row["test_acc_ci_high"]) == pytest.approx(min(1.0, mean + half), abs=1e-6)
        if view != "none":
            base = {j["seed"]: j["test"]["acc"] for j in jobs if j["view"]["name"] == "none"}
            diff = sum(accs[s] - base[s] for s in (0, 1)) / 2
            assert float(row["acc_diff_vs_none"]) == pytest.approx(diff, abs=1e-6)
    md = (sweep / "results.md").read_text()
    assert "Epoch 1 Val Accuracy" in md and "Epoch 2 Val Accuracy" in md and "| saturated | saturation_factor=8 |" in md


@pytest.mark.slow
def test_eval_sweep_over_checkpoints_is_aggregated_by_view_and_seed(sweep, tmp_path):
    ckpts = sorted(str(p) for p in sweep.glob("*/checkpoints/last.ckpt"))
    r = run_script("eval.py", "-m", f"ckpt_path={','.join(ckpts)}", f"data.archive={sweep.parent / 'src'}",
                   f"data.data_dir={tmp_path / 'data'}", "data.dedup=false", "trainer.enable_progress_bar=false",
                   f"hydra.sweep.dir={tmp_path / 'eval'}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "eval/results.csv")))
    assert [(x["view"], x["n"], x["seeds"]) for x in rows] == [("none", "2", "0 1"), ("saturated", "2", "0 1"),
                                                                ("saturated", "2", "0 1")]


def fake_job(sweep: Path, num: int, seed: int, view: str, factor: float, acc: float | None, extra=()):
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    overrides = [f"aug.spec={view}@{factor}", f"seed={seed}", *extra]
    (d / ".hydra/overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra/config.yaml").write_text(yaml.safe_dump({"seed": seed, "aug": {"name": "${x}"}}))
    if acc is not None:
        (d / "metrics.json").write_text(json.dumps({
            "seed": seed, "view": {"name": view, "saturation_factor": factor},
            "test": {"acc": acc, "auroc": acc, "f1": acc}, "val_acc_per_epoch": [acc - 0.1, acc]}))


def test_paired_comparison_and_failed_jobs_are_listed(tmp_path):
    base = [0.90, 0.92, 0.94]
    view = [0.80, 0.83, 0.83]
    n = 0
    for s in range(3):
        fake_job(tmp_path, n, s, "none", 1, base[s]); n += 1
        fake_job(tmp_path, n, s, "inverted_saturated", 500, view[s]); n += 1
    fake_job(tmp_path, n, 3, "inverted_saturated", 500, None)  # crashed or still running
    result = aggregate(tmp_path)
    row = next(r for r in result["rows"] if r["view"] == "inverted_saturated")
    t = stats.ttest_rel(view, base)
    assert row["vs_baseline"]["p"] == pytest.approx(t.pvalue)
    assert row["vs_baseline"]["diff"] == pytest.approx(sum(v - b for v, b in zip(view, base)) / 3)
    assert row["acc"]["n"] == 3
    diffs = [v - b for v, b in zip(view, base)]  # sd 0.01: t(n-1) * 0.01 / sqrt(n) <= 0.05 from n = 3 on
    assert row["vs_baseline"]["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / 3 ** 0.5)
    assert row["vs_baseline"]["seeds_needed"] == 3
    assert len(result["failed"]) == 1 and result["failed"][0]["dir"] == "6"
    assert "Failed or unfinished jobs (1)" in (tmp_path / "results.md").read_text()


def test_per_content_auroc_is_paired_with_the_baseline_by_seed(tmp_path):
    """Manifest runs carry a per-content breakdown: the table gives each view's mean per content (as
    published and format-neutral) and its paired difference with none over the seeds both have."""
    aurocs = {"none": {"photo": [0.90, 0.92, 0.95], "art": [0.80, 0.82, 0.84]},
              "inverted": {"photo": [0.91, 0.94, 0.96], "art": [0.70, 0.71, 0.75]}}
    n = 0
    for view, by in aurocs.items():
        for s in ((2, 0, 1) if view == "none" else range(3)):  # pairing is by seed, not by position
            fake_job(tmp_path, n, s, view, 1, 0.9)
            m = json.loads((tmp_path / str(n) / "metrics.json").read_text())
            table = {"overall": {"auroc": 0.5 + s / 10}, "family": {"flux": {"auroc": 0.9, "n_fake": 9}}, "content": {c: {"auroc": v[s]} for c, v in by.items()}}
            m["breakdown"] = {"test": table, "test_neutral": {**table, "content": {"photo": {"auroc": 0.6}},
                                                              "family": {"flux": {"auroc": 0.9, "n_fake": 9},
                                                                         "sdxl": {"auroc": 0.7 + s / 100, "n_fake": 9}}}}
            (tmp_path / str(n) / "metrics.json").write_text(json.dumps(m))
            n += 1
    result = aggregate(tmp_path)
    inv = next(r for r in result["rows"] if r["view"] == "inverted")["per_content"]
    assert inv["test"]["art"]["mean"] == pytest.approx(sum(aurocs["inverted"]["art"]) / 3)
    diffs = [a - b for a, b in zip(aurocs["inverted"]["art"], aurocs["none"]["art"])]
    assert inv["test"]["art"]["vs_baseline"]["diff"] == pytest.approx(sum(diffs) / 3)
    assert inv["test"]["art"]["vs_baseline"]["p"] == pytest.approx(
        stats.ttest_rel(aurocs["inverted"]["art"], aurocs["none"]["art"]).pvalue)
    assert inv["test"]["all"]["mean"] == pytest.approx(0.6) and set(inv["test_neutral"]) == {"all", "photo"}
    assert inv["test_neutral"]["photo"]["vs_baseline"]["diff"] == pytest.approx(0.0)
    assert next(r for r in result["rows"] if r["view"] == "none")["per_content"]["test"]["photo"]["vs_baseline"] is None
    md = (tmp_path / "results.md").read_text()
    assert "| view | all | art | photo |" in md and f"{sum(diffs) / 3:+.4f}" in md
    assert "format-neutral copies" in md
    assert "per family, as published" not in md  # one family: the same as "all"
    fam = next(r for r in result["rows"] if r["view"] == "inverted")["per_family"]
    assert set(fam) == {"test_neutral"} and fam["test_neutral"]["sdxl"]["mean"] == pytest.approx(0.71)
    assert "per family, format-neutral copies" in md


def test_seeds_needed_for_a_half_width():
    from aidetect.report import seeds_needed
    for sd in (0.01, 0.05, 0.08, 0.2):
        n = seeds_needed(sd)
        assert stats.t.ppf(0.975, n - 1) * sd / n ** 0.5 <= 0.05 < stats.t.ppf(0.975, n - 2) * sd / (n - 1) ** 0.5
    assert seeds_needed(0.0) == 2 and seeds_needed(float("nan")) is None and seeds_needed(math.inf) is None
    assert seeds_needed(10.0) is None  # beyond the cap: no estimate rather than the cap itself


@pytest.mark.slow
def test_standalone_command(tmp_path):
    for s in range(2):
        fake_job(tmp_path, s, s, "none", 1, 0.5 + s / 10)
    r = subprocess.run([sys.executable, "-m", "aidetect.cli", "aggregate", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| none |" in r.stdout and (tmp_path / "results.csv").is_file()


def test_views_figure(tmp_path, kaggle_dir):
    from PIL import Image
    out = tmp_path / "views.png"
    r = subprocess.run([sys.executable, "-m", "aidetect.cli", "views", str(kaggle_dir / "test"), "--out", str(out),
                        "--views", "none", "inverted_saturated@500", "stacked", "-n", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:  # rows: RGB, none, inverted_saturated, stacked (2 panels); 32 px upscaled 3x
        w, h = im.size
        assert h == 18 + 5 * (96 + 2) + 2 and w == 150 + 6 * (96 + 2) + 2
        px = np.asarray(im.convert("RGB"))
    tile = px[18 + 2: 18 + 2 + 96, 150 + 2: 150 + 2 + 96]  # the first REAL image, upscaled by repetition
    assert (tile[0::3, 0::3] == tile[1::3, 1::3]).all()


def test_rows_key_on_whatever_settings_a_view_has(tmp_path):
    """No test on view names: a view with other settings gets its own columns, and views
    that take no factor get none (metrics.json of schema 1 records only real settings)."""
    def job(num, seed, view, acc):
        d = tmp_path / str(num)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra/overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        (d / ".hydra/config.yaml").write_text(yaml.safe_dump({"seed": seed}))
        (d / "metrics.json").write_text(json.dumps({"schema_version": 1, "seed": seed, "view": view,
                                                    "test": {"acc": acc, "auroc": acc, "f1": acc}}))
    n = 0
    for s in range(2):
        for view, acc in (({"name": "none"}, 0.9), ({"name": "wavelet", "level": 2, "basis": "haar"}, 0.8 + s / 100),
                          ({"name": "wavelet", "level": 3, "basis": "haar"}, 0.7)):
            job(n, s, view, acc)
            n += 1
    result = aggregate(tmp_path)
    assert result["view_settings"] == ["basis", "level"]
    assert [(r["view"], r["level"]) for r in result["rows"]] == [("none", None), ("wavelet", 2), ("wavelet", 3)]
    assert result["rows"][1]["vs_baseline"]["diff"] == pytest.approx(-0.095)
    header = (tmp_path / "results.md").read_text().splitlines()[0]
    assert "| view | settings |" in header and "saturation" not in header
    assert "| wavelet | basis=haar, level=3 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 0


def test_holm_adjustment_matches_the_textbook_example():
    from aidetect.report import holm
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m=4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    out = holm([0.5, float("nan"), 0.001])
    assert out[0] == pytest.approx(0.5) and out[1] != out[1] and out[2] == pytest.approx(0.002)


def test_eval_results_without_epochs_get_no_empty_epoch_table(tmp_path):
    """eval.py's metrics carry no per-epoch curve: the markdown must not print a header-only table."""
    sweep = tmp_path / "sweep"
    for num, (seed, acc) in enumerate([(0, 0.9), (1, 0.92)]):
        fake_job(sweep, num, seed, "none", 1, acc)
        m = json.loads((sweep / str(num) / "metrics.json").read_text())
        del m["val_acc_per_epoch"]
        (sweep / str(num) / "metrics.json").write_text(json.dumps(m))
    aggregate(sweep)
    md = (sweep / "results.md").read_text()
    assert "| none |" in md and "Validation accuracy per epoch" not in md


def test_untested_jobs_are_listed_and_epochs_without_validation_stay_blank(tmp_path):
    """A job trained with test=false has metrics.json but nothing to compare: listed, not a KeyError.
    An epoch that did not validate (check_val_every_n_epoch > 1) is null in its curve, not a crash."""
    sweep = tmp_path / "sweep"
    for num, (seed, acc) in enumerate([(0, 0.9), (1, 0.92)]):
        fake_job(sweep, num, seed, "none", 1, acc)
        m = json.loads((sweep / str(num) / "metrics.json").read_text())
        m["val_acc_per_epoch"] = [None, acc]
        (sweep / str(num) / "metrics.json").write_text(json.dumps(m))
    fake_job(sweep, 2, 2, "none", 1, 0.5)
    m = json.loads((sweep / "2/metrics.json").read_text())
    m["test"] = {}
    (sweep / "2/metrics.json").write_text(json.dumps(m))
    result = aggregate(sweep)
    assert [r["seeds"] for r in result["rows"]] == [[0, 1]]
    assert result["rows"][0]["val_acc_per_epoch"] == [None, pytest.approx(0.91)]
    assert result["failed"] == [{"dir": "2", "overrides": {"aug.spec": "none@1", "seed": "2"},
                                 "reason": "no test metrics (test=false)"}]
    md = (sweep / "results.md").read_text()
    assert "| none |  | 0.9100 |" in md and "(no test metrics (test=false))" in md


@pytest.mark.slow
def test_ensemble_of_two_runs_reads_their_predictions(sweep, tmp_path, capsys):
    from aidetect.cli import main

    runs = {j["seed"]: p.parent for p in sorted(sweep.glob("*/metrics.json"))
            if (j := json.loads(p.read_text()))["view"]["name"] == "none"}
    files = [str(runs[s] / "predictions.csv") for s in (0, 1)]
    out = tmp_path / "ensemble.csv"
    assert main(["ensemble", *files, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for seed, name in zip((0, 1), files):
        test = json.loads((runs[seed] / "metrics.json").read_text())["test"]
        row = next(line for line in lines if line.startswith(f"| {name} |")).split("|")
        assert int(row[2]) == test["n"]
        assert float(row[3]) == pytest.approx(test["acc_at_0.5"], abs=6e-5)
        assert float(row[4]) == pytest.approx(test["auroc"], abs=2e-3)  # calibrated, 6-decimal P(FAKE): ties move it
    written = list(csv.DictReader(open(out)))
    assert len(written) == test["n"]
    # the ensemble row is the written mean-logit scores, scored against the files' labels
    import torch
    from torchmetrics.functional.classification import binary_auroc

    p = torch.tensor([float(r["p_fake"]) for r in written])
    y = torch.tensor([int(r["true_label"] == "FAKE") for r in written])
    acc, auc = float(((p >= 0.5).long() == y).float().mean()), float(binary_auroc(p, y))
    assert f"| **ensemble of 2** (mean logit) | {test['n']} | **{acc:.4f}** | **{auc:.4f}** |" in lines


def test_baseline_named_by_overrides_pairs_every_model_with_it(tmp_path, capsys):
    """`--baseline model=a,model.net.pretrained=true`: rows that differ in the model (not the view) are
    compared with that row, paired by seed; a key that does not vary is refused with the valid keys."""
    accs = {("a", "true"): [0.90, 0.92, 0.94], ("a", "false"): [0.80, 0.83, 0.83], ("cnn", None): [0.70, 0.75, 0.71]}
    n = 0
    for (model, pre), vals in accs.items():
        for s, acc in enumerate(vals):
            extra = [f"model={model}"] + ([f"model.net.pretrained={pre.title()}"] if pre else [])  # as Hydra writes it
            fake_job(tmp_path, n, s, "none", 1, acc, extra); n += 1
    result = aggregate(tmp_path, "model=a,model.net.pretrained=true")
    rows = {(r["model"], r["model.net.pretrained"]): r for r in result["rows"]}
    assert rows[("a", "True")]["vs_baseline"] is None
    for key, row in ((("a", "false"), rows[("a", "False")]), (("cnn", None), rows[("cnn", None)])):
        t = stats.ttest_rel(accs[key], accs[("a", "true")])
        assert row["vs_baseline"]["p"] == pytest.approx(t.pvalue)
        assert row["vs_baseline"]["diff"] == pytest.approx(
            sum(a - b for a, b in zip(accs[key], accs[("a", "true")])) / 3)
    md = (tmp_path / "results.md").read_text()
    assert "acc − model=a,model.net.pretrained=true" in md
    assert "| view | model | model.net.pretrained | Epoch 1 Val Accuracy" in md and "| none | cnn | None | 0.6200 |" in md  # mean of acc - 0.1
    from aidetect.cli import main

    with pytest.raises(SystemExit) as e:
        main(["aggregate", str(tmp_path), "--baseline", "data.crop_size=128"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "data.crop_size does not vary" in err and "model.net.pretrained" in err
    for bad, says in (("model=b", "the sweep has model=a, cnn"), ("model=cnn,model.net.pretrained=true", "all of these"),
                      ("model=a,pretrained", "key=value pairs")):
        with pytest.raises(SystemExit):
            main(["aggregate", str(tmp_path), "--baseline", bad])
        assert says in capsys.readouterr().err, bad
