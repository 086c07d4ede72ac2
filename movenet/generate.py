"""Soundtracks for videos: read the movement with a checkpoint's settings, generate audio autoregressively, write
WAV and/or MP4.

    movement (frames / keypoints, video rate) --model.condition--> cond rows, a chunk of frames at a time
      --engine (compiled `fastgen.FastGenerator`, or the PyTorch `step` reference)--> mu-law codes
      --mu_law_decode--> waveform

The sampling policy lives outside the network (`fastgen.sample_inverse_cdf`): per stream the uniforms of
np.random.default_rng(seed), and the code is the inverse CDF of softmax(logits / temperature) at u (temperature
0: the most likely code). Both engines follow it, so the same seed gives the same audio whichever runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch

from movenet import audio, video
from movenet.audio import SILENCE
from movenet.checkpoint import Loaded
from movenet.fastgen import FastGenerator, generate_iter, sample_inverse_cdf
from movenet.model import MoveNet, State

CHUNK_FRAMES = 25  # one second of video at a time: flat memory, and a progress bar that moves


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


@dataclass
class TorchState:
    model_state: State
    prev_codes: torch.Tensor  # [B] int64: the last code of each stream


class TorchGenerator:
    """The reference engine, with FastGenerator's interface: `MoveNet.step` one sample at a time (~1,500 samples/s
    on one core, against ~44,000 for the compiled engine)."""

    name = "torch"

    def __init__(self, model: MoveNet):
        self.model, self.hop = model, model.config.hop

    def init_state(self, cond0: np.ndarray) -> TorchState:
        cond0 = torch.from_numpy(np.ascontiguousarray(cond0, dtype=np.float32))
        return TorchState(self.model.init_state(cond0), torch.full((cond0.shape[0],), SILENCE, dtype=torch.int64))

    def generate(self, cond_rows: np.ndarray, state: TorchState, temperature: float, u: np.ndarray,
                 threads: int = 1) -> np.ndarray:
        """cond_rows [B, n_rows, L*G] (row 0 = the frame of the next sample), u [B, n] -> codes uint8 [B, n]."""
        rows = torch.from_numpy(np.ascontiguousarray(cond_rows, dtype=np.float32))
        first = state.model_state.t // self.hop
        out = np.empty(u.shape, np.uint8)
        for i in range(u.shape[1]):
            t = state.model_state.t
            logits, state.model_state = self.model.step(state.prev_codes, rows[:, t // self.hop - first],
                                                        state.model_state)
            codes = sample_inverse_cdf(logits.numpy(), temperature, u[:, i])
            out[:, i] = codes
            state.prev_codes = torch.from_numpy(codes)
        return out


def make_engine(model: MoveNet, engine: str = "auto"):
    """"fast" or "auto": the compiled FastGenerator; "torch": the reference step loop."""
    if engine not in ("auto", "fast", "torch"):
        raise ValueError(f"engine must be auto, fast or torch, got {engine!r}")
    if engine == "torch":
        return TorchGenerator(model)
    return FastGenerator(model)


def soundtrack(loaded: Loaded, movement: Movement, label: int | None = None, temperature: float = 1.0,
               seed: int = 0, engine: str = "auto", progress: bool = True) -> np.ndarray:
    """Generate audio for the whole movement: float32 [n_frames * hop] in [-1, 1] at the checkpoint's rate.

    Memory stays flat in the video's length beyond the movement and the output: conditioning, uniforms and codes
    are made a chunk at a time (`fastgen.generate_iter`).
    """
    from tqdm import tqdm

    model = loaded.model
    hop = model.config.hop
    generator = make_engine(model, engine)
    wav = np.empty(movement.n_frames * hop, np.float32)
    bar = tqdm(total=len(wav), unit="sample", unit_scale=True, desc=f"generate ({generator.name})",
               disable=not progress, dynamic_ncols=True)
    chunks = generate_iter(model, generator, movement.n_frames, [seed], temperature,
                           frames=None if movement.frames is None else movement.frames[None],
                           keypoints=None if movement.keypoints is None else movement.keypoints[None],
                           labels=None if label is None else np.array([label]), chunk_frames=CHUNK_FRAMES)
    done = 0
    with torch.no_grad():
        for codes in chunks:
            wav[done: done + codes.shape[1]] = audio.mu_law_decode(codes[0])
            done += codes.shape[1]
            bar.update(codes.shape[1])
    bar.close()
    return wav


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
