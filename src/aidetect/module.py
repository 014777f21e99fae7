"""The LightningModule: a CNN behind a view, trained with BCE on one logit (FAKE = 1)."""

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (BinaryAccuracy, BinaryAUROC, BinaryF1Score,
                                         BinaryPrecision, BinaryRecall)

from aidetect.models import build_model, count_parameters
from aidetect.views import View, to_float


def _metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"acc": BinaryAccuracy(), "auroc": BinaryAUROC(), "f1": BinaryF1Score(),
                             "precision": BinaryPrecision(), "recall": BinaryRecall()}, prefix=prefix)


class Detector(L.LightningModule):
    """``view`` and ``saturation_factor`` are hyperparameters, so they travel in the checkpoint
    and ``eval.py`` applies exactly the view the model was trained on."""

    def __init__(self, arch: str = "seed_cifake_cnn", lr: float = 1e-3,
                 view: str = "none", saturation_factor: float = 1.0):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train.py logs hparams once, with final metrics
        self.net = build_model(arch)
        self.view = View(view, saturation_factor)
        self.loss = nn.BCEWithLogitsLoss()
        self.train_metrics, self.val_metrics, self.test_metrics = (
            _metrics("train/"), _metrics("val/"), _metrics("test/"))

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.net)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        # Runs on the training device for every stage: the view is applied batched, once.
        if isinstance(batch, (tuple, list)):
            return (self.view(to_float(batch[0])), *batch[1:])
        return self.view(to_float(batch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def _step(self, batch, stage: str, metrics: MetricCollection):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y.float())
        # Probabilities, not logits: torchmetrics would guess wrongly on batches of logits in [0, 1].
        metrics.update(logits.sigmoid(), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", self.train_metrics)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test", self.test_metrics)

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).sigmoid()  # P(FAKE)

    run_config: dict | None = None  # the composed Hydra config, set by train.py

    def on_save_checkpoint(self, checkpoint):
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
