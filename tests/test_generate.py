"""Generation: the sampling policy, chunked conditioning, determinism, and the engines."""

import numpy as np
import pytest
import torch

from movenet.checkpoint import Loaded
from movenet.generate import generate_audio
from movenet.inputs import InputConfig
from movenet.model import MoveNet
from movenet.controls import Excitation, SourceState
from movenet.movement import Movement, condition
from tests.test_model import audible, tiny_config


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    torch.manual_seed(0)
    model = audible(MoveNet(tiny_config())).eval()
    inputs = InputConfig(sample_rate=16 * 25, fps=25, frame_size=16, gray=True, features="frames")
    return Loaded(model=model, inputs=inputs, labels=["a", "b", "c"])


def movement(n_frames: int, seed: int = 0) -> Movement:
    g = np.random.default_rng(seed)
    return Movement(frames=g.integers(0, 256, (n_frames, 16, 16, 1), dtype=np.uint8))


def test_both_engines_give_the_same_audio(loaded):
    """The compiled engine and the PyTorch reference follow one sampling policy: same seed, same samples."""
    m = movement(5)
    fast = generate_audio(loaded, m, 1, 1.0, seed=9, engine="fast", progress=False, precision="fp32", spread=1.0)
    reference = generate_audio(loaded, m, 1, 1.0, seed=9, engine="torch", progress=False, spread=1.0)
    assert np.array_equal(fast, reference)
    assert (fast != 0).mean() > 0.5  # sound, not the silence gate's
    # below spread 1 a code also flips where the pulled value lies within the engines' rounding of a code's edge
    # (tests/test_fastgen.py follows the reference along its trajectory); here: the policy is in effect
    pulled = generate_audio(loaded, m, 1, 1.0, seed=9, engine="torch", progress=False, spread=0.0)
    assert not np.array_equal(pulled, reference) and np.abs(pulled).mean() < np.abs(reference).mean()


def test_generation_is_reproducible_and_follows_the_seed(loaded):
    m = movement(6)
    a = generate_audio(loaded, m, 0, 1.0, seed=3, engine="torch", progress=False)
    b = generate_audio(loaded, m, 0, 1.0, seed=3, engine="torch", progress=False)
    c = generate_audio(loaded, m, 0, 1.0, seed=4, engine="torch", progress=False)
    assert a.shape == (6 * 16,) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_torch_engine_samples_what_the_model_predicts(loaded):
    """Greedy generation feeds back its own argmax: teacher forcing on the result reproduces every choice."""
    model, hop = loaded.model, loaded.model.config.hop
    m = movement(4)
    wav = generate_audio(loaded, m, 2, temperature=0.0, seed=0, engine="torch", progress=False)
    part = condition(model, m, 2)
    source = Excitation.of(model.config).render(part.controls[None], SourceState.silent(1))  # as generation does
    if model.config.plays_kick:  # the WaveNet's part of the audio: without the kick the source played
        wav = wav - source[0, :, -1]
    codes = torch.from_numpy(np.rint((np.sign(wav) * np.log1p(255 * np.abs(wav)) / np.log1p(255) + 1) / 2 * 255)
                             .astype(np.int64))[None]
    logits = model.teacher_forced(codes, torch.from_numpy(part.rows)[None], torch.from_numpy(source))
    assert torch.equal(logits.argmax(-1), codes)
    assert codes.shape[1] == 4 * hop
