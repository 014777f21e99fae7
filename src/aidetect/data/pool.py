"""Training pools rebuilt from a recipe: `aidetect data get NAME`.

A *recipe* (``src/aidetect/data/recipes/<NAME>/recipe.yaml``) names one manifest CSV per source; each row is
one image of the pool: where it comes from (``repo`` @ ``commit`` : ``repo_path``, a public GitHub file), the
sha256 of that file, label, generator, family, content, licence. Images never live in git: ``get`` fetches
each file from its pinned commit (``https://raw.githubusercontent.com/<repo>/<commit>/<repo_path>``) or, with
``--from DIR``, from a local folder (a built pool such as ``../shared/data/modern``, a plain copy of the
repository) or a bare git mirror (``/work/.mirror`` or one ``owner+name/repo`` git dir), and checks the sha256.

Rows cut from a grid (``tile`` = ``x0,y0,x1,y1``) are checked by the grid file's sha256 and by
``pixel_sha256``, a hash of the decoded tile's pixels (the bytes of a re-encoded tile depend on the codec
version); tiles are written losslessly (WebP lossless) and carry ``group`` = the grid, so splits keep them
together.

Every pool drops the images listed in ``../shared/data/holdout_hashes.tsv`` (the images the shipped detector
is scored on): sha256 equal, or dHash (:func:`aidetect.data.hashing.dhash64`) within ``--holdout-bits``
(4) of a listed one. A grid is checked before it is cut, and if the grid or any of its tiles is close to a
listed image every tile of that grid is dropped. Then duplicates inside the pool go (sha256, then dHash
within ``--dedup-bits``), the earlier row in recipe order winning. The counts are reported per source.

Downloads resume (``<out>/.partial/``, HTTP Range), every file is written atomically (temporary name, then
``os.replace``), and a rerun skips files already present and verified. A missing or altered file is an
error naming it (all of them are listed before the command fails).

Output: ``<out>/{FAKE,REAL}/<source>/<file>`` and ``<out>/MANIFEST.csv`` with the columns of
``../shared/data/modern/MANIFEST.csv`` (``sha256`` = the file written) plus ``group``, ``dhash64``,
``source_sha256`` and ``pixel_sha256``.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import http.client
import io
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aidetect.data.hashing import dhash64, dhash_hex, hamming, sha256_file
from aidetect.retry import retry_delay

log = logging.getLogger(__name__)

RECIPES = Path(__file__).resolve().parent / "recipes"
MANIFEST_COLUMNS = ["path", "label", "source_name", "generator", "family", "content", "repo", "commit",
                    "repo_path", "license", "sha256", "width", "height", "bytes", "note"]
EXTRA_COLUMNS = ["group", "dhash64", "source_sha256", "pixel_sha256"]
RECIPE_COLUMNS = MANIFEST_COLUMNS + ["group", "tile", "pixel_sha256", "dhash64", "source_dhash64"]
RAW_BASE = "https://raw.githubusercontent.com"
DEFAULT_BITS = 4
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class PoolError(Exception):
    """A problem the user can fix (missing or altered file, bad recipe); the message names it."""


# ----------------------------------------------------------------------------------------------- hashing


def pixel_sha256(img) -> str:
    """sha256 of decoded pixels (mode, size and raw bytes), independent of how the file was encoded."""
    img = img.convert("RGBA" if ("A" in img.getbands() or "transparency" in img.info) else "RGB")
    h = hashlib.sha256(f"{img.mode} {img.width}x{img.height}\n".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_dhash(s: str) -> int | None:
    s = (s or "").strip()
    return int(s, 16) if s and s != "-" else None


class HashList:
    """sha256 set + dHash array with a vectorised 'any within k bits' query."""

    def __init__(self, shas=(), dhashes=()):
        import numpy as np

        self.shas = set(shas)
        self._np = np
        self.d = np.array(sorted(set(dhashes)), dtype=np.uint64)

    @classmethod
    def load(cls, path: Path) -> "HashList":
        shas, dh = [], []
        for line in Path(path).read_text().splitlines():
            if not line.strip() or line.startswith("#") or line.startswith("sha256"):
                continue
            parts = line.split("\t")
            shas.append(parts[0].strip().lower())
            if len(parts) > 1 and (v := parse_dhash(parts[1])) is not None:
                dh.append(v)
        return cls(shas, dh)

    def __len__(self):
        return len(self.shas)

    def near(self, h: int | None, bits: int) -> int | None:
        """Smallest Hamming distance <= bits to a listed dHash, else None."""
        if h is None or bits < 0 or not len(self.d):
            return None
        np = self._np
        x = np.bitwise_xor(self.d, np.uint64(h))
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)
        m = int(dist.min())
        return m if m <= bits else None


# ----------------------------------------------------------------------------------------------- recipes


def recipe_dir(name: str) -> Path:
    p = Path(name)
    if p.is_dir() and (p / "recipe.yaml").is_file():
        return p
    d = RECIPES / name
    if not (d / "recipe.yaml").is_file():
        known = sorted(x.name for x in RECIPES.iterdir() if (x / "recipe.yaml").is_file()) if RECIPES.is_dir() else []
        raise PoolError(f"no recipe {name!r} (known: {', '.join(known) or 'none'}; or a folder with recipe.yaml)")
    return d


def load_recipe(name: str, _seen=None) -> tuple[dict, list[dict]]:
    """(recipe settings, rows in order): included recipes first, then each source's manifest."""
    import yaml

    d = recipe_dir(name)
    _seen = set() if _seen is None else _seen
    if d.resolve() in _seen:
        raise PoolError(f"recipe {name!r} includes itself")
    _seen.add(d.resolve())
    cfg = yaml.safe_load((d / "recipe.yaml").read_text()) or {}
    rows: list[dict] = []
    for inc in cfg.get("include", []) or []:
        rows += load_recipe(inc, _seen)[1]
    for src in cfg.get("sources", []) or []:
        f = d / src["manifest"]
        if not f.is_file():
            raise PoolError(f"recipe {d.name}: manifest {f} is missing")
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({k: (r.get(k) or "") for k in RECIPE_COLUMNS})
    return cfg, rows


