"""data=modern / data=flux: the manifest reader, grouped splits, leave-out, holdout exclusion,
crop policies (train random, eval crop grid averaged, small images padded) and per-family tables."""

import csv
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.breakdown import breakdown
from aidetect.config import ConfigError
from aidetect.data.crops import FormatNeutral, crop_set, grid_boxes, random_crop
from aidetect.data.hashing import dhash64
from aidetect.data.modern import ModernDataModule, group_key, read_manifest
from conftest import ROOT, SHARED_DATA, compose_train

COLS = ["path", "label", "source_name", "generator", "family", "content", "repo", "commit", "repo_path", "license",
        "sha256", "width", "height", "bytes", "note"]


def _img(path, seed, size=(96, 128), fmt="PNG", fake=False):
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), rng.uniform(0, 255))], -1)
    base = base + rng.normal(0, 30, (8, 8, 3)).repeat(h // 8 + 1, 0).repeat(w // 8 + 1, 1)[:h, :w]
    if fake:
        base += 30 * ((np.indices((h, w)).sum(0) % 2)[..., None] - 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(path, fmt)
    return path


def make_manifest_pool(root, n_prompts=12, extra_rows=()):
    """FAKE: flux and sdxl images sharing prompts (2 seeds each for flux); REAL: photos of two sources."""
    rows = []

    def add(rel, label, source, family, content, seed, **kw):
        p = _img(root / rel, seed, fake=label == "FAKE", **kw)
        rows.append({"path": rel, "label": label, "source_name": source, "generator": family, "family": family,
                     "content": content, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})

    s = 0
    for i in range(n_prompts):
        for k in (1, 2):
            add(f"FAKE/flux_a/prompt_{i}.{k}__{s:08x}.png", "FAKE", "flux_a", "flux", "photo", s); s += 1
        add(f"FAKE/sdxl_a/prompt_{i}.1__{s:08x}.png", "FAKE", "sdxl_a", "sdxl", "photo", s); s += 1
    for i in range(2 * n_prompts):
        add(f"REAL/photos_{i % 2}/img{i}__{s:08x}.jpg", "REAL", f"photos_{i % 2}", "real", "photo", s, fmt="JPEG"); s += 1
    for *r, kw in extra_rows:
        add(*r, s, **kw); s += 1
    with open(root / "MANIFEST.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLS, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    return root


def dm_for(root, tmp_path, **kw):
    kw = {"crop_size": 64, "eval_crops": 2, "holdout": "none", "data_dir": tmp_path / "cache", "num_workers": 0, **kw}
    return ModernDataModule(root=root, **kw)


def test_manifest_reader_checks_columns_and_labels(tmp_path):
    (tmp_path / "MANIFEST.csv").write_text("path,label\na.png,FAKE\n")
    with pytest.raises(ConfigError, match="missing columns source_name, family, content"):
        read_manifest(tmp_path / "MANIFEST.csv")
    (tmp_path / "MANIFEST.csv").write_text("path,label,source_name,family,content\na.png,fake,s,flux,photo\n")
    with pytest.raises(ConfigError, match="line 2: label='fake'"):
        read_manifest(tmp_path / "MANIFEST.csv")
    with pytest.raises(ConfigError, match="aidetect data get"):
        ModernDataModule(root=tmp_path / "nowhere")


def test_group_key_is_the_prompt_across_generators_and_tiles():
    assert group_key({"path": "FAKE/flux/a_b.3__c0247de8.webp"}) == group_key({"path": "FAKE/sdxl/a_b.1__ffee0011.webp"})
    assert group_key({"path": "FAKE/x/style_of_X_tile2__0b89f772.webp"}) == group_key({"path": "FAKE/x/style_of_X_tile3__1b89f772.webp"})
    assert group_key({"path": "REAL/x/cat__00e5db75.jpg"}) != group_key({"path": "REAL/x/dog__00e5db75.jpg"})
    assert group_key({"path": "a.png", "group": "grid7"}) == "g:grid7"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_shared_prompt_never_crosses_splits(tmp_path, seed):
    root = make_manifest_pool(tmp_path / "pool", n_prompts=20)
    dm = dm_for(root, tmp_path, split_seed=seed)
    parts = dm.assign(dm.select())
    where = {}
    for split, rows in parts.items():
        for r in rows:
            key = group_key(r)
            assert where.setdefault(key, split) == split, f"{key} in {where[key]} and {split}"
    assert all(parts[s] for s in ("train", "val", "test"))
    # deterministic: the same seed gives the same split, another seed another one
    again = dm_for(root, tmp_path, split_seed=seed).assign(dm_for(root, tmp_path, split_seed=seed).select())
    assert [r["path"] for r in again["test"]] == [r["path"] for r in parts["test"]]


def test_same_picture_at_two_sizes_is_one_group(tmp_path):
    root = make_manifest_pool(tmp_path / "pool", n_prompts=4)
    src = next((root / "REAL" / "photos_0").iterdir())
    Image.open(src).resize((64, 48)).save(root / "REAL/photos_0/small_copy__deadbeef.png")
    with open(root / "MANIFEST.csv", "a", newline="") as f:
        csv.writer(f).writerow(["REAL/photos_0/small_copy__deadbeef.png", "REAL", "photos_0", "", "real", "photo"] + [""] * 9)
    dm = dm_for(root, tmp_path, crop_size=32)
    rows = {r["path"]: r for r in dm.select()}
    assert rows["REAL/photos_0/small_copy__deadbeef.png"]["group"] == rows[str(src.relative_to(root))]["group"]


def test_families_content_and_leave_out(tmp_path):
    root = make_manifest_pool(tmp_path / "pool", n_prompts=20)
    flux = dm_for(root, tmp_path, families=["flux"])
    rows = flux.select()
    assert {r["family"] for r in rows} == {"flux", "real"}  # family filters act on FAKE rows; REAL all kept
    assert sum(r["label"] == "REAL" for r in rows) == 40
    lo = dm_for(root, tmp_path, leave_out="family:sdxl")
    parts = lo.assign(lo.select())
    assert not [r for r in parts["train"] + parts["val"] if r["family"] == "sdxl"]
    assert sum(r["family"] == "sdxl" for r in parts["test"]) == 20  # every sdxl image is tested
    # the same prompts' FLUX images went with them: no prompt of the held-out family is trained on
    sdxl_prompts = {group_key(r) for r in parts["test"] if r["family"] == "sdxl"}
    assert not sdxl_prompts & {group_key(r) for r in parts["train"]}
    src = dm_for(root, tmp_path, leave_out="source:photos_1")
    parts = src.assign(src.select())
    assert not [r for r in parts["train"] if r["source_name"] == "photos_1"]
    assert sum(r["source_name"] == "photos_1" for r in parts["test"]) == 20
    with pytest.raises(ConfigError, match="no row matches"):
        bad = dm_for(root, tmp_path, leave_out="family:midjourney")
        bad.assign(bad.select())
    with pytest.raises(ConfigError, match="column:value"):
        dm_for(root, tmp_path, leave_out="flux")


def test_holdout_list_drops_exact_and_near_copies(tmp_path):
    root = make_manifest_pool(tmp_path / "pool", n_prompts=6)
    rows = read_manifest(root / "MANIFEST.csv")
    exact = rows[0]
    near = rows[1]
    h = dhash64(Image.open(root / near["path"])) ^ 0b111  # 3 bits away
    (tmp_path / "holdout.tsv").write_text(f"# header\nsha256\tdhash64\n{exact['sha256']}\t-\n{'0' * 64}\t{h:016x}\n")
    dm = dm_for(root, tmp_path, holdout=tmp_path / "holdout.tsv", holdout_bits=4)
    kept = {r["path"] for r in dm.select()}
    assert exact["path"] not in kept and near["path"] not in kept
    assert dm.data_report["holdout_dropped"] == 2
    strict = dm_for(root, tmp_path, holdout=tmp_path / "holdout.tsv", holdout_bits=2)
    assert near["path"] in {r["path"] for r in strict.select()}


def test_crop_policies_train_random_eval_grid_small_padded(tmp_path):
    img = Image.fromarray(np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8))
    boxes = grid_boxes(80, 100, 64, 2)
    assert boxes == [(0, 0, 64, 64), (16, 0, 80, 64), (0, 36, 64, 100), (16, 36, 80, 100)]  # corner to corner
    crops, padded = crop_set(img, 64, 2)
    assert crops.shape == (4, 3, 64, 64) and not padded
    assert np.array_equal(crops[3], np.asarray(img)[36:100, 16:80].transpose(2, 0, 1))  # native pixels, not resized
    small = Image.new("RGB", (40, 50), (200, 10, 10))
    crops, padded = crop_set(small, 64, 2)
    assert padded and crops.shape == (4, 3, 64, 64)
    assert (crops[0][:, :50, :40] == np.array([200, 10, 10])[:, None, None]).all() and crops[0][:, 60:, :].max() == 0
    import random
    a = {random_crop(img, 32, random.Random(s))[0].tobytes() for s in range(5)}
    assert len(a) > 1  # random positions


def test_format_neutral_reencodes_both_classes(tmp_path):
    import random
    png = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    fn = FormatNeutral(p=1.0, scale=(0.5, 0.5), jpeg_quality=(70, 70))
    out = fn(png, random.Random(0))
    assert out.size == (32, 32) and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(png.resize((32, 32), Image.BICUBIC)))  # JPEG-altered
    with pytest.raises(ConfigError, match="jpeg_quality"):
        FormatNeutral(jpeg_quality=(0, 101))


def test_format_neutral_window_crop_matches_the_whole_image_path():
    """FormatNeutral.crop re-encodes only a block-aligned window around the crop (the loader's speed-up):
    same draws, and for JPEG the whole-image path's pixels (bit for bit without a rescale; with one, the
    windowed bicubic differs only in float rounding)."""
    import random
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:260]
    smooth = np.stack([xx * 0.9, yy * 0.8, (xx + yy) * 0.45], -1)
    img = Image.fromarray(np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8))
    # (settings, largest mean |difference| allowed): 0 = bit for bit; measured here 0, 0.0007, 0, 0.097, 0;
    # blur alters the window's outer block, whose chroma the crop's edge reads back: measured at most 0.039
    for kw, bound in ((dict(scale=(1, 1)), 0), (dict(scale=(0.55, 0.9)), 0.01), (dict(short_side=(100, 280)), 0.01),
                      (dict(scale=(0.3, 0.5), min_side=120), 0.01), (dict(scale=(1.2, 2.0)), 0.15), (dict(p=0.5), 0.01),
                      (dict(blur=1.0, blur_sigma=(0.5, 2.0)), 0.05), (dict(blur=0.5, scale=(0.55, 0.9)), 0.05)):
        fn = FormatNeutral(**{"p": 1.0, "jpeg_quality": (60, 95), **kw})
        for seed in range(6):
            r = random.Random(seed)
            whole, _ = random_crop(fn(img, r), 64, r)
            after = r.getstate()
            r2 = random.Random(seed)
            window, padded = fn.crop(img, 64, r2)
            assert window.shape == (3, 64, 64) and not padded and r2.random() == r.random()  # same draws
            diff = np.abs(whole.astype(int) - window)
            assert diff.max() == 0 if bound == 0 else diff.mean() <= bound, (kw, seed, diff.max(), diff.mean())
            # from decoded pixels (data.decoded_cache): the same draws; bicubic reads a shifted sub-box, whose
            # fixed-point weights round within 1 of 255, and the encode carries that on
            r3 = random.Random(seed)
            cached, _ = fn.crop(np.asarray(img), 64, r3)
            assert r3.getstate() == after
            diff = np.abs(whole.astype(int) - cached)
            assert diff.max() == 0 if bound == 0 else diff.mean() <= bound + 0.1, (kw, seed, diff.max(), diff.mean())
    # with the encode taken out, the array path's windowed bicubic is within 1 of 255 of the PIL path's
    class NoEncode(FormatNeutral):
        @staticmethod
        def _encode(img, q, webp, sigma=0.0, noise=(0.0, 0)):
            return img
    for kw in (dict(scale=(0.3, 0.9)), dict(scale=(1.2, 2.0)), dict(short_side=(100, 280))):
        fn = NoEncode(p=1.0, **kw)
        for seed in range(10):
            a, b = fn.crop(img, 64, random.Random(seed))[0], fn.crop(np.asarray(img), 64, random.Random(seed))[0]
            assert np.abs(a.astype(int) - b).max() <= 1, (kw, seed)
    # blur really blurs (less pixel-to-pixel energy), and switched off it leaves the random stream alone
    sharp = FormatNeutral(p=1.0, jpeg_quality=(95, 95)).crop(img, 64, random.Random(1))[0].astype(float)
    soft = FormatNeutral(p=1.0, jpeg_quality=(95, 95), blur=1.0, blur_sigma=(1.5, 1.5)).crop(img, 64, random.Random(1))[0].astype(float)
    assert np.abs(np.diff(soft, axis=2)).mean() < 0.5 * np.abs(np.diff(sharp, axis=2)).mean()
    r0, r1 = random.Random(3), random.Random(3)
    FormatNeutral(p=1.0).crop(img, 64, r0), FormatNeutral(p=1.0, blur=0.0).crop(img, 64, r1)
    assert r0.random() == r1.random()
    with pytest.raises(ConfigError, match="blur"):
        FormatNeutral(blur=1.5)
    # noise really adds noise (of about the drawn sigma), and switched off it leaves the random stream alone
    flat = Image.new("RGB", (128, 128), (120, 130, 140))
    clean = FormatNeutral(p=1.0, jpeg_quality=(100, 100)).crop(flat, 64, random.Random(2))[0].astype(float)
    noisy = FormatNeutral(p=1.0, jpeg_quality=(100, 100), noise=1.0, noise_sigma=(0.02, 0.02)).crop(flat, 64, random.Random(2))[0].astype(float)
    spread = lambda x: x.std(axis=(1, 2)).mean()  # per channel: the flat image's channels differ
    assert spread(clean) < 1.0 and 3.0 < spread(noisy) < 7.0  # sigma 0.02 of 255 is 5.1, before the JPEG round trip
    assert FormatNeutral(noise=0.5).params()["noise"] == 0.5 and "noise" not in FormatNeutral().params()
    r0, r1 = random.Random(4), random.Random(4)
    FormatNeutral(p=1.0).crop(img, 64, r0), FormatNeutral(p=1.0, noise=0.0).crop(img, 64, r1)
    assert r0.random() == r1.random()
    with pytest.raises(ConfigError, match="noise_sigma"):
        FormatNeutral(noise=0.5, noise_sigma=(0.1, 0.05))
    webp = FormatNeutral(p=1.0, jpeg_quality=(80, 80), webp=1.0).crop(img, 64, random.Random(0))[0]
    assert webp.shape == (3, 64, 64) and webp.dtype == np.uint8
    small, padded = FormatNeutral(p=1.0, scale=(0.5, 0.5)).crop(img.resize((100, 90)), 64, random.Random(0))
    assert padded and small.shape == (3, 64, 64)  # 50x45 after the rescale: the whole-image path pads


