"""A training run's directory (`movenet train --out RUN_DIR`): which files movenet writes there, how to tell a
run directory from any other, and clearing one to start over without touching anything movenet did not write.

What movenet writes (see movenet.train):

    config.json                         {"model": ..., "train": ..., "data": ..., ...}
    model.pt, loss.png
    checkpoints/last.ckpt, best.ckpt    (and, while writing, .movenet-* temporary files)
    logs/csv/version_N/                 metrics.csv, hparams.yaml
    logs/tensorboard/version_N/         events.out.tfevents.*, hparams.yaml

A directory is a movenet run if its config.json is such a config, or it holds checkpoints/last.ckpt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from movenet.files import TEMP_PREFIX

CONFIG = "config.json"
TOP_FILES = ("model.pt", "loss.png")
CHECKPOINTS = ("last.ckpt", "best.ckpt")
LOGGERS = {"csv": ("metrics.csv", "hparams.yaml"), "tensorboard": ("events.out.tfevents.*", "hparams.yaml")}
_VERSION = re.compile(r"version_\d+$")


class RunConfigError(ValueError):
    """A run directory's config.json that cannot be read; the message is one line."""


def read_config(run_dir: str | Path) -> dict:
    """The run's config.json. Raises RunConfigError (one line) if it is missing, damaged or not a run's."""
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunConfigError(f"{path}: missing; {run_dir} is not a movenet run directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunConfigError(f"{path}: damaged ({' '.join(str(err).split())[:120]})") from None
    if not _is_config(config):
        raise RunConfigError(f"{path}: not a movenet run's config (it needs 'model', 'train' and 'data' sections)")
    return config


def _is_config(config) -> bool:
    return isinstance(config, dict) and all(isinstance(config.get(k), dict) for k in ("model", "train", "data"))


def has_run_config(run_dir: str | Path) -> bool:
    try:
        read_config(run_dir)
    except RunConfigError:
        return False
    return True


def is_run(run_dir: str | Path) -> bool:
    """Whether movenet trained in `run_dir`: its config.json, or a last.ckpt."""
    run_dir = Path(run_dir)
    return has_run_config(run_dir) or (run_dir / "checkpoints" / "last.ckpt").is_file()


def holds_run(run_dir: str | Path) -> bool:
    """Whether starting over would lose a run's results: a last checkpoint, or an exported model."""
    run_dir = Path(run_dir)
    return (run_dir / "checkpoints" / "last.ckpt").exists() or (is_run(run_dir) and (run_dir / "model.pt").exists())


def written_by_movenet(run_dir: str | Path) -> list[Path]:
    """The files of an earlier run in `run_dir` that movenet wrote (named in the module docstring), which
    starting over replaces."""
    run_dir = Path(run_dir)
    found = [run_dir / name for name in (CONFIG, *TOP_FILES) if (run_dir / name).is_file()]
    if (run_dir / CONFIG).is_file() and not has_run_config(run_dir):
        found.remove(run_dir / CONFIG)  # someone else's config.json
    ckpt_dir = run_dir / "checkpoints"
    found += [ckpt_dir / name for name in CHECKPOINTS if (ckpt_dir / name).is_file()]
    if ckpt_dir.is_dir():
        found += sorted(p for p in ckpt_dir.glob(f"{TEMP_PREFIX}*") if p.is_file())
    for logger, patterns in LOGGERS.items():
        root = run_dir / "logs" / logger
        versions = sorted(p for p in root.glob("version_*") if p.is_dir() and _VERSION.match(p.name)) \
            if root.is_dir() else []
        for version in versions:
            found += sorted(p for pattern in patterns for p in version.glob(pattern) if p.is_file())
    return found


def start_over(run_dir: str | Path, force: bool = False) -> list[Path]:
    """Make `run_dir` ready for a new run; returns the files removed.

    Nothing happens to a missing or empty directory. A directory that is not a movenet run is refused unless
    `force`, and even then nothing in it is removed; a file movenet would overwrite there (config.json, model.pt,
    loss.png, a checkpoint) is refused in any case. A movenet run holding a last checkpoint or an exported model
    is refused unless `force`. Otherwise the files movenet wrote (`written_by_movenet`) are removed, and the
    folders that leaves empty; every other file stays. Raises FileExistsError (one line).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a directory")
    if not any(run_dir.iterdir()):
        return []
    if not is_run(run_dir):
        if not force:
            raise FileExistsError(f"{run_dir}: not empty, and not a movenet run directory; choose another --out "
                                  f"(or --force to train there beside the files it holds)")
        would_overwrite = [p for p in (run_dir / CONFIG, *(run_dir / n for n in TOP_FILES),
                                       *(run_dir / "checkpoints" / n for n in CHECKPOINTS)) if p.exists()]
        if would_overwrite:
            raise FileExistsError(f"{would_overwrite[0]}: exists and movenet did not write it; training would "
                                  f"overwrite it: choose another --out")
        return []
    if holds_run(run_dir) and not force:
        raise FileExistsError(f"{run_dir}: already holds a run; --resume to continue it or --force to start over")
    if (run_dir / CONFIG).exists() and not has_run_config(run_dir):
        raise FileExistsError(f"{run_dir / CONFIG}: exists and movenet did not write it; training would "
                              f"overwrite it: choose another --out")
    removed = written_by_movenet(run_dir)
    for path in removed:
        path.unlink(missing_ok=True)
    folders = [*(run_dir / "logs" / logger for logger in LOGGERS), run_dir / "logs", run_dir / "checkpoints"]
    for logger in LOGGERS:
        root = run_dir / "logs" / logger
        folders[:0] = sorted(p for p in root.glob("version_*") if p.is_dir()) if root.is_dir() else []
    for folder in folders:  # innermost first; only the ones left empty
        try:
            folder.rmdir()
        except OSError:
            pass
    return removed