# ----------------------------------------------------------------------------------------------- sources


class GitBlobs:
    """Reads ``commit:path`` blobs from a bare git directory through one ``git cat-file --batch``."""

    def __init__(self, git_dir: Path):
        self.git_dir = Path(git_dir)
        self.proc = None

    def read(self, commit: str, path: str) -> bytes | None:
        if self.proc is None:
            self.proc = subprocess.Popen(["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.proc.stdin.write(f"{commit}:{path}\n".encode())
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            return None
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)
        return data

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None


def is_git_dir(p: Path) -> bool:
    return (p / "HEAD").is_file() and (p / "objects").is_dir()


class LocalSources:
    """Finds a row's bytes under --from folders, in this order for each folder:
    a built pool (``<dir>/<path>``), a bare git dir, mirrors ``<dir>/<owner>+<name>[/repo]``,
    plain copies ``<dir>/<owner>/<name>/<repo_path>``, ``<dir>/<name>/<repo_path>``, ``<dir>/<repo_path>``."""

    def __init__(self, dirs):
        self.dirs = [Path(d) for d in dirs]
        for d in self.dirs:
            if not d.exists():
                raise PoolError(f"--from {d}: no such folder")
        self._git: dict[Path, GitBlobs] = {}
        self._zips: dict = {}

    def _blobs(self, g: Path) -> GitBlobs:
        if g not in self._git:
            self._git[g] = GitBlobs(g)
        return self._git[g]

    def built(self, row) -> Path | None:
        for d in self.dirs:
            p = d / row["path"]
            if row["path"] and p.is_file():
                return p
        return None

    def source(self, row) -> bytes | None:
        repo, commit, rp = row["repo"], row["commit"], row["repo_path"]
        if repo.startswith("zip:"):              # a member of a local archive (not on GitHub)
            return self._zip_member(repo[4:], rp)
        owner, _, name = repo.partition("/")
        for d in self.dirs:
            m = d / f"{owner}+{name}"
            gits = [d] if is_git_dir(d) else [m / "repo", m / "repo" / ".git", m]   # bare, or a clone's .git
            for g in gits:
                if is_git_dir(g):
                    data = self._blobs(g).read(commit, rp)
                    if data is not None:
                        return data
            for p in (d / owner / name / rp, d / name / rp, d / rp):
                if p.is_file():
                    return p.read_bytes()
        return None

    def _zip_member(self, archive: str, member: str) -> bytes | None:
        import zipfile

        for d in self.dirs:
            z = d if (d.is_file() and d.name == archive) else d / archive
            if z.is_file():
                if z not in self._zips:
                    self._zips[z] = zipfile.ZipFile(z)
                try:
                    return self._zips[z].read(member)
                except KeyError:
                    return None
        return None

    def close(self):
        for g in self._git.values():
            g.close()


def raw_url(base: str, row) -> str:
    return f"{base.rstrip('/')}/{row['repo']}/{row['commit']}/{urllib.parse.quote(row['repo_path'])}"


def download(url: str, partial: Path, expect_sha: str, retries: int = 3, timeout: float = 60) -> bytes:
    """GET url into ``partial``, resuming from its current size (HTTP Range); returns the verified bytes."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    last = None
    for attempt in range(retries):
        have = partial.stat().st_size if partial.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "aidetect-data-get"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        total = None
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                ranged = bool(have and resp.status == 206)
                if ranged and (cr := resp.headers.get("Content-Range", "")).rpartition("/")[2].isdigit():
                    total = int(cr.rpartition("/")[2])
                elif not ranged and (cl := resp.headers.get("Content-Length", "")).isdigit():
                    total = int(cl)
                with open(partial, "ab" if ranged else "wb") as f:
                    while block := resp.read(1 << 16):
                        f.write(block)
        except http.client.HTTPException as e:       # connection dropped mid-file: resume from what we have
            last = e
            continue
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:          # already complete
                pass
            elif e.code in (404, 410):
                raise PoolError(f"{url}: HTTP {e.code} (file missing at the pinned commit)") from None
            else:
                last = e
                time.sleep(retry_delay(attempt, e.headers.get("Retry-After") if e.headers else None, cap=10.0))
                continue
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = e
            time.sleep(retry_delay(attempt, cap=10.0))
            continue
        if total is not None and partial.stat().st_size < total:     # short read: resume with a Range request
            last = PoolError(f"{url}: connection closed after {partial.stat().st_size} of {total} bytes")
            continue
        data = partial.read_bytes()
        got = sha256_bytes(data)
        if got == expect_sha:
            partial.unlink()                      # the caller writes it (atomically) where it belongs
            return data
        partial.unlink()                          # corrupt or changed: start over once more
        last = PoolError(f"{url}: sha256 {got} != recipe {expect_sha}")
    if isinstance(last, PoolError):
        raise last
    raise PoolError(f"{url}: download failed after {retries} tries ({last})")


# ----------------------------------------------------------------------------------------------- writing


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_lossless(img, suffix: str) -> bytes:
    buf = io.BytesIO()
    if suffix == ".png":
        img.save(buf, format="PNG", optimize=False)
    else:
        img.save(buf, format="WEBP", lossless=True, quality=100, method=0, exact=True)
    return buf.getvalue()


def parse_box(s: str) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in s.split(","))
    return x0, y0, x1, y1


def open_image(data: bytes):
    """The project's one decode path (``aidetect.data.images.open_image``), pixels as stored (mode
    kept, no EXIF rotation): the tiles' pixel hashes are of the stored pixels."""
    from aidetect.data.images import open_image as decode

    return decode(data, min_side=0, as_stored=True)