def test_eval_averages_crop_logits(tmp_path):
    from aidetect.module import Detector

    m = Detector(net={"_target_": "aidetect.models.SmallResNet", "width": 8, "depths": [1]}, input_size=[32, 32],
                 resize="random_crop", eval_crops=2).eval()
    x = torch.randint(0, 255, (3, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        per_crop = m(x.flatten(0, 1)).view(3, 4)
        assert torch.allclose(m(x), per_crop.mean(1), atol=1e-6)
        # predict on a PIL image takes the same 2x2 grid at the image's own resolution
        img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8))
        grid = torch.from_numpy(crop_set(img, 32, 2)[0])[None]
        assert torch.allclose(m.predict_proba([img]), m(grid).sigmoid(), atol=1e-6)


def test_setup_splits_loaders_and_counts(tmp_path):
    root = make_manifest_pool(tmp_path / "pool", n_prompts=20,
                              extra_rows=[("REAL/tiny/tiny__0badf00d.png", "REAL", "tiny", "real", "photo", {"size": (40, 40)})])
    dm = dm_for(root, tmp_path, batch_size=4)
    dm.setup("fit")
    assert dm.splits["val"].images.shape[1:] == (4, 3, 64, 64)  # 2x2 crops of 64 px
    assert dm.splits["test_neutral"].images.shape == dm.splits["test"].images.shape
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.uint8 and y.dtype == torch.long
    c = dm.data_report
    assert c["train"] + c["val"] + c["test"] == 101 and c["holdout_dropped"] == 0
    assert c["train_padded"] + c["val_padded"] + c["test_padded"] == 1  # the 40x40 image, padded, counted


