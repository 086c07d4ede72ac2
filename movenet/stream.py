"""Live generation: one video frame of movement in, one frame's worth of audio out.

`Streamer` keeps the last `model.frame_lookback` frames, conditions on that short window (the conditioning is
causal, so the newest row equals the one computed from the whole video) and runs the compiled generator
(`movenet.fastgen`) for `hop` samples. Fed the frames of a video, it plays exactly what `FastGenerator.generate`
makes from the whole video with the same seed.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from movenet.audio import SAMPLE_RATE, mu_law_decode
from movenet.fastgen import FastGenerator, FastState
from movenet.model import MoveNet


class Streamer:
    """Push the movement of one frame, get that frame's audio: float32 [hop] in [-1, 1] (mu-law decoded).

    Latency: a frame's audio covers that frame's time, so it can start once the frame is in and computed: one frame
    period (hop / sample rate, 40 ms at 25 fps) plus the compute time per frame (conditioning + hop samples,
    ~15 ms for the default model on one core). `latency` reports it, with the compute time measured so far.

    model: a MoveNet (put in eval mode); labels: the style label (int) if the model was trained with labels;
    temperature: >= 0 (0: argmax); seed: for np.random.default_rng, one uniform per sample (the policy of
    `fastgen.sample_inverse_cdf`); generator: a FastGenerator of this model, to share one (built if None).
    """

    def __init__(self, model: MoveNet, labels: int | None = None, temperature: float = 1.0, seed: int = 0,
                 generator: FastGenerator | None = None):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model.eval()
        self.gen = generator if generator is not None else FastGenerator(model)
        self.labels = None if labels is None else torch.tensor([int(labels)])
        self.temperature = float(temperature)
        self.rng = np.random.default_rng(seed)
        self.window: deque = deque(maxlen=model.frame_lookback + 1)  # (frame, keypoints) of the newest frames
        self.state: FastState | None = None
        self.n_frames = 0
        self.compute_seconds = 0.0  # total over all pushes

    @property
    def hop(self) -> int:
        return self.gen.hop

    @property
    def frame_period(self) -> float:
        """Seconds of audio per frame (= seconds between frames)."""
        return self.hop / SAMPLE_RATE

    @property
    def latency(self) -> float:
        """Seconds from a frame's arrival to the end of its audio being ready: one frame period plus the mean
        compute time per frame so far (0 before the first push)."""
        return self.frame_period + self.compute_seconds / max(self.n_frames, 1)

    def push(self, frame=None, keypoints=None) -> np.ndarray:
        """One frame's movement -> its audio, float32 [hop].

        frame: uint8 [H, W, C] if the model listens to frames; keypoints: [J, 3] if it listens to keypoints (for a
        keypoints-only model a single positional argument is taken as the keypoints); both for features="both".
        """
        start = time.perf_counter()
        config = self.model.config
        if not config.uses_frames and keypoints is None:
            frame, keypoints = None, frame
        if config.uses_frames and frame is None:
            raise ValueError("this model listens to frames: push(frame)")
        if config.uses_keypoints and keypoints is None:
            raise ValueError("this model listens to keypoints: push(keypoints=...)")
        self.window.append((np.asarray(frame) if config.uses_frames else None,
                            np.asarray(keypoints, dtype=np.float32) if config.uses_keypoints else None))
        cond = self._condition()  # [1, 1, n_layers * G]
        if self.state is None:
            self.state = self.gen.init_state(cond[:, 0])
        u = self.rng.random((1, self.hop))
        codes = self.gen.generate(cond, self.state, self.temperature, u)
        self.n_frames += 1
        self.compute_seconds += time.perf_counter() - start
        return mu_law_decode(codes[0])

    @torch.no_grad()
    def _condition(self) -> np.ndarray:
        """The newest frame's conditioning row from the window: float32 [1, 1, n_layers * G]."""
        frames = keypoints = None
        if self.model.config.uses_frames:
            frames = torch.from_numpy(np.stack([f for f, _ in self.window]))[None]
        if self.model.config.uses_keypoints:
            keypoints = torch.from_numpy(np.stack([k for _, k in self.window]))[None]
        return self.model.condition(frames, keypoints, self.labels)[:, -1:].numpy()