# ----------------------------------------------------------------------------------------------- get


@dataclass
class Report:
    rows: int = 0
    written: int = 0
    skipped_present: int = 0
    downloaded: int = 0
    kept: dict = field(default_factory=dict)
    holdout: dict = field(default_factory=dict)
    dup: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def add(self, d: dict, src: str, n: int = 1):
        d[src] = d.get(src, 0) + n

    def text(self) -> str:
        srcs = sorted(set(self.kept) | set(self.holdout) | set(self.dup))
        lines = [f"{'source':28s} {'kept':>6s} {'holdout':>8s} {'dup':>6s}"]
        for s in srcs:
            lines.append(f"{s:28s} {self.kept.get(s, 0):6d} {self.holdout.get(s, 0):8d} {self.dup.get(s, 0):6d}")
        lines.append(f"{'TOTAL':28s} {sum(self.kept.values()):6d} {sum(self.holdout.values()):8d} "
                     f"{sum(self.dup.values()):6d}")
        lines.append(f"files written {self.written}, already present {self.skipped_present}, "
                     f"downloaded {self.downloaded}")
        return "\n".join(lines)


def _row_id(row) -> str:
    where = f"{row['repo']}@{row['commit'][:10]}:{row['repo_path']}" if row["repo"] else row["repo_path"]
    return f"{row['path']} ({where})"


