import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from aidetect import FAKE, REAL
from aidetect.config import ConfigError
from aidetect.data.archive import UnsafeArchiveError, kaggle_download, safe_extract
from aidetect.data.cifake import KAGGLE_DATASET, CIFAKEDataModule
from aidetect.data.folder import stratified_split
from aidetect.data.images import list_class_folder


def test_label_map_is_by_name_not_sort_order(kaggle_dir):
    # Sorted, "FAKE" < "REAL", so ImageFolder would call FAKE 0. Here FAKE is 1.
    assert (FAKE, REAL) == (1, 0)
    items = list_class_folder(kaggle_dir / "train")
    assert {p.parent.name: lab for p, lab in items} == {"REAL": 0, "FAKE": 1}


def test_missing_class_folder_is_named(tmp_path):
    (tmp_path / "REAL").mkdir()
    with pytest.raises(ConfigError, match="FAKE"):
        list_class_folder(tmp_path)


def test_seeded_split_is_stratified_disjoint_and_repeatable():
    labels = torch.tensor([0] * 60 + [1] * 40)
    rest, val = stratified_split(labels, 0.2, seed=3)
    rest2, val2 = stratified_split(labels, 0.2, seed=3)
    _, val3 = stratified_split(labels, 0.2, seed=4)
    assert torch.equal(val, val2) and torch.equal(rest, rest2)
    assert not torch.equal(val, val3)
    assert set(rest.tolist()).isdisjoint(val.tolist()) and len(rest) + len(val) == 100
    assert (labels[val] == 0).sum() == 12 and (labels[val] == 1).sum() == 8


def _datamodule(tmp_path, archive, **kw):
    kw = {"batch_size": 8, **kw}
    return CIFAKEDataModule(data_dir=tmp_path / "data", archive=archive, **kw)


def _with_duplicates(src: Path) -> Path:
    # One train image twice inside train, one train image copied into test (leakage),
    # one test image twice inside test: what CIFAKE itself contains.
    shutil.copy(src / "train/FAKE/0000 (2).jpg", src / "train/FAKE/dup_in_train.jpg")
    shutil.copy(src / "train/FAKE/0001 (3).jpg", src / "test/FAKE/leaked.jpg")
    shutil.copy(src / "test/REAL/0000 (2).jpg", src / "test/REAL/dup_in_test.jpg")
    return src


def test_duplicates_are_detected_and_dropped(tmp_path, kaggle_dir):
    dm = _datamodule(tmp_path, _with_duplicates(kaggle_dir))
    dm.prepare_data()
    dm.setup()
    c = dm.data_report
    assert (c["raw_train"], c["raw_test"]) == (81, 26)
    assert c["train_duplicates_dropped"] == 1
    assert c["test_in_train_dropped"] == 1
    assert c["test_duplicates_dropped"] == 1
    assert c["train"] + c["val"] == 80 and c["test"] == 24
    assert c["val"] == 16  # 20% of each class


def test_raw_split_keeps_duplicates(tmp_path, kaggle_dir):
    dm = _datamodule(tmp_path, _with_duplicates(kaggle_dir), dedup=False)
    dm.prepare_data()
    dm.setup()
    assert dm.data_report["test"] == 26 and dm.data_report["train"] + dm.data_report["val"] == 81
    assert "test_in_train_dropped" not in dm.data_report


def test_val_split_moves_no_files_and_batches_are_uint8(tmp_path, kaggle_zip):
    dm = _datamodule(tmp_path, kaggle_zip)
    dm.prepare_data()
    dm.setup()
    raw = tmp_path / "data/cifake/raw"
    assert len(list((raw / "train/REAL").iterdir())) == 40  # nothing moved out for validation
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32) and y.dtype == torch.long
    assert set(dm.splits["val"].labels.tolist()) == {0, 1}


def test_corrupt_image_is_skipped_and_counted(tmp_path, kaggle_dir):
    (kaggle_dir / "train/REAL/broken.jpg").write_bytes(b"not a jpeg")
    dm = _datamodule(tmp_path, kaggle_dir)
    dm.prepare_data()
    dm.setup()
    assert dm.data_report["skipped_unreadable"] == 1 and dm.data_report["raw_train"] == 80


