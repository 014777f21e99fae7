"""How this recipe's manifests were made (kept for the record; not run by `aidetect data get`):

    python make.py /work/.mirror /work/shared/data [SOURCE ...]   # mirrors, shared data; rescan only SOURCEs

`wide` = the `broad` pool plus REAL images from camera pipelines it lacked: ~100 camera and phone models as shot
(metadata-extractor's sample images), full-resolution phone photos (Pixel 5, iPhone 11, iPhone 7), photographers'
sites (Fujifilm X100V film simulations, Canon EOS 200D, Nikon D800/D3200 via Lightroom, a Fujifilm/Nikon site
published as WebP, a Fujifilm street portfolio), white-balance examples from a dozen cameras, Food-101 phone
uploads (2010-2013 phones, EXIF kept), low-light benchmark photos, Urban100 (Flickr architecture); and small
FAKE samples of generators the pool lacked (Kolors, HunyuanDiT, Midjourney --cw (v6 era), Stable Cascade,
SDXL-Lightning, Playground v2.5), taken from the model repos' README assets. Scanned like `grown`
(grown/make.py: held-out images and duplicates of `broad` dropped, blank frames skipped); every source here
also drops images under 256 px on the short side (`min_side`)."""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("grown_make", HERE.parent / "grown" / "make.py")
grown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grown)

NOLIC = "no licence stated ({}): research use only"
MIN = 256                                       # short side, px: thumbnails out
DENOISE = ("majedelhelou/denoising_datasets", "58234876fef6f1b56306705c78dfd40cdb837b86")
DENOISE_LIC = "no licence stated (repo: 'no ownership claimed'); {}: research use only"
# CManga109 (same repo) was tried and dropped: every file is a manga cover with printed title text.
# docs/FlowsResults existed only up to this commit (removed later)
VISIONATRIX = ("Visionatrix/Visionatrix", "becdd99308b67ab1479a1357dba7ded5b9a0e51d")
VX_LIC = "AGPL-3.0 (repo LICENSE.txt); generator outputs shown in the project's docs"


def vx(name, stem, generator, family, note):
    return dict(name=name, repo=VISIONATRIX[0], commit=VISIONATRIX[1], patterns=[f"docs/FlowsResults/{stem}_*.png"],
                label="FAKE", generator=generator, family=family, content="other", license=VX_LIC, min_side=MIN,
                note=note + "; PNG as committed to the docs (Visionatrix ComfyUI flow example)",
                group_re=r"FlowsResults/(.+?)(?:-fast)?\.png$")


