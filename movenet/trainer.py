"""The Lightning side of training: the LightningModule around MoveNet, and checkpoint I/O that is atomic and
weights-only. `movenet.train` drives them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from movenet.model import ModelConfig, MoveNet
from movenet.train import LN2, TrainConfig


class MoveNetModule(L.LightningModule):
    """The model, its loss in bits per sample, AdamW with a OneCycle schedule."""

    def __init__(self, model_config: dict, train_config: dict, data_config: dict, labels: list):
        super().__init__()
        self.save_hyperparameters()  # plain dicts and lists only: checkpoints stay weights-only loadable
        self.model = MoveNet(ModelConfig.from_dict(model_config))
        self.train_config = TrainConfig(**train_config)
        self._last_time = None

    def _loss(self, batch) -> torch.Tensor:
        c = self.model.config
        return self.model.loss(batch["codes"], batch.get("frames") if c.uses_frames else None,
                               batch.get("keypoints") if c.uses_keypoints else None,
                               batch["label"] if c.n_labels else None)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        bits = loss.detach() / LN2
        self.log("train/bits", bits, prog_bar=True, on_step=True, on_epoch=False)
        now = time.perf_counter()
        if self._last_time is not None:
            scored = batch["codes"].shape[0] * (batch["codes"].shape[1] - self.model.receptive_field)
            self.log("samples_per_s", scored * self.trainer.world_size / (now - self._last_time), prog_bar=True,
                     on_step=True, on_epoch=False)
        self._last_time = now
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/bits", self._loss(batch) / LN2, prog_bar=True, on_epoch=True, sync_dist=True)

    def on_validation_start(self):
        self._last_time = None  # the pause is not training time

    def on_train_epoch_start(self):
        self.trainer.train_dataloader.dataset.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        cfg = self.train_config
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class AtomicWeightsOnlyIO(TorchCheckpointIO):
    """Checkpoints written under a temporary name and renamed (a kill never leaves half a file), and read
    back with weights_only=True."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C (or any exception) save the state reached as `last.ckpt`, so `--resume` loses nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path)
