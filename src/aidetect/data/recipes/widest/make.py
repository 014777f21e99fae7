"""How this recipe's manifests were made (kept for the record; not run by `aidetect data get`):

    python make.py /work/.mirror /work/shared/data [SOURCE ...]   # mirrors, shared data; rescan only SOURCEs

`widest` = the `wider` pool plus generators it lacks (GPT-Image-2, Ideogram 4.0, CogView 2/3, DeepFloyd IF,
Z-Image, GLM-Image, Kandinsky 5, Anima, nine distilled SDXL variants, AuraFlow, Stable Cascade), StyleGAN v1/2/3
outside faces and Wombo Dream, and REAL images it lacked: 1,200+ museum paintings (REAL art had ~290), camera
frames of five cameras at high ISO, varied photos. Found by a search of public repositories in session 50
(candidates and rejects in docs/data_pools.md). Scanned like `wider` (held-out images, and every tile of a grid
one of whose tiles is held out, dropped; duplicates of `wider` dropped; short side >= 256 px)."""
import importlib.util
import json
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
GPT2 = ("freestylefly/awesome-gpt-image-2", "3a9c63baa03e6bbe2f28c89a2654cf9845466646")
IDEO = ("EvoLinkAI/awesome-ideogram-4.0-prompts", "7a16c2333975f54278de6685c717bbab21450e13")
SG2 = ("justinpinkney/awesome-pretrained-stylegan2", "db55660a94bee4ea96c0d3a2c6c36d88702b616c")
SG1 = ("justinpinkney/awesome-pretrained-stylegan", "66323482be1eedad80c61cda83c2b9620ba81405")
LUCID = ("edstoica/lucid_stylegan3_datasets_models", "049738ca936d27341c2588a3f5608b5b9e58bd72")
COG = ("jyoung105/cog-diffusers", "3f0960e0885d3cdc096066462b8bcaf210607db6")
SENTRY = ("Inf-imagine/Sentry", "b2cbdae3d2092ac15f3086bd539414b977b3bc93")
JARED = ("jaredturck/JaredTurck.com", "42d44a056ee13a9097462559a806d73a29e4f2e5")   # removed from HEAD later
# A GPT-Image-2 case whose prompt speaks of a reference / uploaded / original photo is likely an edit of a user's
# photo, not a generation: left out (54 of 523 cases).
EDIT_RE = re.compile(r"参考图|参考照片|参考图片|上传|原图|原照片|图生图|这张照片|照片中的|uploaded|upload|"
                     r"reference (image|photo|picture)|attached|input image|original (photo|image)|this photo|my photo",
                     re.I)


def _git(mirrors: Path, repo: str) -> Path:
    m = mirrors / repo.replace("/", "+") / "repo"
    return m if (m / "HEAD").is_file() else m / ".git"      # a bare mirror, or a clone's .git


def gpt_image2(mirrors: Path) -> dict[str, list[str]]:
    """The gallery's case images by content (cases.json 'category'), edits left out."""
    cases = json.loads(subprocess.run(["git", f"--git-dir={_git(mirrors, GPT2[0])}", "show", f"{GPT2[1]}:data/cases.json"],
                                      capture_output=True, text=True, check=True).stdout)["cases"]
    out = {"photo": [], "art": [], "other": []}
    for c in cases:
        if EDIT_RE.search(c["prompt"]):
            continue
        content = {"Photography & Realism": "photo", "Illustration & Art": "art"}.get(c["category"], "other")
        out[content].append("data" + c["image"])
    return out


def cog(name, prefixes, generator, family, n_note=""):
    return dict(name=name, repo=COG[0], commit=COG[1], patterns=[f"assets/{p}[1-5].png" for p in prefixes],
                label="FAKE", generator=generator, family=family, content="art", min_side=MIN,
                license=NOLIC.format("Replicate cog wrappers of diffusers pipelines"),
                note="1024x1024 PNG from the repo's cog wrapper (model id in its predict.py); the same 5 scene prompts "
                     "for all 17 models" + n_note, group_re=r"assets/\D+\d?\d?([1-5])\.png$", group_prefix="cogdiff_")


def sentry(name, dirs, generator, family, group=True):
    return dict(name=name, repo=SENTRY[0], commit=SENTRY[1],
                patterns=[f"assets/visualization/{d}/*.png" for d in dirs], label="FAKE", generator=generator,
                family=family, content="other", min_side=MIN, license=NOLIC.format("AIGI detector repo"),
                note="sample of the Fake2M / MPBench detection benchmarks shown in the detector's README, "
                     "'compressed to 1MB' for display (some are JPEG/WebP named .png)",
                **(dict(group_re=r"/(\d)\.png$", group_prefix="sentry_") if group else {}))


