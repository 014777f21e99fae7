"""Test a checkpoint on any dataset, with the view, size and model it was trained with:

    python eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt data.archive=../shared/data/cifake.zip
    python eval.py ckpt_path=best.ckpt data=folder data.root=/my/images    # test/, else val/, else all
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    from aidetect.config import user_errors
    from aidetect.evaluate import evaluate

    with user_errors():
        return evaluate(cfg)["test"]["acc"]


if __name__ == "__main__":
    main()
