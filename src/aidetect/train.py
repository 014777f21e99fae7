"""Training: compose data, view, network and recipe from a Hydra config, fit, test, write metrics.json.

    python train.py data=cifake data.archive=../shared/data/cifake.zip aug=inverted_saturated

Order matters for users: every setting is checked (view, network, input size, data folder)
before any image is decoded, so a typo costs a second, not a data pass.
"""

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from aidetect import LABELS
from aidetect.augment import build_augment
# What runs after fit is imported here, not lazily at the end of a long run: a source file edited
# meanwhile (a half-saved or renamed function) must not fail a job that has finished training.
from aidetect.breakdown import score_breakdown
from aidetect.calibrate import calibrate_and_score
from aidetect.callbacks import EpochStats, ResumeState, ViewGrid
from aidetect.config import ConfigError, provenance, view_spec
from aidetect.io import torch_save, write_json
from aidetect.models import build_network, network_class
from aidetect.module import SCHEMA_VERSION, Detector, build_recipe, load_detector
# Job plumbing (data module, output folder, test pass, job identity and resume) lives in runs.py, shared
# with evaluation; imported here under the names this module has always offered.
from aidetect.runs import (build_datamodule, checkpoint_sha, config_sha, finished_result, job_sha,  # noqa: F401
                           output_dir, plain, resumable, run_test, write_skipped)
from aidetect.views import build_view

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-save never leaves a
    truncated last.ckpt to resume from."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        from aidetect.faults import point

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch_save(checkpoint, path)
        if Path(path).name == "last.ckpt":
            point("after_last_checkpoint")


def check_settings(cfg: DictConfig):
    """Every cheap check, before any data work: returns (view spec, network class)."""
    spec = view_spec(plain(cfg.aug))
    view = build_view(spec)
    net_spec = plain(cfg.model.get("net")) or {}
    net_cls = network_class(net_spec.get("_target_", ""))
    size = cfg.data.get("image_size")
    if size is not None:
        net_cls.check_input_size(size)
    net = build_network(net_spec, view.out_channels, size or net_cls.default_input_size)  # its own settings
    build_recipe(plain(cfg.model.get("optimizer")), plain(cfg.model.get("scheduler")), net.parameters(), net=net)
    build_augment(plain(cfg.get("augment")))
    speed_settings(cfg)
    if cfg.get("test_ckpt", "best") not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r}; valid: best, last")
    if cfg.get("init_from") and not Path(cfg.init_from).is_file():
        raise ConfigError(f"init_from={cfg.init_from}: not a file; pass a checkpoint written by train.py, e.g. "
                          f"outputs/train/runs/<time>/checkpoints/best_epoch_003.ckpt")
    return view.spec(), net_cls


def hparams_for_tensorboard(cfg: DictConfig, model: Detector, datamodule) -> dict:
    """The run's settings, named as on the command line. No per-run description is written,
    so TensorBoard's HParams tab infers the columns from all runs and lists first the ones
    that differ; metrics are the runs' own val/* and test/* scalars."""
    view = model.view.spec()
    opt = dict(model.hparams.optimizer or {})
    flat = {"seed": cfg.seed, "data": f"{datamodule.name} {'x'.join(map(str, model.input_size))}",
            "model": model.hparams.net["_target_"].rsplit(".", 1)[-1],
            **{f"model.net.{k}": v for k, v in model.hparams.net.items() if k != "_target_"},
            "aug": view.pop("name"), **{f"aug.{k}": v for k, v in view.items()},
            "augment": HydraConfig.get().runtime.choices.get("augment", "custom") if HydraConfig.initialized()
            else ("on" if model.augment.active else "none"),
            "optimizer": str(opt.get("_target_", "")).rsplit(".", 1)[-1], "lr": opt.get("lr"),
            "scheduler": str((model.hparams.scheduler or {}).get("_target_", "none")).rsplit(".", 1)[-1],
            "batch_size": cfg.data.batch_size, "max_epochs": cfg.trainer.max_epochs,
            "fraction": cfg.data.get("fraction", 1.0), "dedup": bool(cfg.data.get("dedup", False))}
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flat.items()}


def write_hparams(trainer: L.Trainer, hp: dict) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import hparams

    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            _, session_start, _ = hparams(hp, {})
            lg.experiment._get_file_writer().add_summary(session_start)