def test_eval_crop_caches_are_capped_and_a_full_disk_is_not_fatal(tmp_path, monkeypatch, caplog):
    """Each split (and each leave-out) has its own val/test crop cache, GBs on a real pool: a sweep over
    data.leave_out filled the disk. Past data.eval_cache_gb the caches unused longest go first, but never one
    another process holds; a cache that cannot be written (disk full) leaves the run going from memory."""
    import os

    from filelock import FileLock

    import aidetect.data.modern as modern

    root = make_manifest_pool(tmp_path / "pool", n_prompts=20)
    folder = tmp_path / "cache" / "modern-cache"
    ref = dm_for(root, tmp_path)
    ref.setup("fit")
    first = sorted(folder.glob("modern-*.pt"))
    assert [f.name.split("-")[1] for f in first] == ["test", "val"]
    for i, f in enumerate(first):  # made long ago
        os.utime(f, (1000 + i, 1000 + i))
    with FileLock(str(first[1]) + ".lock"):  # the old val cache: another process is reading it
        dm_for(root, tmp_path, leave_out="source:photos_1", eval_cache_gb=0).setup("fit")  # keep nothing but the newest
    left = sorted(f.name for f in folder.glob("modern-*.pt"))
    assert first[0].name not in left and first[1].name in left and len(left) == 2, left  # + the new test cache
    dm_for(root, tmp_path, leave_out="source:photos_1").setup("fit")  # 20 GB: nothing more goes
    assert len(list(folder.glob("modern-*.pt"))) == 3

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(modern, "torch_save", full)
    with caplog.at_level("WARNING"):
        fresh = dm_for(root, tmp_path / "other")
        fresh.setup("fit")
    assert "could not write the val split's crop cache" in caplog.text and "No space left" in caplog.text
    assert not list((tmp_path / "other" / "cache" / "modern-cache").glob("modern-*.pt"))
    for split in ("val", "test", "test_neutral"):  # the same crops as the cached run's
        assert torch.equal(fresh.splits[split].images, ref.splits[split].images), split
    with pytest.raises(ConfigError, match="data.eval_cache_gb=-1"):
        dm_for(root, tmp_path, eval_cache_gb=-1)


