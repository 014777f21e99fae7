"""Golden values: per-epoch validation accuracies that a refactor must not move.

    python benchmarks/golden_values.py --slice            # real CIFAKE slice, ~1 min
    python benchmarks/golden_values.py --full             # full CIFAKE, seed 0, 2 x 5 epochs, ~12 min

Runs `train.py` as a user would (a subprocess, the command line below) and writes the
per-epoch `val/acc` of each run into tests/golden/cifake.json. The slice values are
checked in CI by tests/test_golden.py; the full-data values were recorded on main before
the architecture change and re-run after it (README, "Reproducibility").
"""

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifake.zip"
GOLDEN = ROOT / "tests" / "golden" / "cifake.json"
SLICE = {"train/REAL/": 600, "train/FAKE/": 600, "test/REAL/": 150, "test/FAKE/": 150}
COMMON = ["trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "logger=none"]
RUNS = {  # name -> overrides (besides data location)
    "slice_none": ["aug=none", "seed=42", "data.batch_size=16", "trainer.max_epochs=4"],
    "slice_inverted_saturated_500": ["aug=inverted_saturated", "aug.saturation_factor=500", "seed=42",
                                     "data.batch_size=16", "trainer.max_epochs=4"],
    "full_none": ["aug=none", "seed=0", "trainer.max_epochs=5"],
    "full_inverted_saturated_500": ["aug=inverted_saturated", "aug.saturation_factor=500", "seed=0",
                                    "trainer.max_epochs=5"],
}


def extract_slice(dest: Path) -> Path:
    """The first N files of each class folder, in the archive's own order."""
    with zipfile.ZipFile(ARCHIVE) as zf:
        names = [n for n in zf.namelist() if n.endswith(".jpg")]
        for folder, n in SLICE.items():
            for name in [m for m in names if m.startswith(folder)][:n]:
                zf.extract(name, dest)
    return dest


def run(name: str, archive: Path, data_dir: Path, out: Path) -> list[float]:
    cmd = [sys.executable, str(ROOT / "train.py"), f"data.archive={archive}", f"data.data_dir={data_dir}",
           *RUNS[name], *COMMON, f"hydra.run.dir={out / name}"]
    print("$", " ".join(cmd[1:]), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    metrics = json.loads((out / name / "metrics.json").read_text())
    return [round(a, 6) for a in metrics["val_acc_per_epoch"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slice", action="store_true")
    p.add_argument("--full", action="store_true")
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="where the full CIFAKE cache lives")
    p.add_argument("--out", default=None, help="write here instead of tests/golden/cifake.json")
    args = p.parse_args()
    target = Path(args.out) if args.out else GOLDEN
    golden = json.loads(target.read_text()) if target.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.slice:
            src = extract_slice(tmp / "slice")
            for name in ("slice_none", "slice_inverted_saturated_500"):
                golden[name] = run(name, src, tmp / "slice_data", tmp / "runs")
                print(name, golden[name], flush=True)
        if args.full:
            for name in ("full_none", "full_inverted_saturated_500"):
                golden[name] = run(name, ARCHIVE, Path(args.data_dir), tmp / "runs")
                print(name, golden[name], flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(golden, indent=2) + "\n")
    print("wrote", target)


if __name__ == "__main__":
    main()