def tested_checkpoint(cfg, trainer) -> tuple[str, Path | None]:
    """Which weights a run tests and calibrates, and their file: ("best", the best checkpoint by
    val/acc) or ("final weights", the "last" callback's file if one was written)."""
    ckpt = trainer.checkpoint_callback
    if cfg.get("test_ckpt", "best") == "best" and ckpt is not None and ckpt.best_model_path and not trainer.fast_dev_run:
        return "best", Path(ckpt.best_model_path)
    lasts = [Path(c.best_model_path) for c in trainer.checkpoint_callbacks if c.filename == "last" and c.best_model_path]
    return "final weights", (lasts[0] if lasts and not trainer.fast_dev_run else None)


def calibrate_tested(cfg, model: Detector, scored: Detector, datamodule, out: Path, path: Path | None,
                     test_logits: torch.Tensor | None = None) -> dict:
    """Threshold and temperature fitted on validation with the tested weights (``scored``), stored
    in their checkpoint ``path``, and the test split scored with them (from ``test_logits`` if kept)."""
    splits = {"val": datamodule.splits["val"], "test": datamodule.splits["test"] if cfg.get("test") else None}
    result = calibrate_and_score(scored, splits, out, path, title=datamodule.name, test_logits=test_logits)
    model.hparams.temperature, model.hparams.threshold = scored.hparams.temperature, scored.hparams.threshold
    return result


def init_weights(model: Detector, path) -> None:
    """``init_from``: the network weights of a train.py checkpoint, with a fresh optimizer, schedule and
    epoch count (``ckpt_path`` resumes all of them instead). Two-stage fine-tuning such as LP-FT (Kumar et
    al., ICLR 2022): a run with the backbone frozen (``+model.optimizer.backbone_lr_mult=0.0``) fits the head,
    then this run fine-tunes everything from it, so early gradients from a random head do not distort the
    pretrained features. The network must be the same architecture as ``model.net``."""
    try:
        other = load_detector(path)
    except ConfigError as e:
        raise ConfigError(f"init_from={path}: {e}") from None

    def arch(hp):  # what decides the network's function; pretrained only chose the starting weights
        return {k: v for k, v in (hp.get("net") or {}).items() if k != "pretrained"}, hp.get("view")

    src, dst = other.net.state_dict(), model.net.state_dict()
    diff = sorted(set(src) ^ set(dst)) + sorted(k for k in set(src) & set(dst) if src[k].shape != dst[k].shape)
    if diff or arch(other.hparams) != arch(model.hparams):
        what = f"{len(diff)} tensors differ, e.g. {diff[0]}" if diff else \
            f"its net/view settings {arch(other.hparams)} are not this run's {arch(model.hparams)}"
        raise ConfigError(f"init_from={path}: its network is not this run's model.net ({what}); pass a checkpoint "
                          f"trained with the same model= and aug= settings")
    model.net.load_state_dict(src)
    log.info("init_from %s: network weights loaded (optimizer and epochs start afresh)", path)


def speed_settings(cfg: DictConfig) -> tuple[int | None, dict | None]:
    """threads: torch's CPU thread count; compile: torch.compile the network in place (true, or
    torch.compile's own settings, e.g. {mode: max-autotune}); the checkpoint keeps its plain keys."""
    threads, spec = cfg.get("threads"), cfg.get("compile")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r}: a whole number >= 1, or null for torch's default")
    if spec and spec is not True and not isinstance(spec, DictConfig):
        raise ConfigError(f"compile={spec!r}: true, false, or torch.compile settings like compile={{mode: max-autotune}}")
    return threads, (None if not spec else {} if spec is True else plain(spec))


def train(cfg: DictConfig) -> dict:
    threads = torch.get_num_threads()
    try:
        return _train(cfg)
    finally:  # threads= is this job's setting: the next job of a sweep in this process starts fresh
        torch.set_num_threads(threads)


