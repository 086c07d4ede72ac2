"""The movement of a video, as a model sees it, and the one path from movement to conditioning.

    read_movement(path, inputs)       frames and/or keypoints at the model's frame rate, read once
    condition(model, movement, ...)   -> the model's per-frame conditioning rows (all layers) and the controls
                                         its head reads off the movement (note, loudness, onset), float32 numpy
    condition_newest(model, recent, k) -> frame k's row from a stream's newest frames, bit for bit condition's

Keypoints of a synthetic dancer come from its sidecar (its true joints); any other video goes through MediaPipe
Pose (`movenet.pose`). Generation, evaluation, live streaming and the benchmarks all condition through these
two, which check the movement against the model first.
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


BLOCK_FRAMES = 25  # conditioning is computed this many frames at a time, in blocks aligned to frame 0


def condition(model, movement: Movement, label: int | None = None, start: int = 0, stop: int | None = None,
              latent: np.ndarray | None = None) -> Conditioning:
    """The conditioning of frames start .. stop - 1 (default: to the end): rows float32 [stop - start, L * G] and
    the controls the model's head predicts for them (`controls.from_head`).

    model: a MoveNet; label: its style id (None for a model without styles); latent: a style latent z float32
    [latent] (a model with one; None: the style's centroid, movenet.style). Row k depends on frames
    k - frame_lookback .. k (causal), and is computed in its block of BLOCK_FRAMES frames (aligned to frame 0, the
    last block held at the video's last frame), with the frame_lookback frames before it: the encoders always run
    on the same shapes, so a row is the same bit for bit whatever part of the video is asked for and however much
    of it follows (`condition_newest`, what a live stream computes, gives the same row; on some CPUs the encoders'
    kernels round differently for a 4-frame window than for a 28-frame one, and a sample drawn near a boundary
    between two codes then differs, and so does everything after it).
    """
    movement.check(model.config)
    stop = movement.n_frames if stop is None else stop
    rows, played = [], []
    for block in range(start // BLOCK_FRAMES * BLOCK_FRAMES, stop, BLOCK_FRAMES):
        lo = max(0, block - model.frame_lookback)
        part = movement.window(lo, block + BLOCK_FRAMES).fit(block + BLOCK_FRAMES - lo)
        got = _encode(model, part, label, latent)
        keep = slice(max(start, block) - lo, min(stop, block + BLOCK_FRAMES) - lo)
        rows.append(got.rows[keep])
        if got.controls is not None:
            played.append(got.controls[keep])
    if not rows:  # nothing asked for: no rows, of the right width
        got = _encode(model, movement.window(0, 1), label, latent)
        return Conditioning(got.rows[:0], None if got.controls is None else got.controls[:0])
    return Conditioning(np.concatenate(rows), np.concatenate(played) if played else None)


def condition_newest(model, recent: Movement, index: int, label: int | None = None,
                     latent: np.ndarray | None = None) -> Conditioning:
    """The conditioning of frame `index` of a stream, from `recent`, its newest frames up to `index` (at least
    those from its block's start - frame_lookback; more are ignored): one row, bit for bit `condition`'s for those
    frames, whatever frames come after it (the block is held at the newest frame)."""
    block = index // BLOCK_FRAMES * BLOCK_FRAMES
    lo = max(0, block - model.frame_lookback)
    needed = index + 1 - lo
    if recent.n_frames < needed:
        raise ValueError(f"frame {index} needs its {needed} newest frames, got {recent.n_frames}")
    recent.check(model.config)
    part = recent.window(recent.n_frames - needed, recent.n_frames).fit(block + BLOCK_FRAMES - lo)
    got = _encode(model, part, label, latent)
    row = slice(needed - 1, needed)
    return Conditioning(got.rows[row], None if got.controls is None else got.controls[row])


@torch.no_grad()
def _encode(model, part: Movement, label: int | None, latent) -> Conditioning:
    """Every frame's conditioning rows and controls of one movement, in one pass of the encoders."""
    config = model.config
    if (label is None) != (not config.n_labels):
        raise InputMismatch("this model was trained with style labels: give one" if config.n_labels
                            else "this model has no styles: give no label")
    frames = torch.from_numpy(np.ascontiguousarray(part.frames)[None]) if config.uses_frames else None
    keypoints = torch.from_numpy(np.ascontiguousarray(part.keypoints, dtype=np.float32)[None]) \
        if config.uses_keypoints else None
    label_ids = torch.tensor([int(label)]) if config.n_labels else None
    cond, head = model.encode(frames, keypoints, label_ids, latent=_latents(model, label_ids, [latent]))
    return Conditioning(cond[0].float().numpy(), None if head is None else controls.from_head(head[0].float().numpy()))


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
