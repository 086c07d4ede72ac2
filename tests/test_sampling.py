"""The sampling policy: inverse CDF of softmax(logits / temperature) at one uniform per sample, in numpy and
compiled (the same codes)."""

import numpy as np
import pytest

from movenet.sampling import check_temperature, sample_inverse_cdf, sample_row


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


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.5])
def test_compiled_sampler_equals_the_numpy_policy(temperature):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((2000, 256)) * 3).astype(np.float32)
    u = rng.random(2000)
    expected = sample_inverse_cdf(logits, temperature, u)
    cdf, bits = np.empty(256), np.empty((2, 256), np.int64)
    got = np.array([sample_row(logits[i], temperature, u[i], cdf, bits) for i in range(len(u))])
    np.testing.assert_array_equal(got, expected)


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
