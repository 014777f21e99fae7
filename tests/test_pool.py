"""`aidetect data get`: recipes, sha256 checks, resume, held-out exclusion (exact and near), tile grouping,
dedup, and the download path against a loopback HTTP server."""

import csv
import functools
import http.server
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aidetect.data import pool
from aidetect.data.hashing import dhash64, dhash_hex, sha256_file

COMMIT = "0" * 40


def _img(seed, size=(64, 64)):
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    a = rng.uniform(0.02, 0.3, 3)
    base = 127 + 100 * np.sin(x[..., None] * a + y[..., None] * a[::-1] + rng.uniform(0, 6, 3))
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def _row(path, label, src, repo_path, data, **kw):
    import hashlib

    r = {k: "" for k in pool.RECIPE_COLUMNS}
    r.update(path=path, label=label, source_name=src, generator="g", family="flux" if label == "FAKE" else "real",
             content="photo", repo="owner/name", commit=COMMIT, repo_path=repo_path, license="MIT",
             sha256=hashlib.sha256(data).hexdigest(), bytes=str(len(data)))
    r.update(kw)
    return r


@pytest.fixture
def world(tmp_path):
    """A repo copy on disk (owner/name/<repo_path>), its recipe, and an empty holdout list."""
    src = tmp_path / "src" / "owner" / "name"
    rows = []
    for i in range(4):
        p = src / f"fake/{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        _img(i).save(p)
        rows.append(_row(f"FAKE/s1/{i}.png", "FAKE", "s1", f"fake/{i}.png", p.read_bytes()))
    for i in range(3):
        p = src / f"real/{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        _img(100 + i, (48, 80)).save(p, quality=90)
        rows.append(_row(f"REAL/r1/{i}.jpg", "REAL", "r1", f"real/{i}.jpg", p.read_bytes()))
    # a 2x2 grid cut into four tiles
    grid = Image.new("RGB", (128, 128))
    for k in range(4):
        grid.paste(_img(200 + k), ((k % 2) * 64, (k // 2) * 64))
    gp = src / "grid/g.webp"
    gp.parent.mkdir(parents=True, exist_ok=True)
    grid.save(gp, lossless=True)
    gridd = pool.open_image(gp.read_bytes())
    for k in range(4):
        box = ((k % 2) * 64, (k // 2) * 64, (k % 2) * 64 + 64, (k // 2) * 64 + 64)
        rows.append(_row(f"FAKE/grid/g_tile{k}.webp", "FAKE", "grid", "grid/g.webp", gp.read_bytes(),
                         tile=",".join(map(str, box)), group="grid:g",
                         pixel_sha256=pool.pixel_sha256(gridd.crop(box)), source_dhash64=dhash_hex(dhash64(gridd))))
    rdir = tmp_path / "recipe"
    pool.write_recipe_csv(rdir / "m.csv", rows)
    (rdir / "recipe.yaml").write_text("description: test\nsources:\n  - manifest: m.csv\n")
    hold = tmp_path / "holdout.tsv"
    hold.write_text("# test\nsha256\tdhash64\n")
    return dict(tmp=tmp_path, src=tmp_path / "src", recipe=rdir, rows=rows, holdout=hold, grid=grid)


def _manifest(out):
    with open(out / "MANIFEST.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_get_from_folder_builds_verified_pool(world):
    out = world["tmp"] / "out"
    rep = pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    m = _manifest(out)
    assert len(m) == 11 and sum(rep.kept.values()) == 11
    assert list(m[0])[:15] == pool.MANIFEST_COLUMNS and list(m[0])[15:] == pool.EXTRA_COLUMNS
    for r in m:
        assert sha256_file(out / r["path"]) == r["sha256"]
        assert r["label"] in ("FAKE", "REAL")
    whole = [r for r in m if r["source_name"] != "grid"]
    src_bytes = {r["path"]: (world["src"] / "owner/name" / r["repo_path"]).read_bytes() for r in whole}
    assert all((out / p).read_bytes() == b for p, b in src_bytes.items())      # original bytes kept


def test_tiles_are_lossless_and_grouped(world):
    out = world["tmp"] / "out"
    pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    tiles = [r for r in _manifest(out) if r["source_name"] == "grid"]
    assert len(tiles) == 4 and {r["group"] for r in tiles} == {"grid:g"}
    assert len({r["source_sha256"] for r in tiles}) == 1
    for k, r in enumerate(sorted(tiles, key=lambda r: r["path"])):
        img = Image.open(out / r["path"])
        box = tuple(int(v) for v in world["rows"][7 + k]["tile"].split(","))
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(world["grid"].crop(box)))
        assert pool.pixel_sha256(img) == r["pixel_sha256"]


def test_from_a_built_pool_and_from_a_git_mirror(world):
    out = world["tmp"] / "out"
    pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    out2 = world["tmp"] / "out2"                         # a built pool as the source (what ../shared/data/modern is)
    pool.get_pool(str(world["recipe"]), out2, from_dirs=[out], holdout=world["holdout"], offline=True)
    assert [r["sha256"] for r in _manifest(out2)] == [r["sha256"] for r in _manifest(out)]
    # a bare git mirror laid out as /work/.mirror/<owner>+<name>/repo
    work = world["src"] / "owner" / "name"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"],
                   check=True)
    commit = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    mirrors = world["tmp"] / "mirrors"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirrors / "owner+name" / "repo")], check=True)
    rows = [dict(r, commit=commit) for r in world["rows"]]
    pool.write_recipe_csv(world["recipe"] / "m.csv", rows)
    out3 = world["tmp"] / "out3"
    pool.get_pool(str(world["recipe"]), out3, from_dirs=[mirrors], holdout=world["holdout"], offline=True)
    assert len(_manifest(out3)) == 11


def test_missing_and_altered_files_are_named(world):
    (world["src"] / "owner/name/fake/1.png").unlink()
    img = _img(999)
    img.save(world["src"] / "owner/name/real/2.jpg", quality=90)          # altered bytes
    out = world["tmp"] / "out"
    with pytest.raises(pool.PoolError) as e:
        pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    msg = str(e.value)
    assert "2 file(s)" in msg and "FAKE/s1/1.png" in msg and "missing" in msg
    assert "sha256 mismatch" in msg and "REAL/r1/2.jpg" in msg and "real/2.jpg" in msg
    assert not (out / "MANIFEST.csv").exists() and not (out / "REAL/r1/2.jpg").exists()
    assert (out / "FAKE/s1/0.png").is_file()                              # verified files stay for a rerun


def test_resume_skips_verified_files_and_replaces_damaged_ones(world):
    out = world["tmp"] / "out"
    pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    (out / "FAKE/s1/2.png").write_bytes(b"truncated")                       # an interrupted / damaged file
    (out / "REAL/r1/0.jpg").unlink()
    (out / "FAKE/grid/g_tile1.webp").write_bytes(b"junk")
    rep = pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    assert rep.written == 3 and rep.skipped_present == 8
    assert all(sha256_file(out / r["path"]) == r["sha256"] for r in _manifest(out))
    assert not list(out.rglob(".*.tmp*"))


def test_holdout_exact_and_near_and_grid(world):
    rows = world["rows"]
    near_img = pool.open_image((world["src"] / "owner/name/real/1.jpg").read_bytes())
    d = dhash64(near_img) ^ 0b101                                           # 2 bits away
    tile_d = dhash64(world["grid"].crop((64, 64, 128, 128))) ^ 0b1          # one tile of the grid, 1 bit away
    world["holdout"].write_text("# t\nsha256\tdhash64\n"
                                f"{rows[0]['sha256']}\t-\n"                 # exact sha256 of FAKE/s1/0.png
                                f"{'f' * 64}\t{dhash_hex(d)}\n"
                                f"{'e' * 64}\t{dhash_hex(tile_d)}\n")
    out = world["tmp"] / "out"
    rep = pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    kept = {r["path"] for r in _manifest(out)}
    assert "FAKE/s1/0.png" not in kept and "REAL/r1/1.jpg" not in kept
    assert not any(p.startswith("FAKE/grid/") for p in kept)                # all four tiles of the grid
    assert rep.holdout == {"s1": 1, "r1": 1, "grid": 4} and len(kept) == 5
    assert not (out / "FAKE/s1/0.png").exists()
    # tighter threshold: the near matches (2 and 1 bits) stay out only while within --holdout-bits
    rep = pool.get_pool(str(world["recipe"]), world["tmp"] / "o2", from_dirs=[world["src"]],
                        holdout=world["holdout"], holdout_bits=0, offline=True)
    assert rep.holdout == {"s1": 1}


def test_dedup_inside_the_pool(world):
    rows = world["rows"]
    dup = dict(rows[1], path="FAKE/s2/copy.png", source_name="s2")          # same bytes, other source
    src = world["src"] / "owner/name"
    _img(1).resize((64, 64)).save(src / "fake/near.jpg", quality=95)         # same picture re-encoded: near dup
    near = _row("FAKE/s2/near.jpg", "FAKE", "s2", "fake/near.jpg", (src / "fake/near.jpg").read_bytes())
    pool.write_recipe_csv(world["recipe"] / "m.csv", rows + [dup, near])
    out = world["tmp"] / "out"
    rep = pool.get_pool(str(world["recipe"]), out, from_dirs=[world["src"]], holdout=world["holdout"], offline=True)
    assert rep.dup == {"s2": 2} and len(_manifest(out)) == 11
    rep = pool.get_pool(str(world["recipe"]), world["tmp"] / "o2", from_dirs=[world["src"]],
                        holdout=world["holdout"], dedup_bits=-1, offline=True)
    assert rep.dup == {"s2": 1}                                            # sha256 only


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with Range support and counts requests; can cut the first reply short."""
    cut_first = {}
    log = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        type(self).log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if self.path in type(self).cut_first and not rng:
            type(self).cut_first.pop(self.path)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])                       # connection drops mid-file
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(world):
    """Loopback server laid out as raw.githubusercontent.com: /<owner>/<name>/<commit>/<repo_path>."""
    root = world["tmp"] / "www"
    dst = root / "owner" / "name" / COMMIT
    dst.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(world["src"] / "owner" / "name", dst)
    _RangeHandler.log = []
    _RangeHandler.cut_first = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_RangeHandler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def test_download_from_loopback_with_resume(world, server):
    base, root = server
    _RangeHandler.cut_first = {f"/owner/name/{COMMIT}/fake/3.png": True}
    out = world["tmp"] / "out"
    rep = pool.get_pool(str(world["recipe"]), out, holdout=world["holdout"], base_url=base)
    assert len(_manifest(out)) == 11
    assert rep.downloaded == 8                                              # 7 files + 1 grid, fetched once
    ranged = [p for p, r in _RangeHandler.log if r]
    assert ranged == [f"/owner/name/{COMMIT}/fake/3.png"]                   # resumed with a Range request
    assert not (out / ".partial").exists()
    assert all(sha256_file(out / r["path"]) == r["sha256"] for r in _manifest(out))
    # a rerun downloads nothing
    _RangeHandler.log = []
    rep = pool.get_pool(str(world["recipe"]), out, holdout=world["holdout"], base_url=base)
    assert rep.downloaded == 0 and _RangeHandler.log == []


def test_download_altered_and_missing_file(world, server):
    base, root = server
    (root / "owner/name" / COMMIT / "real/0.jpg").write_bytes(b"not the file")
    (root / "owner/name" / COMMIT / "fake/2.png").unlink()
    with pytest.raises(pool.PoolError) as e:
        pool.get_pool(str(world["recipe"]), world["tmp"] / "out", holdout=world["holdout"], base_url=base)
    assert "real/0.jpg" in str(e.value) and "sha256" in str(e.value)
    assert "fake/2.png" in str(e.value) and "404" in str(e.value)


def test_shipped_recipes_load_and_cli_parses(tmp_path):
    cfg, rows = pool.load_recipe("shared_modern")
    assert len(rows) == 879 and all(len(r["sha256"]) == 64 for r in rows)
    tiles = [r for r in rows if r["tile"]]
    assert tiles and all(r["pixel_sha256"] and r["group"] for r in tiles)
    cfg, grown = pool.load_recipe("grown")
    assert len(grown) > len(rows) and grown[: len(rows)] == rows
    assert len({r["path"] for r in grown}) == len(grown)
    from aidetect.cli import main

    with pytest.raises(SystemExit):
        main(["data", "get", "--help"])


@pytest.mark.parametrize("name", ["grown", "broad", "wide", "wider", "widest"])
def test_a_prompt_group_never_spans_two_repositories(name):
    """group_re ties one prompt's images together inside a repository; a bare number ("prompt:9") from a new
    gallery would merge its case 9 with another repository's prompt 9 and drag both into one split."""
    from collections import defaultdict

    cfg, rows = pool.load_recipe(name)
    _, base = pool.load_recipe(cfg["include"][0])
    assert rows[: len(base)] == base and len({r["path"] for r in rows}) == len(rows)
    repos = defaultdict(set)
    for r in rows:
        if r["group"].startswith("prompt:"):
            repos[r["group"]].add(r["repo"])
    assert {g: sorted(v) for g, v in repos.items() if len(v) > 1} == {}


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared/data/modern/MANIFEST.csv").is_file(),
                    reason="needs ../shared/data/modern")
