"""REAL photographs of the same subject, from sources a user may use legally and repeatably.

    aidetect flux collect-real --n 900                            # Openverse search (CC licences)
    aidetect flux collect-real --source urls --urls my_urls.txt   # one URL per line
    aidetect flux collect-real --source folder --folder ~/photos  # your own photos

Each image is checked (downloads under a size cap and a timeout, decodes fully, at least
``min_side`` pixels) and compared with those already kept: exact duplicates by sha256,
near-duplicates by a 64-bit difference hash. The manifest records licence, creator and
source URL of every kept image; rejects.jsonl records what was turned down and why, so a
re-run skips both and resumes where the last stopped.
"""

import logging
import time
from pathlib import Path

from aidetect.data.images import open_image
from aidetect.data.hashing import dhash64
from aidetect.faults import point
from aidetect.retry import retry_delay
from aidetect.flux.store import (Manifest, append_jsonl, atomic_write, clean_temp_files, inspect_image,
                                 read_jsonl, sha256)

log = logging.getLogger(__name__)

USER_AGENT = "ai-image-detector/0.1 (research dataset tool; github.com/ai-image-detector)"


def dhash(data: bytes) -> int:
    """The project's one 64-bit dHash (aidetect.data.hashing.dhash64) of an image file's bytes."""
    return dhash64(open_image(data, min_side=0))


class Reject(Exception):
    pass


class Collector:
    def __init__(self, cfg, out_dir: Path, session=None, sleep=time.sleep):
        import requests

        self.cfg, self.out, self.sleep = cfg, Path(out_dir), sleep
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)

    # -- candidates --------------------------------------------------------------------
    def openverse(self):
        params = {"q": self.cfg.query, "page_size": int(self.cfg.page_size), "mature": "false"}
        for key in ("license_type", "license", "category"):
            if self.cfg.get(key):
                params[key] = self.cfg[key]
        page = 1
        while True:
            r = self._get(f"{self.cfg.openverse_url.rstrip('/')}/images/", params={**params, "page": page})
            body = r.json()
            for item in body.get("results", []):
                yield {"source": item["url"], "url": item["url"], "landing_url": item.get("foreign_landing_url"),
                       "license": item.get("license"), "license_version": item.get("license_version"),
                       "license_url": item.get("license_url"), "creator": item.get("creator"),
                       "creator_url": item.get("creator_url"), "title": item.get("title"),
                       "provider": item.get("provider"), "openverse_id": item.get("id")}
            if not body.get("results") or page >= int(body.get("page_count") or 0):
                return
            page += 1

    @staticmethod
    def url_list(path: Path):
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield {"source": line, "url": line, "license": None}

    @staticmethod
    def folder(path: Path):
        for p in sorted(Path(path).rglob("*")):
            if p.is_file():
                yield {"source": str(p.resolve()), "path": str(p), "license": "own"}

    # -- fetching ----------------------------------------------------------------------
    MAX_REDIRECTS = 5

    def _get(self, url, **kw):
        """GET with retries, following redirects by hand so that every hop is checked: only
        http(s) is fetched, never file://, ftp:// or a redirect to them."""
        from urllib.parse import urljoin, urlsplit

        for _ in range(self.MAX_REDIRECTS + 1):
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("http", "https"):
                raise Reject(f"refusing {scheme or 'scheme-less'} URL {url[:80]!r}: only http(s) is fetched")
            r = self._get_once(url, **kw)
            if not r.is_redirect:
                return r
            url = urljoin(r.url, r.headers.get("Location", ""))  # the Location already has its own query
            kw.pop("params", None)
            r.close()
        raise Reject(f"more than {self.MAX_REDIRECTS} redirects")

    def _get_once(self, url, **kw):
        import requests

        for attempt in range(int(self.cfg.max_retries) + 1):
            try:
                r = self.session.get(url, timeout=float(self.cfg.timeout_s), allow_redirects=False, **kw)
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt == int(self.cfg.max_retries):
                    raise Reject(f"network: {type(e).__name__}") from None
                self.sleep(retry_delay(attempt, cap=30.0))
                continue
            except requests.RequestException as e:  # malformed URL and the like: this candidate only
                raise Reject(f"{type(e).__name__}: {e}") from None
            if r.status_code == 429 or r.status_code >= 500:
                if attempt == int(self.cfg.max_retries):
                    raise Reject(f"HTTP {r.status_code} after {attempt + 1} attempts")
                self.sleep(retry_delay(attempt, r.headers.get("Retry-After"), cap=30.0))
                continue
            if r.status_code >= 400:
                raise Reject(f"HTTP {r.status_code}")
            return r
        raise AssertionError("unreachable")

    def _download(self, url: str) -> bytes:
        cap = int(self.cfg.max_bytes)
        r = self._get(url, stream=True)
        if int(r.headers.get("Content-Length") or 0) > cap:
            raise Reject(f"larger than max_bytes={cap}")
        data = bytearray()
        for chunk in r.iter_content(1 << 16):
            data += chunk
            if len(data) > cap:
                raise Reject(f"larger than max_bytes={cap}")
        return bytes(data)

    # -- a run -------------------------------------------------------------------------
    def run(self, n: int, candidates) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        clean_temp_files(self.out)
        manifest = Manifest(self.out / "manifest.jsonl")
        # A file without its manifest line (killed in between) has no recorded licence:
        # remove it; its source is not marked seen, so it is fetched again.
        for p in self.out.iterdir():
            if p.suffix in (".jpg", ".png", ".webp") and p.stem not in manifest:
                p.unlink()
        rejects = self.out / "rejects.jsonl"
        seen = {e["source"] for e in manifest.entries.values()}
        seen |= {r["source"] for r in read_jsonl(rejects)}
        hashes = {e["sha256"] for e in manifest.entries.values()}
        dhashes = [(e["dhash"], e["id"]) for e in manifest.entries.values()]
        stats = {"kept": 0, "rejected": 0}
        for cand in candidates:
            if len(manifest) >= n:
                break
            if cand["source"] in seen:
                continue
            seen.add(cand["source"])
            try:
                data = Path(cand["path"]).read_bytes() if "path" in cand else self._download(cand["url"])
                if len(data) > int(self.cfg.max_bytes):
                    raise Reject(f"larger than max_bytes={self.cfg.max_bytes}")
                info = inspect_image(data)
                if min(info["width"], info["height"]) < int(self.cfg.min_side):
                    raise Reject(f"{info['width']}x{info['height']} is under min_side={self.cfg.min_side}")
                digest = sha256(data)
                if digest in hashes:
                    raise Reject("exact duplicate")
                dh = dhash(data)
                near = next((i for h, i in dhashes if bin(h ^ dh).count("1") <= int(self.cfg.near_duplicate_bits)), None)
                if near:
                    raise Reject(f"near-duplicate of {near}")
            except (Reject, ValueError, OSError) as e:
                append_jsonl(rejects, {"source": cand["source"], "reason": str(e)})
                stats["rejected"] += 1
                continue
            iid = digest[:16]
            atomic_write(self.out / f"{iid}.{info['ext']}", data)
            point("collect:between_file_and_manifest")
            manifest.add({"id": iid, "file": f"{iid}.{info['ext']}", **{k: v for k, v in cand.items() if k != "path"},
                          "sha256": digest, "dhash": dh, "bytes": len(data), "width": info["width"],
                          "height": info["height"], "format": info["format"]})
            hashes.add(digest)
            dhashes.append((dh, iid))
            stats["kept"] += 1
        return {"requested": n, "have": len(manifest), **stats}
