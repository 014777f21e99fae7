"""Test a checkpoint with the view and model it was trained with:

    python eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt data.archive=../shared/data/cifake.zip
"""

import hydra
from omegaconf import DictConfig

import aidetect  # noqa: F401  (registers the config resolvers before Hydra composes)


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    from aidetect.evaluate import evaluate

    return evaluate(cfg)["test"]["acc"]


if __name__ == "__main__":
    main()
