"""The `aidetect` command: data tools that are not training runs.

    aidetect flux generate --n 1000      # FAKE images through Replicate
    aidetect flux collect-real --n 900   # REAL photographs (Openverse, URL list or folder)
    aidetect flux build                  # both pools -> train/validation/test/{REAL,FAKE}
    aidetect aggregate outputs/.../multirun/<time>   # results table of a sweep
"""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aidetect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        from aidetect.flux.cli import add_parser as add_flux
        add_flux(sub)
    except ImportError:
        pass
    try:
        from aidetect.report import add_parser as add_aggregate
        add_aggregate(sub)
    except ImportError:
        pass
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
