"""Audio primitives for movenet: mu-law companding (the model's 256-class
sample alphabet), loudness normalisation, and atomic 16-bit WAV writing.

No torch here: these run in data tools and tests without the model stack.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from movenet.files import atomic_write

SAMPLE_RATE = 16000
MU = 255
N_CLASSES = MU + 1  # 256 codes, 0..255


def mu_law_encode(wav: np.ndarray) -> np.ndarray:
    """float waveform in [-1, 1] (any shape) -> uint8 codes 0..255, same shape.

    f(x) = sign(x) ln(1 + MU|x|) / ln(1 + MU), then code = round((f + 1) / 2 * MU).
    Input is clipped to [-1, 1] first so out-of-range samples saturate instead
    of wrapping around.
    """
    x = np.clip(np.asarray(wav, dtype=np.float64), -1.0, 1.0)
    f = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.rint((f + 1.0) / 2.0 * MU).astype(np.uint8)


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    """uint8/int codes 0..255 (any shape) -> float32 waveform in [-1, 1], same shape.

    Exact inverse of mu_law_encode's companding, so encode(decode(c)) == c.
    """
    f = 2.0 * np.asarray(codes, dtype=np.float64) / MU - 1.0
    x = np.sign(f) * np.expm1(np.abs(f) * np.log1p(MU)) / MU
    return x.astype(np.float32)


# The code for a zero sample (128). Generation starts from it: "silence so far".
SILENCE = int(mu_law_encode(np.zeros(1))[0])


def normalize_loudness(wav: np.ndarray, target_peak: float = 0.95, eps: float = 1e-8) -> np.ndarray:
    """Scale so the peak |sample| equals target_peak; float32, same shape.

    Peak (not RMS) normalisation: it can never push samples past full scale,
    so the result always survives mu-law encoding without clipping. Signals
    whose peak is below eps (digital silence) come back as zeros unchanged
    rather than being divided by ~0 into NaN / noise.
    """
    x = np.asarray(wav, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(peak):
        raise ValueError("waveform contains NaN or inf")
    if peak < eps:
        return np.zeros_like(x)
    return (x * (target_peak / peak)).astype(np.float32)


def write_wav(path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 [N] mono in [-1, 1] as 16-bit PCM WAV, atomically.

    Written to a temp file in the same directory, then os.replace'd, so a
    reader never sees a half-written file. Out-of-range samples are clipped.
    """
    path = Path(path)
    x = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    pcm = np.rint(x * 32767.0).astype("<i2")
    with atomic_write(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
