"""The Detector: view + network + recipe, one LightningModule, and the one inference path.

    from aidetect.module import load_detector
    model = load_detector("outputs/train/runs/<time>/checkpoints/best_epoch_004.ckpt")
    p_fake = model.predict_proba([PIL.Image.open("photo.jpg")])     # any size, any mode

Everything needed to rebuild and use a trained model (network settings, view, input size,
resize policy, label map, threshold, temperature) is in its hyperparameters, as plain
containers, so a checkpoint loads with ``torch.load(weights_only=True)`` and no config.
``forward`` takes the images as stored (uint8, [B, 3, H, W] at the input size) and does
uint8 -> float -> (augment, training only) -> view -> network: training, testing, predict,
the web page and export all go through it, so preprocessing cannot drift between them.
"""

import contextlib
from pathlib import Path

import hydra
import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (BinaryAccuracy, BinaryAUROC, BinaryF1Score,
                                         BinaryPrecision, BinaryRecall)

from aidetect import LABELS
from aidetect.augment import build_augment
from aidetect.config import ConfigError
from aidetect.models import build_network, count_parameters, network_class
from aidetect.views import build_view, to_float

SCHEMA_VERSION = 1  # of the checkpoint's "aidetect" block and metrics.json


def _metrics(prefix: str) -> MetricCollection:
    # validate_args=False: the inputs are this module's own probabilities and 0/1 labels, and the
    # checks (a torch.unique per metric per step) were a visible share of a small CIFAKE step.
    kw = {"validate_args": False}
    return MetricCollection({"acc": BinaryAccuracy(**kw), "auroc": BinaryAUROC(**kw), "f1": BinaryF1Score(**kw),
                             "precision": BinaryPrecision(**kw), "recall": BinaryRecall(**kw)}, prefix=prefix)


