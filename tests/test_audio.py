"""Tests for movenet.audio: mu-law companding, loudness, WAV writing."""

import wave

import numpy as np
import pytest
import soundfile as sf

from movenet.audio import (
    MU,
    N_CLASSES,
    SAMPLE_RATE,
    SILENCE,
    mu_law_decode,
    mu_law_encode,
    normalize_loudness,
    write_wav,
)


def test_constants():
    assert SAMPLE_RATE == 16000 and MU == 255 and N_CLASSES == 256
    assert SILENCE == 128
    assert abs(float(mu_law_decode(np.array([SILENCE]))[0])) < 1e-4


def test_encode_dtype_range_and_clipping():
    x = np.array([-5.0, -1.0, 0.0, 1.0, 5.0])
    c = mu_law_encode(x)
    assert c.dtype == np.uint8
    assert c.tolist() == [0, 0, SILENCE, 255, 255]


def test_decode_encode_identity_on_all_codes():
    codes = np.arange(256, dtype=np.uint8)
    x = mu_law_decode(codes)
    assert x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert np.all(np.diff(x) > 0)  # strictly monotonic
    np.testing.assert_array_equal(mu_law_encode(x), codes)
    # Symmetric around the midpoint pair (127.5 is the true zero).
    np.testing.assert_allclose(x[:128], -x[::-1][:128], atol=1e-6)


def test_round_trip_error_within_quantization_bound():
    x = np.linspace(-1, 1, 200001)
    err = np.abs(mu_law_decode(mu_law_encode(x)) - x)
    # Half a code step is 1/MU in the companded domain; dx/df =
    # ln(1+MU)(1+MU|x|)/MU, so the error grows from ~8.5e-5 near 0 to ~0.022 at 1.
    bound = 1.05 * np.log1p(MU) * (1 + MU * np.abs(x)) / MU**2 + 1e-6
    assert np.all(err <= bound)
    assert err[np.abs(x) < 1e-3].max() < 2e-4  # tight near zero (codes sit at ±8.6e-5)
    assert err.max() > 0.01  # the bound is not vacuous: coarse near full scale


def test_encode_monotonic():
    x = np.linspace(-1, 1, 10001)
    assert np.all(np.diff(mu_law_encode(x).astype(int)) >= 0)


def test_normalize_peak_and_silence():
    x = np.array([0.1, -0.2, 0.05], dtype=np.float32)
    y = normalize_loudness(x)
    assert y.dtype == np.float32
    assert np.isclose(np.abs(y).max(), 0.95)
    np.testing.assert_allclose(y / x, y[0] / x[0], rtol=1e-6)  # shape preserved
    for silent in (np.zeros(1000, np.float32), np.full(10, 1e-12, np.float32), np.zeros(0, np.float32)):
        out = normalize_loudness(silent)
        assert out.shape == silent.shape
        assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_write_wav_readable(tmp_path):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x[:3] = [2.0, -2.0, 0.0]  # out of range -> clipped
    p = tmp_path / "a.wav"
    write_wav(p, x, SAMPLE_RATE)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        assert w.getnframes() == len(x)
    y, sr = sf.read(p, dtype="float32")
    assert sr == SAMPLE_RATE
    np.testing.assert_allclose(y[3:], x[3:], atol=1 / 32767 + 1e-6)
    assert y[0] == pytest.approx(1.0, abs=1e-4) and y[1] == pytest.approx(-1.0, abs=1e-4)
    assert [f.name for f in tmp_path.iterdir()] == ["a.wav"]  # no temp left behind
