"""data=folder / data=flux: layouts, splits, resize policies, cache keys, a high-res run."""

import pytest
from PIL import Image

from aidetect.config import ConfigError
from aidetect.data.folder import FolderDataModule
from aidetect.train import train
from conftest import SHARED_DATA, compose_train, make_image

import numpy as np


def make_pool(root, n=20, size=(90, 160), seed=0):
    rng = np.random.default_rng(seed)
    for cls, label in (("REAL", 0), ("FAKE", 1)):
        for i in range(n):
            make_image(root / cls / f"{cls.lower()}_{i}.jpg", label, rng, size)
    return root


def dm_for(tmp_path, root, **kw):
    dm = FolderDataModule(root=root, data_dir=tmp_path / "data", batch_size=4, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def test_unsplit_folder_is_split_80_10_10_stratified_and_seeded(tmp_path):
    root = make_pool(tmp_path / "pool")
    dm = dm_for(tmp_path, root)
    assert (dm.data_report["train"], dm.data_report["val"], dm.data_report["test"]) == (32, 4, 4)
    assert dm.data_report["test_fake"] == 2 and dm.data_report["val_fake"] == 2
    again = dm_for(tmp_path, root)
    assert again.splits["test"].names == dm.splits["test"].names
    assert set(dm.splits["test"].names).isdisjoint(dm.splits["train"].names)


def test_split_folders_are_used_as_given(tmp_path):
    for split, n in (("train", 8), ("validation", 3), ("test", 2)):
        make_pool(tmp_path / "ds" / split, n, seed=n)
    dm = dm_for(tmp_path, tmp_path / "ds")
    assert (dm.data_report["train"], dm.data_report["val"], dm.data_report["test"]) == (16, 6, 4)


def test_train_and_val_only_val_becomes_test(tmp_path):
    make_pool(tmp_path / "ds/train", 10)
    make_pool(tmp_path / "ds/val", 3, seed=1)
    dm = dm_for(tmp_path, tmp_path / "ds")
    assert dm.data_report["test"] == 6 and dm.data_report["test_from"] == "val/ folder"
    assert dm.data_report["train"] + dm.data_report["val"] == 20 and dm.data_report["val"] == 2


def test_resize_policies_give_the_training_size(tmp_path):
    root = make_pool(tmp_path / "pool", 10)
    for policy in ("center_crop", "resize"):
        dm = dm_for(tmp_path, root, image_size=[36, 48], resize=policy)
        assert tuple(dm.splits["train"].images.shape[1:]) == (3, 36, 48)


def test_mixed_sizes_without_image_size_name_the_setting(tmp_path):
    root = make_pool(tmp_path / "pool", 3)
    Image.new("RGB", (50, 50)).save(root / "REAL" / "odd.jpg")
    with pytest.raises(ConfigError, match=r"data.image_size"):
        dm_for(tmp_path, root)  # no network to take a default size from: the setting is named


def test_cache_key_follows_the_folder(tmp_path):
    root = make_pool(tmp_path / "pool", 10)
    first = set(dm_for(tmp_path, root).cache_dir.glob("*.pt"))
    Image.new("RGB", (160, 90)).save(root / "FAKE" / "new.jpg")
    dm = dm_for(tmp_path, root)
    assert len(set(dm.cache_dir.glob("*.pt")) - first) == 1
    assert dm.data_report["train"] + dm.data_report["val"] + dm.data_report["test"] == 21
    dm_for(tmp_path, root, image_size=[45, 80])  # a setting that changes the pixels: a new key
    assert len(set(dm.cache_dir.glob("*.pt")) - first) == 2


def test_bad_root_and_policy_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        FolderDataModule(root=None)
    with pytest.raises(ConfigError, match="data.root"):
        FolderDataModule(root=tmp_path / "missing")
    with pytest.raises(ConfigError, match="center_crop"):
        FolderDataModule(root=tmp_path, resize="squash")


@pytest.mark.slow
def test_high_resolution_training_path(tmp_path):
    root = make_pool(tmp_path / "pool", 12, size=(180, 320))
    cfg = compose_train([f"data=flux_built", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                         "data.image_size=[144,256]", "model=seed_flux_cnn", "aug=inverted_saturated",
                         "aug.saturation_factor=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                         f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["params"] == 2_389_313 and m["view"]["saturation_factor"] == 8
    assert m["data"]["train"] == 20 and 0 <= m["test"]["acc"] <= 1


@pytest.mark.slow
def test_mixed_sizes_use_the_networks_default_size(tmp_path):
    root = make_pool(tmp_path / "pool", 6, size=(150, 170))
    Image.new("RGB", (200, 140)).save(root / "REAL" / "odd.jpg")
    cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}", "debug=fdr",
                         "model=seed_cifake_cnn", "trainer.enable_progress_bar=false", f"output_dir={tmp_path / 'run'}"])
    m = train(cfg)
    assert m["data"]["image_size"] == [32, 32] and m["model"]["input_size"] == [32, 32]


@pytest.mark.slow
def test_small_cnn_is_sized_for_larger_images(tmp_path):
    root = make_pool(tmp_path / "pool", 10)
    cfg = compose_train(["data=folder", f"data.root={root}", f"data.data_dir={tmp_path / 'data'}",
                         "model=seed_cifake_cnn", "data.image_size=[64,96]", f"output_dir={tmp_path / 'run'}",
                         "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    m = train(cfg)
    assert m["model"]["input_size"] == [64, 96] and m["params"] == 634_305 + 128 * (8 * 12 - 16) * 256
    big = compose_train(["data=folder", f"data.root={root}", "model=seed_cifake_cnn", f"output_dir={tmp_path / 'r2'}"])
    with pytest.raises(ConfigError, match="too large for SeedCifakeCNN"):  # 90x160 native: refused before decoding
        train(big)


def test_an_empty_split_is_a_message(tmp_path):
    with pytest.raises(ConfigError, match="test_fraction"):
        dm_for(tmp_path, make_pool(tmp_path / "pool", 3))  # 10% of 3 per class rounds to 0


@pytest.mark.skipif(not (SHARED_DATA / "faces_stylegan2_300.zip").exists(), reason="needs ../shared/data/faces_stylegan2_300.zip")
@pytest.mark.slow
def test_faces_repeated_splits_pool_every_image_and_follow_the_seed(tmp_path):
    from aidetect.train import build_datamodule
    tests = {}
    for seed in (0, 1):
        cfg = compose_train(["data=faces", f"data.archive={SHARED_DATA / 'faces_stylegan2_300.zip'}",
                             f"data.data_dir={tmp_path / 'data'}", f"seed={seed}"])
        assert cfg.model.net._target_ == "aidetect.models.SeedFluxCNN" and cfg.data.split_seed == seed
        dm = build_datamodule(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        c = dm.data_report
        assert c["raw_all"] == 1289 and c["train"] + c["val"] + c["test"] == 1289
        assert c["test"] == 129 and c["test_fake"] == 70  # a stratified tenth (589 REAL, 700 FAKE)
        assert c["image_size"] == [300, 300]
        tests[seed] = set(dm.splits["test"].names)
        assert tests[seed].isdisjoint(dm.splits["train"].names) and tests[seed].isdisjoint(dm.splits["val"].names)
    assert len(tests[0] & tests[1]) < 40  # a different held-out tenth per seed (about 13 in common by chance)
