"""Training: compose data, view, network and recipe from a Hydra config, fit, test, write metrics.json.

    python train.py data=cifake data.archive=../shared/data/cifake.zip aug=inverted_saturated

Order matters for users: every setting is checked (view, network, input size, data folder)
before any image is decoded, so a typo costs a second, not a data pass.
"""

import csv
import io
import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from aidetect import LABELS
from aidetect.augment import build_augment
# What runs after fit is imported here, not lazily at the end of a long run: a source file edited
# meanwhile (a half-saved or renamed function) must not fail a job that has finished training.
from aidetect.breakdown import score_breakdown
from aidetect.calibrate import calibrate_and_score
from aidetect.callbacks import EpochStats, ResumeState, ViewGrid
from aidetect.config import ConfigError, provenance, view_spec
from aidetect.io import atomic_write, torch_save, write_json
from aidetect.models import build_network, network_class
from aidetect.module import SCHEMA_VERSION, Detector, build_recipe, load_detector
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


def output_dir(cfg: DictConfig) -> Path:
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.output_dir)


def plain(node) -> dict | list | None:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def build_datamodule(data_cfg: DictConfig, default_size=None):
    """The data config minus ``view_defaults`` (read by the aug configs, not the datamodule)."""
    spec = plain(data_cfg)
    spec.pop("view_defaults", None)
    try:
        dm = hydra.utils.instantiate(spec)
    except hydra.errors.InstantiationException as e:  # unwrap our own message from Hydra's wrapper
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError):
            raise ConfigError(f"data ({spec.get('_target_')}): {cause}") from None
        raise
    dm.default_size = default_size
    return dm


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
    build_recipe(plain(cfg.model.get("optimizer")), plain(cfg.model.get("scheduler")), net.parameters())
    build_augment(plain(cfg.get("augment")))
    speed_settings(cfg)
    if cfg.get("test_ckpt", "best") not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r}; valid: best, last")
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


