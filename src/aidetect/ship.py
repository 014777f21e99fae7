"""Package a trained detector as a shipped one, and record the values the tests hold it to.

    aidetect ship outputs/modern_detector/v1/checkpoints/best_epoch_005.ckpt --name modern-lite0s16 --version 1.0

Writes an inference-only copy (fp16 weights, no optimizer state) that names itself (``detector``:
name, version, training pool) to ``--out`` (default: the package's ``weights/default.ckpt``), and
``tests/golden/<name>.json``: P(FAKE) of that file on up to ``--golden`` validation images of the
training run that are also in ``../shared/data/modern`` (matched by sha256), which
tests/test_shipped.py checks to 1e-4. Validation images only: the split the threshold was fitted on,
never the test split.
"""

import csv
import json
from pathlib import Path

import torch

from aidetect.config import ConfigError
from aidetect.io import atomic_write, torch_save


def slim(ckpt_path: Path, out: Path, detector: dict | None = None, half: bool = True) -> int:
    from aidetect.module import load_detector

    load_detector(ckpt_path)  # refuses anything that would not load
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    meta = dict(ckpt["aidetect"])
    if detector:
        meta["detector"] = detector
    slim = {"hyper_parameters": {**ckpt["hyper_parameters"], "optimizer": None, "scheduler": None},
            "state_dict": state, "aidetect": meta}
    torch_save(slim, out)
    return out.stat().st_size


def golden_rows(model, shared: Path, n: int) -> list[dict]:
    """Validation rows of the run that trained ``model`` whose bytes are in the shared pool."""
    from omegaconf import OmegaConf

    from aidetect.runs import build_datamodule

    cfg = model.run_config
    if not cfg or "data" not in cfg:
        raise ConfigError("the checkpoint carries no run config: cannot tell its validation split")
    dm = build_datamodule(OmegaConf.create(cfg["data"]))
    val = dm.assign(dm.select())["val"]
    with open(shared / "MANIFEST.csv", newline="") as f:
        by_sha = {r["sha256"]: r["path"] for r in csv.DictReader(f)}
    picked = []
    for label in ("FAKE", "REAL"):  # half of each class, in a fixed (sha256) order
        mine = sorted((r for r in val if r["label"] == label and r["sha"] in by_sha), key=lambda r: r["sha"])
        picked += [{"path": by_sha[r["sha"]], "label": label, "sha256": r["sha"]} for r in mine[: n // 2]]
    return picked


def cmd_ship(args) -> int:
    from aidetect.module import load_detector
    from aidetect.predict import default_checkpoint, predict_files

    out = Path(args.out) if args.out else default_checkpoint("default")
    model = load_detector(args.ckpt)
    cfg = model.run_config or {}
    members = (torch.load(args.ckpt, map_location="cpu", weights_only=True)["aidetect"] or {}).get("soup")
    trained_on = (cfg.get("data") or {}).get("root")
    if members:  # a weight average (aidetect soup): every member's pool
        trained_on = " + ".join(str(m.get("trained_on")) for m in members)
    detector = {"name": args.name, "version": args.version, "trained_on": trained_on, "task": cfg.get("task_name")}
    size = slim(Path(args.ckpt), out, detector)
    print(f"wrote {out} ({size / 1e6:.2f} MB) as {args.name} {args.version}")
    shared = Path(args.shared)
    if args.golden and (shared / "MANIFEST.csv").is_file():
        shipped = load_detector(out)
        rows = golden_rows(shipped, shared, args.golden)
        scored = list(predict_files(shipped, [shared / r["path"] for r in rows]))
        for r, s in zip(rows, scored):
            r["p_fake"] = s["p_fake"]
        golden = Path(args.golden_out or Path("tests") / "golden" / f"{args.name}.json")
        atomic_write(golden, json.dumps({"detector": f"{args.name} {args.version}", "weights": str(out.name),
                                         "rows": rows}, indent=1).encode())
        print(f"wrote {golden}: P(FAKE) of {len(rows)} validation images from {shared}")
    return 0
