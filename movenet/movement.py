"""The movement of a video, as a model sees it, and the one path from movement to conditioning.

    read_movement(path, inputs)       frames and/or keypoints at the model's frame rate, read once
    condition(model, movement, ...)   -> the model's per-frame conditioning rows (all layers) and the controls
                                         its head reads off the movement (note, loudness, onset), float32 numpy

Keypoints of a synthetic dancer come from its sidecar (its true joints); any other video goes through MediaPipe
Pose (`movenet.pose`). Generation, evaluation, live streaming and the benchmarks all condition through
`condition`, which checks the movement against the model first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from movenet import controls, pose, video
from movenet.inputs import InputConfig, InputMismatch


@dataclass
class Movement:
    """A video's movement at the model's frame rate: frames uint8 [T_v, H, W, C] and/or keypoints float32
    [T_v, J, 3] (x, y, visibility), either may be None. Arrays may be memory-mapped."""

    frames: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frames if self.frames is not None else self.keypoints)

    def window(self, start: int, stop: int) -> "Movement":
        return Movement(*(None if x is None else x[start:stop] for x in (self.frames, self.keypoints)))

    def fit(self, n_frames: int) -> "Movement":
        """Cut to n_frames, or held (last frame repeated) up to them."""
        def fit(x):
            if x is None or len(x) >= n_frames:
                return None if x is None else x[:n_frames]
            return np.concatenate([x, np.repeat(x[-1:], n_frames - len(x), axis=0)])
        return Movement(fit(self.frames), fit(self.keypoints))

    def blank(self) -> "Movement":
        """Nothing to see: black frames, no body (visibility 0)."""
        return Movement(*(None if x is None else np.zeros_like(x) for x in (self.frames, self.keypoints)))

    def check(self, model_config) -> None:
        """Raise InputMismatch unless this is what a model of `model_config` (a ModelConfig) listens to."""
        c = model_config
        if c.uses_frames:
            want = (c.frame_size, c.frame_size, c.frame_channels)
            if self.frames is None or self.frames.ndim != 4 or tuple(self.frames.shape[1:]) != want:
                got = None if self.frames is None else list(self.frames.shape)
                raise InputMismatch(f"the model listens to frames [T, {', '.join(map(str, want))}], got {got}")
        if c.uses_keypoints:
            if self.keypoints is None or self.keypoints.ndim != 3 or self.keypoints.shape[1:] != (c.n_joints, 3):
                got = None if self.keypoints is None else list(self.keypoints.shape)
                raise InputMismatch(f"the model listens to keypoints [T, {c.n_joints}, 3], got {got}")
        if self.frames is not None and self.keypoints is not None and len(self.frames) != len(self.keypoints):
            raise InputMismatch(f"{len(self.frames)} frames but {len(self.keypoints)} rows of keypoints")


def count_frames(path: str | Path, fps) -> int:
    """How many frames video.iter_frames gives at this rate (decoded tiny: only their count matters)."""
    return sum(1 for _ in video.iter_frames(path, fps, (16, 16)))


def sidecar_keypoints(path: str | Path, n_frames: int, fps) -> np.ndarray | None:
    """A synthetic dancer's true joints, float32 [n_frames, 15, 3], from the sidecar beside it (or a keypoint
    track, see pose.read_sidecar); None when there is none. Raises video.MediaError for a damaged one."""
    sidecar = pose.read_sidecar(path)
    if sidecar is None:
        return None
    try:
        return pose.keypoints_from_sidecar(sidecar, n_frames, fps)
    except ValueError as err:
        raise video.MediaError(f"damaged synthetic sidecar: {err}") from None


def read_keypoints(path: str | Path, n_frames: int, fps, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Keypoints float32 [n_frames, 15, 3] of one video, and how they were made.

    A synthetic clip (a dancer sidecar beside it, see pose.read_sidecar) gives its true joints; any other video
    goes through MediaPipe. Returns (keypoints, info), info = {"source": "sidecar" | "mediapipe", "detected":
    share of frames with a pose, ...}. Raises video.MediaError (one line); pose.MediaPipeMissing.
    """
    keypoints = sidecar_keypoints(path, n_frames, fps)
    if keypoints is not None:
        info = {"source": "sidecar"}
    else:
        keypoints = pose.extract_keypoints(path, fps, max_frames=n_frames, progress=progress)
        if len(keypoints) != n_frames:  # the frames video.iter_frames gives: a mismatch is a bug, not a bad file
            raise video.MediaError(f"keypoints cover {len(keypoints)} frames, video {n_frames}")
        info = {"source": "mediapipe", "extractor": pose.extractor_settings()}
    info["detected"] = round(float(pose.detected(keypoints).mean()), 4) if n_frames else 0.0
    return keypoints, info