SOURCES = [
    # --- REAL: many camera pipelines
    dict(name="camera_models_mde", repo="drewnoakes/metadata-extractor-images",
         commit="4beba640487802442bc9931fb01274e908102d3a", patterns=["jpg/*"],
         exclude=["jpg/metadata/*", "jpg/Issue*", "jpg/issue*", "jpg/Photoshop*", "jpg/metadata-extractor*",
                  "jpg/User*", "jpg/Multiple*", "jpg/FLIR*"],
         label="REAL", generator="camera (~100 camera/phone models: Canon, Sony, Nikon, Fujifilm, Samsung, Olympus, "
                                 "Panasonic, Kodak, Pentax, Minolta, Leica, Apple, HTC, DJI, ...)",
         family="real", content="photo", min_side=MIN,
         license="free to use (repo README: 'You are free to use these media files however you wish')",
         note="camera/phone JPEG as contributed (mostly straight from the camera, 2000-2020); files over 4 MB absent "
              "from the snapshot; file name = camera model"),
    dict(name="phone_fullres_pixel_iphone", repo="Tech4Tracing/CartridgeOCR",
         commit="a93185a9ff5d6d490ce367cd01b5d0fd697967e2", patterns=["imagesForTesting/*"], label="REAL",
         generator="phone camera (Google Pixel 5 HDR+, Apple iPhone 11, other phones)", family="real",
         content="photo", license="MIT (repo LICENSE)", min_side=MIN,
         note="full-resolution phone JPEG (4032x3024) of cartridge cases on tables, as shot; one folder = one "
              "session/device", group_re=r"^(imagesForTesting/.+)/[^/]+$"),
    dict(name="monstree_iphone7", repo="alicevision/dataset_monstree",
         commit="c697b936be47d6b78ce58d7eb4188e6908503ee2", patterns=["full/*"], label="REAL",
         generator="phone camera (Apple iPhone 7)", family="real", content="photo", cap=15, min_side=MIN,
         license=NOLIC.format("AliceVision photogrammetry sample dataset"),
         note="iPhone 7 JPEG 4032x3024 as shot, one sculpture photographed from many angles (evenly capped at 15, "
              "one group)", group_re=r"^(full)/"),
    dict(name="fuji_x100v_blog", repo="cassiomolin/cassiomolin.github.io",
         commit="167f881d91206ff86fa6d32413bcc0a4a125b56b", patterns=["content/photography/*/images/*.jpg"],
         label="REAL", generator="camera (Fujifilm X100V etc., in-camera film simulations)", family="real",
         content="photo", cap=250, min_side=MIN, license=NOLIC.format("personal photography blog repo"),
         note="photograph as published (mostly 4000x2667 JPEG, 'straight out of camera' per the blog); the air-show "
              "post is burst-like and shares one group; evenly capped at 250",
         group_re=r"content/photography/(bray-air-display-2023)/"),
    dict(name="portfolio_canon200d", repo="JeremyWelsh/PhotoPortfolio",
         commit="a5af1c43c357324e3b94b4122bee06517fecf25c", patterns=["photo-portfolio/public/*.jpg"],
         label="REAL", generator="camera (Canon EOS 200D II; Lightroom)", family="real", content="photo",
         min_side=MIN, license=NOLIC.format("photographer's portfolio repo"),
         note="full-resolution photograph (up to 6000 px JPEG) as published"),
    dict(name="portfolio_nikon_lr", repo="Crytoma/photography", commit="99faeb171e12de99b489914b1d48e257c1b56c88",
         patterns=["images/fulls/*"], label="REAL", generator="camera (Nikon D800, D3200; Lightroom)", family="real",
         content="photo", min_side=MIN,
         license="GPL-3.0 (repo LICENSE covers the site; photos: no separate licence stated): research use only",
         note="photograph as published by a Jekyll photography site, 1024 px JPEG"),
    dict(name="portfolio_webp_fuji_nikon", repo="wildaye/karamudie.co.uk",
         commit="d208effe33c9454e0ea8091cbcc6408ae53af77f", patterns=["docs/img/*/*.webp"],
         exclude=["docs/img/lightbox/*", "docs/img/slider/*", "docs/img/journal/*"], label="REAL",
         generator="camera (Fujifilm X-T20, Nikon D5300; Capture One / Lightroom)", family="real", content="photo",
         min_side=MIN, license="site template MIT (repo LICENSE); photos: no licence stated, research use only",
         note="landscape/seascape/nature photograph, WebP as published by the site (1600-2000 px)"),
    dict(name="wb_camera_examples", repo="mahmoudnafifi/WB_sRGB", commit="98340313cc7d1728e286ad9ba03e8f9a0e8b82c5",
         patterns=["example_images/*"], label="REAL",
         generator="camera (Pentax K100D, Nikon D60/D80, Canon 60D/5D III, Panasonic LX3/LX100, ...)", family="real",
         content="photo", min_side=MIN, license="CC BY-NC-SA 4.0 (repo LICENSE.md): research use only",
         note="sRGB photo with a camera white-balance error (the method's example inputs), 1000-4400 px JPEG"),
    dict(name="urban100", repo=DENOISE[0], commit=DENOISE[1], patterns=["CUrban100/*.png"], label="REAL",
         generator="photo-unknown (Flickr, Urban100)", family="real", content="photo", min_side=MIN,
         license=DENOISE_LIC.format("Urban100 benchmark (Huang et al. 2015, Flickr photos)"),
         note="Urban100 architecture photograph, ~1024 px PNG (SR benchmark HR image)"),
    dict(name="food101_phones", repo="srohit0/food_mnist", commit="e6cdf589a9937cf7fcb53d3a86df053be452e1f5",
         patterns=["images/*/*.jpg"], label="REAL",
         generator="phone/compact camera (Food-101 / foodspotting.com uploads, 2010-2013: iPhone 3GS-4S, Galaxy S2, "
                   "Nikon, Lumix, ...)", family="real", content="photo", cap=400, min_side=MIN,
         license="no licence stated (Food-101 subset; images belong to their foodspotting owners, research fair use "
                 "per Food-101): research use only",
         note="user food photo, max side 512 px JPEG (Food-101's resize, EXIF kept); 10 dish classes, evenly capped at "
              "400 of 5,000"),
    dict(name="lowlight_sets", repo="JYP-1317/LLIE_ULBPNet", commit="f5d819dde3635389b0eb321f852579151999afc1",
         patterns=["VV/*", "LIME/*", "MEF/*", "LOL/*", "Fusion/*"], label="REAL",
         generator="camera (low-light benchmarks: VV Panasonic Lumix, LIME, MEF, LOL)", family="real",
         content="photo", min_side=MIN, license=NOLIC.format("low-light enhancement benchmark images"),
         note="under-exposed photograph from the VV/LIME/MEF/LOL test sets as copied into an LLIE repo "
              "(JPEG/PNG/BMP)"),
    dict(name="portfolio_xt50_webp", repo="phonon-py/photography-portfoli",
         commit="6d282099fbefe7ce05d92b8ede00a833e1bd9f19", patterns=["public/images/*.webp"], label="REAL",
         generator="camera (Fujifilm, DSCF files; Astro/sharp WebP)", family="real", content="photo", min_side=MIN,
         license=NOLIC.format("street photographer's portfolio repo"),
         note="street photograph (Aomori), WebP as published (960x1200)"),
    # --- FAKE: generators the pool lacked (few files)
    dict(name="kolors_assets", repo="Kwai-Kolors/Kolors", commit="0fafa56a76b7acf1e147b153d1e7b8fd65f9055b",
         patterns=["controlnet/outputs/*.jpg", "ipadapter/asset/*_kolors_ip_result.jpg",
                   "scripts/outputs/sample_test.jpg", "scripts/outputs/sample_ip_*.jpg"],
         exclude=["*_condition.jpg", "*_sdxl.jpg"], label="FAKE",
         generator="kolors (base; ControlNet / IP-Adapter conditioned)", family="kolors", content="other",
         min_side=MIN, license="Apache-2.0 (repo LICENSE; model under the Kolors licence)",
         note="Kolors output shown in the repo's READMEs, 1024 px JPEG",
         group_re=r"(ipadapter/asset/\d+)_"),           # one IP-Adapter reference (shared with midjourney_cw_kolors)
    dict(name="midjourney_cw_kolors", repo="Kwai-Kolors/Kolors", commit="0fafa56a76b7acf1e147b153d1e7b8fd65f9055b",
         patterns=["ipadapter/asset/*_mj_cw_result.png"], label="FAKE",
         generator="midjourney (--cw character reference, 2024: v6 era; version not stated)", family="midjourney",
         content="other", min_side=MIN, license="Apache-2.0 (repo LICENSE); Midjourney output",
         note="Midjourney comparison image in Kolors' IP-Adapter README, 1024x1024 PNG",
         group_re=r"(ipadapter/asset/\d+)_"),
    dict(name="hunyuandit_assets", repo="Tencent/HunyuanDiT", commit="368280ec35119ed2741a30cc5b40aafde34f8a8a",
         patterns=["ipadapter/asset/output/*", "controlnet/asset/output/*"], label="FAKE",
         generator="hunyuan-dit v1.2 (IP-Adapter / ControlNet conditioned)", family="hunyuandit", content="other",
         min_side=MIN, license="Tencent Hunyuan Community License (repo LICENSE.txt)",
         note="HunyuanDiT output shown in the repo's READMEs, 1024 px PNG/JPEG",
         group_re=r"(ipadapter/asset/output/[a-z]+)_"),
    vx("stable_cascade_vx", "Stable_Cascade", "stable cascade (wuerstchen v3)", "stable_cascade",
       "Stable Cascade render"),
    vx("sdxl_lightning_vx", "SDXL_Lighting_8", "sdxl-lightning 8-step", "sdxl_lightning", "SDXL-Lightning 8-step"),
    vx("playground25_vx", "Playground_2_5_aesthetic", "playground v2.5 1024px aesthetic", "playground",
       "Playground v2.5 (normal and '-fast' flow of each prompt share a group)"),
]

if __name__ == "__main__":
    grown.main(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:]), here=HERE, sources=SOURCES, include="broad",
               description="broad + REAL photos from ~100 more camera/phone pipelines (camera samples, phone "
                           "full-res, photographers' sites incl. WebP, Food-101 phone uploads, low-light sets), "
                           "Urban100, and a few Kolors / HunyuanDiT / Midjourney / Stable "
                           "Cascade / SDXL-Lightning / Playground v2.5 renders (docs/data_pools.md)",
               rebuild="wide")
