"""Exported models (`model.pt`): everything generation and evaluation need, as plain types.

    {"format_version": 1, "model_config": {...}, "data_config": InputConfig as a dict, "labels": [...],
     "model": state_dict, "step": int, "metrics": {...}}

"data_config" holds the input settings generation reads videos with (`movenet.inputs.InputConfig`), its
`features` being what the model listens to.

Saved atomically (temp name, then rename) and loaded with `torch.load(..., weights_only=True)`, which accepts
plain dicts, lists, numbers, strings and tensors only, so a checkpoint cannot run code when it is opened.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from movenet.files import atomic_write
from movenet.inputs import InputConfig
from movenet.model import ModelConfig, MoveNet

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file and the reason."""


@dataclass
class Loaded:
    model: MoveNet
    inputs: InputConfig
    labels: list[str] = field(default_factory=list)  # style names, index = label id
    step: int = 0
    metrics: dict = field(default_factory=dict)

    def label_index(self, name: str | None, unknown: str = "error") -> int | None:
        """The id of style `name` (None: the first style), or None for a model without styles.

        A style the model does not know raises CheckpointError (unknown="error": a user asked for it), or gives
        the first style (unknown="first": a data folder's label, which need not be one of the model's).
        """
        if not self.model.config.n_labels:
            return None
        if name is None or (name not in self.labels and unknown == "first"):
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


def save(path: str | Path, model: MoveNet, inputs: InputConfig, labels: list[str], step: int = 0,
         metrics: dict | None = None) -> Path:
    """Write `model.pt` atomically; returns the path. `inputs`: the data's settings (features: the model's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = dataclasses.replace(inputs, features=model.config.features)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": _plain(model.config.to_dict()),
        "data_config": _plain(inputs.to_dict()),
        "labels": _plain(list(labels)),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "step": int(step),
        "metrics": _plain(metrics or {}),
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_weights_only(path: Path, device="cpu", what: str = "checkpoint"):
    """torch.load(path, weights_only=True), its failures said in one line: what the file is and that it was
    refused, never the advice to load it unsafely."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))  # the weights-only unpickler met a class or function
        if found:
            raise CheckpointError(f"{path}: refused: it holds code or objects ({found.group(1)}) besides tensors "
                                  f"and plain values, which a {what} never does") from None
        raise CheckpointError(f"{path}: not a {what}, or damaged (not a weights-only pickle)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, ImportError) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        if isinstance(err, IsADirectoryError):
            reason = "a directory"
        raise CheckpointError(f"{path}: not a {what}, or damaged ({reason})") from None


def load(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Read `model.pt` (weights only) and rebuild the model in eval mode. Raises CheckpointError in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    payload = read_weights_only(path, device, "movenet checkpoint")
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
        inputs = dataclasses.replace(InputConfig.from_dict(payload["data_config"]), features=model.config.features)
    except (ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({' '.join(str(err).split())[:160]})") from None
    return Loaded(model=model.to(device).eval(), inputs=inputs, labels=payload["labels"],
                  step=payload["step"], metrics=payload.get("metrics", {}))