def get_pool(name: str, out: Path, from_dirs=(), holdout: Path | None = None, holdout_bits: int = DEFAULT_BITS,
             dedup_bits: int = DEFAULT_BITS, base_url: str = RAW_BASE, offline: bool = False,
             max_bytes: int | None = None, progress_every: int = 500) -> Report:
    """Build pool ``name`` into ``out`` (see the module docstring). Raises PoolError listing every missing
    or altered file; everything verified so far stays on disk, so a rerun resumes."""
    cfg, rows = load_recipe(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hl = HashList.load(holdout) if holdout else HashList()
    local = LocalSources(from_dirs) if from_dirs else None
    rep = Report(rows=len(rows))
    max_bytes = max_bytes or cfg.get("max_bytes")

    # group tile rows by their grid so a grid is fetched, verified and checked once, before cutting
    units: list[list[dict]] = []
    by_grid: dict[tuple, list] = {}
    for r in rows:
        if r["tile"]:
            key = (r["sha256"], r["group"] or r["repo_path"])
            if key not in by_grid:
                by_grid[key] = []
                units.append(by_grid[key])
            by_grid[key].append(r)
        else:
            units.append([r])

    cache: dict[str, bytes] = {}

    def source_bytes(r) -> bytes:
        sha = r["sha256"]
        if sha in cache:
            return cache[sha]
        data = local.source(r) if local else None
        if data is None and not offline and r["repo"] and not r["repo"].startswith("zip:"):
            data = download(raw_url(base_url, r), out / ".partial" / sha, sha)
            rep.downloaded += 1
        if data is None:
            hint = (f" (a member of {r['repo'][4:]}: pass --from the folder holding that archive)"
                    if r["repo"].startswith("zip:") else "")
            raise PoolError(f"missing: {_row_id(r)} not found under --from {', '.join(map(str, from_dirs)) or '-'}"
                            + hint)
        got = sha256_bytes(data)
        if got != sha:
            raise PoolError(f"sha256 mismatch: {_row_id(r)}: file has {got}, recipe says {sha}")
        cache.clear()
        cache[sha] = data
        return data

    kept: list[dict] = []
    seen_sha: dict[str, str] = {}
    seen_d: list[tuple[int, str]] = []
    import numpy as np
    seen_arr = np.zeros(0, dtype=np.uint64)

    def is_dup(sha, d) -> str | None:
        nonlocal seen_arr
        if sha in seen_sha:
            return seen_sha[sha]
        if d is not None and dedup_bits >= 0 and len(seen_d):
            if len(seen_arr) != len(seen_d):
                seen_arr = np.array([x for x, _ in seen_d], dtype=np.uint64)
            x = np.bitwise_xor(seen_arr, np.uint64(d))
            dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)
            i = int(dist.argmin())
            if dist[i] <= dedup_bits:
                return seen_d[i][1]
        return None

    done = 0
    for unit in units:
        src_name = unit[0]["source_name"]
        try:
            if unit[0]["tile"]:
                items = _tiles(unit, out, local, source_bytes, rep)
            else:
                items = [_whole(unit[0], out, local, source_bytes, rep, max_bytes)]
        except PoolError as e:
            rep.errors.append(str(e))
            log.error("%s", e)
            continue
        done += len(unit)
        if progress_every and done // progress_every != (done - len(unit)) // progress_every:
            log.info("%d / %d rows", done, len(rows))
        # holdout: the grid or any tile near a listed image drops the whole unit
        hit = None
        for it in items:
            for sha, d in ((it["sha256"], it["_d"]), (it["source_sha256"], it["_src_d"])):
                if sha in hl.shas:
                    hit = f"sha256 {sha}"
                elif (m := hl.near(d, holdout_bits)) is not None:
                    hit = f"dHash within {m} bits"
                if hit:
                    break
            if hit:
                break
        if hit:
            for it in items:
                rep.add(rep.holdout, it["source_name"])
            log.debug("holdout drop (%s): %s", hit, unit[0]["repo_path"])
            for it in items:
                _remove(out / it["path"])
            continue
        for it in items:
            first = is_dup(it["sha256"], it["_d"])
            if first is None and it.get("pixel_sha256"):
                first = seen_sha.get("px:" + it["pixel_sha256"])
            if first is not None:
                rep.add(rep.dup, it["source_name"])
                log.debug("duplicate of %s: %s", first, it["path"])
                _remove(out / it["path"])
                continue
            seen_sha[it["sha256"]] = it["path"]
            if it.get("pixel_sha256"):
                seen_sha["px:" + it["pixel_sha256"]] = it["path"]
            if it["_d"] is not None:
                seen_d.append((it["_d"], it["path"]))
            rep.add(rep.kept, it["source_name"])
            kept.append(it)
    if local:
        local.close()

    if rep.errors:
        n = len(rep.errors)
        shown = "\n  ".join(rep.errors[:50])
        raise PoolError(f"{n} file(s) missing or altered (verified files stay in {out}; rerun to resume):\n  "
                        f"{shown}" + (f"\n  ... and {n - 50} more" if n > 50 else ""))
    _write_manifest(out / "MANIFEST.csv", kept)
    (out / ".partial").exists() and not any((out / ".partial").iterdir()) and (out / ".partial").rmdir()
    return rep


