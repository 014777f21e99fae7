"""How this recipe's manifests were made (kept for the record; not run by `aidetect data get`):

    python make.py /work/.mirror /work/shared/data [SOURCE ...]   # mirrors, shared data; rescan only SOURCEs

`wider` = the `wide` pool plus images of generators it lacks or barely has, from 2023-2025: Nano Banana Pro
(Gemini 3 Pro Image) cases of a prompt gallery reposted from X, DALL-E 3 from its API, DALL-E 2 and Midjourney
(v4 era) on shared prompts, Midjourney v5.2 from a blog, and ten models rendered through fal.ai in 2025 (Ideogram
v2, Recraft v3, Imagen 4, Qwen-Image, AuraFlow, Wan 2.5, FLUX.2, Nano Banana Pro, SD 3.5 Large, FLUX.1-dev) on two
Hebrew banner prompts. Found by a search of
public repositories in session 43 (leads that need git-lfs, e.g. openai/dalle3-eval-samples, are in
docs/data_pools.md; jamez-bondos/awesome-gpt4o-images was scanned too, but all 143 of its GPT-4o images are
in the held-out list). Scanned like `wide` (held-out images and duplicates of `wide` dropped; short side >= 256 px).
Every source here is FAKE: the pool's REAL images are `wide`'s."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("grown_make", HERE.parent / "grown" / "make.py")
grown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grown)

MIN = 256
NOLIC = "no licence stated ({}): research use only"
SONGGUO = ("songguoxs/gpt4o-image-prompts", "27ee9f06bcf7d1a0a0a82411a6f03a495f9ee1b0")
BINGO = ("lipsumar/ai-bingo", "9bb221b1bb4a6b6d761b691be568719218e05d82")
HEBREW = ("danielrosehill/Hebrew-Image-Generation-Eval", "af593f0c24e999acd6e248ecff13cb03f154cb28")


def _show(mirrors: Path, repo_commit, path: str) -> str:
    git = mirrors / repo_commit[0].replace("/", "+") / "repo"
    return subprocess.run(["git", f"--git-dir={git}", "show", f"{repo_commit[1]}:{path}"], capture_output=True,
                          text=True, check=True).stdout


def songguo_cases(mirrors: Path, model: str) -> list[str]:
    """The gallery's cases whose heading names ``model`` ("## 案例 N：title (来源 ...) 模型：<model>"), as file
    patterns: images/N.* and images/N-k.* (a case's extra images). Unlabelled cases (most of 1-425) are left out:
    the gallery began as GPT-4o prompts but later cases mix models."""
    ids = set()
    for md in ["README.md"] + [f"{k}00.md" for k in range(1, 8)]:
        for m in re.finditer(r"^## 案例 (\d+)：.*模型：\s*(.+?)\s*$", _show(mirrors, SONGGUO, md), re.M):
            if m.group(2).lower() == model.lower():
                ids.add(int(m.group(1)))
    if not ids:
        raise SystemExit(f"{SONGGUO[0]}: no case heading names {model!r} (has the heading format changed?)")
    return [p for i in sorted(ids) for p in (f"images/{i}.*", f"images/{i}-*")]


def bingo_files(mirrors: Path, ai: str) -> list[str]:
    """ai-bingo's images of one model ("de" DALL-E 2, "mj" Midjourney, "sd" Stable Diffusion), from src/data/items.ts."""
    ts = _show(mirrors, BINGO, "src/data/items.ts")
    return [f"public/images/prompts/{p}" for p, a in re.findall(r'image: "([^"]+)", ai: "(\w+)"', ts) if a == ai]


def hebrew(name, models, generator, family):
    return dict(name=name, repo=HEBREW[0], commit=HEBREW[1],
                patterns=[f"outputs*/*/{m}.png" for m in models], label="FAKE", generator=generator, family=family,
                content="other", min_side=MIN, license=NOLIC.format("Hebrew text-rendering eval repo"),
                note="fal.ai output for a banner prompt with one Hebrew word in large font (text in the image), "
                     "PNG, long side 1084-1920 px; model = file name", group_re=r"outputs[^/]*/([a-z]+)/")


def sources(mirrors: Path) -> list[dict]:
    return [
        dict(name="nano_banana_pro_x", repo=SONGGUO[0], commit=SONGGUO[1],
             patterns=songguo_cases(mirrors, "Nano banana pro"), label="FAKE",
             generator="nano banana pro (Gemini 3 Pro Image), Nov 2025 - Jan 2026", family="nano_banana",
             content="other", min_side=MIN, license=NOLIC.format("prompt gallery of images reposted from X"),
             note="gallery case labelled 'Nano banana pro', as reposted on X (re-encoded JPEG, a few PNG; short "
                  "side 350-1856 px): portraits, posters, infographics, miniatures; some are edits of a user's "
                  "photo or multi-panel; many carry Gemini's sparkle mark in the bottom-right corner",
             group_re=r"^(images/\d+)[.-]"),     # a case's images share a group
        dict(name="dalle3_api_nao7sep", repo="nao7sep/Resources", commit="55c932070eefd0e9b5ea3e4840743ff15fb66dbc",
             patterns=["Static/Beautiful People and Places/*.jpg"], label="FAKE",
             generator="dall-e 3 (API, Feb 2024)", family="dalle3", content="photo", min_side=MIN,
             license="GPL-3.0 (repo LICENSE)",
             note="DALL-E 3 API output ('Beautiful People and Places.md': 100 images made by its Tester3 "
                  "program), 1792x1024 JPEG as committed: people in scenic places, photoreal but for 5 prompts "
                  "asking for an illustration or painting"),
        dict(name="dalle2_ai_bingo", repo=BINGO[0], commit=BINGO[1], patterns=bingo_files(mirrors, "de"),
             label="FAKE", generator="dall-e 2 (early 2023)", family="dalle2", content="other", min_side=MIN,
             license=NOLIC.format("AI-bingo game repo"),
             note="DALL-E 2 image of an AI-bingo prompt (same prompt for DALL-E 2, Midjourney and SD), 512 px PNG "
                  "(resized)", group_re=r"(public/images/prompts/\d+)/"),
        dict(name="midjourney_ai_bingo", repo=BINGO[0], commit=BINGO[1], patterns=bingo_files(mirrors, "mj"),
             label="FAKE", generator="midjourney (v4 era, committed Jan 2023)", family="midjourney", content="other",
             min_side=MIN, license=NOLIC.format("AI-bingo game repo"),
             note="Midjourney image of an AI-bingo prompt, 512 px PNG (resized)", group_re=r"(public/images/prompts/\d+)/"),
        dict(name="midjourney_v52_blog", repo="jcraigk/blog", commit="c6d6431fece42c8de06c739f106970346a802012",
             patterns=["assets/images/posts/2023-0*/midjourney-*.jpg"], label="FAKE",
             generator="midjourney (v5.2 era, Aug-Sep 2023)", family="midjourney", content="art", min_side=MIN,
             license=NOLIC.format("personal blog repo"),
             note="Midjourney upscale posted on a blog ('Midjourneying'), re-encoded JPEG 1024-1456 px"),
        hebrew("ideogram_hebrew", ["ideogram-v2"], "ideogram v2 (fal.ai, 2025)", "ideogram"),
        hebrew("recraft_hebrew", ["recraft-v3"], "recraft v3 (fal.ai, 2025)", "recraft"),
        hebrew("imagen4_hebrew", ["imagen-4"], "imagen 4 (fal.ai, 2025)", "imagen"),
        hebrew("qwen_image_hebrew", ["qwen-image"], "qwen-image (fal.ai, 2025)", "qwen_image"),
        hebrew("auraflow_hebrew", ["aura-flow"], "auraflow (fal.ai, 2025)", "auraflow"),
        hebrew("wan25_hebrew", ["wan-2-5"], "wan 2.5 text-to-image (fal.ai, 2025)", "wan"),
        hebrew("flux2_hebrew", ["flux-2", "flux-2-pro"], "flux.2 / flux.2 pro (fal.ai, 2025)", "flux2"),
        hebrew("nano_banana_hebrew", ["nano-banana-pro", "gemini-3-pro"],
               "nano banana pro / gemini 3 pro image (fal.ai, 2025)", "nano_banana"),
        hebrew("sd35_hebrew", ["sd-3-5-large"], "sd 3.5 large (fal.ai, 2025)", "sd3"),
        hebrew("flux_dev_hebrew", ["flux-dev"], "flux.1 dev (fal.ai, 2025)", "flux"),
    ]


if __name__ == "__main__":
    mirrors = Path(sys.argv[1])
    grown.main(mirrors, Path(sys.argv[2]), set(sys.argv[3:]), here=HERE, sources=sources(mirrors), include="wide",
               description="wide + 2023-2025 generators it lacks: Nano Banana Pro, DALL-E 3, DALL-E 2, "
                           "Midjourney v4/v5.2, and a few Ideogram / Recraft / Imagen 4 / Qwen-Image / AuraFlow / "
                           "Wan / FLUX.2 renders (docs/data_pools.md)",
               rebuild="wider")
