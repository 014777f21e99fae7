"""How this recipe's manifests were made (kept for the record; not run by `aidetect data get`):

    python make.py /work/.mirror /work/shared/data [SOURCE ...]   # mirrors, shared data; rescan only SOURCEs

`broad` = the `grown` pool (what modern-lite0s16 1.0 was trained on) plus generators it never saw: SD 2.1,
SDXL base, PixArt-alpha, Kandinsky 3, Playground v2, SD3 Medium / SD3.5 Large, SD 1.4, mostly benchmark renders of fixed prompt lists; and REAL camera photos it lacked (full-resolution, smartphone,
low-light, WebP as published). Scanned like `grown` (grown/make.py: held-out images and
duplicates of `grown` dropped, blank frames skipped); each file's prompt is its `group`, so one prompt rendered
by several generators never crosses splits."""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("grown_make", HERE.parent / "grown" / "make.py")
grown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grown)

NONE = "no licence stated (repo has no LICENSE); kept for generator breadth, see docs/data_pools.md"
T2I = ("Zeqiang-Lai/t2i-cmp", "021120f67da47b05707ada4f4f1cbe73e81f672f")
T2I_NOTE = ("diffusers AutoPipelineForText2Image defaults, one image per ViLG-300 prompt; "
            "JPEG quality 75 as saved by the repo (PIL default)")
T2I_GROUP = r"saved/[^/]+/(\d+)\.jpg$"          # the prompt's index: the same prompt across the six models
DRAW = ("kennymckormick/DrawBench-Glance", "910c6df62e32198fd208cc2fb9c5c24f7346d400")
DRAW_NOTE = "DrawBench prompt, seed 0, 512x512 JPEG as saved by the repo"
DRAW_GROUP = r"^([^/]+/\d+)/"                   # category/prompt-number


def t2i(name, folder, generator, family):
    return dict(name=name, repo=T2I[0], commit=T2I[1], patterns=[f"saved/{folder}/*.jpg"], label="FAKE",
                generator=generator, family=family, content="other", license=NONE, note=T2I_NOTE, group_re=T2I_GROUP)


def drawbench(name, model, generator, family):
    return dict(name=name, repo=DRAW[0], commit=DRAW[1], patterns=[f"*/*/{model}_seed_0.jpg"], label="FAKE",
                generator=generator, family=family, content="other", license=NONE, note=DRAW_NOTE,
                group_re=DRAW_GROUP)


