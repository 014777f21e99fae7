"""Job plumbing shared by training and evaluation: the data module from a data config, the job's
output folder, the test pass, and job identity and resume.

A job is identified by a hash of every setting that decides its result (``config_sha``), so a
re-run sweep with ``skip_done=true`` skips the jobs that finished (``finished_result``) and resumes
an interrupted one from its own ``last.ckpt`` (``resumable``).
"""

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from aidetect.config import ConfigError
from aidetect.io import atomic_write
from aidetect.module import SCHEMA_VERSION, Detector

log = logging.getLogger("aidetect.train")  # the messages training has always logged under this name


def output_dir(cfg: DictConfig) -> Path:
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.output_dir)


def plain(node) -> dict | list | None:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def build_datamodule(data_cfg: DictConfig, default_size=None):
    """The data config minus ``view_defaults`` (read by the aug configs, not the datamodule);
    ``default_size``: the network's default input size, for folders of mixed sizes without
    data.image_size."""
    spec = plain(data_cfg)
    spec.pop("view_defaults", None)
    if default_size is not None:
        spec["default_size"] = list(default_size)
    try:
        dm = hydra.utils.instantiate(spec)
    except hydra.errors.InstantiationException as e:  # unwrap our own message from Hydra's wrapper
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError):
            raise ConfigError(f"data ({spec.get('_target_')}): {cause}") from None
        raise
    return dm


def write_skipped(out: Path, skipped) -> None:
    """skipped.csv beside metrics.json: every file that could not be used, and why."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    atomic_write(out / "skipped.csv", buf.getvalue().encode())


# Settings added after results were recorded, at values that reproduce the old behaviour: left
# out of the hash at these values, so finished sweep jobs stay finished when a setting is added.
NEUTRAL_SETTINGS = {("data", "min_side"): 8, ("data", "storage"): "memory", ("trainer", "precision"): "32-true",
                    ("data", "decoded_cache"): False}


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
    conf = plain(cfg)
    settings = {k: v for k, v in conf.items() if k not in ("output_dir", "skip_done", "task_name", "calibrate",
                                                            *SPEED_SETTINGS)}
    for (group, key), value in NEUTRAL_SETTINGS.items():
        if isinstance(settings.get(group), dict) and settings[group].get(key) == value:
            settings[group] = {k: v for k, v in settings[group].items() if k != key}
    if settings.get("init_from") is None:  # added later: jobs without it keep the hash they had before
        settings.pop("init_from", None)
    elif Path(settings["init_from"]).is_file():  # the starting weights' content, not their path: a retrained
        # source at the same path is a new job, the same file named two ways is the same job
        settings["init_from"] = "sha256:" + hashlib.sha256(Path(settings["init_from"]).read_bytes()).hexdigest()
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


def finished_result(cfg: DictConfig, sha: str, view: dict) -> dict | None:
    """With skip_done=true, the metrics.json this very job left in its folder (a long sweep re-run after
    an interruption), else None."""
    done = output_dir(cfg) / "metrics.json"
    if not (cfg.get("skip_done") and done.is_file()):
        return None
    old = json.loads(done.read_text())
    # Only the same job: a changed sweep renumbers its jobs, and a folder's old result
    # must not stand in for another setting. (Files without a hash: seed and view decide.)
    same = old.get("config_sha") in (sha, config_sha(cfg, legacy=True)) if "config_sha" in old else \
        (old.get("seed"), old.get("view")) == (cfg.seed, view)
    if same:
        log.info("skip_done: %s holds this job's result, not training again", done)
        return old
    log.warning("skip_done: %s holds another setting's result; training this job again", done)
    return None


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
