"""Generation: the sampling policy, chunked conditioning, determinism, and the engines."""

import numpy as np
import pytest
import torch

from movenet.checkpoint import Loaded
from movenet.fastgen import sample_inverse_cdf
from movenet.generate import Movement, soundtrack
from movenet.model import MoveNet
from tests.test_model import tiny_config


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    torch.manual_seed(0)
    model = MoveNet(tiny_config()).eval()
    data = {"sample_rate": 16 * 25, "fps": 25, "frame_size": 16, "gray": True, "features": "frames"}
    return Loaded(model=model, data_config=data, labels=["a", "b", "c"])


def movement(n_frames: int, seed: int = 0) -> Movement:
    g = np.random.default_rng(seed)
    return Movement(frames=g.integers(0, 256, (n_frames, 16, 16, 1), dtype=np.uint8))


def test_sampling_policy():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]))
    assert sample_inverse_cdf(logits, 0.0, np.array([0.99, 0.99])).tolist() == [3, 0]  # greedy
    # u picks the bucket of the cumulative distribution: [0, .1) -> 0, [.1, .3) -> 1, [.3, .6) -> 2, [.6, 1) -> 3
    for u, code in ((0.0, 0), (0.05, 0), (0.15, 1), (0.35, 2), (0.65, 3), (0.999, 3)):
        assert sample_inverse_cdf(logits[:1], 1.0, np.array([u]))[0] == code
    # the empirical distribution follows softmax(logits / T)
    u = np.random.default_rng(0).random(20000)
    for temperature in (1.0, 0.5):
        codes = sample_inverse_cdf(np.repeat(logits[:1], len(u), 0), temperature, u)
        expected = np.exp(logits[0] / temperature) / np.exp(logits[0] / temperature).sum()
        np.testing.assert_allclose(np.bincount(codes, minlength=4) / len(u), expected, atol=0.015)


def test_both_engines_give_the_same_audio(loaded):
    """The compiled engine and the PyTorch reference follow one sampling policy: same seed, same samples."""
    m = movement(5)
    fast = soundtrack(loaded, m, 1, 1.0, seed=9, engine="fast", progress=False)
    reference = soundtrack(loaded, m, 1, 1.0, seed=9, engine="torch", progress=False)
    assert np.array_equal(fast, reference)


def test_soundtrack_is_reproducible_and_follows_the_seed(loaded):
    m = movement(6)
    a = soundtrack(loaded, m, 0, 1.0, seed=3, engine="torch", progress=False)
    b = soundtrack(loaded, m, 0, 1.0, seed=3, engine="torch", progress=False)
    c = soundtrack(loaded, m, 0, 1.0, seed=4, engine="torch", progress=False)
    assert a.shape == (6 * 16,) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_torch_engine_samples_what_the_model_predicts(loaded):
    """Greedy generation feeds back its own argmax: teacher forcing on the result reproduces every choice."""
    model, hop = loaded.model, loaded.model.config.hop
    m = movement(4)
    wav = soundtrack(loaded, m, 2, temperature=0.0, seed=0, engine="torch", progress=False)
    codes = torch.from_numpy(np.rint((np.sign(wav) * np.log1p(255 * np.abs(wav)) / np.log1p(255) + 1) / 2 * 255)
                             .astype(np.int64))[None]
    cond = model.condition(torch.from_numpy(m.frames)[None], labels=torch.tensor([2]))
    logits = model.teacher_forced(codes, cond)
    assert torch.equal(logits.argmax(-1), codes)
    assert codes.shape[1] == 4 * hop
