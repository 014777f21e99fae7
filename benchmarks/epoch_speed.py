"""Epoch speed against the model's own limit, on this machine.

    python benchmarks/epoch_speed.py --cache data/cifake/cache/raw-train-<key>.pt   # the CIFAKE train split
    python benchmarks/epoch_speed.py --train 8000 --val 2000      # synthetic data, quicker

"Limit" is the smallest possible epoch: a bare PyTorch loop of forward + backward + Adam
over uint8 tensors already in memory (same model, view and batch size), plus the
validation forward passes; measured with the plain NCHW layout the original used
("limit_nchw") and with the channels_last layout this project trains in ("limit"). "Framework" is one real epoch through train.py's code path
(Lightning, torchmetrics, logging, checkpointing), timed by the same EpochStats callback
that writes metrics.json. The ratio is the framework's overhead.
"""

import argparse
import json
import tempfile
import time

from pathlib import Path

import torch
import yaml

from aidetect.callbacks import EpochStats
from aidetect.data.folder import FolderDataModule, InMemoryImages
from aidetect.module import Detector

ROOT = Path(__file__).resolve().parents[1]


def make_model(model: str, view: str, factor: float, channels_last=True) -> Detector:
    cfg = yaml.safe_load((ROOT / "configs/model" / f"{model}.yaml").read_text())
    spec = {"name": view, **({"saturation_factor": factor} if "saturat" in view else {})}
    return Detector(net=cfg["net"], view=spec, optimizer=cfg.get("optimizer"), channels_last=channels_last)


def bare_epoch(model: Detector, train: InMemoryImages, val: InMemoryImages, bs: int) -> float:
    """The model's own limit; the input layout follows the model's (channels_last or not)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()
    model.train()
    for idx in torch.randperm(len(train)).split(bs):
        x, y = train[idx]
        loss = loss_fn(model(x), y.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for idx in torch.arange(len(val)).split(bs):
            model(val[idx][0])
    return time.perf_counter() - t0


class Fixed(FolderDataModule):
    """The framework's data module over tensors already in memory."""

    def __init__(self, splits, **kw):
        super().__init__(**kw)
        self.splits = splits

    def _check_root(self, root, hint):
        pass


def framework_epoch(view, factor, splits, bs, arch) -> float:
    import lightning as L
    stats = EpochStats()
    with tempfile.TemporaryDirectory() as d:
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=L.pytorch.loggers.TensorBoardLogger(d),
                            callbacks=[stats], enable_progress_bar=False, num_sanity_val_steps=0,
                            enable_model_summary=False, default_root_dir=d, log_every_n_steps=50)
        trainer.fit(make_model(arch, view, factor), datamodule=Fixed(splits, batch_size=bs))
    return stats.epochs[0]["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", help="a CIFAKE cache file (train split is used)")
    p.add_argument("--train", type=int, default=80000)
    p.add_argument("--val", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--view", default="inverted_saturated")
    p.add_argument("--factor", type=float, default=500)
    p.add_argument("--arch", default="seed_cifake_cnn", help="a configs/model/ name")
    p.add_argument("--repeats", type=int, default=2, help="alternate bare/framework runs; best of each")
    a = p.parse_args()
    torch.manual_seed(0)
    n = a.train + a.val
    if a.cache:
        c = torch.load(a.cache, weights_only=True)
        c = c.get("train", c)  # a split cache file, or an old all-splits cache
        images, labels = c["images"][:n], c["labels"][:n]
    else:
        images, labels = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 2, (n,))
    ds = InMemoryImages(images, labels)
    splits = {"train": ds.subset(torch.arange(a.train)), "val": ds.subset(torch.arange(a.train, n))}
    bares, bares_nchw, fws = [], [], []
    for _ in range(a.repeats):  # alternating, so drift in machine speed hits all alike
        for cl, out in ((False, bares_nchw), (True, bares)):
            model = make_model(a.arch, a.view, a.factor, channels_last=cl)
            out.append(bare_epoch(model, splits["train"], splits["val"], a.batch_size))
        fws.append(framework_epoch(a.view, a.factor, splits, a.batch_size, a.arch))
    bare, fw = min(bares), min(fws)
    print(json.dumps({"train_images": a.train, "val_images": a.val, "batch_size": a.batch_size, "view": a.view,
                      "threads": torch.get_num_threads(),
                      "limit_seconds_nchw": round(min(bares_nchw), 2), "limit_seconds": round(bare, 2),
                      "framework_seconds": round(fw, 2),
                      "all_limit_nchw": [round(b, 2) for b in bares_nchw], "all_limit": [round(b, 2) for b in bares], "all_framework": [round(f, 2) for f in fws],
                      "overhead": f"{fw / bare - 1:+.1%}"}, indent=2))


if __name__ == "__main__":
    main()
