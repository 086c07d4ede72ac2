"""Training end to end on a tiny synthetic set: checkpoints (weights-only), resume, DDP, loss curve, export."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from movenet import checkpoint, synth
from movenet.data import DataConfig, prepare
from movenet.train import TrainConfig, train

TINY = dict(layers_per_stack=4, n_stacks=1, residual_channels=16, gate_channels=32, skip_channels=16,
            video_channels=16, frame_width=8)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    synth.write_dataset(root / "synth", n_clips=6, seconds=2.0, seed=3, progress=False)
    prepare(root / "synth", root / "prepared", DataConfig(valid_fraction=0.34), workers=1, progress=False)
    return root / "prepared"


def quick(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(crop_seconds=0.4, batch_size=2, num_workers=0, max_steps=6, val_crops=4,
                                 log_every=1, control_steps=20, span_seconds=1.0), **overrides})


def test_train_writes_checkpoints_that_load_weights_only_and_a_loss_curve(prepared, tmp_path):
    run = tmp_path / "run"
    exported = train(prepared, run, dict(TINY), quick(), progress=False)
    assert exported == run / "model.pt"
    for ckpt in ("last.ckpt", "best.ckpt"):
        state = torch.load(run / "checkpoints" / ckpt, map_location="cpu", weights_only=True)
        assert state["global_step"] == 6 and state["optimizer_states"] and state["lr_schedulers"]
    loaded = checkpoint.load(exported)
    assert loaded.model.config.residual_channels == 16 and loaded.model.config.n_labels == 3
    assert loaded.inputs.to_dict() == {"sample_rate": 16000, "fps": 25, "frame_size": 64, "gray": True,
                                       "features": "frames"}
    assert sorted(loaded.labels) == sorted(synth.STYLES) and loaded.step == 6
    assert loaded.metrics["val_bits"] is not None and 0 < loaded.metrics["val_bits"] < 9
    scores = loaded.metrics["controls"]  # how well the control head reads the body, on validation spans
    # the default head also reads each hit's level (the kick's)
    assert set(scores) == {"note_accuracy", "loudness_r", "onset_f1", "level_r"} and 0 <= scores["note_accuracy"] <= 1
    assert (run / "loss.png").stat().st_size > 10_000
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hop"] == 640 and config["train"]["max_steps"] == 6
    # Running again without --resume or --force refuses to mix two runs.
    with pytest.raises(FileExistsError, match="--resume"):
        train(prepared, run, dict(TINY), quick(), progress=False)


def test_resume_continues_exactly_where_it_stopped(prepared, tmp_path, monkeypatch):
    """Interrupted after 3 steps (Ctrl-C), resumed to 6: the same step, schedule and learning rate as 6 in one go."""
    from movenet.trainer import MoveNetModule

    straight = tmp_path / "straight"
    train(prepared, straight, dict(TINY), quick(max_steps=6), progress=False)
    halves = tmp_path / "halves"
    original = MoveNetModule.training_step

    def interrupted(self, batch, batch_idx):
        if self.global_step == 3:
            raise KeyboardInterrupt  # Lightning shuts down and exits; the state reached is saved first
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MoveNetModule, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt, match="saved step 3"):
        train(prepared, halves, dict(TINY), quick(max_steps=6), progress=False)
    assert torch.load(halves / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    monkeypatch.setattr(MoveNetModule, "training_step", original)
    train(prepared, halves, None, quick(max_steps=6), resume=True, progress=False)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(halves / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 6
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]
    assert b["optimizer_states"][0]["state"][0]["step"] == 6  # AdamW's moments carried over, not restarted
    with pytest.raises(ValueError, match="cannot change"):
        train(prepared, halves, None, quick(max_steps=9), resume=True, progress=False)


def test_a_run_can_start_from_a_models_weights_and_keeps_its_settings(prepared, tmp_path):
    """--init-from: a fine-tuning run starts where the model is (so a vanishing learning rate leaves it there), takes
    its settings, skips the head's own stage, and refuses flags that would change the model, except a style latent
    added."""
    base = checkpoint.load(train(prepared, tmp_path / "base", dict(TINY), quick(max_steps=2), progress=False))
    tuned = checkpoint.load(train(prepared, tmp_path / "tuned", None,
                                  quick(max_steps=2, lr=1e-12, init_from=str(tmp_path / "base" / "model.pt")),
                                  progress=False))
    assert tuned.model.config == base.model.config and tuned.labels == base.labels
    for (name, a), b in zip(base.model.state_dict().items(), tuned.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    scratch = checkpoint.load(train(prepared, tmp_path / "scratch", dict(TINY), quick(max_steps=2, lr=1e-12),
                                    progress=False))
    differs = [n for n, a in base.model.state_dict().items()
               if a.dtype.is_floating_point and not torch.allclose(a, scratch.model.state_dict()[n], atol=1e-6)]
    assert differs  # the check above can fail: a run from scratch (and its head's stage) lands elsewhere
    with pytest.raises(ValueError, match="residual-channels 32"):
        train(prepared, tmp_path / "wider", {"residual_channels": 32},
              quick(init_from=str(tmp_path / "base" / "model.pt")), progress=False)
    # the one setting that may be added: a style latent (MoveNet.with_latent), the rest of the model kept
    styled = checkpoint.load(train(prepared, tmp_path / "styled", {"latent": 2},
                                   quick(max_steps=2, lr=1e-12, init_from=str(tmp_path / "base" / "model.pt"),
                                         reference_seconds=1.0), progress=False))
    assert styled.model.config.latent == 2 and styled.labels == base.labels
    for name, weight in base.model.state_dict().items():
        if not name.startswith("label_embed."):
            assert torch.allclose(weight.float(), styled.model.state_dict()[name].float(), atol=1e-6), name
    assert "kl_nats_per_clip" in styled.metrics["style"]
    with pytest.raises(ValueError, match="residual-channels 32"):
        train(prepared, tmp_path / "styled2", {"latent": 2, "residual_channels": 32},
              quick(init_from=str(tmp_path / "base" / "model.pt")), progress=False)


def test_train_on_keypoints_from_the_synthetic_sidecars(tmp_path):
    synth.write_dataset(tmp_path / "synth", n_clips=12, seconds=6.0, seed=5, progress=False)
    prepare(tmp_path / "synth", tmp_path / "kp", DataConfig(features="keypoints", valid_fraction=0.25), workers=1,
            progress=False)
    loaded = checkpoint.load(train(tmp_path / "kp", tmp_path / "run", dict(TINY), quick(max_steps=3),
                                   progress=False))
    assert loaded.model.config.features == "keypoints" and loaded.model.frame_encoder is None
    # The control head's own stage: a thousand cheap steps teach it the dancers' notes (chance: 1 in 15). Learning
    # the hits' levels beside them slows the notes at first: after 400 steps 0.08 here, 0.48 without the level.
    learned = checkpoint.load(train(tmp_path / "kp", tmp_path / "notes", dict(TINY),
                                    quick(max_steps=1, control_steps=1000, span_seconds=2.0, batch_size=8),
                                    progress=False))
    assert learned.metrics["controls"]["note_accuracy"] > 0.35 > loaded.metrics["controls"]["note_accuracy"]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo DDP test written for Linux")
def test_ddp_two_cpu_processes(prepared, tmp_path):
    """`movenet train --devices 2`: two gloo processes train in step and rank 0 exports the model; the control head
    is learned once (in rank 0: DDP hands its weights to rank 1), not again by the rank Lightning starts later."""
    run = tmp_path / "ddp"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "movenet", "train", str(prepared), "--out", str(run), "--devices", "2",
           "--accelerator", "cpu", "--max-steps", "3", "--batch-size", "2", "--crop-seconds", "0.4",
           "--num-workers", "0", "--val-crops", "4", "--precision", "32-true", "--control-steps", "300", "--quiet",
           *flags]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("controls learned") == 1, result.stdout
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 3
    assert checkpoint.load(run / "model.pt").step == 3


def test_one_cycle_matches_torch_and_a_time_budget_completes_the_schedule():
    from movenet.trainer import one_cycle

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=101)
    for step in range(101):
        # torch ends its warm-up at step 0.3 * N - 1 rather than at 30%: within 3% of the peak everywhere
        assert one_cycle(step / 100) == pytest.approx(optimizer.param_groups[0]["lr"], abs=0.03)
        optimizer.step()
        reference.step()
    assert one_cycle(0.0) == pytest.approx(1 / 25) and one_cycle(0.3) == 1.0
    assert one_cycle(1.0) == pytest.approx(1 / 25 / 1e4)
    curve = [one_cycle(p / 1000) for p in range(1001)]
    assert all(a <= b for a, b in zip(curve[:300], curve[1:301])) and all(a >= b for a, b in zip(curve[300:], curve[301:]))
