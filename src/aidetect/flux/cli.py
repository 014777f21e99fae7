"""`aidetect flux ...` subcommands. Defaults come from aidetect/flux/flux.yaml beside this file (--config)."""

import argparse
import json
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

DEFAULT_CONFIG = Path(__file__).with_name("flux.yaml")  # package data: found by any install


def load_config(path) -> "OmegaConf":
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"config file {path} not found; pass --config path/to/flux.yaml")
    return OmegaConf.load(path)


def cmd_generate(args) -> int:
    from aidetect.flux.generate import GenerateError, generate

    cfg = load_config(args.config)
    g = cfg.generate
    for key in ("model", "concurrency"):
        if getattr(args, key) is not None:
            g[key] = getattr(args, key)
    out = Path(args.out or g.out_dir)
    try:
        result = generate(g, args.n or g.n, out, seed=cfg.seed, max_cost=args.max_cost, dry=args.dry_run,
                          base_url=args.base_url)
    except GenerateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if args.dry_run or result["done"] == result["requested"] else 1


def cmd_collect(args) -> int:
    from aidetect.flux.collect import Collector

    cfg = load_config(args.config)
    c = cfg.collect
    source = args.source or c.source
    if args.openverse_url:
        c.openverse_url = args.openverse_url
    if args.query:
        c.query = args.query
    collector = Collector(c, Path(args.out or c.out_dir))
    if source == "openverse":
        cands = collector.openverse()
    elif source == "urls":
        if not args.urls:
            raise SystemExit("--source urls needs --urls FILE (one image URL per line)")
        cands = collector.url_list(args.urls)
    elif source == "folder":
        if not args.folder:
            raise SystemExit("--source folder needs --folder DIR")
        cands = collector.folder(args.folder)
    else:
        raise SystemExit(f"unknown --source {source!r}; valid: openverse, urls, folder")
    result = collector.run(args.n or c.n, cands)
    print(json.dumps(result, indent=2))
    return 0


def cmd_build(args) -> int:
    from aidetect.flux.build import build

    cfg = load_config(args.config)
    b = cfg.build
    summary = build(args.fake or b.fake_dir, args.real or b.real_dir, args.out or b.out_dir,
                    image_size=args.image_size or list(b.image_size), resize=args.resize or b.resize,
                    jpeg_quality=b.jpeg_quality, splits=list(b.splits), seed=cfg.seed, force=args.force)
    print(json.dumps({"counts": summary["counts"], "warnings": summary["warnings"]}, indent=2))
    return 0


def add_parser(sub) -> None:
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
    g.set_defaults(func=cmd_generate)

    c = flux.add_parser("collect-real", help="REAL photos from Openverse, a URL list or a folder")
    common(c)
    c.add_argument("--n", type=int)
    c.add_argument("--source", choices=["openverse", "urls", "folder"])
    c.add_argument("--query")
    c.add_argument("--urls", help="file of image URLs, one per line")
    c.add_argument("--folder", help="folder of your own photos")
    c.add_argument("--openverse-url", help="Openverse API base (default from the config)")
    c.set_defaults(func=cmd_collect)

    b = flux.add_parser("build", help="both pools -> train/validation/test/{REAL,FAKE}")
    common(b)
    b.add_argument("--fake", help="folder of generated images")
    b.add_argument("--real", help="folder of real photos")
    b.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    b.add_argument("--resize", choices=["center_crop", "resize"])
    b.add_argument("--force", action="store_true", help="replace an existing output folder")
    b.set_defaults(func=cmd_build)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