def test_per_family_table_counts_and_ranks():
    rows = [{"y": 1, "family": "flux", "content": "photo", "source_name": "f"}] * 4 + \
           [{"y": 1, "family": "sdxl", "content": "art", "source_name": "s"}] * 2 + \
           [{"y": 0, "family": "real", "content": "photo", "source_name": "r"}] * 4
    logits = torch.tensor([3.0, 2, 1, 0.5, -3, -2, -1, -0.8, -0.9, 0.7])
    b = breakdown(rows, logits, threshold=0.5)
    assert b["family"]["flux"]["n_fake"] == 4 and b["family"]["flux"]["n_real"] == 4
    # flux scores: 3,2,1,0.5; REAL: -1,-0.8,-0.9,0.7: 15 of 16 pairs ranked right
    assert b["family"]["flux"]["auroc"] == pytest.approx(15 / 16)
    assert b["family"]["sdxl"]["auroc"] == 0.0 and b["family"]["sdxl"]["detection"] == 0.0
    assert b["overall"]["fpr"] == 0.25 and b["overall"]["auroc"] == pytest.approx(b["overall"]["auroc_check"])
    assert "art" not in b["content"]  # no REAL art: no art vs art cell
    lo, hi = b["family"]["flux"]["auroc_ci"]
    assert lo <= 15 / 16 <= hi
    assert b["family_content"] == {"flux": {"photo": b["family"]["flux"]}}  # sdxl's art has no REAL art to meet


