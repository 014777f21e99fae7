"""How this recipe's manifests were made (kept for the record; not run by `aidetect data get`):

    python make.py /work/.mirror /work/shared/data [SOURCE ...]   # mirrors, shared data; rescan only SOURCEs

Each SOURCES entry scans one mirror at a pinned commit (aidetect.data.pool.scan_source): images only, files
over 4 MB skipped, held-out images dropped (a grid if it or any tile is near a listed image), duplicates of
shared_modern and of earlier sources dropped (sha256, dHash <= 4 bits), capped evenly over sorted paths."""
import sys
from pathlib import Path

import yaml

from aidetect.data.hashing import dhash64
from aidetect.data.pool import HashList, load_recipe, parse_dhash, scan_source, write_recipe_csv

HERE = Path(__file__).resolve().parent
MIT = "MIT (repo LICENSE)"
FLUX_NOTE = "FLUX.1-dev (+TeaCache) photoreal portrait; 768x768 WebP as published (downscaled by the repo author)"
SDXL_NOTE = "SDXL RealVisXL V3.0 Turbo photoreal portrait; 768x768 WebP as published (downscaled by the repo author)"
CHEAT = ("andygock/stable-diffusion-style-cheatsheet", "1198ab865b9721ee80819099ea860a5ab2faa398")
PROMPT_RE = r"/([^/]+)\.\d+\.webp$"
DCSAN = ("dcsan/imagen", "c6f37ebe")          # resolved to the full commit below
DCSAN_LIC = "no licence stated (repo README: renders via Replicate); kept for generator breadth, see docs/data.md"
SOURCES = [
    # --- FAKE
    dict(name="flux_styles_grid", repo="andygock/FLUX-Style-CheatSheet", commit="8f532cbc5ee3a2abd05eee3fe48ae96a68fdfc21",
         patterns=["img/flux/*.webp"], label="FAKE", generator="flux.1-dev", family="flux", content="art",
         license=MIT, grid=(2, 2), cap=1500,
         note="FLUX.1-dev 'style of <artist>' sample (fp8, TeaCache, 20 steps); 1024x1024 lossy WebP 2x2 grid"),
    dict(name="flux_female", repo=CHEAT[0], commit=CHEAT[1], patterns=["images/female-flux1dev/768/*.webp"],
         label="FAKE", generator="flux.1-dev", family="flux", content="photo", license=MIT, note=FLUX_NOTE,
         group_re=PROMPT_RE),
    dict(name="flux_fashion_rest", repo=CHEAT[0], commit=CHEAT[1], patterns=["images/hair-makeup-flux1dev/768/*.webp"],
         label="FAKE", generator="flux.1-dev", family="flux", content="photo", license=MIT, note=FLUX_NOTE,
         group_re=PROMPT_RE),
    dict(name="sdxl_portraits", repo=CHEAT[0], commit=CHEAT[1],
         patterns=["images/female/768/*.webp", "images/male/768/*.webp"], label="FAKE",
         generator="sdxl (RealVisXL V3.0 Turbo)", family="sdxl", content="photo", license=MIT, note=SDXL_NOTE,
         group_re=PROMPT_RE),
    dict(name="sdxl_hair_movies", repo=CHEAT[0], commit=CHEAT[1],
         patterns=["images/hair-makeup/768/*.webp", "images/hair-beard/768/*.webp", "images/movies-f/768/*.webp",
                   "images/movies-m/768/*.webp"], label="FAKE", generator="sdxl (RealVisXL V3.0 Turbo)",
         family="sdxl", content="photo", license=MIT, note=SDXL_NOTE, group_re=PROMPT_RE),
    dict(name="sd15_styles_grid", repo="SupaGruen/StableDiffusion-CheatSheet", commit="169c57dc",
         patterns=["img/*.webp"], exclude=["img/other/*", "img/types/*"], label="FAKE", generator="sd1.5",
         family="sd15", content="art", license="MIT (repo LICENSE.md)", grid=(2, 2), cap=900,
         note="Stable Diffusion 1.5 artist-style sample; 1024x1024 lossy WebP 2x2 grid"),
    dict(name="stylegan2_faces", repo="zip:faces_stylegan2_300.zip", commit="", archive="faces_stylegan2_300.zip",
         patterns=["train/FAKE/*", "val/FAKE/*"], label="FAKE", generator="stylegan2 (thispersondoesnotexist.com)",
         family="gan", content="photo",
         license="none stated (Kaggle hamzaboulahia/hardfakevsrealfaces, ../shared/data/faces_stylegan2_300.zip)",
         note="StyleGAN2 face, 300x300 JPEG as distributed"),
    dict(name="midjourney_v3_2022", repo=DCSAN[0], commit=DCSAN[1], patterns=["output/renders/*/midj*"],
         label="FAKE", generator="midjourney-v3 (2022)", family="midjourney", content="other", license=DCSAN_LIC,
         group_re=r"renders/([^/]+)/"),
    dict(name="dalle2_2022", repo=DCSAN[0], commit=DCSAN[1], patterns=["output/renders/*/dal2*"],
         label="FAKE", generator="dall-e-2 (2022)", family="dalle2", content="other", license=DCSAN_LIC,
         group_re=r"renders/([^/]+)/"),
    dict(name="early2022_gallery", repo=DCSAN[0], commit=DCSAN[1],
         patterns=["output/renders/*/ldif*", "output/renders/*/dmin*", "output/renders/*/glid3*",
                   "output/renders/*/disco*", "output/renders/*/simu*", "output/renders/*/stab*",
                   "output/renders/*/mdif*", "output/renders/*/lmdv*"], cap=900,
         label="FAKE", generator="2022 text-to-image (latent-diffusion, dalle-mini, glid-3-xl, disco, pixray, SD beta)",
         family="early2022", content="other", license=DCSAN_LIC, group_re=r"renders/([^/]+)/"),
    # --- REAL
    dict(name="unsplash_portraits", repo="zip:faces_stylegan2_300.zip", commit="", archive="faces_stylegan2_300.zip",
         patterns=["train/REAL/*", "val/REAL/*"], label="REAL", generator="camera (Unsplash)", family="real",
         content="photo",
         license="Unsplash licence (photos); archive: none stated (Kaggle hamzaboulahia/hardfakevsrealfaces)",
         note="Unsplash portrait photograph, 300x300 JPEG as distributed"),
    dict(name="aic_paintings", repo="klv4de/ArtWall", commit="39740339a0abfb8216120ec04922b660fb8df161",
         patterns=["github_collections/images/*"], label="REAL", generator="painting (Art Institute of Chicago)",
         family="real", content="art",
         license="CC0 / public domain (Art Institute of Chicago open access, per repo github_collections/README.md); repo MIT",
         note="Art Institute of Chicago public-domain artwork, JPEG as served by the AIC IIIF API (1260-1899)"),
    dict(name="bsds500", repo="BIDS/BSDS500", commit="a04b7c6", patterns=["BSDS500/data/images/*/*.jpg"],
         label="REAL", generator="photo-unknown (Corel)", family="real", content="photo",
         license="no licence file; Berkeley BSDS500 terms: free for non-commercial research",
         note="BSDS500 natural photograph, 481x321 JPEG"),
]


