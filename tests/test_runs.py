"""A training run's directory and --resume with bad input: nothing movenet did not write is removed, a resume
never silently changes the model, a damaged or hostile last.ckpt is one line, Ctrl-C says what it saved (issue 13,
items 1, 5, 6, 7 and 10)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from movenet import cli, rundir, synth
from movenet.data import DataConfig, prepare
from movenet.train import TrainConfig, train

TINY = dict(layers_per_stack=3, n_stacks=1, residual_channels=16, gate_channels=32, skip_channels=16,
            video_channels=8, frame_width=8)
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
QUICK_FLAGS = ["--batch-size", "2", "--crop-seconds", "0.4", "--num-workers", "0", "--val-crops", "2",
               "--precision", "32-true"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    synth.write_dataset(root / "synth", n_clips=3, seconds=1.5, seed=4, progress=False)
    prepare(root / "synth", root / "prepared", DataConfig(valid_fraction=0.34), workers=1, progress=False)
    return root / "prepared"


def quick(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(crop_seconds=0.4, batch_size=2, num_workers=0, max_steps=2, val_crops=2,
                                 log_every=1, precision="32-true", control_steps=5), **overrides})


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "movenet", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


# ----------------------------------------------------------------------------------------------------------------
# Item 1: train deletes nothing it did not write


def test_a_folder_that_is_not_a_run_is_refused_and_with_force_nothing_in_it_is_removed(prepared, tmp_path):
    run = tmp_path / "home"
    (run / "logs").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "logs" / "important.txt").write_text("keep me")
    (run / "checkpoints" / "mine.txt").write_text("mine")
    (run / "notes.md").write_text("notes")
    mine = tree(run)
    with pytest.raises(FileExistsError, match="not a movenet run directory"):
        train(prepared, run, dict(TINY), quick(), progress=False)
    assert tree(run) == mine
    train(prepared, run, dict(TINY), quick(), force=True, progress=False)
    after = tree(run)
    assert {k: after[k] for k in mine} == mine  # every file of the user's is still there, unchanged
    assert {"model.pt", "config.json", "checkpoints/last.ckpt"} <= set(after)


def test_force_refuses_to_overwrite_a_file_movenet_did_not_write(prepared, tmp_path):
    run = tmp_path / "project"
    run.mkdir()
    (run / "config.json").write_text('{"my": "settings"}')
    for force, reason in ((False, "not a movenet run directory"), (True, "config.json: exists and movenet did not")):
        with pytest.raises(FileExistsError, match=reason):
            train(prepared, run, dict(TINY), quick(), force=force, progress=False)
    assert (run / "config.json").read_text() == '{"my": "settings"}' and len(list(run.iterdir())) == 1


def test_starting_over_removes_only_what_movenet_wrote(prepared, tmp_path):
    run = tmp_path / "run"
    train(prepared, run, dict(TINY), quick(), progress=False)
    (run / "logs" / "important.txt").write_text("keep me")
    (run / "checkpoints" / "mine.txt").write_text("mine")
    (run / "logs" / "csv" / "version_0" / "my_plot.png").write_bytes(b"png")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(prepared, run, dict(TINY), quick(), progress=False)
    written = {p.relative_to(run).as_posix() for p in rundir.written_by_movenet(run)}
    assert {"config.json", "model.pt", "loss.png", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
            "logs/csv/version_0/metrics.csv", "logs/csv/version_0/hparams.yaml"} <= written
    assert not {"logs/important.txt", "checkpoints/mine.txt", "logs/csv/version_0/my_plot.png"} & written
    train(prepared, run, dict(TINY), quick(max_steps=3), force=True, progress=False)
    after = tree(run)
    assert after["logs/important.txt"] == b"keep me" and after["checkpoints/mine.txt"] == b"mine"
    assert after["logs/csv/version_0/my_plot.png"] == b"png"
    assert "logs/csv/version_0/metrics.csv" not in after  # the old run's log went; the new run logs as version 1
    assert "logs/csv/version_1/metrics.csv" in after and not (run / "logs" / "tensorboard" / "version_1").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_cli_train_into_a_busy_folder_is_one_line(prepared, tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "important.txt").write_text("keep me")
    result = cli_run("train", prepared, "--out", tmp_path, "--max-steps", 1, "--quiet", *QUICK_FLAGS, *TINY_FLAGS)
    assert result.returncode == 1 and "not a movenet run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "logs" / "important.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------------------------------
# Items 5, 6, 7: --resume with a damaged or hostile last.ckpt, or other model settings


@pytest.fixture(scope="module")
def finished(prepared, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    train(prepared, run, dict(TINY), quick(), progress=False)
    return run


def copy_run(finished: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(finished, to)
    return to


def test_resume_refuses_other_model_settings_naming_them(prepared, finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    before = tree(run)
    with pytest.raises(ValueError) as err:
        train(prepared, run, {"residual_channels": 64, "layers_per_stack": 3, "n_stacks": 2}, quick(max_steps=2),
              resume=True, progress=False)
    assert "--residual-channels 64 (the run's: 16)" in str(err.value) and "--n-stacks 2 (the run's: 1)" in str(err.value)
    assert "layers-per-stack" not in str(err.value)  # the same as the run's: fine
    assert tree(run) == before
    result = cli_run("train", prepared, "--out", run, "--resume", "--residual-channels", 64, "--quiet")
    assert result.returncode == 1 and "--residual-channels 64 (the run's: 16)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("damage", ["hostile", "truncated", "not a training checkpoint"])
def test_resume_with_a_damaged_or_hostile_last_ckpt_is_one_line(prepared, finished, tmp_path, damage):
    run = copy_run(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    marker = tmp_path / "pwned"
    if damage == "hostile":
        torch.save({"state_dict": {}, "global_step": 1, "x": Hostile(marker)}, last)
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:3000])
    else:
        torch.save({"just": "a dict"}, last)
    result = cli_run("train", prepared, "--out", run, "--resume", "--quiet")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip()
    assert str(last) in line and "weights_only" not in line
    expected = {"hostile": "refused: it holds code or objects (posix.system)",
                "truncated": "not a movenet training checkpoint, or damaged",
                "not a training checkpoint": "not a movenet training checkpoint"}[damage]
    assert expected in line
    assert not marker.exists()


def test_resume_with_a_damaged_config_is_one_line(prepared, finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    (run / "config.json").write_text("{not json")
    result = cli_run("train", prepared, "--out", run, "--resume", "--quiet")
    assert result.returncode == 1 and "config.json: damaged" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ----------------------------------------------------------------------------------------------------------------
# Item 10: Ctrl-C during train


def test_ctrl_c_during_train_says_interrupted_and_what_was_saved(prepared, tmp_path, monkeypatch, capsys):
    from movenet.trainer import MoveNetModule

    original = MoveNetModule.training_step

    def interrupted(self, batch, batch_idx):
        if self.global_step == 2:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MoveNetModule, "training_step", interrupted)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", str(prepared), "--out", str(run), "--max-steps", "5", "--quiet", *QUICK_FLAGS,
                  *TINY_FLAGS])
    err = capsys.readouterr().err
    assert exit_.value.code == 130
    last_line = err.strip().splitlines()[-1]
    assert last_line == f"movenet: error: interrupted; saved step 2 in {run / 'checkpoints' / 'last.ckpt'}: " \
                        f"--resume continues from it"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert json.loads((run / "config.json").read_text())["train"]["max_steps"] == 5


def test_an_unwritable_run_directory_fails_before_training(prepared, tmp_path, readonly_dir, monkeypatch):
    """A read-only filesystem (EROFS on creating a file, simulated) is said before training is set up."""

    from movenet.trainer import MoveNetModule

    readonly = readonly_dir
    monkeypatch.setattr(MoveNetModule, "__init__", lambda *a, **k: pytest.fail("training was set up"))
    with pytest.raises(OSError, match="Read-only file system") as err:
        train(prepared, readonly / "run", dict(TINY), quick(), progress=False)
    assert str(err.value) == f"{readonly / 'run'}: cannot write there (Read-only file system)"
