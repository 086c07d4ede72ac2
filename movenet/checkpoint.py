"""Exported models (`model.pt`): everything generation and evaluation need, as plain types.

    {"format_version": 1, "model_config": {...}, "data_config": {...}, "labels": [...], "model": state_dict,
     "step": int, "metrics": {...}}

Saved atomically (temp name, then rename) and loaded with `torch.load(..., weights_only=True)`, which accepts
plain dicts, lists, numbers, strings and tensors only, so a checkpoint cannot run code when it is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from movenet.model import ModelConfig, MoveNet

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# The data settings a model depends on; generation reads videos with exactly these.
DATA_KEYS = ("sample_rate", "fps", "frame_size", "gray", "features")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file and the reason."""


@dataclass
class Loaded:
    model: MoveNet
    data_config: dict  # DATA_KEYS
    labels: list[str] = field(default_factory=list)  # style names, index = label id
    step: int = 0
    metrics: dict = field(default_factory=dict)

    def label_index(self, name: str | None) -> int | None:
        """The id of style `name` (None: the first style), or None for a model without styles."""
        if not self.model.config.n_labels:
            return None
        if name is None:
            return 0
        if name not in self.labels:
            raise CheckpointError(f"unknown style {name!r}; this model knows {', '.join(self.labels)}")
        return self.labels.index(name)


def _plain(value):
    """Numbers, strings, lists and dicts only (a Path or numpy scalar would break weights-only loading)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalar
        return value.item()
    return str(value)


def save(path: str | Path, model: MoveNet, data_config: dict, labels: list[str], step: int = 0,
         metrics: dict | None = None) -> Path:
    """Write `model.pt` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": _plain(model.config.to_dict()),
        "data_config": _plain({k: data_config[k] for k in DATA_KEYS}),
        "labels": _plain(list(labels)),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "step": int(step),
        "metrics": _plain(metrics or {}),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Read `model.pt` (weights only) and rebuild the model in eval mode. Raises CheckpointError in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 — any unreadable file is the same user-facing problem
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a movenet checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a movenet model.pt (a training checkpoint? export it, or use "
                              f"RUN_DIR/model.pt)")
    version = payload["format_version"]
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{path}: format version {version} is not supported (this movenet reads "
                              f"{SUPPORTED_VERSIONS})")
    try:
        model = MoveNet(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({str(err).splitlines()[0][:200]})") from None
    return Loaded(model=model.to(device).eval(), data_config=payload["data_config"], labels=payload["labels"],
                  step=payload["step"], metrics=payload.get("metrics", {}))