def _remove(p: Path):
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _out_row(r, path_sha, size, w, h, d, src_d, src_sha, px) -> dict:
    o = {k: r[k] for k in MANIFEST_COLUMNS}
    o.update(sha256=path_sha, bytes=str(size), width=str(w), height=str(h), group=r["group"],
             dhash64=dhash_hex(d) if d is not None else "-", source_sha256=src_sha, pixel_sha256=px,
             _d=d, _src_d=src_d)
    return o


def _whole(r, out: Path, local, source_bytes, rep: Report, max_bytes) -> dict:
    dst = out / r["path"]
    if not r["path"] or Path(r["path"]).is_absolute() or ".." in Path(r["path"]).parts:
        raise PoolError(f"bad path in recipe: {r['path']!r}")
    rec_d = parse_dhash(r["dhash64"])
    if dst.is_file() and sha256_file(dst) == r["sha256"]:
        rep.skipped_present += 1
        data = None
        size = dst.stat().st_size
    else:
        data = None
        if local and (p := local.built(r)) is not None:
            b = p.read_bytes()
            if sha256_bytes(b) == r["sha256"]:
                data = b
        if data is None:
            data = source_bytes(r)
        if max_bytes and len(data) > max_bytes:
            raise PoolError(f"{_row_id(r)}: {len(data)} bytes > max_bytes {max_bytes}")
        atomic_write(dst, data)
        rep.written += 1
        size = len(data)
    w, h, d = r["width"], r["height"], rec_d
    if d is None or not w:
        try:
            img = open_image(dst.read_bytes())
            w, h = img.size
            d = dhash64(img)
        except Exception:          # undecodable: still a file of the pool, no dHash ('-')
            d = None
    return _out_row(r, r["sha256"], size, w, h, d, None, r["sha256"], "")


