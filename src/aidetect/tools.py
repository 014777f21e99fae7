"""`aidetect predict | calibrate | slim | audit | web | ensemble | export`: using trained detectors.
Parsers only here, so `aidetect --help` stays fast; each command imports torch when it runs."""

import argparse
import sys
from pathlib import Path


PREDICT_DOC = """P(FAKE) for each image, decoded exactly as the checkpoint's training data was.

    aidetect predict photo.jpg                          # a table on the terminal
    aidetect predict ~/Pictures "shots/*.png" --out scores.csv      # or .jsonl
    aidetect predict --ckpt outputs/.../best_epoch_003.ckpt folder/ --threshold 0.7

Without --ckpt the detector shipped with the package is used. A file that cannot be read
gets a row saying why; the exit code is non-zero only for real errors."""


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="P(FAKE) for image files, folders or globs",
                       description=PREDICT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or quoted globs")
    p.add_argument("--ckpt", help="checkpoint from train.py (default: the detector shipped with the package)")
    p.add_argument("--out", help="write rows to this .csv or .jsonl file instead of a table")
    p.add_argument("--threshold", type=float, help="P(FAKE) at or above which an image is called FAKE "
                   "(default: the checkpoint's, fitted on validation)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=lambda a: __import__("aidetect.predict", fromlist=["cmd_predict"]).cmd_predict(a))

    c = sub.add_parser("calibrate", help="fit threshold and temperature of a checkpoint on validation data")
    c.add_argument("ckpt")
    c.add_argument("overrides", nargs="*", help="data settings as for eval.py, e.g. data=faces "
                   "(default: the data the checkpoint was trained on, with its split seed)")
    c.add_argument("--out", help="folder for predictions.csv and reliability.png (default: beside the checkpoint)")
    c.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("slim", help="an inference-only copy of a checkpoint (no optimizer state; fp16 weights)")
    s.add_argument("ckpt")
    s.add_argument("out")
    s.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    s.set_defaults(func=cmd_slim)

    a = sub.add_parser("audit", help="does anything but the pixels tell REAL from FAKE? (formats, sizes, bytes)")
    a.add_argument("folder", help="a folder holding REAL/ and FAKE/, or split folders that do")
    a.add_argument("--out", help="write the report as JSON here too")
    a.add_argument("--near-dup-limit", type=int, default=20000, help="skip near-duplicate search above this many images")
    a.set_defaults(func=lambda args: __import__("aidetect.audit", fromlist=["cmd_audit"]).cmd_audit(args))
    add_web(sub)
    n = sub.add_parser("ensemble", help="several runs' predictions.csv as one detector: mean logit, accuracy, AUROC")
    n.add_argument("predictions", nargs="+", help="predictions.csv files scoring the same images")
    n.add_argument("--out", help="write the ensemble's predictions.csv here")
    n.add_argument("--md", help="write the markdown table here too")
    n.set_defaults(func=lambda a: __import__("aidetect.ensemble", fromlist=["cmd_ensemble"]).cmd_ensemble(a))
    e = sub.add_parser("export", help="ONNX: uint8 images in, P(FAKE) out, view and calibration inside")
    e.add_argument("ckpt")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=18)
    e.set_defaults(func=lambda a: __import__("aidetect.export", fromlist=["cmd_export"]).cmd_export(a))


def add_web(sub) -> None:
    w = sub.add_parser("web", help="a local web page: upload images, see P(FAKE), the view and a heat map")
    w.add_argument("--ckpt", help="checkpoint from train.py (default: the detector shipped with the package)")
    w.add_argument("--port", type=int, default=7860)
    w.set_defaults(func=lambda a: __import__("aidetect.web", fromlist=["cmd_web"]).cmd_web(a))


def cmd_calibrate(args) -> int:
    import json

    from omegaconf import OmegaConf

    from aidetect.calibrate import calibrate_and_score
    from aidetect.config import ConfigError, compose
    from aidetect.module import load_detector
    from aidetect.train import build_datamodule

    ckpt = Path(args.ckpt)
    model = load_detector(ckpt)
    trained = (model.run_config or {}).get("data")
    if any(o.startswith("data=") for o in args.overrides):  # another dataset, composed as on the command line
        data = compose("train", list(args.overrides)).data
    elif trained:  # the data the checkpoint was trained on, resolved as it ran (root, split seed...)
        data = OmegaConf.create(trained)
        data = OmegaConf.merge(data, OmegaConf.from_dotlist([o[len("data."):] for o in args.overrides
                                                              if o.startswith("data.")]))
    else:
        raise ConfigError(f"{ckpt} does not record its training data; name one, e.g. data=faces or "
                          f"data=folder data.root=/my/images")
    data.image_size, data.resize = list(model.input_size), model.hparams.resize
    dm = build_datamodule(data, default_size=model.input_size)
    dm.prepare_data()
    dm.setup("fit")
    out = Path(args.out) if args.out else ckpt.parent / f"calibration-{ckpt.stem}"
    out.mkdir(parents=True, exist_ok=True)
    result = calibrate_and_score(model, dm.splits, out, ckpt, title=dm.name)
    print(json.dumps(result, indent=2))
    print(f"stored in {ckpt}; test predictions and reliability.png in {out}", file=sys.stderr)
    return 0


def cmd_slim(args) -> int:
    import torch

    from aidetect.io import torch_save
    from aidetect.module import load_detector

    load_detector(args.ckpt)  # refuses anything that would not load
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    half = not args.fp32
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    slim = {"hyper_parameters": ckpt["hyper_parameters"], "state_dict": state, "aidetect": ckpt["aidetect"]}
    slim["hyper_parameters"] = {**slim["hyper_parameters"], "optimizer": None, "scheduler": None}
    torch_save(slim, Path(args.out))
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size / 1e6:.2f} MB ({'float16' if half else 'float32'} weights)")
    return 0