def test_content_matched_cells_pit_a_family_against_real_of_its_own_content():
    """A family's art is ranked against REAL art only, its photos against REAL photos: a detector that merely
    calls every painting FAKE scores high on the family as a whole and at chance on the art-vs-art cell."""
    fake = [("flux", "art", 2.0)] * 3 + [("flux", "photo", 1.0), ("flux", "photo", -1.0), ("sdxl", "art", -5.0)]
    real = [("real", "art", 2.0)] * 3 + [("real", "photo", -2.0)] * 5
    rows = [{"y": int(f != "real"), "family": f, "content": c, "source_name": f} for f, c, _ in fake + real]
    b = breakdown(rows, torch.tensor([v for *_, v in fake + real]), threshold=0.5)
    fc = b["family_content"]["flux"]
    assert fc["art"]["auroc"] == pytest.approx(0.5) and fc["art"]["n_fake"] == 3 and fc["art"]["n_real"] == 3
    assert fc["photo"]["auroc"] == pytest.approx(1.0) and fc["photo"]["n_real"] == 5
    assert b["family"]["flux"]["auroc"] == pytest.approx(29.5 / 40)  # against all REAL its art looks detected
    from aidetect.breakdown import breakdown_markdown
    text = breakdown_markdown({"as published": b})
    assert "| vs REAL art (n=3) | vs REAL photo (n=5) |" in text
    assert "| flux | 0.500 [" in text and "] (3) | 1.000 [" in text and "| sdxl | 0.000 [" in text