def main(mirrors: Path, shared: Path, only=(), here: Path = HERE, sources=None, include: str = "shared_modern",
         description: str = "shared_modern + fetched FLUX/SDXL/SD1.5/StyleGAN2/2022-era galleries and REAL "
                            "portraits/photos (docs/data.md)", rebuild: str = "grown"):
    """Scan each of ``sources`` (default: this recipe's) into ``here``/<name>.csv and write ``here``/recipe.yaml,
    which includes ``include``; images already in that recipe are dropped as duplicates."""
    import subprocess

    old_sources = (yaml.safe_load((here / "recipe.yaml").read_text()) or {}).get("sources", []) \
        if (here / "recipe.yaml").is_file() else []

    hl = HashList.load(shared / "holdout_hashes.tsv")
    _, base = load_recipe(include)
    shas = {r["sha256"] for r in base}
    dh = [d for r in base if (d := parse_dhash(r["dhash64"])) is not None]
    recipe = {"description": description, "max_bytes": 4 << 20, "include": [include], "sources": []}
    for s in (SOURCES if sources is None else sources):
        s = dict(s)
        if s["repo"].startswith("zip:"):
            src = shared / s.pop("archive")
        else:
            src = mirrors / s["repo"].replace("/", "+") / "repo"
            src = src if (src / "HEAD").is_file() else src / ".git"      # a bare mirror, or a clone's .git
            s["commit"] = subprocess.run(["git", f"--git-dir={src}", "rev-parse", s["commit"]],
                                         capture_output=True, text=True, check=True).stdout.strip()
            s.pop("archive", None)
        stats = {}
        name = s.pop("name")
        if only and name not in only and (here / f"{name}.csv").is_file():      # keep the manifest made before
            import csv
            rows = list(csv.DictReader(open(here / f"{name}.csv", newline="")))
            stats = next((x["scan"] for x in old_sources if x["manifest"] == f"{name}.csv"), {})
        else:
          rows = scan_source(src, s.pop("repo"), s.pop("commit"), s.pop("patterns"), name, holdout=hl,
                             skip_shas=shas, skip_dhashes=dh, stats=stats, **s)
        for r in rows:
            shas.add(r["sha256"]) if not r["tile"] else None
            dh.append(parse_dhash(r["dhash64"]))
        write_recipe_csv(here / f"{name}.csv", rows)
        recipe["sources"].append({"manifest": f"{name}.csv", "rows": len(rows), "scan": stats})
        print(f"{name:22s} {len(rows):5d} rows  {stats}", flush=True)
    (here / "recipe.yaml").write_text(f"# Rebuild: aidetect data get {rebuild} --from ../shared/data/modern --from "
                                      "../shared/data --from /work/.mirror   (or no --from: download)\n"
                                      + yaml.safe_dump(recipe, sort_keys=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:]))   # names: rescan only these sources
