"""The `aidetect` command: data tools that are not training runs.

    aidetect flux generate --n 1000      # FAKE images through Replicate
    aidetect flux collect-real --n 900   # REAL photographs (Openverse, URL list or folder)
    aidetect flux build                  # both pools -> train/validation/test/{REAL,FAKE}
    aidetect aggregate outputs/<task>/multirun/<time>   # results table of a sweep
    aidetect views data/cifake/raw/test --out docs/views_cifake.png   # what each view looks like
    aidetect views photo.jpg aug=inverted_saturated aug.saturation_factor=8   # one image, one view
    aidetect predict photo.jpg folder/ --out scores.csv   # P(FAKE) per image (default detector or --ckpt)
    aidetect calibrate CKPT data=faces                    # threshold + temperature on validation
    aidetect slim CKPT OUT                                # inference-only checkpoint (fp16 weights)
    aidetect ensemble run1/predictions.csv run2/predictions.csv   # several runs as one detector
    aidetect data get grown --from ../shared/data/modern          # rebuild a training pool from its recipe
"""

import argparse
import sys

from aidetect.config import user_errors
from aidetect.data.pool import add_parser as add_data
from aidetect.flux.cli import add_parser as add_flux, setup_logging
from aidetect.report import add_parser as add_aggregate
from aidetect.tools import add_parser as add_tools


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aidetect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_flux(sub)
    add_aggregate(sub)
    add_tools(sub)
    add_data(sub)
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    with user_errors():
        return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
