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

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aidetect.breakdown import breakdown, breakdown_markdown
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


@torch.no_grad()
def features(net, dm, rows, neutral: bool, workers: int = 2) -> np.ndarray:
    ds = _Crops([str(dm.root / r["path"]) for r in rows], dm.crop_size, dm.eval_crops, neutral, dm.neutral_side,
                dm.resize, dm.image_size)
    out = []
    for x in DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=lambda b: b):
        for crops in x:
            f = net.features(crops.float() / 255)
            out.append(f.mean(0).numpy())
    return np.stack(out)


def run(cfg) -> dict:
    from omegaconf import OmegaConf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from aidetect.models import Lite0
    from aidetect.runs import build_datamodule

    probe = cfg.get("probe") or {}
    out = Path(probe.get("out") or f"outputs/probe/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg.seed))
    dm = build_datamodule(cfg.data)
    rows = dm.assign(dm.select())
    net = Lite0(stages=int(probe.get("stages", 5)), pretrained=True).eval()
    t0 = time.perf_counter()
    x_train = features(net, dm, rows["train"], neutral=True)
    y_train = np.array([r["y"] for r in rows["train"]])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=float(probe.get("C", 0.1)), max_iter=5000))
    clf.fit(x_train, y_train)
    tables, scores = {}, {}
    for neutral, title in ((False, "as published"), (True, f"format-neutral copies (short side {dm.neutral_side}, JPEG q90)")):
        x = features(net, dm, rows["test"], neutral=neutral)
        logits = torch.from_numpy(clf.decision_function(x)).float()
        tables[title] = breakdown(rows["test"], logits, threshold=0.5)
        scores["test_neutral" if neutral else "test"] = tables[title]
    atomic_write(out / "breakdown.md", (f"Linear probe on frozen Lite0 features (stages={probe.get('stages', 5)}), "
                                        f"train n={len(y_train)}\n\n" + breakdown_markdown(tables)).encode())
    metrics = {"probe": {"stages": int(probe.get("stages", 5)), "C": float(probe.get("C", 0.1)),
                         "n_train": int(len(y_train)), "seconds": round(time.perf_counter() - t0, 1)},
               "data": {k: v for k, v in dm.counts.items()}, "breakdown": scores,
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
    print(json.dumps({k: m["breakdown"][k]["overall"]["auroc"] for k in m["breakdown"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