SOURCES = [
    t2i("sd21_t2icmp", "stabilityai_stable-diffusion-2-1", "sd2.1", "sd2"),
    t2i("sdxl_base_t2icmp", "stabilityai_stable-diffusion-xl-base-1.0", "sdxl base 1.0", "sdxl"),
    t2i("pixart1024_t2icmp", "PixArt-alpha_PixArt-XL-2-1024-MS", "pixart-alpha XL-2 1024-MS", "pixart"),
    t2i("pixart512_t2icmp", "PixArt-alpha_PixArt-XL-2-512x512", "pixart-alpha XL-2 512x512", "pixart"),
    t2i("kandinsky3_t2icmp", "kandinsky-community_kandinsky-3", "kandinsky-3", "kandinsky"),
    t2i("playground2_t2icmp", "playgroundai_playground-v2-1024px-aesthetic", "playground-v2 1024px aesthetic",
        "playground"),
    drawbench("sd21_drawbench", "stabilityai-stable-diffusion-2-1", "sd2.1", "sd2"),
    drawbench("sd14_drawbench", "CompVis-stable-diffusion-v1-4", "sd1.4", "sd14"),
    drawbench("sd15_drawbench", "runwayml-stable-diffusion-v1-5", "sd1.5", "sd15"),
    dict(name="sd35l_artists", repo="EnragedAntelope/Artists-SD35L", commit="f28b471e3bc990fd6933a55240a8cfe1dcd2d795",
         patterns=["gallery-assets/*.png"], label="FAKE", generator="sd3.5 large", family="sd3", content="art",
         license="MIT (repo LICENSE)", note="Stable Diffusion 3.5 Large, one artist style per image, 1024x1024 PNG"),
    dict(name="sd3m_rarebench", repo="krafton-ai/Rare-to-Frequent", commit="834f459aa9ae90a7b653abc4bf0ad8a230056bc1",
         patterns=["images/stable-diffusion-3-medium/*/*.png", "images/R2F-sd3/*/*.png"], label="FAKE",
         generator="sd3 medium (plain, and guided by the paper's R2F prompts)", family="sd3", content="other",
         license=NONE, note="RareBench prompt, 1024x1024 PNG", group_re=r"images/[^/]+/([^/]+/[^/]+)\.png$"),
    # --- REAL: camera photos the pool lacked (high resolution, smartphone, low light, WebP as published)
    dict(name="portfolio_travel", repo="TravisBumgarner/Photography-Portfolio",
         commit="f21fea87081f27a7c44cc9ab2a1d63c55907282c", patterns=["api/media/*.jpg"], label="REAL",
         generator="camera (Sony RX100, Nikon D5300; Lightroom)", family="real", content="photo",
         license="no licence stated (photographer's portfolio repo): research use only",
         note="travel/street photograph, 2500x1667 JPEG as published (files over 4 MB absent from the snapshot)"),
    dict(name="portfolio_webp", repo="paussaanz/photography-portfolio", commit="c5b934841bbd8552f666b242e60b3b58047c143e",
         patterns=["public/images/hi/*.webp"], exclude=["*-cover.webp", "*/about.webp"], label="REAL",
         generator="camera (photographer's portfolio)", family="real", content="photo",
         license="no licence stated (portfolio site repo): research use only",
         note="people, lifestyle, nature, concerts, sports; 1300 px WebP as published (the pool's only REAL WebP)"),
    dict(name="unsplash_fullres", repo="SqueezeSoftware/test_files", commit="ba32ed75f9788f6004d749bdf6d725975e6dd98c",
         patterns=["Unsplash/jpg_original/*-unsplash.jpg"], label="REAL", generator="camera (Unsplash)", family="real",
         content="photo", license="Unsplash licence (Unsplash/README.md)",
         note="full-resolution Unsplash photograph (3000-6000 px JPEG)"),
    dict(name="clothing_phone", repo="alexeygrigorev/clothing-dataset", commit="7ed86a9cc56763b6acb35e41cb35184e43a5d218",
         patterns=["images/*.jpg"], label="REAL", generator="camera (smartphones)", family="real", content="photo",
         license="CC0 1.0 (repo LICENSE)", cap=500,
         note="smartphone photo of a garment, 400x533 JPEG; evenly capped at 500 of 5,756"),
    dict(name="dicm_lowlight", repo="Li-Chongyi/Zero-DCE", commit="e0f4adc54d0f23348c4a9b84acc08fe8778d5bfd",
         patterns=["Zero-DCE_code/data/test_data/DICM/*.jpg"], label="REAL", generator="camera (DICM low-light set)",
         family="real", content="photo", license="no licence stated (DICM benchmark images): research use only",
         note="under-exposed consumer-camera photo, 640x480-960x624 JPEG"),
    dict(name="live1_bmp", repo="jiaxi-jiang/FBCNN", commit="54d1831927506b3247e2d4d245abb4f4dab1a1cd",
         patterns=["testsets/LIVE1_color/*.bmp"], label="REAL", generator="photo-unknown (LIVE1 reference)",
         family="real", content="photo", license="no licence stated (LIVE image quality database): research use only",
         note="LIVE1 reference photograph, 720x480 BMP"),
]

if __name__ == "__main__":
    grown.main(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:]), here=HERE, sources=SOURCES, include="grown",
               description="grown + benchmark renders of generators it lacks (SD2.1, SDXL base, PixArt, Kandinsky 3, "
                           "Playground v2, SD3/3.5, SD1.4) (docs/data_pools.md)",
               rebuild="broad")