def test_each_fake_source_is_scored_on_its_own():
    """Two galleries of one family (an old and a new version) get their own cells against all REAL images:
    the family cell alone would hide that the new one is missed."""
    fake = [("midjourney", "mj_v3", "other", 3.0)] * 4 + [("midjourney", "mj_v5", "other", -3.0)] * 2
    real = [("real", "photos", "other", 0.0)] * 4 + [("real", "paintings", "art", 5.0)] * 2
    rows = [{"y": int(f != "real"), "family": f, "content": c, "source_name": s} for f, s, c, _ in fake + real]
    b = breakdown(rows, torch.tensor([v for *_, v in fake + real]), threshold=0.6)
    assert b["family"]["midjourney"]["auroc"] == pytest.approx(16 / 36)
    assert {s: v["fpr"] for s, v in b["real_source_fpr"].items()} == {"paintings": 1.0, "photos": 0.0}
    assert set(b["fake_source"]) == {"mj_v3", "mj_v5"}  # REAL sources are not FAKE cells
    v3, v5 = b["fake_source"]["mj_v3"], b["fake_source"]["mj_v5"]
    assert v3["n_real"] == v5["n_real"] == 6  # all REAL, not those of one content or source
    assert v3["auroc"] == pytest.approx(4 / 6) and v5["auroc"] == 0.0
    assert v5["n_fake"] == 2 and v3["detection"] == 1.0
    from aidetect.breakdown import breakdown_markdown
    assert "mj_v3 0.667 / 1.000 (n=4), mj_v5 0.000 / 0.000 (n=2)." in breakdown_markdown({"t": b})


def test_design_card_command_composes_the_seed_flux_setup():
    cfg = compose_train(["data=flux", "aug=inverted_saturated"])
    assert cfg.data._target_ == "aidetect.data.modern.ModernDataModule" and list(cfg.data.families) == ["flux"]
    assert cfg.model.net._target_ == "aidetect.models.SeedFluxCNN" and cfg.aug.saturation_factor == 8
    assert list(cfg.data.image_size) == [720, 1280] and cfg.data.resize == "resize"
    neutral = compose_train(["data=modern", "augment=format_neutral"])
    assert neutral.data.format_neutral.p == 1.0


@pytest.mark.skipif(not (SHARED_DATA / "modern" / "MANIFEST.csv").is_file(), reason="needs ../shared/data/modern")
def test_shared_pool_splits_by_prompt(tmp_path):
    dm = ModernDataModule(root=SHARED_DATA / "modern", data_dir=ROOT / "data", holdout="auto")
    parts = dm.assign(dm.select())
    assert dm.data_report["manifest_rows"] == 879
    where = {}
    for split, rows in parts.items():
        for r in rows:
            assert where.setdefault(group_key(r), split) == split
    assert {"flux", "sdxl"} <= {r["family"] for r in parts["test"]}


def test_class_family_balance_weights_families_by_sqrt_size():
    """balance=class_family: each class half of the draws; inside FAKE a family's share grows with the square
    root of its size (400 vs 100 images: 2/3 vs 1/3, not 4/5 vs 1/5); REAL sources likewise."""
    from aidetect.data.modern import ModernDataModule

    dm = ModernDataModule.__new__(ModernDataModule)
    dm.balance = "class_family"
    rows = ([{"y": 1, "family": "flux", "source_name": "a", "content": "photo"}] * 400
            + [{"y": 1, "family": "sd3", "source_name": "b", "content": "art"}] * 100
            + [{"y": 0, "family": "real", "source_name": "r1", "content": "photo"}] * 90
            + [{"y": 0, "family": "real", "source_name": "r2", "content": "photo"}] * 10)
    w = np.array(dm.sample_weights(rows))
    assert w[:500].sum() == pytest.approx(w[500:].sum())                    # classes half each
    assert w[:400].sum() / w[:500].sum() == pytest.approx(2 / 3)            # sqrt(400) : sqrt(100)
    assert w[500:590].sum() / w[500:].sum() == pytest.approx(3 / 4)         # sqrt(90) : sqrt(10)
    dm.balance = "class"
    w = np.array(dm.sample_weights(rows))
    assert w[:400].sum() / w[:500].sum() == pytest.approx(4 / 5) and w[:500].sum() == pytest.approx(w[500:].sum())


