"""Soundtracks for videos: read the movement with a checkpoint's settings, generate audio autoregressively, write
WAV and/or MP4.

    movement (frames / keypoints, video rate) --model.condition--> cond rows, a chunk of frames at a time
      --engine (compiled `fastgen`, or the PyTorch `step` reference)--> mu-law codes --mu_law_decode--> waveform

The sampling policy lives here, outside the network: per stream a seeded stream of uniforms u, and the code is
the inverse CDF of softmax(logits / temperature) at u (temperature 0: the most likely code). Both engines use it,
so the same seed gives the same audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from movenet import audio, video
from movenet.audio import SILENCE
from movenet.checkpoint import Loaded
from movenet.model import MoveNet

CHUNK_FRAMES = 250  # conditioning computed for 10 s of video at a time: memory stays flat in the video's length


def sample_inverse_cdf(logits: np.ndarray, temperature: float, u: np.ndarray) -> np.ndarray:
    """The sampling policy: logits [B, Q], u [B] uniforms in [0, 1) -> codes [B] int64.

    code = the first c with cumsum(softmax(logits / T))[c] > u * sum, in float64; temperature 0 = argmax.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature <= 0:
        return logits.argmax(axis=1)
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    codes = (cdf > (np.asarray(u, np.float64) * cdf[:, -1])[:, None]).argmax(axis=1)
    return codes


def uniforms(seed: int, n_streams: int = 1) -> list[np.random.Generator]:
    """One independent generator of uniforms per stream: stream i of seed s uses default_rng([s, i])."""
    return [np.random.default_rng([int(seed), i]) for i in range(n_streams)]


@dataclass
class Movement:
    """A video's movement at the model's frame rate: frames uint8 [T_v, H, W, C] and/or keypoints [T_v, J, 3]."""

    frames: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frames if self.frames is not None else self.keypoints)

    def window(self, start: int, stop: int) -> "Movement":
        return Movement(None if self.frames is None else self.frames[start:stop],
                        None if self.keypoints is None else self.keypoints[start:stop])


def read_movement(path: str | Path, loaded: Loaded, progress: bool = False) -> Movement:
    """Decode a video with the checkpoint's settings (frame rate, size, gray, features).

    Keypoints come from the synthetic dancer's sidecar when there is one, else from MediaPipe Pose.
    Raises video.MediaError (one line) for a file that cannot be read.
    """
    data, config = loaded.data_config, loaded.model.config
    frames = keypoints = None
    if config.uses_frames:
        size = (data["frame_size"], data["frame_size"])
        frames = video.read_frames(path, fps=data["fps"], size=size, gray=data["gray"])
    if config.uses_keypoints:
        from movenet import pose

        n_frames = len(frames) if frames is not None else sum(1 for _ in video.iter_frames(path, data["fps"], (16, 16)))
        sidecar = pose.read_sidecar(path)
        if sidecar is not None:
            keypoints = pose.keypoints_from_sidecar(sidecar, n_frames, data["fps"])
        else:
            keypoints = pose.extract_keypoints(path, fps=data["fps"], progress=progress)[:n_frames]
    return Movement(frames, keypoints)


def condition_chunks(model: MoveNet, movement: Movement, label: int | None,
                     chunk_frames: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Per-frame conditioning rows, float32 [1, n, n_layers * G], `chunk_frames` at a time.

    Each chunk is computed with `frame_lookback` frames before it, so the rows equal those of the whole video.
    """
    lookback = model.frame_lookback
    labels = None if label is None else torch.tensor([label])
    for start in range(0, movement.n_frames, chunk_frames):
        stop = min(start + chunk_frames, movement.n_frames)
        lo = max(0, start - lookback)
        part = movement.window(lo, stop)
        with torch.no_grad():
            cond = model.condition(
                None if part.frames is None else torch.from_numpy(np.ascontiguousarray(part.frames))[None],
                None if part.keypoints is None else torch.from_numpy(np.ascontiguousarray(part.keypoints))[None],
                labels)
        yield cond[:, start - lo:].float().numpy()


class TorchEngine:
    """The reference: `MoveNet.step`, one sample at a time (about 1,000 samples/s on one core)."""

    name = "torch"

    def __init__(self, model: MoveNet):
        self.model = model
        self.state = None
        self.prev = None

    def run(self, cond: np.ndarray, temperature: float, u: np.ndarray) -> np.ndarray:
        """cond [B, n_frames, L*G], u [B, n_frames * hop] -> codes uint8 [B, n_frames * hop]; keeps its state."""
        hop = self.model.config.hop
        B, n_frames, _ = cond.shape
        cond_t = torch.from_numpy(cond)
        if self.state is None:
            self.state = self.model.init_state(cond_t[:, 0])
            self.prev = torch.full((B,), SILENCE, dtype=torch.int64)
        out = np.empty((B, n_frames * hop), np.uint8)
        for t in range(n_frames * hop):
            logits, self.state = self.model.step(self.prev, cond_t[:, t // hop], self.state)
            codes = sample_inverse_cdf(logits.numpy(), temperature, u[:, t])
            out[:, t] = codes
            self.prev = torch.from_numpy(codes)
        return out


def make_engine(model: MoveNet, engine: str = "auto"):
    """"fast" (compiled), "torch" (reference) or "auto" (fast when numba is importable)."""
    if engine in ("fast", "auto"):
        try:
            from movenet.fastgen import FastEngine
        except ImportError:
            if engine == "fast":
                raise
        else:
            return FastEngine(model)
    return TorchEngine(model)


def soundtrack(loaded: Loaded, movement: Movement, label: int | None = None, temperature: float = 1.0,
               seed: int = 0, engine: str = "auto", progress: bool = True) -> np.ndarray:
    """Generate audio for the whole movement: float32 [n_frames * hop] in [-1, 1] at the checkpoint's rate."""
    from tqdm import tqdm

    model = loaded.model
    hop = model.config.hop
    runner = make_engine(model, engine)
    rng = uniforms(seed)[0]
    codes = np.empty(movement.n_frames * hop, np.uint8)
    bar = tqdm(total=len(codes), unit="sample", unit_scale=True, desc=f"generate ({runner.name})",
               disable=not progress, dynamic_ncols=True)
    done = 0
    for cond in condition_chunks(model, movement, label):
        for k in range(0, cond.shape[1], 25):  # one second at a time: a lively progress bar
            rows = np.ascontiguousarray(cond[:, k: k + 25])
            n = rows.shape[1] * hop
            codes[done: done + n] = runner.run(rows, temperature, rng.random((1, n)))[0]
            done += n
            bar.update(n)
    bar.close()
    return audio.mu_law_decode(codes)


def generate_file(loaded: Loaded, video_path: str | Path, outputs: list[Path], temperature: float = 1.0,
                  seed: int = 0, style: str | None = None, engine: str = "auto", progress: bool = True) -> np.ndarray:
    """Give `video_path` a soundtrack and write each of `outputs` (.wav: audio; .mp4: the video with it)."""
    movement = read_movement(video_path, loaded, progress)
    wav = soundtrack(loaded, movement, loaded.label_index(style), temperature, seed, engine, progress)
    sample_rate = loaded.data_config["sample_rate"]
    for out in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".wav":
            audio.write_wav(out, wav, sample_rate)
        else:
            video.mux_audio(video_path, wav, sample_rate, out)
    return wav
