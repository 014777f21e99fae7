"""The frozen-feature baseline: logistic regression on pooled ImageNet EfficientNet-Lite0 features.

    python -m aidetect.probe data=modern                       # or any data=... override of train.py's config
    python -m aidetect.probe data=modern data.leave_out=family:flux probe.stages=7 probe.out=outputs/probe/lofo_flux

As in UnivFD (Ojha et al., CVPR 2023), a linear classifier on a frozen pretrained network's features:
a fine-tuned detector that does not beat it has not learned generator traces. Each image gives the
mean of its evaluation crops' pooled features (the same k x k grid the detectors score); training
images are taken as format-neutral copies (short side 512, JPEG q90), since a probe trained on the
published bytes learns their format; test images are scored both as published and as format-neutral
copies, with the same per-family tables (breakdown.md, metrics.json) as train.py writes.
"""

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aidetect.breakdown import breakdown, breakdown_markdown, heatmap, matrix_markdown
from aidetect.data.crops import CROP_POLICIES, crop_set
from aidetect.data.images import fit_image, format_neutral, open_image
from aidetect.io import atomic_write

log = logging.getLogger(__name__)


class _Crops(Dataset):
    def __init__(self, paths, size, k, neutral, side, policy="random_crop", image_size=None):
        self.paths, self.size, self.k, self.neutral, self.side = paths, size, k, neutral, side
        self.policy, self.image_size = policy, image_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = open_image(self.paths[i], min_side=0)
        if self.neutral:
            img = format_neutral(img, short_side=self.side)
        if self.policy in CROP_POLICIES:
            return torch.from_numpy(crop_set(img, self.size, self.k)[0])
        return torch.from_numpy(np.asarray(fit_image(img, self.image_size, self.policy)).transpose(2, 0, 1).copy())[None]


def _collate(batch):
    return batch


@torch.no_grad()
def features(net, dm, rows, neutral: bool, workers: int = 2, cache: Path | None = None) -> np.ndarray:
    """[len(rows), D] mean crop features; kept in ``cache`` (a .pt file keyed by sha256) across runs,
    so a leave-one-out or cross-generator table costs one pass over the pool."""
    import os

    from aidetect.io import torch_save

    known = torch.load(cache, weights_only=True) if cache is not None and cache.is_file() else {}
    todo = [r for r in rows if r["sha"] not in known]
    if todo:
        ds = _Crops([str(dm.root / r["path"]) for r in todo], dm.crop_size, dm.eval_crops, neutral, dm.neutral_side,
                    dm.resize, dm.image_size)
        got = []
        for i, x in enumerate(DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=_collate)):
            for crops in x:
                got.append(net.features(crops.float() / 255).mean(0))
            if i % 50 == 0:
                log.info("probe features: %d of %d images", len(got), len(todo))
        known.update({r["sha"]: f for r, f in zip(todo, got)})
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch_save(known, cache)
    return torch.stack([known[r["sha"]] for r in rows]).numpy()


