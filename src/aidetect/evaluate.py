"""Evaluation of a saved checkpoint on a dataset's test split.

    python eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt data=cifake

The checkpoint carries the model architecture and the view (name and saturation factor),
so the images are seen exactly as in training; only the data comes from this config.
"""

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from aidetect.module import Detector
from aidetect.train import output_dir, write_json

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path} is not a file; pass a checkpoint written by "
                                f"train.py, e.g. ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt")
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed)
    model = Detector.load_from_checkpoint(ckpt, map_location="cpu")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False).get("run_config") or {}
    log.info("checkpoint %s: model %s, view %r", ckpt, model.hparams.arch, model.view)
    datamodule = hydra.utils.instantiate(cfg.data)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, default_root_dir=str(out))
    results = trainer.test(model, datamodule=datamodule)[0]
    metrics = {
        "test": {k.split("/", 1)[1]: v for k, v in results.items()},
        "checkpoint": str(ckpt.resolve()),
        "view": {"name": model.view.name, "saturation_factor": model.view.saturation_factor},
        "model": model.hparams.arch,
        "seed": saved.get("seed"),  # the training seed: lets `aidetect aggregate` pair eval sweeps
        "trained_with": {k: saved.get(k) for k in ("seed", "data", "aug")} if saved else None,
        "data": datamodule.counts,
    }
    write_json(out / "metrics.json", metrics)
    return metrics
