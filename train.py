"""Train a detector. Examples:

    python train.py data.archive=../shared/data/cifake.zip aug=inverted_saturated
    python train.py data=flux aug=inverted_saturated            # the original FLUX setup
    python train.py -m aug=inverted_saturated aug.saturation_factor=1,8,500
    python train.py data=folder data.root=/path/to/images
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from aidetect.config import user_errors
    from aidetect.train import train  # imported late so `--help` and config errors are fast

    with user_errors():
        metrics = train(cfg)
    # What sweepers optimise: validation accuracy of the last epoch that validated, never a test number.
    return next((a for a in reversed(metrics["val_acc_per_epoch"]) if a is not None), None)


if __name__ == "__main__":
    main()
