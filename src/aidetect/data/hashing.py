"""The project's one perceptual hash and one file hash.

dHash (64 bits) exactly as the header of ``../shared/data/holdout_hashes.tsv`` defines it:
PIL ``exif_transpose``, ``convert('L')``, ``resize((9, 8), BILINEAR)``; bit i = pixel[r][c+1] >
pixel[r][c], row-major, first bit most significant, written as 16 hex digits. Pools are checked
against that list with it, so it must not drift: tests/test_hashing.py pins it on a hand-computed image.
"""

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def dhash64(img: Image.Image) -> int:
    """64-bit difference hash of a PIL image (see the module docstring)."""
    g = ImageOps.exif_transpose(img).convert("L").resize((9, 8), Image.BILINEAR)
    px = list(g.getdata())  # row-major, 8 rows of 9
    bits = 0
    for r in range(8):
        for c in range(8):
            bits = (bits << 1) | (px[r * 9 + c + 1] > px[r * 9 + c])
    return bits


def dhash_hex(h: int) -> str:
    return f"{h:016x}"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def components(n: int, edges) -> np.ndarray:
    """Group label of each of ``n`` items joined by ``edges`` (pairs of indices): connected
    components (scipy), so near-duplicate grouping is written once for the audit and the pools."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = np.asarray(list(edges), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]
