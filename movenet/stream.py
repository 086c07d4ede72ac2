"""Live generation: one video frame of movement in, one frame's worth of audio out.

`Streamer` keeps the last `model.frame_lookback` frames, conditions on that short window (`movement.condition`;
the conditioning is causal, so the newest row equals the one computed from the whole video) and runs the compiled
engine (`movenet.fastgen`) for `hop` samples. Fed the frames of a video, it plays exactly what generation makes
from the whole video with the same seed.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from movenet.audio import mu_law_decode
from movenet.checkpoint import Loaded
from movenet.controls import Excitation, SourceState
from movenet.fastgen import FastGenerator, FastState
from movenet.movement import Movement, condition
from movenet.sampling import check_temperature


class Streamer:
    """Push the movement of one frame, get that frame's audio: float32 [hop] in [-1, 1] (mu-law decoded).

    Latency: a frame's audio covers that frame's time, so it can start once the frame is in and computed: one frame
    period (hop / sample rate, 40 ms at 25 fps) plus the compute time per frame (conditioning + hop samples,
    ~15 ms for the default model on one core). `latency` reports it, with the compute time measured so far.

    loaded: a checkpoint (movenet.checkpoint.load); style: one of its styles (None: the first); temperature: >= 0
    (0: argmax); seed: for np.random.default_rng, one uniform per sample (movenet.sampling); generator: a
    FastGenerator of this model, to share one (built if None).
    """

    def __init__(self, loaded: Loaded, style: str | None = None, temperature: float = 1.0, seed: int = 0,
                 generator: FastGenerator | None = None):
        self.model = loaded.model.eval()
        self.sample_rate = loaded.inputs.sample_rate
        self.gen = generator if generator is not None else FastGenerator(self.model)
        self.label = loaded.label_index(style)
        self.temperature = check_temperature(temperature)
        self.rng = np.random.default_rng(seed)
        self.window: deque = deque(maxlen=self.model.frame_lookback + 1)  # (frame, keypoints) of the newest frames
        self.state: FastState | None = None
        self.excitation, self.source_state = Excitation.of(self.model.config), SourceState.silent(1)
        self.controls: np.ndarray | None = None  # the newest frame's controls [3] (a model with a control head)
        self.n_frames = 0
        self.compute_seconds = 0.0  # total over all pushes

    @property
    def hop(self) -> int:
        return self.gen.hop

    @property
    def frame_period(self) -> float:
        """Seconds of audio per frame (= seconds between frames)."""
        return self.hop / self.sample_rate

    @property
    def latency(self) -> float:
        """Seconds from a frame's arrival to the end of its audio being ready: one frame period plus the mean
        compute time per frame so far (0 before the first push)."""
        return self.frame_period + self.compute_seconds / max(self.n_frames, 1)

    def push(self, frame=None, keypoints=None) -> np.ndarray:
        """One frame's movement -> its audio, float32 [hop].

        frame: uint8 [H, W, C] if the model listens to frames; keypoints: [J, 3] if it listens to keypoints (for a
        keypoints-only model a single positional argument is taken as the keypoints); both for features="both".
        Raises InputMismatch for movement the model does not listen to.
        """
        start = time.perf_counter()
        config = self.model.config
        if not config.uses_frames and keypoints is None:
            frame, keypoints = None, frame
        self.window.append((None if frame is None else np.asarray(frame),
                            None if keypoints is None else np.asarray(keypoints, dtype=np.float32)))
        frames, kps = zip(*self.window)
        window = Movement(np.stack(frames) if config.uses_frames and frame is not None else None,
                          np.stack(kps) if config.uses_keypoints and keypoints is not None else None)
        try:
            part = condition(self.model, window, self.label, start=len(self.window) - 1)
        except Exception:
            self.window.pop()  # a rejected frame leaves the stream as it was
            raise
        cond = part.rows[None]  # [1, 1, L * G]
        source = None
        if self.excitation is not None:
            self.controls = part.controls[0]
            source = self.excitation.render(part.controls[None], self.source_state)
        if self.state is None:
            self.state = self.gen.init_state(cond[:, 0])
        u = self.rng.random((1, self.hop))
        codes = self.gen.generate(cond, source, self.state, self.temperature, u)
        self.n_frames += 1
        self.compute_seconds += time.perf_counter() - start
        return mu_law_decode(codes[0])