@contextlib.contextmanager
def full_float32():
    """Score in true float32 on a GPU as well: cuDNN convolutions default to TF32 on Ampere and later
    GPUs, which the CPU path (and so `aidetect predict` on a CPU) never uses."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@torch.no_grad()
def logits_of(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Raw logits (temperature 1), on the CPU, of uint8 images already at the model's input size:
    in eval mode and true float32 on the model's device (what calibration, eval and predict score)."""
    was = model.training
    model.eval()
    try:
        with full_float32():
            out = [model(images[i:i + batch_size].to(model.device)).float().cpu()
                   for i in range(0, len(images), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def prepare_images_rgb(images) -> list:
    """PIL images and/or uint8 tensors ([3, H, W]) -> upright RGB PIL images at their own size."""
    from PIL import Image
    from torchvision.transforms.functional import to_pil_image

    from aidetect.data.images import to_rgb

    if isinstance(images, (Image.Image, torch.Tensor)) and not (isinstance(images, torch.Tensor) and images.ndim == 4):
        images = [images]
    return [to_rgb(im if isinstance(im, Image.Image) else to_pil_image(im)) for im in images]


class Detector(L.LightningModule):
    """Built from plain settings (``train.py`` passes the composed config's parts):

    net: ``{"_target_": "aidetect.models.SeedCifakeCNN", **settings}``; view: ``{"name": ...,
    **settings}``; optimizer/scheduler: Hydra ``_partial_`` specs; augment: training-only
    augmentation settings; input_size: [H, W] the network sees; resize: how other sizes are
    brought to it (center_crop | resize); threshold on P(FAKE); temperature on the logit.
    """

    def __init__(self, net: dict, view: dict | None = None, optimizer: dict | None = None,
                 scheduler: dict | None = None, augment: dict | None = None, input_size=(32, 32),
                 resize: str = "center_crop", threshold: float = 0.5, temperature: float = 1.0,
                 channels_last: bool = True, labels: dict | None = None, label_smoothing: float = 0.0,
                 eval_crops: int = 1, tta: str = "none"):
        super().__init__()
        # tta is how this object scores (eval.py tta=flip), not what was trained: kept out of the
        # checkpoint, so a checkpoint always loads as trained.
        self.save_hyperparameters(ignore=["tta"], logger=False)  # train.py logs the run's settings once
        if tta not in ("none", "flip"):
            raise ConfigError(f"tta={tta!r}; valid: none, flip (mean logit of each image and its left-right mirror)")
        self.tta = tta
        self.view = build_view(view or {"name": "none"})
        self.augment = build_augment(augment)
        self.input_size = tuple(int(s) for s in input_size)
        self.net = build_network(net, in_channels=self.view.out_channels, input_size=self.input_size)
        # NHWC lets oneDNN (CPU) and cuDNN pick faster conv kernels: ~17% per CIFAKE epoch here.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        self.loss = nn.BCEWithLogitsLoss()
        self.train_metrics, self.val_metrics, self.test_metrics = (
            _metrics("train/"), _metrics("val/"), _metrics("test/"))
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self._pending: dict[str, list] = {}  # per stage: steps not yet given to the metrics
        self.run_config: dict | None = None  # the composed Hydra config, set by train.py
        self.provenance: dict | None = None
        self.detector_id = "untrained"  # load_detector names it (shipped name and version, or file and hash)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.net)

    # --- the one inference path --------------------------------------------------------
    def forward(self, images: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """uint8 (or float in [0, 1]) [B, 3, H, W] -> one logit per image (FAKE = 1); [B, K, 3, H, W]
        (K crops per image) -> the mean of each image's K logits. ``augment=False``: the batch is
        already augmented (``_step`` does it itself before CutMix)."""
        if images.ndim == 5:  # [B, K, 3, h, w]: K crops of each image (data.resize=random_crop) -> mean logit
            b, k = images.shape[:2]
            return self(images.flatten(0, 1), augment=augment).view(b, k).mean(1)
        if augment and self.training and self.augment.active and images.dtype == torch.uint8:
            images = self.augment(images)
        x = self.view(to_float(images)).contiguous(memory_format=self.memory_format)
        logits = self.net(x).squeeze(1)
        if self.tta == "flip" and not self.training:  # the mirror goes through the view too (FFT's doesn't commute)
            mirror = self.view(to_float(images.flip(-1))).contiguous(memory_format=self.memory_format)
            logits = (logits + self.net(mirror).squeeze(1)) / 2
        return logits

    def prepare(self, images) -> torch.Tensor:
        """PIL images or uint8 tensors of any size and mode -> uint8 [B, 3, H, W] at the input
        size, exactly as the training data was decoded (same conversion and resize code)."""
        from aidetect.data.images import prepare_images

        if self.hparams.resize == "random_crop":  # native resolution: the eval crop grid, as in training's val/test
            from aidetect.data.crops import prepare_crops

            rgb = prepare_images_rgb(images)
            return prepare_crops(rgb, self.input_size[0], self.hparams.eval_crops)
        return prepare_images(images, self.input_size, self.hparams.resize)

    @torch.no_grad()
    def predict_proba(self, images, batch_size: int = 64) -> torch.Tensor:
        """P(FAKE) for each image (calibrated by the stored temperature), in float32 on the model's device."""
        ready = isinstance(images, torch.Tensor) and images.ndim in (4, 5) and images.shape[-3] == 3 and \
            tuple(images.shape[-2:]) == self.input_size and images.dtype == torch.uint8 and \
            (images.ndim == 5) == (self.hparams.resize == "random_crop")
        batch = images if ready else self.prepare(images)
        return self.probability(logits_of(self, batch, batch_size))

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits / self.hparams.temperature).sigmoid()

    # --- training ------------------------------------------------------------------------
    # Each step's probabilities, labels and summed loss are kept as tensors and handed to the
    # stage's torchmetrics objects in one update per FLUSH_EVERY steps and at the epoch's end:
    # a MetricCollection + MeanMetric update is ~0.3 ms of Python per call, a visible share of
    # a small CIFAKE step (benchmarks/epoch_speed.py). The metrics are the same; AUROC keeps
    # every prediction of the epoch either way.
    FLUSH_EVERY = 256

    kept_test_logits: list | None = None  # set to [] by train.run_test to keep each test image's logit

    def _step(self, batch, stage: str):
        x, y = batch
        target = y.float()
        if self.training and self.augment.cutmix and x.dtype == torch.uint8:
            # Flips and crops before the mix: a crop after it would shift the box, and the target
            # would no longer be the FAKE share of the pixels the network sees.
            x, target = self.augment.mix(self.augment(x), y)
            y = (target > 0.5).to(y.dtype)  # train metrics score each mixed image by its majority class
            logits = self(x, augment=False)
        else:
            logits = self(x)
        if stage == "test" and self.kept_test_logits is not None:
            self.kept_test_logits.append(logits.detach().float().cpu())
        if self.training and self.hparams.label_smoothing:  # targets eps/2 and 1 - eps/2
            target = target * (1 - self.hparams.label_smoothing) + 0.5 * self.hparams.label_smoothing
        loss = self.loss(logits, target)
        # Probabilities, not logits: torchmetrics would guess wrongly on batches of logits in [0, 1].
        pending = self._pending.setdefault(stage, [])
        pending.append((logits.detach().float().sigmoid(), y, loss.detach().float(), len(y)))  # fp32 under bf16 too
        if len(pending) >= self.FLUSH_EVERY:
            self._flush(stage)
        return loss, len(y)

    def _flush(self, stage: str):
        pending = self._pending.pop(stage, [])
        if pending:
            probs, ys, losses, ns = zip(*pending)
            getattr(self, f"{stage}_metrics").update(torch.cat(probs), torch.cat(ys))
            getattr(self, f"{stage}_loss").update(torch.stack(losses), torch.tensor(ns, device=losses[0].device))

    def epoch_train_loss(self) -> float | None:
        """The running epoch's mean train loss so far (for the per-epoch log line, which callbacks
        write before the module's own on_train_epoch_end logs it)."""
        self._flush("train")
        return float(self.train_loss.compute()) if self.train_loss.update_called else None

    # Metrics are logged once per epoch, and the step loss only on the steps the logger writes
    # (every trainer.log_every_n_steps): each self.log call costs Lightning about as much as a
    # small CIFAKE step's optimizer update.
    def training_step(self, batch, batch_idx):
        loss, n = self._step(batch, "train")
        every = self.trainer.log_every_n_steps  # 0: never
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _log_epoch(self, prefix: str):
        self._flush(prefix)
        metrics, loss = getattr(self, f"{prefix}_metrics"), getattr(self, f"{prefix}_loss")
        values = metrics.compute()
        values[f"{prefix}/loss" if prefix != "train" else "train/loss_epoch"] = loss.compute()
        loss.reset()
        metrics.reset()
        self.log_dict(values, prog_bar=prefix != "train")

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probability(self(x))

    def configure_optimizers(self):
        steps = self._trainer.estimated_stepping_batches if self._trainer is not None else 1000
        return build_recipe(self.hparams.optimizer, self.hparams.scheduler, self.parameters(), total_steps=steps,
                            net=self.net)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["aidetect"] = {"schema_version": SCHEMA_VERSION, "provenance": self.provenance,
                                  "run_config": self.run_config}

    def describe(self) -> dict:
        """What the model is, for metrics.json, logs and predict's header."""
        hp = self.hparams
        return {"net": dict(hp.net), "view": self.view.spec(), "input_size": list(self.input_size),
                "resize": hp.resize, **({"eval_crops": hp.eval_crops} if hp.resize == "random_crop" else {}), "params": self.num_parameters, "threshold": hp.threshold,
                "temperature": hp.temperature, "labels": dict(hp.labels or LABELS)}


def build_recipe(optimizer: dict | None, scheduler: dict | None, params, total_steps: int = 1000, net=None):
    """Optimizer (and scheduler) from Hydra ``_partial_`` specs, as configure_optimizers returns
    them. A scheduler that takes ``total_steps`` (OneCycleLR) gets the run's, unless set.
    ``optimizer.backbone_lr_mult`` (not the optimizer's own argument): the pretrained backbone of ``net``
    (its ``param_groups()``) learns at that fraction of the head's rate, and OneCycleLR's peak with it."""
    import inspect

    spec = dict(optimizer or {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3})
    mult = float(spec.pop("backbone_lr_mult", 1.0))
    if mult != 1.0:
        if not 0 <= mult <= 10:
            raise ConfigError(f"model.optimizer.backbone_lr_mult={mult}: a factor in [0, 10] (e.g. 0.1)")
        if not hasattr(net, "param_groups"):
            raise ConfigError(f"model.optimizer.backbone_lr_mult={mult}: {type(net).__name__} has no backbone/head "
                              f"split; use it with model=lite0_s16 or model=lite0, or remove the setting")
        lr = float(spec.get("lr", 1e-3))
        groups = net.param_groups()
        params = [{"params": groups["backbone"], "lr": lr * mult}, {"params": groups["head"], "lr": lr}]
    try:
        opt = hydra.utils.instantiate(spec)(params=params)
        if not scheduler:
            return opt
        sched = dict(scheduler)
        if mult != 1.0 and "max_lr" in sched:  # one peak per group, in the groups' ratio (a plain list, not Hydra's)
            peak = float(sched.pop("max_lr"))
            extra_lr = {"max_lr": [peak * mult, peak]}
        else:
            extra_lr = {}
        interval, monitor = sched.pop("interval", "epoch"), sched.pop("monitor", None)
        make = hydra.utils.instantiate(sched)
        extra = {"total_steps": int(total_steps)} if "total_steps" in inspect.signature(make.func).parameters \
            and "total_steps" not in sched else {}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": make(optimizer=opt, **extra, **extra_lr),
                                                   "interval": interval, "monitor": monitor}}
    except Exception as e:
        cause = e.__cause__ or e
        raise ConfigError(f"model.optimizer/model.scheduler ({spec.get('_target_')}, "
                          f"{(scheduler or {}).get('_target_')}): {type(cause).__name__}: {cause}") from None


