"""Crash-safe storage for the dataset tools: atomic files and an append-only JSONL manifest.

Order of writes for each image: the file (temp name, then rename), then its manifest line
(flushed and fsynced). A kill between the two leaves a complete file with no line; the
tools find such orphans on the next run and recover them, so nothing is lost or made twice.
"""

import hashlib
import json
import os
import threading
from pathlib import Path

from aidetect.data.images import BadImage, open_image
from aidetect.io import atomic_write  # noqa: F401  (re-exported for the flux tools)

PIL_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def clean_temp_files(folder: Path) -> int:
    n = 0
    for p in folder.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect_image(data: bytes) -> dict:
    """Format and size of an encoded image; ValueError if it does not decode."""
    info = {}
    try:  # decodes every pixel (the one decode path): catches truncated files, not just bad headers
        open_image(data, min_side=0, info=info)
    except BadImage as e:
        raise ValueError(f"not a decodable image ({e.reason})") from None
    fmt = info["format"]
    if fmt not in PIL_EXT:
        raise ValueError(f"unsupported image format {fmt}")
    return {"format": fmt, "ext": PIL_EXT[fmt], "width": info["width"], "height": info["height"]}


def append_jsonl(path: Path, obj: dict) -> None:
    """One line, flushed and fsynced: it survives a kill right after this returns."""
    line = json.dumps(obj, sort_keys=True) + "\n"
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a line cut by a kill: keep it apart from this one
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a line cut by a kill is skipped (its item is redone)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class Manifest:
    """manifest.jsonl: one JSON object per finished item, keyed by ``id``."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        rows = read_jsonl(path)
        for e in rows:  # a cut line's file is recovered as an orphan
            self.entries[e["id"]] = e
        if path.exists() and len(rows) != len(path.read_text().splitlines()):
            self.rewrite()  # drop the cut line, so the file is all valid JSON lines again

    def __contains__(self, key) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: dict) -> None:
        with self._lock:
            if entry["id"] in self.entries:
                return
            append_jsonl(self.path, entry)
            self.entries[entry["id"]] = entry

    def rewrite(self) -> None:
        """Drop lines whose files are gone (atomic rewrite)."""
        with self._lock:
            atomic_write(self.path, "".join(json.dumps(e, sort_keys=True) + "\n"
                                            for e in self.entries.values()).encode())