def test_shared_modern_rebuilds_from_the_shared_folder(tmp_path):
    shared = Path(__file__).resolve().parents[2] / "shared/data"
    rep = pool.get_pool("shared_modern", tmp_path / "sm", from_dirs=[shared / "modern"],
                        holdout=shared / "holdout_hashes.tsv", offline=True)
    m = _manifest(tmp_path / "sm")
    assert len(m) + sum(rep.holdout.values()) + sum(rep.dup.values()) == 879
    assert sum(rep.holdout.values()) > 0                                     # the 4-bit dHash check finds some


def test_scan_source_skips_blank_frames_and_groups_by_prompt(tmp_path):
    """make.py's scanner: a safety filter's black frame is not a generator image (counted bad); a palette PNG
    is scanned (its blank check runs on RGB); group_re ties one prompt across files."""
    import io
    import zipfile

    def png(img, mode=None):
        buf = io.BytesIO()
        (img.convert(mode) if mode else img).save(buf, "PNG")
        return buf.getvalue()

    arc = tmp_path / "gen.zip"
    with zipfile.ZipFile(arc, "w") as z:
        z.writestr("a/0.png", png(_img(1, (96, 96))))
        z.writestr("b/0.png", png(_img(2, (96, 96)), "P"))          # same prompt 0, palette mode
        buf = io.BytesIO()
        Image.new("RGB", (512, 512)).save(buf, "JPEG", quality=75)  # blank (NSFW filter) frame, > 200 bytes
        z.writestr("a/1.jpg", buf.getvalue())
        z.writestr("a/2.png", png(_img(3, (96, 96)).convert("P")))
    stats = {}
    rows = pool.scan_source(arc, "zip:gen.zip", "", ["*.png", "*.jpg"], "gen", "FAKE", "g", "flux", "other", "none",
                            group_re=r"/(\d+)\.png$", dedup_bits=-1, stats=stats)
    assert stats == {"candidates": 4, "holdout": 0, "dup": 0, "bad": 1}
    assert sorted(r["repo_path"] for r in rows) == ["a/0.png", "a/2.png", "b/0.png"]
    groups = {r["repo_path"]: r["group"] for r in rows}
    assert groups["a/0.png"] == groups["b/0.png"] == "prompt:0" != groups["a/2.png"]