def load_detector(path: str | Path, map_location="cpu", weights: str = "average", tta: str = "none") -> Detector:
    """A Detector from a checkpoint file, with no Hydra config and no pickled code:
    ``weights_only=True`` refuses anything but tensors and plain containers, and only
    networks defined as ``Network`` subclasses in already-imported modules are built."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} is not a file; pass one written by train.py, e.g. "
                          f"outputs/train/runs/<time>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding pickled code
        raise ConfigError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    meta = ckpt.get("aidetect") or {} if isinstance(ckpt, dict) else {}
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path} was written by another version of this project (checkpoint schema "
                          f"{meta.get('schema_version')}, this code reads {SCHEMA_VERSION}); retrain it "
                          f"or evaluate it with the version that wrote it")
    if weights not in ("average", "raw"):
        raise ConfigError(f"weights={weights!r}: average (the checkpoint's weights; with EMA, the average) or raw")
    if weights == "raw" and "current_model_state" not in ckpt:
        raise ConfigError(f"weights=raw: {path} holds one set of weights (trained without EMA, or saved before "
                          f"the average started); use weights=average")
    hp = dict(ckpt["hyper_parameters"])
    network_class(hp["net"].get("_target_", ""), allow_import=False)
    if "pretrained" in hp["net"]:  # the checkpoint carries the weights: never load (or need) the ImageNet package
        hp["net"] = {**hp["net"], "pretrained": False}
    model = Detector(**hp, tta=tta)
    # An EMA checkpoint keeps the trained (raw) weights beside the average: weights=raw scores those.
    model.load_state_dict(ckpt["current_model_state" if weights == "raw" else "state_dict"])
    model.run_config, model.provenance = meta.get("run_config"), meta.get("provenance")
    # Named in every predict row: a shipped detector's name and version, else the file and its hash.
    named = meta.get("detector") or {}
    if named.get("name"):
        model.detector_id = f"{named['name']} {named.get('version', '')}".strip()
    else:
        import hashlib

        model.detector_id = f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    return model.eval()
