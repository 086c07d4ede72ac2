"""Training on a prepared data set with Lightning's Trainer: DDP, mixed precision, clipping, checkpoints, resume.

RUN_DIR after `movenet train DATA_DIR --out RUN_DIR`:

    config.json               model, training and data settings of the run
    checkpoints/last.ckpt     full training state (optimizer, schedule, step): `--resume` continues from it
    checkpoints/best.ckpt     the same at the best validation loss
    model.pt                  the best model exported for generation (movenet.checkpoint)
    logs/csv/version_N/metrics.csv   per-step training and per-epoch validation loss (bits per sample), learning
                              rate; one version per start or resume
    logs/tensorboard/         the same for TensorBoard
    loss.png                  training and validation loss in bits per sample

Every checkpoint holds plain types only and is written under a temporary name, then renamed; all of them load
with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from movenet import checkpoint, rundir
from movenet.data import HIT_LEVELS_SINCE, ClipDataset, DataError, data_config_from_manifest, load_manifest
from movenet.files import check_writable_dir, write_json
from movenet.inputs import InputConfig
from movenet.model import ModelConfig


def default_precision() -> str:
    """bf16 mixed precision where the CPU (or GPU) computes bf16 natively: 2-7x faster GEMMs, else fp32."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


@dataclass
class TrainConfig:
    crop_seconds: float = 1.0  # scored audio per crop (the model's context comes on top)
    batch_size: int = 8
    lr: float = 3e-3  # OneCycle peak learning rate
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    control_weight: float = 1.0  # the control head's losses (nats per frame) beside the audio's (nats per sample)
    span_seconds: float = 4.0  # movement per crop that the control head learns from (0: the crop's own)
    control_steps: int = 3000  # the control head first learns alone on spans, this many cheap steps (0: not)
    align_phase: bool = True  # the source of a training crop in phase with its audio (controls.align_phase)
    score_encoder: bool = False  # only the control head's losses train the movement encoders (not the audio's)
    init_from: str = ""  # a model.pt whose weights the run starts from (fine-tuning; its settings are the run's)
    max_steps: int = 20000
    max_minutes: float = 0.0  # training-time budget; 0 = none. The OneCycle schedule ends at whichever comes first
    val_crops: int = 64  # fixed validation crops, scored every epoch
    precision: str = "auto"  # "auto", "bf16-mixed", "16-mixed" or "32-true"
    accelerator: str = "auto"  # "cpu", "gpu", "auto"
    devices: int = 1  # processes (DDP when > 1)
    num_nodes: int = 1
    num_workers: int = 2  # DataLoader processes per device
    style: bool = True  # condition on the style label when the set has several
    latent_weight: float = 0.05  # a style latent's KL (nats per clip) beside the audio's loss (nats per sample)
    free_bits: float = 0.5  # nats per latent dimension the KL term leaves alone, so z stays in use
    reference_seconds: float = 4.0  # the stretch of its clip's soundtrack a crop's style latent is read from
    seed: int = 0
    log_every: int = 10


