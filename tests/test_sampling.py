"""The sampling policy: inverse CDF of softmax(logits / temperature) at one uniform per sample, in numpy and
compiled (the same codes)."""

import numpy as np
import pytest

from movenet import audio
from movenet.sampling import check_spread, check_temperature, sample_inverse_cdf, sample_row, to_block_major


def test_sampling_policy_follows_softmax_over_temperature():
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


def test_edge_cases_of_the_policy():
    logits = np.array([[0.0, 1.0, 1.0, -np.inf], [2.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert sample_inverse_cdf(logits, 0, np.zeros(2)).tolist() == [1, 0]  # argmax, first maximum
    assert sample_inverse_cdf(logits, 1.0, np.zeros(2)).tolist() == [0, 0]  # u = 0: the first class with mass
    assert sample_inverse_cdf(logits, 1.0, np.full(2, 1 - 1e-17)).tolist() == [2, 3]  # never a class without mass
    p = np.exp(logits[1].astype(np.float64) / 0.5)
    p /= p.sum()
    u = np.random.default_rng(0).random(200_000)
    counts = np.bincount(sample_inverse_cdf(np.repeat(logits[1:], u.size, 0), 0.5, u), minlength=4) / u.size
    np.testing.assert_allclose(counts, p, atol=3e-3)
    with pytest.raises(ValueError, match="temperature"):
        sample_inverse_cdf(logits, -1.0, np.zeros(2))


@pytest.mark.parametrize("spread", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.5])
def test_compiled_sampler_equals_the_numpy_policy(temperature, spread):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((2000, 256)) * 3).astype(np.float32)
    u = rng.random(2000)
    logits[:3] = 0.5  # ties: the first maximum, the first class past the threshold
    u[:2] = 0.0, 1 - 2**-53
    expected = sample_inverse_cdf(logits, temperature, u, spread)
    rows = to_block_major(logits)  # the engine's order
    cdf, bits = np.empty((2, 256)), np.empty((2, 256), np.int64)
    got = np.array([sample_row(rows[i], temperature, spread, u[i], cdf, bits) for i in range(len(u))])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n_classes", [3, 64, 77, 200])
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_compiled_sampler_equals_the_numpy_policy_for_other_class_counts(n_classes, temperature):
    """Classes padded to a multiple of 64 (logits of -inf: never drawn, no share of the sums)."""
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((500, n_classes)) * 3).astype(np.float32)
    u = rng.random(500)
    u[:2] = 0.0, 1 - 2**-53
    rows = to_block_major(logits)
    assert rows.shape == (500, -(-n_classes // 64) * 64) and np.isneginf(rows).sum() == 500 * (rows.shape[1] - n_classes)
    cdf, bits = np.empty((2, rows.shape[1])), np.empty((2, rows.shape[1]), np.int64)
    got = np.array([sample_row(rows[i], temperature, 1.0, u[i], cdf, bits) for i in range(len(u))])
    np.testing.assert_array_equal(got, sample_inverse_cdf(logits, temperature, u))


def _peaked(center: int, width: float, n: int) -> np.ndarray:
    """n rows of logits for a bell of codes around `center` (a WaveNet's typical prediction of a loud sample)."""
    codes = np.arange(256)
    return np.repeat((-0.5 * ((codes - center) / width) ** 2)[None], n, 0).astype(np.float32)


def test_spread_pulls_each_draw_toward_the_expected_sample():
    n = 20000
    logits = _peaked(200, 2.0, n)
    u = np.random.default_rng(3).random(n)
    amplitude = audio.mu_law_decode(np.arange(256)).astype(np.float64)
    p = np.exp(logits[0].astype(np.float64))
    mean = float((p * amplitude).sum() / p.sum())
    plain = sample_inverse_cdf(logits, 1.0, u, 1.0)
    assert (sample_inverse_cdf(logits, 1.0, u) == plain).all()  # spread 1 is the plain policy, the default
    scatter = {}
    for spread in (1.0, 0.5, 0.3, 0.0):
        codes = sample_inverse_cdf(logits, 1.0, u, spread)
        played = amplitude[codes]
        scatter[spread] = float(np.sqrt(np.mean((played - mean) ** 2)))
        if spread == 0.0:  # the expected sample alone: one code, the nearest to the mean
            assert (codes == audio.mu_law_encode(np.array([mean]))[0]).all()
        else:  # each draw moves toward the mean, never past it, and lands on a code nearest its pulled value
            pulled = mean + spread * (amplitude[plain] - mean)
            assert (codes == audio.mu_law_encode(pulled)).all()
            assert np.all(np.abs(played - mean) <= np.abs(amplitude[plain] - mean) + 1e-12)
    # the scatter shrinks about as the spread (within a code's quantization)
    step = amplitude[201] - amplitude[200]
    for spread in (0.5, 0.3):
        assert abs(scatter[spread] - spread * scatter[1.0]) < 0.5 * step, scatter
    assert scatter[0.0] < 0.5 * step < scatter[0.3] < scatter[0.5] < scatter[1.0]
    # per stream, and temperature 0 stays argmax whatever the spread
    mixed = sample_inverse_cdf(logits[:3], np.array([1.0, 1.0, 0.0]), u[:3], np.array([1.0, 0.0, 0.0]))
    assert mixed.tolist() == [plain[0], audio.mu_law_encode(np.array([mean]))[0], 200]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_spread_must_lie_between_0_and_1(bad):
    with pytest.raises(ValueError, match="spread"):
        check_spread(bad)
    with pytest.raises(ValueError, match="spread"):
        sample_inverse_cdf(np.zeros((1, 256), np.float32), 1.0, np.zeros(1), bad)


def test_uniforms_drawn_in_pieces_are_one_draw():
    """The policy draws u = default_rng(seed).random(n): pieces of it (frame by frame) are the same numbers."""
    rng = np.random.default_rng(7)
    pieces = np.concatenate([rng.random(n) for n in (640, 1, 639, 1280)])
    np.testing.assert_array_equal(pieces, np.random.default_rng(7).random(2560))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_temperature_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="temperature"):
        check_temperature(bad)
    with pytest.raises(ValueError, match="temperature"):
        sample_inverse_cdf(np.zeros((1, 4), np.float32), bad, np.zeros(1))
