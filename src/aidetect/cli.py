"""The `aidetect` command. Every subcommand is declared here; each one's code lives in its own
module, imported only when that subcommand runs (so `aidetect --help` imports no torch).

    aidetect predict photo.jpg folder/ --out scores.csv   # P(FAKE) per image (default detector or --ckpt)
    aidetect views photo.jpg aug=inverted_saturated aug.saturation_factor=8   # one image, one view
    aidetect views data/cifake/raw/test --out docs/views_cifake.png   # what each view looks like
    aidetect calibrate CKPT data=faces                    # threshold + temperature on validation
    aidetect audit data/faces                             # can file metadata alone tell REAL from FAKE?
    aidetect web                                          # a local page: P(FAKE), the view, Grad-CAM
    aidetect slim CKPT OUT                                # inference-only checkpoint (fp16 weights)
    aidetect ship CKPT --name modern-lite0s16 --version 1.0   # package the default detector
    aidetect export CKPT OUT.onnx                         # ONNX: uint8 in, calibrated P(FAKE) out
    aidetect ensemble run1/predictions.csv run2/predictions.csv   # several runs as one detector
    aidetect soup A.ckpt B.ckpt --out soup.ckpt           # one detector: the mean of their weights
    aidetect aggregate outputs/<task>/multirun/<time>     # results table of a sweep
    aidetect flux generate --n 1000                       # FAKE images through Replicate
    aidetect flux collect-real --n 900                    # REAL photographs (Openverse, URL list or folder)
    aidetect flux build                                   # both pools -> train/validation/test/{REAL,FAKE}
    aidetect data get grown --from ../shared/data/modern  # rebuild a training pool from its recipe
"""

import argparse
import importlib
import logging
import sys

from aidetect.config import user_errors

RAW = argparse.RawDescriptionHelpFormatter


def command(target: str):
    """The subcommand's function, "module:function", imported when the subcommand runs."""
    module, name = target.split(":")

    def run(args):
        return getattr(importlib.import_module(module), name)(args)

    run.target = target
    return run


PREDICT_DOC = """P(FAKE) for each image, decoded exactly as the checkpoint's training data was.

    aidetect predict photo.jpg                          # a table on the terminal
    aidetect predict ~/Pictures "shots/*.png" --out scores.csv      # or .jsonl
    aidetect predict --ckpt outputs/.../best_epoch_003.ckpt folder/ --threshold 0.7

Without --ckpt the detector shipped with the package is used. A file that cannot be read
gets a row saying why; the exit code is non-zero only for real errors."""

VIEWS_DOC = """aidetect views data/cifake/raw/test --out views.png      # every view
aidetect views photo.jpg aug=inverted_saturated aug.saturation_factor=8
aidetect views photo.jpg --ckpt best.ckpt   # the view, size and P(FAKE) of a checkpoint"""


