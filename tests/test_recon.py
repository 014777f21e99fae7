"""Aligned reconstructions (data/recon.py): only REAL train/val images are reconstructed, each lands in
its source's split, a rerun resumes without duplicates, and missing weights name the fix."""

import pytest

from aidetect.config import ConfigError
from aidetect.data.modern import ModernDataModule, read_manifest
from aidetect.data.recon import build
from test_modern import make_manifest_pool

# A stand-in for madebyollin/taesd's taesd.py: an "autoencoder" that shifts every pixel, so its output
# differs from the input (the real TAEF2 is exercised by the experiment, not by the tests).
STUB = '''
import torch
class TAESD(torch.nn.Module):
    def __init__(self, enc, dec):
        super().__init__()
        self.encoder = torch.nn.Identity()
        self.decoder = lambda x: x * 0.9 + 0.05
'''


@pytest.fixture
def taesd(tmp_path):
    d = tmp_path / "taesd"
    d.mkdir()
    (d / "taesd.py").write_text(STUB)
    for f in ("taef2_encoder.pth", "taef2_decoder.pth"):
        (d / f).write_bytes(b"stub")
    return d


def _splits(root, tmp_path):
    dm = ModernDataModule(root=root, crop_size=64, eval_crops=2, holdout="none", data_dir=tmp_path / "cache", num_workers=0)
    return {r["path"]: s for s, rows in dm.assign(dm.select()).items() for r in rows}


def test_reconstructs_real_train_and_val_only_into_their_sources_split(tmp_path, taesd):
    pool = make_manifest_pool(tmp_path / "pool", n_prompts=20)
    out = tmp_path / "out"
    rep = build(pool, out, taesd, crop=64, holdout="none", data_dir=tmp_path / "cache")
    before = _splits(pool, tmp_path)
    real_fit = [p for p, s in before.items() if s != "test" and p.startswith("REAL/")]
    assert rep["reconstructed"] == rep["made_now"] == len(real_fit) > 0
    rows = read_manifest(out / "MANIFEST.csv")
    recon = [r for r in rows if r["family"] == "recon"]
    assert len(rows) == len(read_manifest(pool / "MANIFEST.csv")) + len(recon)
    assert all(r["label"] == "FAKE" and (out / r["path"]).is_file() for r in recon)
    after = _splits(out, tmp_path)
    for r in recon:  # the twin of a REAL image is never in another split than its source
        src = r["note"].split(" encode-decode of ")[1].split(", box")[0]
        assert after[r["path"]] == before[src] == after[src] != "test"
    # the pool's own rows keep their splits
    assert {p: s for p, s in after.items() if not p.startswith("FAKE/recon")} == before
    again = build(pool, out, taesd, crop=64, holdout="none", data_dir=tmp_path / "cache")
    assert again["made_now"] == 0 and len(read_manifest(out / "MANIFEST.csv")) == len(rows)


def test_missing_weights_and_writing_over_the_pool_are_refused(tmp_path, taesd):
    pool = make_manifest_pool(tmp_path / "pool", n_prompts=4)
    (taesd / "taef2_decoder.pth").unlink()
    with pytest.raises(ConfigError, match="taef2_decoder.pth.*madebyollin/taesd"):
        build(pool, tmp_path / "out", taesd, holdout="none", data_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match="the pool itself"):
        build(pool, pool, taesd, holdout="none", data_dir=tmp_path / "cache")