def jared(name, folder, generator, family):
    return dict(name=name, repo=JARED[0], commit=JARED[1], patterns=[f"frontend/public/image_models/{folder}/*.png"],
                label="FAKE", generator=generator, family=family, content="other", min_side=MIN,
                license=NOLIC.format("personal site repo"),
                note="sample output shown on a personal site's model page (model id in "
                     "frontend/src/ai_models/image_models.ts), PNG as generated, mostly 1280x768")


def sources(mirrors: Path) -> list[dict]:
    g2 = gpt_image2(mirrors)
    gpt = dict(repo=GPT2[0], commit=GPT2[1], label="FAKE", generator="gpt-image-2 (OpenAI, 2026)", family="gpt_image",
               min_side=MIN, license="MIT (repo LICENSE; images are community posts from X / Xiaohongshu)",
               note="case image of a GPT-Image-2 prompt gallery, as reposted (mostly JPEG, often downscaled; some "
                    "with a platform or author watermark); posters, infographics and generated UI mockups in 'other'")
    return [
        dict(name="gpt_image2_photo", patterns=g2["photo"], content="photo", **gpt),
        dict(name="gpt_image2_art", patterns=g2["art"], content="art", **gpt),
        dict(name="gpt_image2_other", patterns=g2["other"], content="other", **gpt),
        dict(name="ideogram4_x", repo=IDEO[0], commit=IDEO[1],
             patterns=["images/portrait_case*/output*.jpg", "images/poster_case*/output*.jpg"]
             + [f"images/comparison_case{k}/output*.jpg" for k in (2, 3, 4, 5, 12, 13, 14, 15)],
             exclude=["images/comparison_case15/output.jpg", "images/poster_case5/output.jpg",
                      "images/poster_case9/output.jpg"],      # a node-graph UI screenshot, a chat screenshot, a sketch
             label="FAKE", generator="ideogram 4.0 (2026)", family="ideogram", content="other", min_side=MIN,
             license="CC BY 4.0 (repo LICENSE; images credited to their X authors)",
             note="community test generation reposted from X (JPEG): portraits, street photos, posters, typography",
             group_re=r"images/([a-z]+_case\d+)/", group_prefix="ideogram4_"),
        dict(name="stylegan2_domains", repo=SG2[0], commit=SG2[1], patterns=["content/*/samples.jpg"],
             exclude=["content/CIFAR*", "content/car *"],  # 32-px models blown up 8x; cars squashed to a square
             label="FAKE", generator="stylegan2 (32 community models: art, anime, LSUN, textures, maps, ...)",
             family="gan", content="other", grid=(3, 4), min_side=MIN,
             license="no repo licence; per-model licences in models.json (mostly NVIDIA Source Code License-NC, "
                     "CC BY-NC-SA 4.0 or unknown): research use only",
             note="samples.jpg of one model: 3x4 tiles of 256 px (seeds 0-11, psi 0.75, downscaled from 256-1024 px)"),
        dict(name="stylegan1_domains", repo=SG1[0], commit=SG1[1], patterns=["images/*.jpg"],
             exclude=["images/thumbs/*", "images/LSUN Cars.jpg"], label="FAKE",
             generator="stylegan v1 (13 community and NVIDIA models)", family="gan", content="other", grid=(3, 3),
             min_side=MIN, license="no repo licence; per-model licences in models.csv (NVIDIA CC BY-NC or unknown): "
                                   "research use only",
             note="sample figure of one model: 3x3 tiles of 256 px"),
        dict(name="stylegan3_lucid", repo=LUCID[0], commit=LUCID[1], patterns=["wombo/*strip_*.pkl.jpg"],
             label="FAKE", generator="stylegan3-t (fine-tuned from LHQ-256 on Wombo Dream images)", family="gan",
             content="art", grid=(4, 1), margin=5, min_side=MIN, license="MIT (repo LICENSE)",
             note="snapshot strip of 4 samples with 5-px borders (some snapshots early in fine-tuning)",
             group_re=r"wombo/([^/]+)/", group_prefix="lucid_"),
        dict(name="wombo_dream_lucid", repo=LUCID[0], commit=LUCID[1],
             patterns=["wombo/*/dataset*/img*.png", "wombo/*/dataset/*-final.jpg"], label="FAKE",
             generator="wombo dream (2022)", family="early2022", content="art", min_side=MIN,
             license="MIT (repo LICENSE)",
             note="Wombo Dream output (cropped to centre and scaled to 1024/512/256 px by the repo author)",
             group_re=r"wombo/([^/]+)/", group_prefix="lucid_"),
        cog("auraflow_cog", ["af1", "af2", "af3"], "auraflow v0.1 / v0.2 / v0.3", "auraflow"),
        cog("cogview3_cog", ["cv3p"], "cogview3-plus-3b", "cogview"),
        cog("kolors_cog", ["kolors"], "kolors", "kolors"),
        cog("stable_cascade_cog", ["sc"], "stable cascade", "stable_cascade"),
        cog("playground_cog", ["pg2", "pg25"], "playground v2.0 / v2.5 (1024px aesthetic)", "playground"),
        cog("sdxl_distilled_cog", ["lightning", "hyper", "dmd2", "tcd", "pcm", "lcm", "flash", "pf", "add"],
            "sdxl distilled: lightning, hyper-sd, dmd2, tcd, pcm, lcm-lora, flash, perflow, turbo", "sdxl_distilled",
            "; SDXL-Turbo through a high-res-fix pipeline"),
        sentry("deepfloyd_if_sentry", ["fake2m/IF-*", "mpbench/IF-*"], "deepfloyd if (stage II, 256 px)", "deepfloyd_if"),
        sentry("cogview2_sentry", ["mpbench/cogview2-*"], "cogview2", "cogview"),
        sentry("midjourney5_sentry", ["mpbench/Midjourney"], "midjourney v5", "midjourney"),
        sentry("sd15_sentry", ["fake2m/SD-V1.5Real-*", "mpbench/SDv15-*", "mpbench/SDv15R-*"], "sd1.5 (+ realistic fine-tune)", "sd15"),
        sentry("sd2_sentry", ["mpbench/SDv2-*"], "sd2", "sd2"),
        sentry("stylegan3_sentry", ["fake2m/StyleGAN3", "mpbench/stylegan3-*"], "stylegan3 (ffhq-u, afhqv2, metfaces)", "gan", group=False),
        jared("z_image_jared", "z_image_turbo", "z-image-turbo (Tongyi-MAI)", "z_image"),
        jared("glm_image_jared", "glm_image", "glm-image (zai-org)", "glm_image"),
        jared("kandinsky5_jared", "Kandinsky", "kandinsky 5.0 t2i lite", "kandinsky"),
        jared("anima_jared", "Anima", "anima (circlestone-labs)", "anima"),
        jared("pixart_sigma_jared", "PixArt_alpha", "pixart-sigma-xl-2-1024 (folder named PixArt_alpha)", "pixart"),
        jared("sd35_jared", "stable_diffusion", "sd 3.5 large", "sd3"),
        jared("flux_jared", "black_forest_flux1", "flux.1-dev", "flux"),
        jared("flux2_jared", "black_forest_flux2", "flux.2-dev", "flux2"),
        jared("qwen_image_jared", "qwen_image", "qwen-image", "qwen_image"),
        # --- REAL
        dict(name="louvre_paintings", repo="Kozzlov/art-gange-classification-resnet18",
             commit="89e62252cbca582c7416344877948c379c7ed466", patterns=["painting_image_*.jpg"], label="REAL",
             generator="", family="real", content="art", trim=True, min_side=MIN,
             license=NOLIC.format("Louvre collections scrape; Louvre images are for non-commercial reuse"),
             note="photo of an old-master painting (genre, landscape, still life, portrait) from collections.louvre.fr, "
                  "500x500 JPEG as published; its white letterbox bars cut off"),
        dict(name="deep_photo_style", repo="luanfujun/deep-photo-styletransfer",
             commit="4801fa2dca2e2b52847c377f451246a39eae154a",
             patterns=["examples/input/in*.png", "examples/style/tar*.png"], label="REAL", generator="",
             family="real", content="photo", min_side=MIN,
             license="no licence file; README: academic and non-commercial use only",
             note="input / reference photo of the Deep Photo Style Transfer paper (2017), PNG, long side 700 px",
             group_re=r"/(?:in|tar)(\d+)\.png$", group_prefix="dpst_"),
        dict(name="polyu_noisy_frames", repo="csjunxu/PolyU-Real-World-Noisy-Images-Dataset",
             commit="3af0f2646b267a00446fe4b7113a15e67bc80b4e", patterns=["OriginalImages/*_Real.JPG"],
             label="REAL", generator="", family="real", content="photo", min_side=MIN,
             license="PolyU License.txt: non-commercial research use only",
             note="camera JPEG at high ISO (Canon 5D II / 80D / 600D, Nikon D800, Sony A7 II), 2784-3680 px"),
    ]


if __name__ == "__main__":
    mirrors = Path(sys.argv[1])
    grown.main(mirrors, Path(sys.argv[2]), set(sys.argv[3:]), here=HERE, sources=sources(mirrors), include="wider",
               description="wider + GPT-Image-2, Ideogram 4.0, CogView, DeepFloyd IF, Z-Image, GLM-Image, Kandinsky 5, "
                           "distilled SDXL, AuraFlow, StyleGAN v1/2/3 beyond faces, Wombo Dream; REAL museum paintings "
                           "and camera frames (docs/data_pools.md)",
               rebuild="widest")
