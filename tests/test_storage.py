"""data.storage=disk: the same training as in memory, with memory that does not grow with the set."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from aidetect.train import build_datamodule, train
from conftest import ROOT, compose_train, make_image


def make_set(root, n, seed=0):
    rng = np.random.default_rng(seed)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(n):
            make_image(root / cls / f"{i}.png", label, rng, (32, 32))
    return root


@pytest.mark.slow
def test_disk_storage_trains_exactly_as_memory(tmp_path):
    root = make_set(tmp_path / "ds", 40)
    runs = {}
    for storage in ("memory", "disk"):
        cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                             f"data.storage={storage}", "data.batch_size=16", "model=seed_cifake_cnn",
                             "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none",
                             "seed=1", f"output_dir={tmp_path / storage}"])
        runs[storage] = train(cfg)
    assert runs["disk"]["val_acc_per_epoch"] == runs["memory"]["val_acc_per_epoch"]
    assert runs["disk"]["test"]["acc"] == runs["memory"]["test"]["acc"]
    a = torch.load(tmp_path / "memory/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "disk/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    assert type(dm.splits["train"].images).__name__ == "DiskImages"
    assert list((tmp_path / "data/folder-cache").glob("*.u8"))



def test_disk_rows_read_back_exactly_and_a_failed_write_leaves_no_file(tmp_path):
    """The raw uint8 file behind data.storage=disk (no training: the fast tier's check): rows come
    back bit for bit by index, slice and lazy subset, bad files are skipped, sizes must agree."""
    import pickle

    from aidetect.data.disk import DiskImages, write_disk_cache
    from aidetect.data.images import MixedSizes

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (3, 8, 6), dtype=np.uint8) for _ in range(5)]
    rows = [(i, a, f"md5-{i}", None) for i, a in enumerate(arrays)] + [(5, None, None, "truncated JPEG")]
    path = tmp_path / "train.u8"
    shape, kept, md5s, skipped, _ = write_disk_cache(path, iter(rows), len(rows))
    assert shape == (3, 8, 6) and kept == [0, 1, 2, 3, 4] and md5s[0] == "md5-0" and skipped == [(5, "truncated JPEG")]
    images = DiskImages(path, len(kept), shape)
    assert images.shape == (5, 3, 8, 6) and len(images) == 5
    assert torch.equal(images[2], torch.from_numpy(arrays[2]))
    assert torch.equal(images[[4, 0]], torch.from_numpy(np.stack([arrays[4], arrays[0]])))
    assert torch.equal(images[1:3], torch.from_numpy(np.stack(arrays[1:3])))
    sub = pickle.loads(pickle.dumps(images.take([3, 1])))  # as a DataLoader worker gets it
    assert torch.equal(sub[0], torch.from_numpy(arrays[3])) and len(sub) == 2
    with pytest.raises(MixedSizes, match="data.image_size"):
        write_disk_cache(tmp_path / "mixed.u8", iter([(0, arrays[0], "a", None),
                                                       (1, np.zeros((3, 4, 4), np.uint8), "b", None)]), 2)
    assert not list(tmp_path.glob(".*tmp*")) and not (tmp_path / "mixed.u8").exists()


PEAK = """
import resource, sys
from aidetect.train import train
sys.path.insert(0, {tests!r})
from conftest import compose_train
cfg = compose_train(["data=folder", "data.root={root}", "data.data_dir={data}", "data.storage=disk", "data.image_size=[64,64]",
                     "data.batch_size=32", "model=seed_cifake_cnn", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                     "logger=none", "callbacks=none", "calibrate=false", "test=false", "output_dir={out}"])
train(cfg)
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_stays_flat_when_the_set_grows_tenfold(tmp_path):
    """Peak RSS of a 1-epoch run on 200 vs 2,000 images (64x64, streamed from disk): within 1.2x."""
    peaks = {}
    for n in (100, 1000):
        root = make_set(tmp_path / f"ds{n}", n, seed=n)
        code = PEAK.format(tests=str(ROOT / "tests"), root=root, data=tmp_path / f"data{n}", out=tmp_path / f"run{n}")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        peaks[n] = int(r.stdout.split("PEAK")[-1])
    assert peaks[1000] <= 1.2 * peaks[100], peaks
