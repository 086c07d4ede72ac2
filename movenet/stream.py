"""Live generation: one video frame of movement in, one frame's worth of audio out, for one stream or many.

`Streams` holds any number of live streams of one model and steps them together, a frame tick at a time: each
stream keeps its recent frames and is conditioned on them (`movement.condition_newest`: the conditioning is
causal and computed in the same blocks as from the whole video, so the newest row is bit for bit the one
`movement.condition` gives), renders its source,
and then all streams run `hop` samples in one batched call of the compiled engine (`movenet.fastgen`). Streams
join and leave between ticks. `Streamer` is one such stream with a simpler call.

Fed the frames of a video, a stream plays exactly what generation makes from the whole video with the same seed,
style and temperature, whenever it joined and whichever other streams share its ticks: a new stream starts from
the model's pre-roll, whose per-layer buffers are constant, so it is the same at any sample position.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Hashable

import numpy as np

from movenet.checkpoint import Loaded
from movenet.controls import Excitation, SourceState, soundtrack
from movenet.fastgen import FastGenerator, FastState
from movenet.movement import BLOCK_FRAMES, Movement, condition_newest
from movenet.sampling import DEFAULT_SPREAD, check_spread, check_temperature


@dataclass
class _Stream:
    label: int | None
    temperature: float
    spread: float
    rng: np.random.Generator
    window: deque  # (frame, keypoints) of the frames before the newest, back to its block's lookback
    controls: np.ndarray | None = None  # the newest frame's controls [3] (a model with a control head)
    n_frames: int = 0


class Streams:
    """Live streams of one model, stepped together: `step({key: (frame, keypoints)})` -> {key: audio float32 [hop]}.

    loaded: a checkpoint (movenet.checkpoint.load); generator: a FastGenerator of this model, to share one (built
    if None, its weights in `precision`, as `movenet generate` builds it: then a stream plays what generate makes). `add(key, style, temperature, seed, spread)` starts a stream, `remove(key)` ends one; `step` takes every
    stream's next frame of movement (each stream must get one per tick) and runs all of them in one batched call.
    """

    def __init__(self, loaded: Loaded, generator: FastGenerator | None = None, precision: str = "auto"):
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.sample_rate = loaded.inputs.sample_rate
        self.gen = generator if generator is not None else FastGenerator(self.model, precision)
        self.excitation = Excitation.of(self.model.config)
        self._streams: dict[Hashable, _Stream] = {}  # in batch order
        self._state: FastState | None = None  # the batched state of the streams that have played a frame
        self._ticks = 0  # frame ticks played (the batched state's sample position is ticks * hop)
        self._source = SourceState.silent(0)  # every stream's source, in the streams' order

    @property
    def hop(self) -> int:
        return self.gen.hop

    @property
    def frame_period(self) -> float:
        """Seconds of audio per frame (= seconds between frames)."""
        return self.hop / self.sample_rate

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, key) -> bool:
        return key in self._streams

    def keys(self) -> list:
        return list(self._streams)

    def add(self, key: Hashable, style: str | None = None, temperature: float = 1.0, seed: int = 0,
            spread: float = DEFAULT_SPREAD) -> None:
        """Start a stream: style one of the model's (None: the first; CheckpointError for an unknown one),
        temperature >= 0 (0: argmax), seed for np.random.default_rng (one uniform per sample), spread in [0, 1]
        (movenet.sampling)."""
        if key in self._streams:
            raise KeyError(f"stream {key!r} is already playing")
        self._streams[key] = _Stream(self.loaded.label_index(style), check_temperature(temperature),
                                     check_spread(spread), np.random.default_rng(seed),
                                     deque(maxlen=self.model.frame_lookback + BLOCK_FRAMES - 1))
        self._source = _rows_of(self._source, None, SourceState.silent(1))

    def set_temperature(self, key: Hashable, temperature: float) -> None:
        self._streams[key].temperature = check_temperature(temperature)

    def set_spread(self, key: Hashable, spread: float) -> None:
        self._streams[key].spread = check_spread(spread)

    def set_style(self, key: Hashable, style: str | None) -> None:
        """Play on in another style from the next frame (the style conditions every frame; nothing else resets)."""
        self._streams[key].label = self.loaded.label_index(style)

    def controls(self, key: Hashable) -> np.ndarray | None:
        """The controls [3] (f0 Hz, loudness dBFS, onset: 0 or the hit's level) of the newest frame of a stream."""
        return self._streams[key].controls

    def remove(self, key: Hashable) -> None:
        """End a stream (nothing happens for one that is not playing)."""
        if key not in self._streams:
            return
        keys = list(self._streams)
        played = [k for k, stream in self._streams.items() if stream.n_frames]  # the batched state's rows
        self._source = _rows_of(self._source, [i for i, k in enumerate(keys) if k != key])
        if self._streams.pop(key).n_frames:
            rows = [i for i, k in enumerate(played) if k != key]
            self._state = _take(self._state, rows) if rows else None

    def step(self, movements: dict) -> dict:
        """One frame tick: movements {key: (frame, keypoints)} for every stream (frame uint8 [H, W, C] if the model
        listens to frames, keypoints [J, 3] if it listens to keypoints, else None) -> {key: audio float32 [hop]}.

        Raises InputMismatch for movement the model does not listen to (then no stream advances).
        """
        if set(movements) != set(self._streams):
            raise KeyError(f"a tick needs the movement of every stream: missing "
                           f"{sorted(map(str, set(self._streams) - set(movements)))}, unknown "
                           f"{sorted(map(str, set(movements) - set(self._streams)))}")
        if not self._streams:
            return {}
        config = self.model.config
        newest = {key: (None if frame is None else np.asarray(frame),
                        None if keypoints is None else np.asarray(keypoints, np.float32))
                  for key, (frame, keypoints) in movements.items()}
        parts, new = [], []
        for i, (key, stream) in enumerate(self._streams.items()):
            frames, kps = zip(*(list(stream.window) + [newest[key]]))
            recent = Movement(_stacked(frames) if config.uses_frames else None,
                              _stacked(kps) if config.uses_keypoints else None)
            # each stream alone: in a batch the encoders' kernels may round otherwise than generate's do
            parts.append(condition_newest(self.model, recent, stream.n_frames, stream.label))
            if stream.n_frames == 0:
                new.append(i)
        rows = [part.rows for part in parts]
        sources = [part.controls for part in parts] if self.excitation is not None else []
        # every stream's movement was accepted: now the streams advance
        for key, stream in self._streams.items():
            stream.window.append(newest[key])
        cond = np.stack(rows)  # [B, 1, L * G]
        source = None
        if self.excitation is not None:
            for stream, played in zip(self._streams.values(), sources):
                stream.controls = played[0]
            source = self.excitation.render(np.stack(sources), self._source)  # all streams in one pass
        if new:  # streams that join now start from the pre-roll under their first frame's conditioning
            joined = self.gen.init_state(cond[new, 0])
            joined.t = self._ticks * self.hop
            self._state = joined if self._state is None else _join(self._state, joined, new)
        u = np.stack([stream.rng.random(self.hop) for stream in self._streams.values()])
        temperature = np.array([stream.temperature for stream in self._streams.values()])
        spread = np.array([stream.spread for stream in self._streams.values()])
        codes = self.gen.generate(cond, source, self._state, temperature, u, spread=spread)
        self._ticks += 1
        for stream in self._streams.values():
            stream.n_frames += 1
        played = soundtrack(codes, source, config.plays_kick)
        return {key: played[i] for i, key in enumerate(self._streams)}


def _rows_of(state: SourceState, rows: list[int] | None, extra: SourceState | None = None) -> SourceState:
    """The source states of `rows` (None: all), then `extra`'s appended."""
    names = [f.name for f in fields(SourceState)]
    parts = {f: getattr(state, f) if rows is None else getattr(state, f)[rows] for f in names}
    if extra is not None:
        parts = {f: np.concatenate([parts[f], getattr(extra, f)]) for f in names}
    return SourceState(**parts)


def _stacked(arrays) -> np.ndarray | None:
    """The window's frames (or keypoints) as one array; None when the newest is missing (condition says so)."""
    if arrays[-1] is None or any(a is None or a.shape != arrays[-1].shape for a in arrays):
        return None if arrays[-1] is None else np.stack([arrays[-1]] * len(arrays))
    return np.stack(arrays)


def _take(state: FastState, rows: list[int]) -> FastState:
    return FastState(state.t, state.prev_codes[rows], state.input_codes[rows], state.buffers[rows])


def _join(state: FastState, joined: FastState, positions: list[int]) -> FastState:
    """The batched state with `joined`'s streams inserted at `positions` of the new batch (ascending)."""
    B = state.batch_size + joined.batch_size
    old = [i for i in range(B) if i not in set(positions)]
    out = FastState(state.t, np.empty(B, np.int64), np.empty((B, *state.input_codes.shape[1:]), np.int64),
                    np.empty((B, *state.buffers.shape[1:]), state.buffers.dtype))
    for name in ("prev_codes", "input_codes", "buffers"):
        getattr(out, name)[old] = getattr(state, name)
        getattr(out, name)[positions] = getattr(joined, name)
    return out


class Streamer:
    """One live stream: push the movement of one frame, get that frame's audio, float32 [hop] in [-1, 1].

    Latency: a frame's audio covers that frame's time, so it can start once the frame is in and computed: one frame
    period (hop / sample rate, 40 ms at 25 fps) plus the compute time per frame (conditioning + hop samples,
    ~15 ms for the default model on one core). `latency` reports it, with the compute time measured so far.

    loaded: a checkpoint (movenet.checkpoint.load); style: one of its styles (None: the first); temperature: >= 0
    (0: argmax); seed: for np.random.default_rng, one uniform per sample, and spread (movenet.sampling);
    generator: a FastGenerator of this model, to share one (built if None).
    """

    def __init__(self, loaded: Loaded, style: str | None = None, temperature: float = 1.0, seed: int = 0,
                 generator: FastGenerator | None = None, spread: float = DEFAULT_SPREAD):
        self.streams = Streams(loaded, generator)
        self.streams.add(0, style, temperature, seed, spread)
        self.model, self.gen = self.streams.model, self.streams.gen
        self.n_frames = 0
        self.compute_seconds = 0.0  # total over all pushes

    @property
    def hop(self) -> int:
        return self.streams.hop

    @property
    def frame_period(self) -> float:
        return self.streams.frame_period

    @property
    def controls(self) -> np.ndarray | None:
        """The newest frame's controls [3] (a model with a control head)."""
        return self.streams.controls(0)

    @property
    def latency(self) -> float:
        """Seconds from a frame's arrival to the end of its audio being ready: one frame period plus the mean
        compute time per frame so far (0 before the first push)."""
        return self.frame_period + self.compute_seconds / max(self.n_frames, 1)

    def push(self, frame=None, keypoints=None) -> np.ndarray:
        """One frame's movement -> its audio, float32 [hop].

        frame: uint8 [H, W, C] if the model listens to frames; keypoints: [J, 3] if it listens to keypoints (for a
        keypoints-only model a single positional argument is taken as the keypoints); both for features="both".
        Raises InputMismatch for movement the model does not listen to (the stream stays as it was).
        """
        start = time.perf_counter()
        if not self.model.config.uses_frames and keypoints is None:
            frame, keypoints = None, frame
        audio = self.streams.step({0: (frame, keypoints)})[0]
        self.n_frames += 1
        self.compute_seconds += time.perf_counter() - start
        return audio