def _tiles(unit: list[dict], out: Path, local, source_bytes, rep: Report) -> list[dict]:
    """Every tile row of one grid: verified present copies are kept, the rest cut from the verified grid."""
    items, grid, grid_d = [], None, None
    src_d = parse_dhash(unit[0]["source_dhash64"])
    for r in unit:
        dst = out / r["path"]
        want_px = r["pixel_sha256"]
        img = None
        for cand in ([dst] + ([local.built(r)] if local else [])):
            if cand is not None and cand.is_file():
                try:
                    im = open_image(cand.read_bytes())
                except Exception:
                    continue
                if pixel_sha256(im) == want_px:
                    img = im
                    if cand != dst:
                        atomic_write(dst, cand.read_bytes())
                        rep.written += 1
                    else:
                        rep.skipped_present += 1
                    break
        if img is None:
            if grid is None:
                grid = open_image(source_bytes(r))
                grid_d = dhash64(grid)
            img = grid.crop(parse_box(r["tile"]))
            got = pixel_sha256(img)
            if got != want_px:
                raise PoolError(f"pixel hash mismatch: {_row_id(r)} tile {r['tile']}: decoded pixels {got}, "
                                f"recipe says {want_px} (grid sha256 verified; decoder differs?)")
            atomic_write(dst, encode_lossless(img, dst.suffix.lower()))
            rep.written += 1
        d = parse_dhash(r["dhash64"])
        if d is None:
            d = dhash64(img)
        items.append((r, dst, img.size, d))
    if src_d is None:
        if grid is None:
            grid = open_image(source_bytes(unit[0]))
        src_d = grid_d if grid_d is not None else dhash64(grid)
    res = []
    for r, dst, (w, h), d in items:
        res.append(_out_row(r, sha256_file(dst), dst.stat().st_size, w, h, d, src_d, r["sha256"],
                            r["pixel_sha256"]))
    return res