def train(data_dir: str | Path, run_dir: str | Path, model_overrides: dict | None = None,
          config: TrainConfig | None = None, resume: bool = False, force: bool = False,
          progress: bool = True) -> Path:
    """Train on a prepared set; returns the exported model.pt. Raises DataError / FileExistsError / ValueError /
    CheckpointError / WriteError in one line, before any training; KeyboardInterrupt (its message saying what was
    saved) on Ctrl-C.

    A new run refuses a RUN_DIR that holds a run (unless force) or is not empty and not a movenet run (unless
    force, and then removes nothing); starting over removes only what movenet wrote there (movenet.rundir).
    `resume` continues the run in RUN_DIR: the model settings are the run's (model_overrides that differ are
    refused), training settings that differ from the defaults apply, except the schedule's length."""
    import lightning as L  # here, not at the top: the CLI imports this module for TrainConfig alone
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from movenet.plot import loss_curves
    from movenet.trainer import AtomicWeightsOnlyIO, MoveNetModule, SaveOnInterrupt, control_scores, learn_controls

    # Lightning's own internals warn about a torch deprecation; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    config = config or TrainConfig()
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    manifest = load_manifest(data_dir)
    data = data_config_from_manifest(manifest)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    config_path = run_dir / "config.json"
    check_writable_dir(run_dir)  # now, not after the first epoch
    follower = config.devices * config.num_nodes > 1 and _started_as_another_rank()
    start = None  # a model to fine-tune from (config.init_from)
    if resume and config.init_from:  # a resumed run goes on from its own checkpoint, not from another model
        raise ValueError(f"--init-from starts a new run from {config.init_from}'s weights and --resume continues "
                         f"{run_dir} from its own checkpoint: give one of them")
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume (train without --resume to start)")
        saved = rundir.read_config(run_dir)
        _check_training_checkpoint(last)  # damaged or hostile: said in one line now, not after setting up
        conflicts = _conflicts(saved["model"], model_overrides or {})
        if conflicts:
            raise ValueError(f"{run_dir}: the run was made with other model settings ({conflicts}); they cannot "
                             f"change on --resume: drop those flags, or start a new run")
        model_config = ModelConfig.from_dict(saved["model"])
        InputConfig.from_dict(saved["data"]).require(data, str(data_dir))
        changed = _changed(config)
        for key in ("max_steps", "max_minutes"):
            if changed.get(key, saved["train"][key]) != saved["train"][key]:
                raise ValueError(f"--{key.replace('_', '-')} sets the length of the run's OneCycle schedule "
                                 f"({saved['train'][key]}) and cannot change on --resume")
        config = TrainConfig(**{**saved["train"], **changed})
    else:
        start = _starting_weights(config.init_from, data_dir, data, manifest, model_overrides or {})
        if not follower:  # rank 0 has made the run directory ready and written its config before this rank started
            rundir.start_over(run_dir, force)  # the old run's files would mix with the new ones; nothing else goes
        if start is not None:
            model_config = start.model.config
        else:
            n_labels = len(manifest["labels"]) if config.style and len(manifest["labels"]) > 1 else 0
            model_config = ModelConfig.for_inputs(data, n_labels, **(model_overrides or {}))
    inputs = dataclasses.replace(InputConfig.from_dict(asdict(data)), features=model_config.features)
    if resume:
        run_labels = saved.get("labels", manifest["labels"])
    else:
        run_labels = start.labels if start is not None else manifest["labels"]
    labels = run_labels if model_config.n_labels else []  # style names, by the model's ids
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and not follower:
        write_json(config_path, {"model": model_config.to_dict(), "train": asdict(config),
                                 "data": inputs.to_dict(), "labels": labels, "data_dir": str(data_dir)})

    if model_config.kick and manifest["format_version"] < HIT_LEVELS_SINCE:
        print(f"{data_dir}: prepared before hits had levels: every kick trains at full level (prepare the videos "
              f"again into a new directory for the levels)")
    L.seed_everything(config.seed, workers=True, verbose=False)
    harmonics = model_config.harmonics if model_config.controls else 0  # crops bring the source of their controls
    span_frames = round(config.span_seconds * data.fps) if model_config.controls else 0
    fps = data.fps
    crop_frames = max(1, round(config.crop_seconds * fps))
    reference_samples = round(config.reference_seconds * data.sample_rate) if model_config.latent else 0

    def crops(split: str, seed: int) -> ClipDataset:
        return ClipDataset(data_dir, split, crop_frames, model_config.context_frames, seed=seed,
                           labels=run_labels, harmonics=harmonics, kick=model_config.kick,
                           span_frames=span_frames, align_phase=config.align_phase,
                           reference_samples=reference_samples, direct_kick=model_config.plays_kick)

    train_set = crops("train", config.seed)
    try:
        val_set = crops("valid", config.seed + 1)
    except DataError:
        print(f"{data_dir}: no validation clips; validating on fixed crops of the training clips")
        val_set = crops("train", config.seed + 1)
    val_set.n_items = min(len(val_set), config.val_crops)
    loader_args = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                       persistent_workers=False, pin_memory=torch.cuda.is_available())
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, drop_last=len(train_set) > config.batch_size,
                                               **loader_args)
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **loader_args)

    precision = default_precision() if config.precision == "auto" else config.precision
    module = MoveNetModule(model_config.to_dict(), asdict(config), inputs.to_dict(), labels)
    if not resume and start is not None:
        module.model.load_state_dict(start.model.state_dict())
        print(f"starting from {config.init_from} (step {start.step})")
    elif not resume and model_config.controls and config.control_steps and not follower:
        # A trained head needs no stage of its own; another rank gets rank 0's head when DDP wraps the model (it
        # broadcasts rank 0's weights), and learning it again would double the wait (Lightning starts the other
        # ranks only when rank 0 reaches fit).
        learned = learn_controls(module.model, train_set, val_set, config.control_steps, config.batch_size,
                                 config.lr, precision, config.seed, progress)
        module.add_train_seconds(learned["seconds"])  # spent from the time budget
        print(f"controls learned in {learned['seconds']:.0f} s: on validation spans, note right on "
              f"{learned['note_accuracy']:.0%} of pitched frames, loudness r {learned['loudness_r']:.2f}, onset "
              f"F1 {learned['onset_f1']:.2f}" + (f", hit level r {learned['level_r']:.2f}" if "level_r" in learned
                                                 else ""))
    interrupt = SaveOnInterrupt(last)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/bits", mode="min", save_top_k=1,
                           save_last=True, enable_version_counter=False)
    # A new version directory per (re)start: resuming must not overwrite the earlier part's log.
    loggers = [CSVLogger(run_dir / "logs", name="csv", flush_logs_every_n_steps=config.log_every),
               TensorBoardLogger(run_dir / "logs", name="tensorboard")]
    steps_per_epoch = max(1, len(train_loader) // config.devices // config.num_nodes)
    trainer = L.Trainer(
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy="ddp" if config.devices * config.num_nodes > 1 else "auto",
        precision=precision, max_steps=config.max_steps,
        val_check_interval=min(steps_per_epoch, config.max_steps),  # every epoch, and at the end of a short run
        max_time={"seconds": max(1.0, 60 * config.max_minutes - module.train_seconds())} if config.max_minutes
        else None,
        gradient_clip_val=config.grad_clip, callbacks=[best, interrupt, LearningRateMonitor("step")], logger=loggers,
        log_every_n_steps=config.log_every, enable_progress_bar=progress, plugins=[AtomicWeightsOnlyIO()],
        default_root_dir=run_dir, enable_model_summary=progress, num_sanity_val_steps=0,
    )
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)
    except SystemExit:  # Lightning turns Ctrl-C into sys.exit(1), after SaveOnInterrupt has saved
        if interrupt.interrupted:
            raise KeyboardInterrupt(interrupt.outcome()) from None
        raise
    finally:
        if sigint is not None and signal.getsignal(signal.SIGINT) is not sigint:  # Lightning ignores SIGINT
            try:
                signal.signal(signal.SIGINT, sigint)
            except ValueError:  # not the main thread
                pass
    # The checkpoint callback saves at validation; a time budget can end a run between two, so save the end state.
    trainer.save_checkpoint(last, weights_only=False)  # the full state: optimizer, schedule, loops

    if trainer.global_rank != 0:
        return run_dir / "model.pt"
    # Export the best weights (by validation loss) for generation.
    source = Path(best.best_model_path) if best.best_model_path else last
    state = checkpoint.read_weights_only(source, "cpu", "movenet training checkpoint")
    module.load_state_dict(state["state_dict"])
    val_bits = float(best.best_model_score) if best.best_model_score is not None else None
    scores = {"controls": control_scores(module.model, val_set)} if model_config.controls else {}
    if model_config.latent:
        scores["style"] = set_style_centroids(module.model, train_set, val_set)
    exported = checkpoint.save(run_dir / "model.pt", module.model.cpu(), inputs, labels, step=state["global_step"],
                               metrics={"val_bits": val_bits, "precision": precision, "source": source.name,
                                        **scores})
    metrics_csvs = sorted((run_dir / "logs" / "csv").glob("version_*/metrics.csv"),
                          key=lambda p: int(p.parent.name.split("_")[1]))
    if metrics_csvs:
        loss_curves(metrics_csvs, run_dir / "loss.png")
    return exported