def test_scan_source_cuts_bordered_grids_and_letterboxed_images_and_get_rebuilds_them(tmp_path):
    """margin= drops a figure's borders between tiles; trim= cuts a painting out of the white bars that made it
    square (bars only REAL images carry would be a class cue). Both become tile rows that `get` re-cuts and checks."""
    import io
    import zipfile

    def png(img):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    strip = Image.new("RGB", (4 * 74, 74), "white")            # 4 tiles of 64 px, 5-px borders, as in a figure
    for i in range(4):
        strip.paste(_img(40 + i), (5 + i * 74, 5))
    boxed = Image.new("RGB", (96, 96), (255, 255, 255))         # a 96x70 painting letterboxed to a square
    boxed.paste(_img(50, (70, 96)), (0, 13))
    arc = tmp_path / "gen.zip"
    with zipfile.ZipFile(arc, "w") as z:
        z.writestr("strip.png", png(strip))
        z.writestr("art/boxed.png", png(boxed))
        z.writestr("art/plain.png", png(_img(51, (96, 96))))    # no bars: kept whole, original bytes
    tiles = pool.scan_source(arc, "zip:gen.zip", "", ["strip.png"], "s", "FAKE", "g", "gan", "other", "none",
                             grid=(4, 1), margin=5)
    assert [r["tile"] for r in tiles] == [f"{5 + i * 74},5,{69 + i * 74},69" for i in range(4)]
    for i, r in enumerate(tiles):                               # exactly the pasted tile, no border pixel
        box = tuple(map(int, r["tile"].split(",")))
        assert np.array_equal(np.asarray(strip.crop(box)), np.asarray(_img(40 + i)))
    art = pool.scan_source(arc, "zip:gen.zip", "", ["art/*"], "a", "REAL", "museum", "real", "art", "none",
                           trim=True, min_side=32)
    by = {r["repo_path"]: r for r in art}
    assert by["art/boxed.png"]["tile"] == "0,13,96,83" and by["art/plain.png"]["tile"] == ""
    assert pool.letterbox(_img(52)) == (0, 0, 64, 64)
    # `get` re-cuts both from the archive and verifies their pixels
    rdir = tmp_path / "recipe"
    pool.write_recipe_csv(rdir / "m.csv", tiles + art)
    (rdir / "recipe.yaml").write_text("description: test\nsources:\n  - manifest: m.csv\n")
    hold = tmp_path / "holdout.tsv"
    hold.write_text("# test\nsha256\tdhash64\n")
    out = tmp_path / "out"
    pool.get_pool(str(rdir), out, from_dirs=[tmp_path], holdout=hold, offline=True)
    m = _manifest(out)
    assert len(m) == 6
    cut = Image.open(out / by["art/boxed.png"]["path"]).convert("RGB")
    assert cut.size == (96, 70) and np.array_equal(np.asarray(cut), np.asarray(_img(50, (70, 96))))
