"""Callbacks: per-epoch timing and validation history for metrics.json, the view grid, and an EMA
of the weights that never stands in for the model before it has averaged anything."""

import logging
import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim.swa_utils import get_ema_multi_avg_fn

from aidetect.views import to_float

log = logging.getLogger(__name__)


class EMA(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging, except before its first update. Lightning builds the average
    from the initial weights and swaps it in for validation, checkpoints and the end of training
    even when no update has happened yet: epochs before ``update_starting_at_step`` were validated
    (and checkpointed) as the untrained network, and a run shorter than that ended as one. Here the
    trained weights stand until the average exists (a run too short to start it is said so, and
    ends with its trained weights)."""

    def __init__(self, decay: float = 0.999, **kwargs) -> None:
        # The float tensors in one foreach lerp instead of Lightning's per-tensor avg_fn (four kernels
        # a tensor; integer counters stay one at a time). Same average; about 2.9x faster an update on a
        # CPU (benchmarks/ema_update.py); on an H200 at batch 128 the EMA epoch went from +39% to +7%
        # over the first epoch (README, Speed).
        # (Lightning hands AveragedModel its avg_fn through _kwargs, and AveragedModel takes one of the two.)
        super().__init__(decay=decay, **kwargs)
        self._kwargs = {k: v for k, v in self._kwargs.items() if k != "avg_fn"}
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)

    def _started(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_fit_start(self, trainer, pl_module) -> None:
        start, total = self.update_starting_at_step, trainer.estimated_stepping_batches
        if start is not None and total is not None and start >= total:
            log.warning("callbacks.ema.update_starting_at_step=%s, but this run has %s optimizer steps: no average; "
                        "the trained weights are used as they are (set it below %s to average)", start, total, total)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self._started():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._started():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self._started():  # else the checkpoint holds the trained weights, as without the callback
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._started():
            super().on_train_end(trainer, pl_module)


class ResumeState(L.Callback):
    """The random number generators' states, in every checkpoint: Lightning restores weights,
    optimizer, schedule and loop counters but not these, so a resumed run would shuffle and
    augment differently from the run it continues. As tensors and plain numbers, so the
    checkpoint still loads with ``weights_only=True``."""

    def state_dict(self):
        import random

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, state, py_gauss = random.getstate()
        return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                          has_gauss, gauss],
                "python": [version, torch.tensor(state, dtype=torch.int64), py_gauss],
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}  # augment draws there

    def load_state_dict(self, state):
        # Applied at once: Lightning restores callbacks before configure_optimizers, whose
        # step estimate already builds the first epoch's training iterator, and with it the
        # shuffle order. (Loading a checkpoint to test sets the generators too: harmless.)
        import random

        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, py_state, py_gauss = state["python"]
        random.setstate((version, tuple(py_state.tolist()), py_gauss))
        cuda = state.get("cuda") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class EpochStats(L.Callback):
    """Wall seconds, images seen and validation metrics of every training epoch.

    An epoch's time runs from the start of training to the end of its validation pass,
    the number the speed target in the README is about.
    """

    def __init__(self):
        self.epochs: list[dict] = []

    # In the checkpoint, so a resumed run's metrics.json lists every epoch, not only its own.
    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        # At once, not at on_train_start: a resumed job whose last epoch was already done skips
        # the fit loop (and its hooks) but must still report every epoch. (train.py tests through
        # load_detector, so no test-time checkpoint load comes through here.)
        self.epochs = list(state.get("epochs", []))

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()
        self._n = {"train": 0, "val": 0}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._n["train"] += len(batch[1])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and hasattr(self, "_n"):
            self._n["val"] += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        seconds = time.perf_counter() - self._t0
        row = {"epoch": trainer.current_epoch + 1, "seconds": round(seconds, 3),
               "train_images": self._n["train"], "val_images": self._n["val"],
               "images_per_second": round((self._n["train"] + self._n["val"]) / seconds, 1)}
        if self._n["val"]:  # callback_metrics keeps the last validation's values through epochs without one
            for k, v in trainer.callback_metrics.items():
                if k.startswith("val/"):
                    row[k] = round(float(v), 6)
        self.epochs.append(row)
        # One line per epoch in the log, readable without a progress bar and when piped.
        # The module logs its epoch metrics after this hook (Lightning calls callbacks first).
        train_loss = pl_module.epoch_train_loss() if hasattr(pl_module, "epoch_train_loss") else None
        log.info("epoch %d/%d: %.1f s, %.0f img/s, train/loss %s, %s", row["epoch"], trainer.max_epochs, seconds,
                 row["images_per_second"], "n/a" if train_loss is None else f"{float(train_loss):.4f}",
                 ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k in ("val/acc", "val/auroc", "val/loss")))


class ViewGrid(L.Callback):
    """Logs fixed validation images to TensorBoard each validation epoch: the originals on
    top, what the model sees below (a row per group of 3 channels), columns labelled
    REAL/FAKE, small images upscaled; one tag for every view so runs share a card."""

    def __init__(self, n: int = 8):
        self.n = n

    def on_validation_epoch_end(self, trainer, pl_module):
        from aidetect.grids import render_grid, view_panels

        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        dm = trainer.datamodule
        if logger is None or trainer.sanity_checking or not hasattr(dm, "fixed_examples"):
            return
        images, labels = dm.fixed_examples("val", self.n)
        x = to_float(images).to(pl_module.device)
        grid = render_grid([("RGB", x)] + view_panels(pl_module.view, x), labels.tolist())
        logger.experiment.add_image("val/view_grid", torch.from_numpy(np.array(grid)).permute(2, 0, 1),
                                    trainer.global_step)