def test_strict_mode_fails_fast_naming_the_file(tmp_path, kaggle_dir):
    (kaggle_dir / "train/REAL/broken.jpg").write_bytes(b"not a jpeg")
    dm = _datamodule(tmp_path, kaggle_dir, strict=True)
    dm.prepare_data()
    with pytest.raises(ConfigError, match="broken.jpg"):
        dm.setup()


def cache_files(dm):
    return {p.name: p.stat().st_mtime_ns for p in dm.cache_dir.glob("*.pt")}


def test_cache_is_reused(tmp_path, kaggle_zip):
    dm = _datamodule(tmp_path, kaggle_zip)
    dm.prepare_data()
    dm.setup()
    stamps = cache_files(dm)
    assert len(stamps) == 2  # one file per split: train, test
    again = _datamodule(tmp_path, kaggle_zip)
    again.prepare_data()
    again.setup()
    assert cache_files(again) == stamps
    assert torch.equal(again.splits["val"].images, dm.splits["val"].images)


def test_missing_archive_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="data.archive"):
        _datamodule(tmp_path, tmp_path / "nope.zip")


# --- extraction -----------------------------------------------------------------------

def test_extraction_is_idempotent(tmp_path, kaggle_zip):
    dest = safe_extract(kaggle_zip, tmp_path / "out")
    marker = dest / "train/REAL/0000 (2).jpg"
    before = marker.stat().st_mtime_ns
    assert safe_extract(kaggle_zip, tmp_path / "out") == dest
    assert marker.stat().st_mtime_ns == before


@pytest.mark.parametrize("entry", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_hostile_entry_is_refused_and_nothing_written(tmp_path, entry):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("train/REAL/ok.txt", "fine")
        zf.writestr(entry, "escaped")
    with pytest.raises(UnsafeArchiveError, match="escape"):
        safe_extract(bad, tmp_path / "x" / "out")
    assert not (tmp_path / "x" / "out").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x" / "evil.txt").exists()


def test_interrupted_extraction_leaves_nothing_half_done(tmp_path, kaggle_zip, monkeypatch):
    def boom(self, path=None, members=None, pwd=None):
        Path(path, "partial").mkdir(parents=True)
        raise KeyboardInterrupt
    monkeypatch.setattr(zipfile.ZipFile, "extractall", boom)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(kaggle_zip, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


# --- Kaggle ---------------------------------------------------------------------------

@pytest.fixture
def no_kaggle_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_missing_kaggle_credentials_message(tmp_path, no_kaggle_credentials):
    dm = _datamodule(tmp_path, None)
    with pytest.raises(ConfigError) as e:
        dm.prepare_data()
    msg = str(e.value)
    for hint in ("kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "data.archive="):
        assert hint in msg
    assert not (tmp_path / "data/cifake/download").exists() or not any((tmp_path / "data/cifake/download").iterdir())


class StandInKaggleApi:
    """The two calls of kaggle.api.KaggleApi this project uses, with the same signatures."""

    def __init__(self, archive: Path, fail_first=False):
        self.archive, self.fail_first, self.calls = archive, fail_first, []

    def authenticate(self):
        pass

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=[]):
        self.calls.append((dataset, unzip))
        target = Path(path) / (dataset.split("/")[1] + ".zip")
        if self.fail_first and len(self.calls) == 1:
            target.write_bytes(self.archive.read_bytes()[:100])  # a cut-off download
            raise ConnectionError("connection reset")
        shutil.copy(self.archive, target)


def test_kaggle_download_then_train_data(tmp_path, kaggle_zip):
    api = StandInKaggleApi(kaggle_zip)
    dm = _datamodule(tmp_path, None, kaggle_api=api)
    dm.prepare_data()
    dm.setup()
    assert api.calls == [(KAGGLE_DATASET, False)]
    assert dm.data_report["raw_train"] == 80


def test_interrupted_kaggle_download_leaves_no_partial_zip(tmp_path, kaggle_zip):
    api = StandInKaggleApi(kaggle_zip, fail_first=True)
    dest = tmp_path / "dl"
    with pytest.raises(ConnectionError):
        kaggle_download(KAGGLE_DATASET, dest, api)
    assert list(dest.iterdir()) == []
    final = kaggle_download(KAGGLE_DATASET, dest, api)
    assert zipfile.ZipFile(final).testzip() is None and os.listdir(dest) == [final.name]
