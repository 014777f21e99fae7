"""Train a detector. Examples:

    python train.py data.archive=../shared/data/cifake.zip aug=inverted_saturated
    python train.py -m experiment=cifake_seed data.archive=../shared/data/cifake.zip
    python train.py data=folder data.root=/path/to/images model=seed_flux_cnn
"""

import hydra
from omegaconf import DictConfig

import aidetect  # noqa: F401  (registers the config resolvers before Hydra composes)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from aidetect.train import train  # imported late so `--help` and config errors are fast

    metrics = train(cfg)
    return metrics["test"].get("acc")


if __name__ == "__main__":
    main()