def add_detector_commands(sub) -> None:
    """Using trained detectors: predict, views, calibrate, audit, web, slim, export, ensemble."""
    p = sub.add_parser("predict", help="P(FAKE) for image files, folders or globs", description=PREDICT_DOC,
                       formatter_class=RAW)
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or quoted globs")
    p.add_argument("--ckpt", help="checkpoint from train.py (default: the detector shipped with the package)")
    p.add_argument("--out", help="write rows to this .csv or .jsonl file instead of a table")
    p.add_argument("--threshold", type=float, help="P(FAKE) at or above which an image is called FAKE "
                   "(default: the checkpoint's, fitted on validation)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=command("aidetect.predict:cmd_predict"))

    v = sub.add_parser("views", help="what a view makes of images: a dataset's REAL/FAKE grid, or any image files",
                       description=VIEWS_DOC, formatter_class=RAW)
    v.add_argument("inputs", nargs="+", help="a folder holding REAL/ and FAKE/, or image files; then optional "
                   "settings as in training (aug=..., aug.*=..., data=... for its view defaults)")
    v.add_argument("--out", default="views.png")
    v.add_argument("--views", nargs="+", help="views as aug.spec writes them, e.g. npr inverted_saturated@500")
    v.add_argument("--ckpt", help="show the checkpoint's own view at its input size, with its P(FAKE)")
    v.add_argument("-n", type=int, default=4, help="images per class")
    v.set_defaults(func=command("aidetect.grids:cmd_views"))

    c = sub.add_parser("calibrate", help="fit threshold and temperature of a checkpoint on validation data")
    c.add_argument("ckpt")
    c.add_argument("overrides", nargs="*", help="data settings as for eval.py, e.g. data=faces "
                   "(default: the data the checkpoint was trained on, with its split seed)")
    c.add_argument("--out", help="folder for predictions.csv and reliability.png (default: beside the checkpoint)")
    c.add_argument("--max-fpr", type=float, default=None, metavar="A",
                   help="threshold: the lowest that calls at most a fraction A of validation REAL images FAKE "
                        "(default: the best balanced accuracy on validation)")
    c.add_argument("--val-only", action="store_true", help="fit and write val_predictions.csv; do not score the test split")
    c.set_defaults(func=command("aidetect.calibrate:cmd_calibrate"))

    a = sub.add_parser("audit", help="does anything but the pixels tell REAL from FAKE? (formats, sizes, bytes)")
    a.add_argument("folder", help="a folder holding REAL/ and FAKE/, or split folders that do")
    a.add_argument("--out", help="write the report as JSON here too")
    a.add_argument("--near-dup-limit", type=int, default=20000, help="skip near-duplicate search above this many images")
    a.add_argument("--format-neutral", action="store_true", help="also score the metadata classifier on copies where "
                   "both classes are processed alike (short side 512, then JPEG q90), beside the files as published")
    a.set_defaults(func=command("aidetect.audit:cmd_audit"))

    w = sub.add_parser("web", help="a local web page: upload images, see P(FAKE), the view and a heat map")
    w.add_argument("--ckpt", help="checkpoint from train.py (default: the detector shipped with the package)")
    w.add_argument("--port", type=int, default=7860)
    w.set_defaults(func=command("aidetect.web:cmd_web"))

    s = sub.add_parser("slim", help="an inference-only copy of a checkpoint (no optimizer state; fp16 weights)")
    s.add_argument("ckpt")
    s.add_argument("out")
    s.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    s.set_defaults(func=command("aidetect.export:cmd_slim"))

    sh = sub.add_parser("ship", help="package a checkpoint as the shipped detector (fp16, named) + golden values")
    sh.add_argument("ckpt")
    sh.add_argument("--name", required=True)
    sh.add_argument("--version", required=True)
    sh.add_argument("--out", help="default: the package's weights/default.ckpt")
    sh.add_argument("--golden", type=int, default=16, help="validation images to record (0: none)")
    sh.add_argument("--golden-out", help="default: tests/golden/<name>.json")
    sh.add_argument("--shared", default="../shared/data/modern", help="the pool the golden images are read from")
    sh.set_defaults(func=command("aidetect.ship:cmd_ship"))

    e = sub.add_parser("export", help="ONNX: uint8 images in, P(FAKE) out, view and calibration inside")
    e.add_argument("ckpt")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=18)
    e.set_defaults(func=command("aidetect.export:cmd_export"))

    n = sub.add_parser("ensemble", help="several runs' predictions.csv as one detector: mean logit, accuracy, AUROC")
    n.add_argument("predictions", nargs="+", help="predictions.csv files scoring the same images")
    n.add_argument("--out", help="write the ensemble's predictions.csv here")
    n.add_argument("--md", help="write the markdown table here too")
    n.set_defaults(func=command("aidetect.ensemble:cmd_ensemble"))

    so = sub.add_parser("soup", help="one detector whose weights are the mean of several detectors' (then calibrate it)")
    so.add_argument("ckpts", nargs="+", help="checkpoints of the same network; the first one's run config is kept")
    so.add_argument("--out", required=True)
    so.add_argument("--bn-batches", type=int, default=0,
                    help="re-estimate batch-norm statistics on this many training batches of the first member's data")
    so.set_defaults(func=command("aidetect.soup:cmd_soup"))


def add_aggregate(sub) -> None:
    from aidetect.report import BASELINE

    p = sub.add_parser("aggregate", help="results table, statistics and plot of a -m sweep folder")
    p.add_argument("sweep_dir")
    p.add_argument("--strict", action="store_true", help="exit 1 when some jobs failed or did not finish")
    p.add_argument("--baseline", default=BASELINE, help="what every row is compared with: a view (default: none), or the setting "
                   "with these overrides, e.g. model=lite0_s16,model.net.pretrained=true")
    p.set_defaults(func=command("aidetect.report:cmd_aggregate"))