def _write_manifest(path: Path, kept: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS + EXTRA_COLUMNS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in kept:
        w.writerow(r)
    atomic_write(path, buf.getvalue().encode())


# ----------------------------------------------------------------------------------------------- scan


def safe_name(s: str, maxlen: int = 80) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")
    return s[:maxlen] or "img"


def scan_source(git_dir: Path, repo: str, commit: str, patterns: list[str], source: str, label: str,
                generator: str, family: str, content: str, license: str, note: str = "",
                exclude: list[str] = (), grid: tuple[int, int] | None = None, cap: int | None = None,
                max_bytes: int = 4 << 20, min_side: int = 64, holdout: HashList | None = None,
                holdout_bits: int = DEFAULT_BITS, dedup_bits: int = DEFAULT_BITS, group_re: str | None = None,
                tile_ext: str = ".webp", skip_shas=(), skip_dhashes=(), stats: dict | None = None,
                margin: int = 0, trim: bool = False, group_prefix: str = "") -> list[dict]:
    """Recipe rows for the images of one mirror matching ``patterns`` (fnmatch on repo paths), at ``commit``:
    holdout-checked (a grid and its tiles), deduplicated (within the source and against ``skip_*``), capped
    evenly over the sorted paths; ``group_re``'s first group names the file's group (``prompt:<group_prefix><it>``).
    ``grid=(cols, rows)`` cuts every file into equal tiles, each cell less
    ``margin`` px on every side (a figure's borders between tiles). ``trim=True`` cuts each image to the box
    inside a uniform letterbox border (``letterbox``), stored like a one-tile grid, so bars added by whoever
    published the image cannot become a class cue."""
    git_dir = Path(git_dir)
    if git_dir.is_file():                        # a zip archive: members instead of a git tree
        import zipfile

        zf = zipfile.ZipFile(git_dir)
        listing = [(i.filename, str(i.file_size)) for i in zf.infolist() if not i.is_dir()]
    else:
        names = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-l", "-z", commit],
                               capture_output=True, check=True).stdout.decode().split("\0")
        listing = []
        for ent in names:
            if ent:
                meta, path = ent.split("\t", 1)
                listing.append((path, meta.split()[3]))
    files = []
    for path, size in listing:
        if not path.lower().endswith(IMAGE_EXTS) or not size.isdigit():  # '-': a tree; 'BAD': absent from the mirror
            continue
        if not any(fnmatch.fnmatch(path, p) for p in patterns) or any(fnmatch.fnmatch(path, p) for p in exclude):
            continue
        if int(size) > max_bytes or int(size) < 200:
            continue
        files.append(path)
    files.sort()
    stats = {} if stats is None else stats
    stats.update(candidates=len(files), holdout=0, dup=0, bad=0)
    if git_dir.is_file():
        class _Z:
            def read(self, commit, path):
                return zf.read(path)

            def close(self):
                zf.close()
        blobs = _Z()
    else:
        blobs = GitBlobs(git_dir)
    seen_sha = set(skip_shas)
    seen_d = list(skip_dhashes)
    import numpy as np
    arr = np.array(seen_d, dtype=np.uint64)
    hl = holdout or HashList()
    units = []
    used_names = set()

    def near_seen(d):
        nonlocal arr
        if d is None or dedup_bits < 0 or not seen_d:
            return False
        if len(arr) != len(seen_d):
            arr = np.array(seen_d, dtype=np.uint64)
        x = np.bitwise_xor(arr, np.uint64(d))
        return int(np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1).min()) <= dedup_bits

    # the cap is applied before decoding (even spacing over the sorted list, with spares for drops)
    order = files
    if cap and len(files) > cap:
        step = len(files) / cap
        first = [files[int(i * step)] for i in range(cap)]
        rest = [f for f in files if f not in set(first)]
        order = first + rest
    target = cap if cap else float("inf")       # cap counts rows (tiles), not files
    n_images = 0
    for path in order:
        if n_images >= target:
            break
        data = blobs.read(commit, path)
        if data is None:
            continue
        sha = sha256_bytes(data)
        try:
            img = open_image(data)
            d = dhash64(img)
        except Exception:
            stats["bad"] += 1
            continue
        if min(img.size) < min_side or all(hi - lo <= 4 for lo, hi in img.convert("RGB").getextrema()):
            stats["bad"] += 1  # too small, or blank (a safety filter's black frame is not a generator's image)
            continue
        pstem = Path(path).stem
        if (mm := re.match(r"^(.*)\.(\d+)$", pstem)):       # '<prompt>.<n>': keep the '.N__' convention
            stem = f"{safe_name(mm.group(1))}.{mm.group(2)}"
        else:
            stem = safe_name(pstem)
        grp = ""
        if group_re and (m := re.search(group_re, path)):
            grp = f"prompt:{group_prefix}{safe_name(m.group(1))}"
        boxes = None
        if grid:
            cols, nrows = grid
            W, H = img.size
            tw, th = W // cols, H // nrows
            boxes = [(i * tw + margin, j * th + margin, (i + 1) * tw - margin, (j + 1) * th - margin)
                     for j in range(nrows) for i in range(cols)]
            layout = f"a {cols}x{nrows} grid" + (f" less {margin} px borders" if margin else "")
        elif trim and (box := letterbox(img)) != (0, 0, *img.size):
            boxes, layout = [box], "the image inside its letterbox bars"
            if min(box[2] - box[0], box[3] - box[1]) < min_side:
                stats["bad"] += 1
                continue
        if boxes:
            if sha in hl.shas or hl.near(d, holdout_bits) is not None:
                stats["holdout"] += len(boxes)
                continue
            tiles, bad = [], False
            for k, box in enumerate(boxes):
                t = img.crop(box)
                td = dhash64(t)
                if hl.near(td, holdout_bits) is not None:
                    bad = True
                tiles.append((k, box, t, td))
            if bad:
                stats["holdout"] += len(tiles)
                continue
            group = grp or f"grid:{sha[:16]}"
            for k, box, t, td in tiles:
                if near_seen(td):
                    stats["dup"] += 1
                    continue
                seen_d.append(td)
                name = f"{stem}_tile{k}__{sha[:8]}{tile_ext}"
                units.append(dict(path=f"{label}/{source}/{name}", label=label, source_name=source,
                                  generator=generator, family=family, content=content, repo=repo, commit=commit,
                                  repo_path=path, license=license, sha256=sha, width=str(t.width),
                                  height=str(t.height), bytes="",
                                  note=(note + "; " if note else "") + f"tile {k} = box {box} of {layout}, saved lossless",
                                  group=group, tile=",".join(map(str, box)),
                                  pixel_sha256=pixel_sha256(t), dhash64=dhash_hex(td), source_dhash64=dhash_hex(d)))
                n_images += 1
        else:
            if sha in hl.shas or hl.near(d, holdout_bits) is not None:
                stats["holdout"] += 1
                continue
            if sha in seen_sha or near_seen(d):
                stats["dup"] += 1
                continue
            seen_sha.add(sha)
            seen_d.append(d)
            ext = Path(path).suffix.lower()
            name = f"{stem}__{sha[:8]}{ext}"
            while name in used_names:
                name = "_" + name
            used_names.add(name)
            units.append(dict(path=f"{label}/{source}/{name}", label=label, source_name=source, generator=generator,
                              family=family, content=content, repo=repo, commit=commit, repo_path=path,
                              license=license, sha256=sha, width=str(img.width), height=str(img.height),
                              bytes=str(len(data)), note=note, group=grp, tile="", pixel_sha256="",
                              dhash64=dhash_hex(d), source_dhash64=""))
            n_images += 1
    blobs.close()
    units.sort(key=lambda r: (r["repo_path"], r["path"]))
    return units


