"""Shared fixtures: small generated image sets in the Kaggle CIFAKE layout, config composition."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def make_image(path: Path, label: int, rng: np.random.Generator, size=(32, 32)) -> None:
    """REAL: smooth colour gradients; FAKE: the same plus a checkerboard pattern, so a
    tiny model can learn the difference in a few steps."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x], -1) * 200 + rng.uniform(0, 50, 3)
    if label == 1:
        base += 40 * ((np.indices((h, w)).sum(0) % 2)[..., None] - 0.5)
    base += rng.normal(0, 4, base.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(path, quality=95)


def make_kaggle_layout(root: Path, n_train=40, n_test=12, seed=0, size=(32, 32)) -> Path:
    """train/{REAL,FAKE} and test/{REAL,FAKE}, like the CIFAKE download, n images per class."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls, label in (("REAL", 0), ("FAKE", 1)):
            for i in range(n):
                make_image(root / split / cls / f"{i:04d} ({i % 9 + 2}).jpg", label, rng, size)
    return root


@pytest.fixture
def kaggle_dir(tmp_path) -> Path:
    return make_kaggle_layout(tmp_path / "cifake_src")


@pytest.fixture
def kaggle_zip(tmp_path, kaggle_dir) -> Path:
    return Path(shutil.make_archive(str(tmp_path / "cifake"), "zip", kaggle_dir))


def compose_train(overrides=(), config="train"):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config, overrides=list(overrides))


def run_script(script, *args, cwd=ROOT, timeout=600):
    import subprocess
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