def _train(cfg: DictConfig) -> dict:
    spec, net_cls = check_settings(cfg)
    sha = job_sha(cfg)
    if (old := finished_result(cfg, sha, spec)) is not None:  # skip_done: a sweep re-run after an interruption
        return old
    ckpt_path = cfg.get("ckpt_path") or (resumable(output_dir(cfg), sha) if cfg.get("skip_done") else None)
    datamodule = build_datamodule(cfg.data, net_cls.default_input_size)  # checks the data settings
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)  # data setup draws from its own seeded generators

    t0 = time.perf_counter()
    datamodule.prepare_data()
    if (size := datamodule.peek_size()) is not None:
        net_cls.check_input_size(size)  # before decoding: a size error costs a second, not a data pass
    datamodule.setup("fit")
    prep_seconds = time.perf_counter() - t0
    log.info("data ready in %.1f s: %s", prep_seconds, datamodule.data_report)
    net_cls.check_input_size(datamodule.input_size)

    model = Detector(net=plain(cfg.model.net), view=spec, optimizer=plain(cfg.model.get("optimizer")),
                     scheduler=plain(cfg.model.get("scheduler")), augment=plain(cfg.get("augment")),
                     input_size=list(datamodule.input_size), resize=datamodule.resize,
                     channels_last=cfg.model.get("channels_last", True), labels=dict(LABELS),
                     label_smoothing=cfg.model.get("label_smoothing", 0.0),
                     eval_crops=getattr(datamodule, "eval_crops", 1))
    if cfg.get("init_from"):
        init_weights(model, cfg.init_from)
    model.run_config = plain(cfg)  # saved inside each checkpoint
    model.provenance = provenance()
    log.info("model: %s", model.describe())
    threads, compile_kwargs = speed_settings(cfg)
    if threads is not None:
        torch.set_num_threads(threads)
    if compile_kwargs is not None:
        model.net.compile(**compile_kwargs)
        log.info("torch.compile %s: the first steps of each stage compile (in epoch 1's time)", compile_kwargs)
    stats = EpochStats()
    callbacks = [stats, ResumeState(), ViewGrid()] + [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                      default_root_dir=str(out), plugins=[AtomicCheckpointIO()])

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    results = {}
    use, path = tested_checkpoint(cfg, trainer)
    # The weights a user gets from the file, through load_detector: with ckpt_path=, Lightning's EMA
    # callback would reload the raw (non-averaged) weights for testing instead, and a job resumed after
    # its final epoch never swaps the average in (its fit loop does not run).
    tested = load_detector(path) if path is not None else model
    test_logits = None
    if cfg.get("test"):
        results, test_logits = run_test(trainer, tested, datamodule, weights_only=True)
    calibration = None
    if cfg.get("calibrate", True) and not trainer.fast_dev_run and trainer.is_global_zero:
        tested.to(trainer.strategy.root_device)  # loaded on the CPU; test=false never moved it
        calibration = calibrate_tested(cfg, model, tested, datamodule, out, path, test_logits)
        results.update({f"test/{k}": v for k, v in calibration.pop("test").items() if f"test/{k}" not in results})

    breakdown = None
    if cfg.get("test") and trainer.is_global_zero and getattr(datamodule, "rows", None):  # manifest data: per family
        breakdown = score_breakdown(tested, datamodule, out, trainer.loggers,
                                    known={"test": test_logits} if test_logits is not None else None)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "config_sha": sha,
        "test": {k.split("/", 1)[1]: v for k, v in results.items()},
        "calibration": calibration,
        **({"breakdown": breakdown} if breakdown else {}),
        "tested_checkpoint": "none" if not results else use,
        "val_acc_per_epoch": [e.get("val/acc") for e in stats.epochs],
        "epochs": stats.epochs,
        "seconds_per_epoch": [e["seconds"] for e in stats.epochs],
        "images_per_second": [e["images_per_second"] for e in stats.epochs],
        "data_prep_seconds": round(prep_seconds, 2),
        "params": model.num_parameters,
        "data": datamodule.data_report,
        "seed": cfg.seed,
        "view": model.view.spec(),
        "augment": model.augment.params() if model.augment.active else None,
        "model": model.describe(),
        "device": str(model.device) if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
        "provenance": model.provenance,
    }
    if not trainer.is_global_zero:  # DDP: rank zero writes the run's files
        return metrics
    metrics["world_size"] = trainer.world_size
    write_skipped(out, datamodule.skipped)
    write_hparams(trainer, hparams_for_tensorboard(cfg, model, datamodule))
    for lg in trainer.loggers:
        lg.finalize("success")
    write_json(out / "metrics.json", metrics)  # last: skip_done takes a job with metrics.json as complete
    log.info("wrote %s", out / "metrics.json")
    return metrics