def set_style_centroids(model, train_set: ClipDataset, val_set: ClipDataset) -> dict:
    """Set a latent model's style centroids from its training clips (movenet.style.centroids); returns the KL per
    clip of the validation clips (nats: how much each one's z tells), for the exported metrics."""
    from movenet import style

    limit = round(style.MAX_REFERENCE_SECONDS * train_set.config.sample_rate)
    model.eval()
    found, _ = style.centroids(model, ((int(train_set.label(i)), train_set.soundtrack(i, limit))
                                       for i in range(len(train_set.clips))))
    model.style_centroids.copy_(torch.from_numpy(found))
    _, kls = style.centroids(model, ((int(val_set.label(i)), val_set.soundtrack(i, limit))
                                     for i in range(len(val_set.clips))))
    return {"kl_nats_per_clip": {"mean": float(np.mean(kls)), "min": float(np.min(kls)), "max": float(np.max(kls))},
            "centroids": found.round(4).tolist()}


def _started_as_another_rank() -> bool:
    """Whether a DDP launcher started this process as a rank other than 0 (torchrun sets RANK, SLURM
    SLURM_PROCID, Lightning's own launcher NODE_RANK and LOCAL_RANK in the ranks it starts)."""
    return any(int(os.environ.get(name, 0)) != 0 for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"))


def _check_training_checkpoint(path: Path) -> None:
    """Raise CheckpointError (one line) unless `path` loads weights-only as a Lightning training checkpoint."""
    state = checkpoint.read_weights_only(path, "cpu", "movenet training checkpoint")
    if not isinstance(state, dict) or not {"state_dict", "global_step"} <= set(state):
        raise checkpoint.CheckpointError(f"{path}: not a movenet training checkpoint (no training state in it)")


def _starting_weights(path: str, data_dir: Path, data, manifest: dict, model_overrides: dict):
    """The model a fine-tuning run starts from (checkpoint.Loaded), or None for a run from scratch. Raises
    CheckpointError / ValueError in one line when it cannot train on this set (other rates or features) or when
    model flags differ from its settings; `latent` may add a style latent to a model without one
    (MoveNet.with_latent). A set's styles the model lacks train as its first style (said)."""
    if not path:
        return None
    start = checkpoint.load(path)
    where = f"{path} on {data_dir}"
    start.inputs.require(data, where)
    unknown = [name for name in manifest["labels"] if name not in start.labels]
    if start.model.config.n_labels and unknown:
        print(f"{where}: the model has no style {', '.join(unknown)}; those clips train as its style "
              f"{start.labels[0]}")
    added = 0 if start.model.config.latent else model_overrides.get("latent", 0)
    if added:  # the one setting a fine-tuning run may add: a style latent
        model_overrides = {k: v for k, v in model_overrides.items() if k != "latent"}
    conflicts = _conflicts(start.model.config.to_dict(), model_overrides, "the model's")
    if conflicts:
        raise ValueError(f"{path}: a fine-tuning run keeps the model's settings ({conflicts}): drop those flags")
    if added:
        print(f"{path}: adding a style latent of {added} dimensions (it starts as the average of the model's styles)")
        start = dataclasses.replace(start, model=start.model.with_latent(added))
    return start


def _conflicts(saved_model: dict, overrides: dict, whose: str = "the run's") -> str:
    """The model settings asked for that differ from the saved ones, as `--flag asked (the run's: saved)`; "" if
    none."""
    return ", ".join(f"--{k.replace('_', '-')} {v} ({whose}: {saved_model.get(k)})"
                     for k, v in sorted(overrides.items()) if saved_model.get(k) != v)


def _changed(config: TrainConfig) -> dict:
    """Fields of `config` that differ from the defaults (the flags given on a --resume)."""
    default = TrainConfig()
    return {f.name: getattr(config, f.name) for f in fields(TrainConfig)
            if getattr(config, f.name) != getattr(default, f.name)}