def read_movement(path: str | Path, inputs: InputConfig, progress: bool = False) -> Movement:
    """Decode a video with these input settings (frame rate, size, colour, features).

    Raises video.MediaError (one line) for a file that cannot be read.
    """
    frames = keypoints = None
    if inputs.uses_frames:
        frames = video.read_frames(path, fps=inputs.fps, size=(inputs.frame_size,) * 2, gray=inputs.gray)
    if inputs.uses_keypoints:
        n_frames = len(frames) if frames is not None else count_frames(path, inputs.fps)
        keypoints, _ = read_keypoints(path, n_frames, inputs.fps, progress)
    return Movement(frames, keypoints)


class Conditioning(NamedTuple):
    rows: np.ndarray  # float32 [T, L * G]: every layer's conditioning, per frame
    controls: np.ndarray | None  # float32 [T, 3]: the predicted f0 (Hz), loudness (dBFS), onset (its level); None without a head


@torch.no_grad()
def condition(model, movement: Movement, label: int | None = None, start: int = 0, stop: int | None = None,
              latent: np.ndarray | None = None) -> Conditioning:
    """The conditioning of frames start .. stop - 1 (default: to the end): rows float32 [stop - start, L * G] and
    the controls the model's head predicts for them (`controls.from_head`).

    model: a MoveNet; label: its style id (None for a model without styles); latent: a style latent z float32
    [latent] (a model with one; None: the style's centroid, movenet.style). Runs the movement encoders on frames
    start - frame_lookback .. stop - 1 only: row k depends on frames k - frame_lookback .. k (causal), so these rows
    equal those of the whole video (to float32 rounding), and a long video can be conditioned a chunk at a time.
    """
    return condition_many(model, [movement], [label], start, stop, [latent])[0]


@torch.no_grad()
def condition_many(model, movements: list[Movement], labels: list, start: int = 0, stop: int | None = None,
                   latents: list | None = None) -> list[Conditioning]:
    """`condition` of several movements of the same length in one pass of the encoders (live streams share it)."""
    config = model.config
    for movement, label in zip(movements, labels):
        movement.check(config)
        if (label is None) != (not config.n_labels):
            raise InputMismatch("this model was trained with style labels: give one" if config.n_labels
                                else "this model has no styles: give no label")
    n_frames = movements[0].n_frames
    if any(m.n_frames != n_frames for m in movements):
        raise ValueError("movements conditioned together must have the same length")
    stop = n_frames if stop is None else stop
    lo = max(0, start - model.frame_lookback)
    parts = [m.window(lo, stop) for m in movements]
    frames = torch.from_numpy(np.stack([np.ascontiguousarray(p.frames) for p in parts])) \
        if config.uses_frames else None
    keypoints = torch.from_numpy(np.stack([np.ascontiguousarray(p.keypoints, dtype=np.float32) for p in parts])) \
        if config.uses_keypoints else None
    label_ids = torch.tensor([int(x) for x in labels]) if config.n_labels else None
    cond, head = model.encode(frames, keypoints, label_ids, latent=_latents(model, label_ids, latents))
    rows = cond[:, start - lo:].float().numpy()
    played = None if head is None else controls.from_head(head[:, start - lo:].float().numpy())
    return [Conditioning(rows[b], None if played is None else played[b]) for b in range(len(movements))]


def _latents(model, label_ids, latents) -> torch.Tensor | None:
    """The style latents [B, latent] to condition on: each given z, the style's centroid where none is given; None
    for a model without a latent or when none is given (encode then takes the centroids itself)."""
    if latents is None or all(z is None for z in latents):
        return None
    if not model.config.latent:
        raise InputMismatch("this model has no style latent: give no latent")
    rows, centroids = [], model.centroids(label_ids, len(latents))
    for b, z in enumerate(latents):
        if z is None:
            rows.append(centroids[b])
        else:
            z = torch.as_tensor(np.asarray(z, np.float32))
            if z.shape != (model.config.latent,):
                raise InputMismatch(f"a style latent of this model has {model.config.latent} numbers, got "
                                    f"{list(z.shape)}")
            rows.append(z)
    return torch.stack(rows)