def write_skipped(out: Path, skipped) -> None:
    """skipped.csv beside metrics.json: every file that could not be used, and why."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    atomic_write(out / "skipped.csv", buf.getvalue().encode())


# Settings added after results were recorded, at values that reproduce the old behaviour: left
# out of the hash at these values, so finished sweep jobs stay finished when a setting is added.
NEUTRAL_SETTINGS = {("data", "min_side"): 8, ("data", "storage"): "memory", ("trainer", "precision"): "32-true"}


# Classes that replaced another as a code fix, not a new setting: a job keeps its hash (and its
# finished result) across the change.
RENAMED_TARGETS = {"aidetect.callbacks.EMA": "lightning.pytorch.callbacks.EMAWeightAveraging"}


# How fast a job runs, not what it computes (up to float rounding): never part of a job's identity.
SPEED_SETTINGS = ("compile", "threads")


def config_sha(cfg: DictConfig, fresh: bool = False, legacy: bool = False) -> str:
    """A hash of everything that decides a job's result (not where it writes or whether it skips).
    The job's own folder (in checkpoint and log paths) hashes as <output_dir>, so a result keeps its
    identity when the project moves; legacy=True is the hash before that, with the absolute folder
    in it (metrics.json files written then still count as done). fresh=True: as if ckpt_path=null."""
    import hashlib

    conf = plain(cfg)
    settings = {k: v for k, v in conf.items() if k not in ("output_dir", "skip_done", "task_name", "calibrate",
                                                            *SPEED_SETTINGS)}
    for (group, key), value in NEUTRAL_SETTINGS.items():
        if isinstance(settings.get(group), dict) and settings[group].get(key) == value:
            settings[group] = {k: v for k, v in settings[group].items() if k != key}
    if fresh:
        settings["ckpt_path"] = None
    text = json.dumps(settings, sort_keys=True, default=str)
    for new, old in RENAMED_TARGETS.items():
        text = text.replace(json.dumps(new), json.dumps(old))
    folder = str(conf.get("output_dir") or "")
    if not legacy and len(folder) > 1:
        text = text.replace(json.dumps(folder)[1:-1], "<output_dir>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_sha(path: Path) -> str | None:
    """The config hash of the job that wrote a checkpoint (None: unreadable, or another schema)."""
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True).get("aidetect") or {}
    except Exception as e:  # a damaged file: the caller trains from scratch rather than fail the sweep
        log.warning("%s cannot be read (%s)", path, e)
        return None
    if meta.get("schema_version") != SCHEMA_VERSION:
        return None
    return config_sha(OmegaConf.create(meta.get("run_config") or {}))


def job_sha(cfg: DictConfig) -> str:
    """config_sha, except that resuming this job's own checkpoint by hand (ckpt_path=) is the same
    job, so skip_done recognises its result later; a checkpoint of another setting stays a new job."""
    sha, path = config_sha(cfg), cfg.get("ckpt_path")
    if path and Path(path).is_file():
        fresh = config_sha(cfg, fresh=True)
        if checkpoint_sha(Path(path)) == fresh:
            return fresh
    return sha


def run_test(trainer: L.Trainer, model: Detector, datamodule, **kw) -> tuple[dict, torch.Tensor | None]:
    """trainer.test, keeping every test image's raw logit in split order when one process scores
    the whole split in full precision: calibration, predictions.csv and the ECE then need no second
    pass over the test set. Otherwise (DDP shards, bf16, a test limit) the logits are None and
    those are computed again in fp32, as `aidetect predict` computes them."""
    keep = trainer.world_size == 1 and str(trainer.precision) in ("32-true", "64-true")
    model.kept_test_logits = [] if keep else None
    try:
        results = trainer.test(model, datamodule=datamodule, **kw)[0]
        logits = torch.cat(model.kept_test_logits) if keep and model.kept_test_logits else None
    finally:
        model.kept_test_logits = None
    # Lightning's teardown leaves the model on the CPU; what scores it next (calibration, the fp32
    # re-scoring after a bf16 test, predictions, the robustness grid) belongs on the run's device.
    model.to(trainer.strategy.root_device)
    test = datamodule.splits.get("test")
    return results, (logits if logits is not None and test is not None and len(logits) == len(test) else None)


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


def resumable(out: Path, sha: str) -> str | None:
    """The job folder's last.ckpt when it was written by this same job (same config hash): a sweep
    stopped mid-job goes on from its last finished epoch instead of starting that job again."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    if checkpoint_sha(last) != sha:
        log.warning("skip_done: %s belongs to another setting (or cannot be read); training this job from the start", last)
        return None
    log.info("skip_done: resuming this job from %s", last)
    return str(last)


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
    done, sha = output_dir(cfg) / "metrics.json", job_sha(cfg)
    if cfg.get("skip_done") and done.is_file():  # a long sweep re-run after an interruption
        old = json.loads(done.read_text())
        # Only the same job: a changed sweep renumbers its jobs, and a folder's old result
        # must not stand in for another setting. (Files without a hash: seed and view decide.)
        same = old.get("config_sha") in (sha, config_sha(cfg, legacy=True)) if "config_sha" in old else \
            (old.get("seed"), old.get("view")) == (cfg.seed, spec)
        if same:
            log.info("skip_done: %s holds this job's result, not training again", done)
            return old
        log.warning("skip_done: %s holds another setting's result; training this job again", done)
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
    log.info("data ready in %.1f s: %s", prep_seconds, datamodule.counts)
    net_cls.check_input_size(datamodule.input_size)

    model = Detector(net=plain(cfg.model.net), view=spec, optimizer=plain(cfg.model.get("optimizer")),
                     scheduler=plain(cfg.model.get("scheduler")), augment=plain(cfg.get("augment")),
                     input_size=list(datamodule.input_size), resize=datamodule.resize,
                     channels_last=cfg.model.get("channels_last", True), labels=dict(LABELS),
                     label_smoothing=cfg.model.get("label_smoothing", 0.0),
                     eval_crops=getattr(datamodule, "eval_crops", 1))
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
        breakdown = score_breakdown(tested, datamodule, out, trainer.loggers)
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
        "data": datamodule.counts,
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