def letterbox(img, tol: int = 12) -> tuple[int, int, int, int]:
    """The box inside uniform bars of the top-left pixel's colour (a grey-level difference of at most ``tol``
    counts as bar): white or black padding that made a picture square. The whole image where there are no bars."""
    from PIL import Image, ImageChops

    rgb = img.convert("RGB")
    bg = Image.new("RGB", rgb.size, rgb.getpixel((0, 0)))
    diff = ImageChops.difference(rgb, bg).convert("L").point(lambda v: 255 if v > tol else 0)
    return diff.getbbox() or (0, 0, *rgb.size)


def write_recipe_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECIPE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write(path, buf.getvalue().encode())


# ------------------------------------------------- `aidetect data` (its parser is in aidetect/cli.py)


GET_DOC = """Rebuild a training pool from its recipe (src/aidetect/data/recipes/NAME), verified by sha256.

    aidetect data get shared_modern --from ../shared/data/modern          # copy from a local folder
    aidetect data get grown --from ../shared/data/modern --from /work/.mirror   # + fetched git mirrors
    aidetect data get grown                     # download from GitHub at the pinned commits (resumable)

Drops the images in ../shared/data/holdout_hashes.tsv (sha256, or dHash within --holdout-bits) and
duplicates inside the pool, and reports the counts per source."""


def default_holdout() -> Path | None:
    here = Path(__file__).resolve()
    for base in (Path.cwd(), Path.cwd().parent, here.parents[3], here.parents[4]):
        p = base / "shared" / "data" / "holdout_hashes.tsv"
        if p.is_file():
            return p
    return None


def main(args) -> int:
    if args.data_command == "list":
        for d in sorted(RECIPES.iterdir()):
            if (d / "recipe.yaml").is_file():
                cfg, rows = load_recipe(d.name)
                print(f"{d.name:20s} {len(rows):6d} rows  {cfg.get('description', '')}")
        return 0
    from aidetect.config import ConfigError

    if args.no_holdout:
        holdout = None
    else:
        holdout = Path(args.holdout) if args.holdout else default_holdout()
        if holdout is None or not holdout.is_file():
            raise ConfigError("no hash list of held-out images: pass --holdout FILE "
                              "(../shared/data/holdout_hashes.tsv), or --no-holdout to build without it")
    out = Path(args.out) if args.out else Path("data") / Path(args.name).name
    try:
        rep = get_pool(args.name, out, from_dirs=args.from_dirs, holdout=holdout, holdout_bits=args.holdout_bits,
                       dedup_bits=args.dedup_bits, base_url=args.base_url, offline=args.offline)
    except PoolError as e:
        raise ConfigError(str(e)) from None
    print(rep.text())
    print(f"holdout list: {holdout or 'none (--no-holdout)'}; pool: {out}/MANIFEST.csv")
    return 0


if __name__ == "__main__":  # the same as `aidetect data ...` (the parser is declared in aidetect/cli.py)
    from aidetect.cli import main as cli

    sys.exit(cli(["data", *sys.argv[1:]]))