def _fit(x, y, C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced")).fit(x, y)


def matrix(dm, rows, feats, C: float, min_train: int = 100, min_test: int = 30) -> dict:
    """Cross-generator AUROC: train on one family's FAKE (+ the REAL train images), test on every family's
    FAKE test images against the REAL test images; plus leave-one-family-out (train on all other families)."""
    from aidetect.breakdown import auroc_ci

    train, test = rows["train"], rows["test"]
    ftr, fte = feats["train"], feats["test"]
    fams_tr = sorted({r["family"] for r in train if r["y"] == 1 and sum(q["family"] == r["family"] for q in train) >= min_train})
    fams_te = sorted({r["family"] for r in test if r["y"] == 1 and sum(q["family"] == r["family"] for q in test) >= min_test})
    y_tr = np.array([r["y"] for r in train])
    real_te = np.array([r["y"] == 0 for r in test])
    out = {"train_families": fams_tr, "test_families": fams_te, "cells": {}, "lofo": {}}

    def score(clf, fam):
        te = np.array([r["family"] == fam for r in test])
        s = clf.decision_function(fte)
        auc, lo, hi = auroc_ci(s[te], s[real_te])
        return {"auroc": auc, "ci": [lo, hi], "n_fake": int(te.sum()), "n_real": int(real_te.sum())}

    for a in fams_tr:
        keep = np.array([r["y"] == 0 or r["family"] == a for r in train])
        clf = _fit(ftr[keep], y_tr[keep], C)
        out["cells"][a] = {b: score(clf, b) for b in fams_te}
    for b in fams_te:  # leave b out: train on every other family (and REAL), test on b
        keep = np.array([r["y"] == 0 or r["family"] != b for r in train])
        clf = _fit(ftr[keep], y_tr[keep], C)
        out["lofo"][b] = score(clf, b)
    return out


def run(cfg) -> dict:
    from omegaconf import OmegaConf

    from aidetect.models import Lite0
    from aidetect.runs import build_datamodule

    probe = cfg.get("probe") or {}
    out = Path(probe.get("out") or f"outputs/probe/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg.seed))
    dm = build_datamodule(cfg.data)
    rows = dm.assign(dm.select())
    stages = int(probe.get("stages", 5))
    net = Lite0(stages=stages, pretrained=True).eval()
    t0 = time.perf_counter()
    key = f"{dm.root.resolve()}|{stages}|{dm.resize}|{dm.crop_size}|{dm.eval_crops}|{dm.image_size}|{dm.neutral_side}"
    cache = dm.data_dir / "modern-cache" / f"probe-features-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    x_train = features(net, dm, rows["train"], neutral=True, cache=Path(f"{cache}-neutral.pt"))
    y_train = np.array([r["y"] for r in rows["train"]])
    C = float(probe.get("C", 0.1))
    clf = _fit(x_train, y_train, C)
    tables, scores, test_feats = {}, {}, {}
    for neutral, title in ((False, "as published"), (True, f"format-neutral copies (short side {dm.neutral_side}, JPEG q90)")):
        x = features(net, dm, rows["test"], neutral=neutral, cache=Path(f"{cache}-{'neutral' if neutral else 'published'}.pt"))
        test_feats[neutral] = x
        logits = torch.from_numpy(clf.decision_function(x)).float()
        tables[title] = breakdown(rows["test"], logits, threshold=0.5)
        scores["test_neutral" if neutral else "test"] = tables[title]
    if probe.get("matrix"):  # cross-generator table and heatmap, on the format-neutral test copies
        m = matrix(dm, rows, {"train": x_train, "test": test_feats[True]}, C,
                   int(probe.get("min_train", 100)), int(probe.get("min_test", 30)))
        atomic_write(out / "matrix.md", matrix_markdown(m).encode())
        heatmap(m, out / "matrix.png", f"linear probe on frozen Lite0 (stages={stages}), format-neutral test copies")
        scores["matrix"] = m
    atomic_write(out / "breakdown.md", (f"Linear probe on frozen Lite0 features (stages={probe.get('stages', 5)}), "
                                        f"train n={len(y_train)}\n\n" + breakdown_markdown(tables)).encode())
    metrics = {"probe": {"stages": int(probe.get("stages", 5)), "C": float(probe.get("C", 0.1)),
                         "n_train": int(len(y_train)), "seconds": round(time.perf_counter() - t0, 1)},
               "data": {k: v for k, v in dm.data_report.items()}, "breakdown": scores,
               "config": OmegaConf.to_container(cfg.data, resolve=True)}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1, default=str).encode())
    log.info("probe: test AUROC %.4f (as published), %.4f (format-neutral); wrote %s",
             scores["test"]["overall"]["auroc"], scores["test_neutral"]["overall"]["auroc"], out)
    return metrics


def main(argv=None) -> int:
    from omegaconf import OmegaConf, open_dict

    from aidetect.config import compose

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = compose("train", [a for a in argv if not a.startswith("probe.")])

    with open_dict(cfg):
        cfg.probe = OmegaConf.from_dotlist([a for a in argv if a.startswith("probe.")]).get("probe", {})
    m = run(cfg)
    print(json.dumps({k: m["breakdown"][k]["overall"]["auroc"] for k in ("test", "test_neutral")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