def test_decoded_cache_gives_the_decoded_pixels_and_the_same_training_crops(tmp_path, caplog):
    """data.decoded_cache=true: each training image decoded once into <data_dir>/modern-cache/decoded/<sha256>.npy
    and read back as a memory map; the items equal the uncached loader's under the same torch seed (format-neutral
    with no rescale, and a plain random crop, are bit for bit); a damaged entry is decoded again; a bad value is refused."""
    from aidetect.data.modern import DecodedCache

    root = make_manifest_pool(tmp_path / "pool", n_prompts=20,
                              extra_rows=[("REAL/tiny/tiny__0badf00d.png", "REAL", "tiny", "real", "photo", {"size": (40, 40)})])
    fn = {"p": 1.0, "scale": [1.0, 1.0], "jpeg_quality": [70, 95], "webp": 0.3}
    for neutral in (fn, None):
        plain, cached = (dm_for(root, tmp_path, format_neutral=neutral, decoded_cache=c) for c in (False, True))
        plain.setup("fit"), cached.setup("fit")
        assert cached.data_report["decoded_cache"].endswith(f"0 of {len(cached.train_set)} training images decoded so far") \
            or neutral is None
        for i in range(len(plain.train_set)):
            torch.manual_seed(i)
            a = plain.train_set[i]
            torch.manual_seed(i)
            b = cached.train_set[i]
            assert torch.equal(a[0], b[0]) and a[1] == b[1], (neutral, i)
    folder = tmp_path / "cache" / "modern-cache" / "decoded-v1"
    rows = cached.rows["train"]
    assert sorted(p.name for p in folder.glob("*.npy")) == sorted(f"{r['sha']}.npy" for r in rows)
    again = dm_for(root, tmp_path, format_neutral=fn, decoded_cache=True)  # now from the memory maps
    again.setup("fit")
    assert again.data_report["decoded_cache"].endswith(f"{len(rows)} of {len(rows)} training images decoded so far")
    for i in range(len(plain.train_set)):
        torch.manual_seed(i)
        a = dm_for(root, tmp_path, format_neutral=fn) if i == 0 else a
        if i == 0:
            a.setup("fit")
        torch.manual_seed(i)
        x = a.train_set[i][0]
        torch.manual_seed(i)
        assert torch.equal(x, again.train_set[i][0]), i
    r = rows[0]
    arr = DecodedCache(folder).get(str(root / r["path"]), r["sha"])
    assert isinstance(arr, np.memmap) and np.array_equal(arr, np.asarray(Image.open(root / r["path"]).convert("RGB")))
    arr = np.array(arr)  # off the map: the damaged entry below is a new file, as os.replace makes one
    for damage in (b"not an array", b""):  # garbage, and an empty file (a write lost in a crash)
        (folder / f"{r['sha']}.npy").unlink()
        (folder / f"{r['sha']}.npy").write_bytes(damage)
        caplog.clear()
        with caplog.at_level("WARNING"):
            redone = DecodedCache(folder).get(str(root / r["path"]), r["sha"])
        assert np.array_equal(redone, arr) and "unreadable" in caplog.text
        assert isinstance(DecodedCache(folder).get(str(root / r["path"]), r["sha"]), np.memmap)  # rewritten
    assert not list(folder.glob(".*tmp*"))  # no temporary files left behind
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING"):
        got = DecodedCache(blocked).get(str(root / r["path"]), r["sha"])  # cannot write: decoded, not cached
    assert np.array_equal(got, arr) and "could not write" in caplog.text
    with pytest.raises(ConfigError, match="decoded_cache"):
        dm_for(root, tmp_path, decoded_cache="yes")