def add_flux(sub) -> None:
    """`aidetect flux ...`: build a FLUX-vs-real dataset. Defaults come from aidetect/flux/flux.yaml."""
    from aidetect.flux.commands import DEFAULT_CONFIG

    flux = sub.add_parser("flux", help="build a FLUX-vs-real dataset").add_subparsers(dest="flux_cmd", required=True)

    def common(p):
        p.add_argument("--config", default=str(DEFAULT_CONFIG), help="settings file (default: %(default)s)")
        p.add_argument("--out", help="output folder (default from the config)")
        p.add_argument("-v", "--verbose", action="store_true")

    g = flux.add_parser("generate", help="FAKE images through Replicate (needs REPLICATE_API_TOKEN)")
    common(g)
    g.add_argument("--n", type=int, help="total images wanted (existing ones count)")
    g.add_argument("--max-cost", type=float, help="USD this run may spend at most")
    g.add_argument("--dry-run", action="store_true", help="print prompts and cost, call nothing")
    g.add_argument("--model", help="Replicate model owner/name")
    g.add_argument("--concurrency", type=int)
    g.add_argument("--base-url", help="Replicate API base URL (default: the public API)")
    g.set_defaults(func=command("aidetect.flux.commands:cmd_generate"))

    c = flux.add_parser("collect-real", help="REAL photos from Openverse, a URL list or a folder")
    common(c)
    c.add_argument("--n", type=int)
    c.add_argument("--source", choices=["openverse", "urls", "folder"])
    c.add_argument("--query")
    c.add_argument("--urls", help="file of image URLs, one per line")
    c.add_argument("--folder", help="folder of your own photos")
    c.add_argument("--openverse-url", help="Openverse API base (default from the config)")
    c.set_defaults(func=command("aidetect.flux.commands:cmd_collect"))

    b = flux.add_parser("build", help="both pools -> train/validation/test/{REAL,FAKE}")
    common(b)
    b.add_argument("--fake", help="folder of generated images")
    b.add_argument("--real", help="folder of real photos")
    b.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    b.add_argument("--resize", choices=["center_crop", "resize"])
    b.add_argument("--force", action="store_true", help="replace an existing output folder")
    b.set_defaults(func=command("aidetect.flux.commands:cmd_build"))


def add_data(sub) -> None:
    """`aidetect data get | list`: training pools rebuilt from the recipes shipped with the package."""
    from aidetect.data.pool import DEFAULT_BITS, GET_DOC, RAW_BASE

    p = sub.add_parser("data", help="training pools: rebuild one from its recipe (aidetect data get NAME)")
    dsub = p.add_subparsers(dest="data_command", required=True)
    g = dsub.add_parser("get", help="rebuild pool NAME from its recipe, verified (download or --from DIR)",
                        description=GET_DOC, formatter_class=RAW)
    g.add_argument("name", help="recipe name (shared_modern, grown, ...) or a folder holding recipe.yaml")
    g.add_argument("--out", help="destination folder (default: data/NAME)")
    g.add_argument("--from", dest="from_dirs", action="append", default=[], metavar="DIR",
                   help="take files from this folder instead of downloading: a built pool, a copy of the "
                        "repositories, a bare git mirror or a folder of them (/work/.mirror); repeatable")
    g.add_argument("--offline", action="store_true", help="never download; a file not under --from is an error")
    g.add_argument("--holdout", help="hash list of images to exclude (default: ../shared/data/holdout_hashes.tsv)")
    g.add_argument("--no-holdout", action="store_true", help="build without the held-out exclusion (not for training"
                   " a detector that is scored on that list)")
    g.add_argument("--holdout-bits", type=int, default=DEFAULT_BITS, help="dHash distance counted as the same "
                   f"image as a held-out one (default {DEFAULT_BITS}; -1: sha256 only)")
    g.add_argument("--dedup-bits", type=int, default=DEFAULT_BITS, help="dHash distance counted as a duplicate "
                   f"inside the pool (default {DEFAULT_BITS}; -1: sha256 only)")
    g.add_argument("--base-url", default=RAW_BASE, help=f"where to download from (default {RAW_BASE})")
    g.add_argument("-v", "--verbose", action="store_true")
    g.set_defaults(func=command("aidetect.data.pool:main"))
    ls = dsub.add_parser("list", help="the recipes shipped with the package and their sizes")
    ls.set_defaults(func=command("aidetect.data.pool:main"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aidetect", description=__doc__, formatter_class=RAW)
    sub = parser.add_subparsers(dest="command", required=True)
    add_detector_commands(sub)
    add_aggregate(sub)
    add_flux(sub)
    add_data(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    with user_errors():
        return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
