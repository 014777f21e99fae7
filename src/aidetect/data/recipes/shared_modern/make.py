"""How manifest.csv was made from ../shared/data/modern/MANIFEST.csv (kept for the record; needs the pool and
the fetched mirrors of the two grid repositories):  python make.py /work/shared/data/modern /work/.mirror"""
import csv
import re
import sys
from pathlib import Path

from aidetect.data.hashing import dhash64, dhash_hex
from aidetect.data.pool import GitBlobs, RECIPE_COLUMNS, open_image, pixel_sha256, sha256_bytes, write_recipe_csv

pool, mirrors = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
blobs = {}
for r in csv.DictReader(open(pool / "MANIFEST.csv", newline="")):
    data = (pool / r["path"]).read_bytes()
    img = open_image(data)
    r = {k: r.get(k, "") for k in RECIPE_COLUMNS}
    r["dhash64"] = dhash_hex(dhash64(img))
    m = re.search(r"box \((\d+),(\d+),(\d+),(\d+)\)", r["note"])
    if m:                                   # a tile: verified by the grid's sha256 + the tile's pixels
        g = mirrors / r["repo"].replace("/", "+") / "repo"
        b = blobs.setdefault(g, GitBlobs(g))
        grid = b.read(r["commit"], r["repo_path"])
        r["tile"] = ",".join(m.groups())
        r["pixel_sha256"] = pixel_sha256(img)
        assert pixel_sha256(open_image(grid).crop(tuple(map(int, m.groups())))) == r["pixel_sha256"], r["path"]
        r["sha256"] = sha256_bytes(grid)
        r["source_dhash64"] = dhash_hex(dhash64(open_image(grid)))
        r["group"] = "grid:" + r["sha256"][:16]
        r["bytes"] = ""
    else:
        assert sha256_bytes(data) == r["sha256"], r["path"]
    rows.append(r)
write_recipe_csv(Path(__file__).with_name("manifest.csv"), rows)
print(len(rows), "rows")
