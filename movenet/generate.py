"""Soundtracks for videos: movement -> conditioning -> an engine samples mu-law codes -> waveform -> WAV / MP4.

    read_movement(video)                      frames / keypoints at the model's rate (movenet.movement)
    generate_chunks(engine, model, ...)       a chunk of frames at a time: conditioning rows and controls, the
                                              source the controls play (movenet.controls), uniforms, codes
    generate_waves(engine, model, ...)        ... and the audio they play (controls.soundtrack)
    generate_audio(loaded, movement, ...)     the whole soundtrack, float32, with a progress bar
    generate_file(loaded, video, outputs)     ... written as WAV and/or muxed into an MP4

An `Engine` turns conditioning rows, the source and uniforms into codes, advancing a state: the compiled `FastGenerator`
(movenet.fastgen, the default) or `TorchEngine`, the reference `MoveNet.step` loop. Both follow one sampling policy
(movenet.sampling) and the same silence gate, so the same seed gives the same audio whichever runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from movenet import audio, video
from movenet.audio import SILENCE
from movenet.controls import Excitation, SourceState, gate_silence, loudness_channel, soundtrack, write_midi
from movenet.checkpoint import Loaded
from movenet.fastgen import FastGenerator
from movenet.model import MoveNet, State
from movenet.movement import BLOCK_FRAMES, Movement, condition, read_movement
from movenet.sampling import DEFAULT_SPREAD, check_spread, check_temperature, sample_inverse_cdf

CHUNK_FRAMES = BLOCK_FRAMES  # a second of video at a time (flat memory, a bar that moves), each block once
ENGINES = ("fast", "torch")


class Engine(Protocol):
    """What generation needs of an engine. `generate` advances `state` in place; calling it frame by frame or
    once gives the same codes."""

    name: str
    hop: int

    def init_state(self, cond0: np.ndarray):
        """The state after the model's pre-roll, from frame 0's conditioning rows float32 [B, L * G]."""

    def generate(self, cond_rows: np.ndarray, source: np.ndarray | None, state, temperature: float, u: np.ndarray,
                 threads: int = 1, *, spread=DEFAULT_SPREAD) -> np.ndarray:
        """cond_rows [B, n_rows, L * G] (row 0 = the frame of the next sample), source float32 [B, n, E] (a model
        with controls; else None), u float64 [B, n] -> codes uint8 [B, n]: `movenet.sampling`'s policy, then the
        silence gate (`movenet.controls.SILENT_AMPLITUDE`)."""


@dataclass
class TorchState:
    model_state: State
    prev_codes: torch.Tensor  # [B] int64: the last code of each stream


class TorchEngine:
    """The reference engine: `MoveNet.step` one sample at a time (~1,500 samples/s on one core; the compiled
    engine is ~30x faster)."""

    name = "torch"

    def __init__(self, model: MoveNet):
        self.model, self.hop = model, model.config.hop
        self.gate_channel = loudness_channel(model.config)

    def init_state(self, cond0: np.ndarray) -> TorchState:
        cond0 = torch.from_numpy(np.ascontiguousarray(cond0, dtype=np.float32))
        return TorchState(self.model.init_state(cond0), torch.full((cond0.shape[0],), SILENCE, dtype=torch.int64))

    @torch.no_grad()
    def generate(self, cond_rows: np.ndarray, source: np.ndarray | None, state: TorchState, temperature: float,
                 u: np.ndarray, threads: int = 1, *, spread=DEFAULT_SPREAD) -> np.ndarray:
        rows = torch.from_numpy(np.ascontiguousarray(cond_rows, dtype=np.float32))
        source = None if source is None else torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))
        first = state.model_state.t // self.hop
        out = np.empty(u.shape, np.uint8)
        for i in range(u.shape[1]):
            t = state.model_state.t
            logits, state.model_state = self.model.step(state.prev_codes, rows[:, t // self.hop - first],
                                                        state.model_state, None if source is None else source[:, i])
            codes = sample_inverse_cdf(logits.numpy(), temperature, u[:, i], spread)
            if source is not None:
                codes = gate_silence(codes, source[:, i].numpy(), self.gate_channel)
            out[:, i] = codes
            state.prev_codes = torch.from_numpy(codes)
        return out


def make_engine(model: MoveNet, engine: str = "fast", precision: str = "auto") -> Engine:
    """"fast": the compiled FastGenerator, its weights in `precision` ("fp32", "bf16", "bf16dot", "amx", or
    "auto": `fastgen.auto_precision`'s for this host); "torch": the reference step loop (fp32)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return TorchEngine(model) if engine == "torch" else FastGenerator(model, precision)


def generate_chunks(engine: Engine, model: MoveNet, movements: Sequence[Movement], labels: Sequence[int | None],
                    seeds: Sequence[int], temperature: float = 1.0, chunk_frames: int = CHUNK_FRAMES,
                    threads: int = 1, latents: Sequence[np.ndarray | None] | None = None,
                    spread: float = DEFAULT_SPREAD) -> Iterator[np.ndarray]:
    """Soundtracks for B movements of equal length, generated side by side a chunk at a time, in memory that does
    not grow with their length.

    Per chunk of `chunk_frames` frames: its conditioning rows and controls (`movement.condition`), the source the
    controls play (`controls.Excitation`, its state carried from chunk to chunk), one uniform per sample for each
    stream from np.random.default_rng(seeds[b]) (drawn in pieces, the same numbers as one draw), and
    `engine.generate` (sampling at `temperature` and `spread`, movenet.sampling). Yields codes uint8 [B,
    chunk_frames * hop] (the last chunk may be shorter); concatenated, they equal one `engine.generate` over the
    whole movement with the same seeds.
    """
    for codes, _ in _generate(engine, model, movements, labels, seeds, temperature, chunk_frames, threads, latents,
                              spread):
        yield codes


def generate_waves(engine: Engine, model: MoveNet, movements: Sequence[Movement], labels: Sequence[int | None],
                   seeds: Sequence[int], temperature: float = 1.0, chunk_frames: int = CHUNK_FRAMES,
                   threads: int = 1, latents: Sequence[np.ndarray | None] | None = None,
                   spread: float = DEFAULT_SPREAD) -> Iterator[np.ndarray]:
    """`generate_chunks` as the audio its codes play: float32 [B, n] a chunk (for a `direct_kick` model, with the
    source's kick added)."""
    direct_kick = model.config.plays_kick
    for codes, source in _generate(engine, model, movements, labels, seeds, temperature, chunk_frames, threads,
                                   latents, spread):
        yield soundtrack(codes, source, direct_kick)


def _generate(engine, model, movements, labels, seeds, temperature, chunk_frames, threads, latents, spread):
    """`generate_chunks`, yielding (codes, the source they were played with)."""
    temperature, spread = check_temperature(temperature), check_spread(spread)
    if not len(movements) == len(labels) == len(seeds):
        raise ValueError(f"{len(movements)} movements, {len(labels)} labels and {len(seeds)} seeds")
    n_frames = movements[0].n_frames
    if any(m.n_frames != n_frames for m in movements):
        raise ValueError("movements generated side by side must have the same length")
    rngs = [np.random.default_rng(seed) for seed in seeds]
    excitation, source_state = Excitation.of(model.config), SourceState.silent(len(movements))
    state = None
    for start in range(0, n_frames, chunk_frames):
        stop = min(n_frames, start + chunk_frames)
        parts = [condition(model, m, label, start, stop, z)
                 for m, label, z in zip(movements, labels, latents or [None] * len(movements))]
        cond = np.stack([p.rows for p in parts])
        source = None if excitation is None else excitation.render(np.stack([p.controls for p in parts]), source_state)
        if state is None:
            state = engine.init_state(cond[:, 0])
        u = np.stack([rng.random((stop - start) * engine.hop) for rng in rngs])
        yield engine.generate(cond, source, state, temperature, u, threads, spread=spread), source


def generate_audio(loaded: Loaded, movement: Movement, label: int | None = None, temperature: float = 1.0,
                   seed: int = 0, engine: str = "fast", progress: bool = True, precision: str = "auto",
                   latent: np.ndarray | None = None, spread: float = DEFAULT_SPREAD) -> np.ndarray:
    """The soundtrack of a whole movement: float32 [n_frames * hop] in [-1, 1] at the checkpoint's sample rate.
    latent: a style latent z (movenet.style; None: the style's centroid) for a model with one; spread: how much
    of each draw's scatter is kept (movenet.sampling)."""
    from tqdm import tqdm

    model = loaded.model
    runner = make_engine(model, engine, precision)
    wav = np.empty(movement.n_frames * runner.hop, np.float32)
    bar = tqdm(total=len(wav), unit="sample", unit_scale=True, desc=f"generate ({runner.name})",
               disable=not progress, dynamic_ncols=True)
    done = 0
    for chunk in generate_waves(runner, model, [movement], [label], [seed], temperature, latents=[latent],
                                spread=spread):
        wav[done: done + chunk.shape[1]] = chunk[0]
        done += chunk.shape[1]
        bar.update(chunk.shape[1])
    bar.close()
    return wav


OUTPUT_SUFFIXES = (".wav", ".mp4", ".mid")


def write_outputs(loaded: Loaded, video_path: str | Path, wav: np.ndarray, outputs: Sequence[Path],
                  score: np.ndarray | None = None) -> None:
    """Each of `outputs`: .wav the audio; .mp4 the video with it (video stream copied where MP4 allows); .mid the
    score, the controls [T_v, 3] the model read off the movement (controls.write_midi)."""
    sample_rate = loaded.inputs.sample_rate
    for out in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        suffix = out.suffix.lower()
        if suffix == ".wav":
            audio.write_wav(out, wav, sample_rate)
        elif suffix == ".mid":
            if score is None:
                raise ValueError(f"{out}: this model has no control head, so no score to write")
            write_midi(out, score, loaded.inputs.fps)
        else:
            video.mux_audio(video_path, wav, sample_rate, out)


def generate_file(loaded: Loaded, video_path: str | Path, outputs: Sequence[Path], temperature: float = 1.0,
                  seed: int = 0, style: str | None = None, engine: str = "fast", progress: bool = True,
                  precision: str = "auto", latent: np.ndarray | None = None,
                  spread: float = DEFAULT_SPREAD) -> np.ndarray:
    """Give `video_path` a soundtrack and write each of `outputs` (.wav: audio; .mp4: the video with it; .mid: the
    score the model read off the movement). latent: a style latent z (movenet.style) for a model with one."""
    label = loaded.label_index(style)
    movement = read_movement(video_path, loaded.inputs, progress)
    wav = generate_audio(loaded, movement, label, temperature, seed, engine, progress, precision, latent, spread)
    score = None
    if any(out.suffix.lower() == ".mid" for out in outputs):
        score = condition(loaded.model, movement, label).controls
    write_outputs(loaded, video_path, wav, outputs, score)
    return wav
