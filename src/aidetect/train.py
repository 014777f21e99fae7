"""Training: compose data, model, view, trainer from a Hydra config, fit, test, write metrics.json.

    python train.py data=cifake data.archive=../shared/data/cifake.zip aug=inverted_saturated
"""

import json
import logging
import os
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from aidetect.callbacks import EpochStats, ViewGrid
from aidetect.module import Detector

log = logging.getLogger(__name__)

# The view is applied in Detector.on_after_batch_transfer on purpose (it belongs to the
# model and its checkpoint); Lightning warns about that combination on every run.
warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never leaves a
    truncated last.ckpt to resume from."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def output_dir(cfg: DictConfig) -> Path:
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.output_dir)


def write_json(path: Path, obj) -> None:
    """Atomic: a reader (or an aggregation after a kill) never sees half a file."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def build(cfg: DictConfig, out: Path):
    """Datamodule, model, trainer, and the EpochStats callback, from a composed config."""
    datamodule = hydra.utils.instantiate(cfg.data)
    model = Detector(arch=cfg.model.arch, lr=cfg.model.lr, view=cfg.aug.name,
                     saturation_factor=cfg.aug.saturation_factor, channels_last=cfg.model.get("channels_last", True))
    model.run_config = OmegaConf.to_container(cfg, resolve=True)  # saved inside each checkpoint
    stats = EpochStats()
    callbacks = [stats, ViewGrid()] + [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                      default_root_dir=str(out), plugins=[AtomicCheckpointIO()])
    return datamodule, model, trainer, stats


def hparams_for_tensorboard(cfg: DictConfig) -> dict:
    flat = {"seed": cfg.seed, "model": cfg.model.arch, "lr": cfg.model.lr, "view": cfg.aug.name,
            "saturation_factor": cfg.aug.saturation_factor, "data": cfg.data._target_.split(".")[-1],
            "batch_size": cfg.data.batch_size, "max_epochs": cfg.trainer.max_epochs,
            "fraction": cfg.data.get("fraction", 1.0), "dedup": cfg.data.get("dedup", "n/a")}
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flat.items()}


def train(cfg: DictConfig) -> dict:
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer, stats = build(cfg, out)

    t0 = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    prep_seconds = time.perf_counter() - t0
    log.info("data ready in %.1f s: %s", prep_seconds, datamodule.counts)
    size = tuple(datamodule.splits["train"].images.shape[-2:])
    if cfg.model.arch == "seed_cifake_cnn" and size != (32, 32):  # its FC layer is sized for 32x32
        raise ValueError(f"model=seed_cifake_cnn takes 32x32 images but the data is {size[0]}x{size[1]}: "
                         f"use model=seed_flux_cnn (any size) or data.image_size=[32,32]")

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    results = {}
    if cfg.get("test"):
        ckpt = trainer.checkpoint_callback  # the first one: best by val/acc
        if cfg.get("test_ckpt", "best") not in ("best", "last"):
            raise ValueError(f"test_ckpt={cfg.test_ckpt!r}; valid: best, last")
        use = "best" if (cfg.get("test_ckpt", "best") == "best" and ckpt is not None and ckpt.best_model_path
                         and not trainer.fast_dev_run) else None  # None: the weights in memory = last epoch
        results = trainer.test(model, datamodule=datamodule, ckpt_path=use)[0]

    metrics = {
        "test": {k.split("/", 1)[1]: v for k, v in results.items()},
        "tested_checkpoint": "none" if not results else (use or "final weights"),
        "val_acc_per_epoch": [e.get("val/acc") for e in stats.epochs],
        "epochs": stats.epochs,
        "seconds_per_epoch": [e["seconds"] for e in stats.epochs],
        "images_per_second": [e["images_per_second"] for e in stats.epochs],
        "data_prep_seconds": round(prep_seconds, 2),
        "params": model.num_parameters,
        "data": datamodule.counts,
        "seed": cfg.seed,
        "view": {"name": cfg.aug.name, "saturation_factor": cfg.aug.saturation_factor},
        "model": cfg.model.arch,
        "device": str(model.device) if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
    }
    write_json(out / "metrics.json", metrics)
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams_for_tensorboard(cfg),
                           metrics={f"hparams/test_{k}": v for k, v in metrics["test"].items()})
        lg.finalize("success")
    log.info("wrote %s", out / "metrics.json")
    return metrics
