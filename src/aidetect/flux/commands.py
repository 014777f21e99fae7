"""What `aidetect flux generate | collect-real | build` run (declared in aidetect/cli.py). Defaults come
from aidetect/flux/flux.yaml beside this file (--config)."""

import json
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
