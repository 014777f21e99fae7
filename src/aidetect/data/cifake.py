"""CIFAKE (Bird & Lotfi 2024): 32x32 CIFAR-10 photos (REAL) vs Stable Diffusion 1.4 (FAKE).

    python train.py data=cifake data.archive=../shared/data/cifake.zip

The folder data module (data/folder.py, the one data path) plus getting the data: a local
archive or folder given as ``data.archive``, else the Kaggle API, extracted atomically to
``<data_dir>/cifake/raw`` (``prepare_data``, once, under a lock).

CIFAKE holds byte-identical duplicates, 378 of them shared by test and train. By default
(``data.dedup=true``) test images that also occur in train are dropped and one copy of each
duplicate is kept; ``data.dedup=false`` keeps the raw split, comparable to published numbers.
The validation split is carved from train in memory (seeded, stratified): no file moves.
"""

from pathlib import Path

from filelock import FileLock

from aidetect.config import ConfigError
from aidetect.data.archive import kaggle_download, safe_extract
from aidetect.data.folder import FolderDataModule

KAGGLE_DATASET = "birdy654/cifake-real-and-ai-generated-synthetic-images"


class CIFAKEDataModule(FolderDataModule):
    def __init__(self, data_dir="data", archive=None, dedup=True, kaggle_api=None, val_fraction=0.2,
                 name="cifake", **kwargs):
        self.kaggle_api = kaggle_api  # tests inject a stand-in with the KaggleApi interface
        root = None if archive is not None else Path(data_dir).expanduser() / name / "raw"
        super().__init__(root=root, data_dir=data_dir, dedup=dedup, val_fraction=val_fraction, name=name,
                         archive=archive, missing_hint="or leave data.archive unset to use Kaggle", **kwargs)
        self.home = self.root.parent if self.archive is None or not self.archive.is_dir() else self.data_dir / name

    def _check_root(self, root, hint):  # the folder appears in prepare_data (extraction or download)
        pass

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def prepare_data(self):
        if self.archive is None:
            self.home.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.home / "prepare.lock")):
                if not self.root.is_dir():
                    safe_extract(kaggle_download(KAGGLE_DATASET, self.home / "download", self.kaggle_api), self.root)
        else:
            super().prepare_data()
        for split in ("train", "test"):
            if not (self.root / split).is_dir():
                raise ConfigError(f"{self.root} has no {split}/ folder: not the CIFAKE layout "
                                  f"(train/REAL, train/FAKE, test/REAL, test/FAKE)")
