"""The Lightning side of training: the LightningModule around MoveNet, and checkpoint I/O that is atomic and
weights-only. `movenet.train` drives them; nothing here imports it (the settings arrive as plain dicts, which
is also what the checkpoints keep)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from movenet.checkpoint import read_weights_only
from movenet.files import atomic_write
from movenet.model import ModelConfig, MoveNet

LN2 = math.log(2.0)  # nats per bit
CONTROL_LOSSES = ("pitch", "loudness", "onset", "level")  # the control head's, weighted by control_weight


class MoveNetModule(L.LightningModule):
    """The model, its loss (the audio's bits per sample, plus the control head's losses weighted by
    `control_weight` and a style latent's KL with free bits weighted by `latent_weight`), AdamW with a OneCycle
    schedule."""

    def __init__(self, model_config: dict, train_config: dict, data_config: dict, labels: list):
        """train_config: train.TrainConfig as a dict (lr, weight_decay, max_steps and max_minutes are read here)."""
        super().__init__()
        self.save_hyperparameters()  # plain dicts and lists only: checkpoints stay weights-only loadable
        self.model = MoveNet(ModelConfig.from_dict(model_config))
        self.train_config = dict(train_config)
        self._last_time = None
        self._started, self._earlier_seconds = None, 0.0

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        return self.model.loss(batch, score_encoder=self.train_config.get("score_encoder", False),
                               free_bits=self.train_config.get("free_bits", 0.0))

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        controls = sum(losses[k] for k in CONTROL_LOSSES if k in losses)
        total = losses["audio"] + self.train_config.get("control_weight", 1.0) * controls
        if "kl_free" in losses:
            total = total + self.train_config.get("latent_weight", 0.0) * losses["kl_free"]
        return total

    def training_step(self, batch, batch_idx):
        losses = self._losses(batch)
        loss = self._total(losses)
        bits = losses["audio"].detach() / LN2
        self.log("train/bits", bits, prog_bar=True, on_step=True, on_epoch=False)
        for name, value in losses.items():
            if name != "audio":
                self.log(f"train/{name}", value.detach(), on_step=True, on_epoch=False)
        now = time.perf_counter()
        if self._last_time is not None:
            scored = batch["codes"].shape[0] * (batch["codes"].shape[1] - self.model.receptive_field)
            self.log("samples_per_s", scored * self.trainer.world_size / (now - self._last_time), prog_bar=True,
                     on_step=True, on_epoch=False)
        self._last_time = now
        return loss

    def validation_step(self, batch, batch_idx):
        losses = self._losses(batch)
        self.log("val/bits", losses["audio"] / LN2, prog_bar=True, on_epoch=True, sync_dist=True)
        for name, value in losses.items():
            if name != "audio":
                self.log(f"val/{name}", value, on_epoch=True, sync_dist=True)

    def on_validation_start(self):
        self._last_time = None  # the pause is not training time

    def on_train_epoch_start(self):
        self.trainer.train_dataloader.dataset.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        cfg = self.train_config
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: one_cycle(self.progress(step)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def progress(self, step: int) -> float:
        """How far the run is, 0..1: by steps, or by the time budget if that runs out first. The learning-rate
        schedule follows it, so a run cut by --max-minutes still completes its schedule."""
        cfg = self.train_config
        done = step / cfg["max_steps"]
        if cfg["max_minutes"]:
            done = max(done, self.train_seconds() / (60 * cfg["max_minutes"]))
        return min(done, 1.0)

    def train_seconds(self) -> float:
        """Training time so far, this start and the ones before it (carried in the checkpoint)."""
        if self._started is None:
            return self._earlier_seconds
        return self._earlier_seconds + time.perf_counter() - self._started

    def add_train_seconds(self, seconds: float) -> None:
        """Count work done before fit (the controls' own stage) as training time."""
        self._earlier_seconds += seconds

    def on_train_start(self):
        self._started = time.perf_counter()

    def on_save_checkpoint(self, checkpoint):
        checkpoint["train_seconds"] = self.train_seconds()

    def on_load_checkpoint(self, checkpoint):
        self._earlier_seconds = float(checkpoint.get("train_seconds", 0.0))


def one_cycle(progress: float, warmup: float = 0.3, start_div: float = 25.0, final_div: float = 1e4) -> float:
    """The OneCycle learning-rate factor at `progress` (0..1): cosine up from 1/start_div to 1 over `warmup`,
    then cosine down to 1/(start_div * final_div), as torch's OneCycleLR does over steps."""
    if progress < warmup:
        lo, hi, x = 1 / start_div, 1.0, progress / warmup
    else:
        lo, hi, x = 1.0, 1 / (start_div * final_div), (progress - warmup) / (1 - warmup)
    return hi + (lo - hi) * (1 + math.cos(math.pi * x)) / 2


class AtomicWeightsOnlyIO(TorchCheckpointIO):
    """Checkpoints written under a temporary name and renamed (a kill never leaves half a file), and read
    back with weights_only=True."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return read_weights_only(Path(path), map_location or "cpu", "movenet training checkpoint")


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C (or any exception) save the state reached as `last.ckpt`, so `--resume` loses nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.interrupted, self.saved_step = False, None  # what happened, for the one line the CLI prints

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = True
            if trainer.global_step > 0:
                trainer.save_checkpoint(self.path, weights_only=False)
                self.saved_step = trainer.global_step

    def outcome(self) -> str:
        if self.saved_step is None:
            return "nothing to save before the first step"
        return f"saved step {self.saved_step} in {self.path}: --resume continues from it"


def learn_controls(model: MoveNet, train_set, val_set, steps: int, batch_size: int, lr: float,
                   precision: str = "32-true", seed: int = 0, progress: bool = True) -> dict:
    """The control head's own first stage: the movement encoders and the head learn each frame's note, loudness
    and onset from spans of movement alone (train_set.spans), `steps` Adam steps at `lr` with a cosine decay.

    A step costs a few milliseconds for keypoints (no audio is read or run), so the head sees hundreds of
    thousands of frames before the WaveNet's first step, and the WaveNet then trains beside a head that already
    reads the body. Seeded by `seed`. A DDP run learns it in rank 0 alone: DDP gives the other ranks its weights.
    Returns the seconds it took and `control_scores` on val_set.
    """
    from tqdm import tqdm

    from movenet import controls

    started = time.perf_counter()
    encoders = [m for m in (model.frame_encoder, model.keypoint_encoder) if m is not None]
    params = [p for m in (*encoders, model.temporal, model.control_head) for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.55 + 0.45 * math.cos(math.pi * s / steps))
    rng = torch.Generator().manual_seed(seed)
    c = model.config
    model.train()
    bar = tqdm(range(steps), desc="controls", unit="step", disable=not progress, dynamic_ncols=True)
    for step in bar:
        batch = train_set.spans(torch.randint(0, len(train_set), (batch_size,), generator=rng).tolist())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            _, head = model.encode(batch.get("span_frames") if c.uses_frames else None,
                                   batch.get("span_keypoints") if c.uses_keypoints else None,
                                   batch["label"] if c.n_labels else None)
        losses = controls.head_losses(head.float(), batch["span_controls"])
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        schedule.step()
        if step % 25 == 0:
            bar.set_postfix_str(" ".join(f"{k} {v.item():.3f}" for k, v in losses.items()), refresh=False)
    bar.close()
    return {"seconds": time.perf_counter() - started, **control_scores(model, val_set)}


@torch.no_grad()
def control_scores(model: MoveNet, dataset, n_spans: int = 32) -> dict:
    """How well the head reads the body on a dataset's spans: the share of pitched frames given the right note,
    the correlation of predicted and true loudness (dB), and the F1 of onsets (same frame); a head with hit levels
    adds the correlation of predicted and true level (dB) over the onsets both call."""
    from movenet import controls

    was_training = model.training
    model.eval()
    c = model.config
    batch = dataset.spans(range(n_spans))
    _, head = model.encode(batch.get("span_frames") if c.uses_frames else None,
                           batch.get("span_keypoints") if c.uses_keypoints else None,
                           batch["label"] if c.n_labels else None)
    model.train(was_training)
    predicted, true = controls.from_head(head.float().numpy()), batch["span_controls"].numpy()
    notes, true_notes = controls.pitch_class(predicted[..., 0]), controls.pitch_class(true[..., 0])
    pitched = true_notes > 0
    onset, true_onset = predicted[..., 2] > 0, true[..., 2] > 0
    loud = np.corrcoef(predicted[..., 1].ravel(), true[..., 1].ravel())[0, 1] if predicted[..., 1].std() > 0 else 0.0
    scores = {"note_accuracy": round(float((notes == true_notes)[pitched].mean()) if pitched.any() else math.nan, 4),
              "loudness_r": round(float(loud), 4),
              "onset_f1": round(float(2 * (onset & true_onset).sum() / max(onset.sum() + true_onset.sum(), 1)), 4)}
    if c.kick:
        both = onset & true_onset
        level, true_level = np.log10(predicted[..., 2][both]), np.log10(true[..., 2][both])
        fits = both.sum() > 2 and level.std() > 0 and true_level.std() > 0
        scores["level_r"] = round(float(np.corrcoef(level, true_level)[0, 1]), 4) if fits else math.nan
    return scores
