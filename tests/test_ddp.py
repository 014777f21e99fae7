"""Data-parallel training on existing engines: Lightning DDP with 2 CPU processes (gloo)."""

import json

import pytest
import torch

from aidetect.data.folder import ShardSampler
from conftest import SHARED_DATA, run_script


@pytest.mark.parametrize("n,world", [(37, 2), (101, 3), (8, 2)])
def test_evaluation_shards_are_disjoint_cover_the_split_and_are_not_padded(n, world):
    shards = [sum(ShardSampler(n, 4, r, world, shuffle=False), []) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))  # each index exactly once: no padding, no gaps


def test_training_shards_are_disjoint_equal_and_change_each_epoch():
    samplers = [ShardSampler(37, 5, r, 2, shuffle=True, seed=3) for r in range(2)]
    first = [sum(s, []) for s in samplers]
    assert len(first[0]) == len(first[1]) == 18 and not set(first[0]) & set(first[1])
    assert [len(s) for s in samplers] == [4, 4]  # the same number of steps on every rank
    for s in samplers:
        s.set_epoch(1)
    assert sum(samplers[0], []) != first[0]


@pytest.mark.slow
def test_ddp_fit_on_two_cpu_processes_matches_a_single_process_evaluation(tmp_path):
    """A real 1-epoch DDP fit on a CIFAKE slice with an odd-sized validation split: the logged
    val/acc (synced over both ranks) equals the saved checkpoint scored in one process."""
    from aidetect.module import load_detector
    from aidetect.train import build_datamodule
    from conftest import compose_train
    import zipfile

    archive = SHARED_DATA / "cifake.zip"
    if not archive.is_file():
        pytest.skip("needs ../shared/data/cifake.zip")
    root = tmp_path / "slice"
    with zipfile.ZipFile(archive) as zf:  # 305 REAL + 300 FAKE: a 20% validation split of 61 + 60 = 121
        names = [n for n in zf.namelist() if n.endswith(".jpg")]
        for folder, k in (("train/REAL/", 305), ("train/FAKE/", 300), ("test/REAL/", 40), ("test/FAKE/", 40)):
            for name in [n for n in names if n.startswith(folder)][:k]:
                zf.extract(name, root)
    out = tmp_path / "run"
    args = [f"data.archive={root}", f"data.data_dir={tmp_path / 'data'}", "data.batch_size=16", "data.dedup=false",
            "trainer=ddp", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none",
            "seed=5", f"hydra.run.dir={out}"]
    r = run_script("train.py", *args)
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["data"]["val"] % 2 == 1
    # One process, the checkpoint of the last epoch, the same validation split:
    cfg = compose_train([a for a in args if not a.startswith(("trainer", "hydra"))] + [f"output_dir={out}"])
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    val = dm.splits["val"]
    model = load_detector(out / "checkpoints/last.ckpt")
    with torch.no_grad():
        acc = ((model(val.images) > 0).long() == val.labels).float().mean().item()
    assert m["val_acc_per_epoch"][-1] == pytest.approx(acc, abs=1e-6)
    assert len(list((out / "checkpoints").glob("*.ckpt"))) == 2  # written once, by rank zero
