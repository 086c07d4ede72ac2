"""The sampling policy, shared by every engine: one uniform per sample and stream, inverse CDF of the softmax.

Per stream the caller draws `u = np.random.default_rng(seed).random(n_samples)`, one uniform per sample, and the
code for target t is the first class c whose cumulative softmax(logits / temperature) exceeds u[t] times the total;
temperature 0 is argmax (first maximum). Draws may be taken in pieces: `rng.random(a)` then `rng.random(b)` is
`rng.random(a + b)`, so frame-by-frame generation equals one-shot generation, and the same seed gives the same
audio whichever engine runs.

`sample_inverse_cdf` is the reference (numpy); `sample_row` is the same float64 steps compiled, for the compiled
engine's loop.
"""

from __future__ import annotations

import numba
import numpy as np

from movenet.kernels import exp_nonpositive


def check_temperature(temperature: float) -> float:
    """The temperature as a float; ValueError unless it is finite and >= 0 (nan would sample garbage)."""
    temperature = float(temperature)
    if not (0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    return temperature


def temperatures(temperature, batch: int) -> np.ndarray:
    """float64 [batch]: one temperature for every stream, or one per stream, each checked."""
    t = np.asarray(temperature, dtype=np.float64)
    if t.ndim == 0:
        return np.full(batch, check_temperature(float(t)))
    if t.shape != (batch,):
        raise ValueError(f"temperature must be one number or one per stream [{batch}], got shape {t.shape}")
    for value in t:
        check_temperature(value)
    return np.ascontiguousarray(t)


def sample_inverse_cdf(logits, temperature, u) -> np.ndarray:
    """The sampling policy, in numpy: logits float32 [B, Q], temperature >= 0 (one, or one per stream [B]), u
    float64 [B] in [0, 1) -> int64 [B].

    In float64: z = logits / temperature; e = exp(z - max z); cdf = cumsum(e); the code is the first c with
    cdf[c] > u * cdf[-1] (inverse CDF; unnormalized, which is the same as cumsum(softmax) > u * sum(softmax) but
    needs no division), or, where rounding leaves no such c (u within 1e-16 of 1), the last class with e > 0.
    temperature 0: argmax of the float32 logits (first maximum). A torch loop calls this on `logits.numpy()`.
    """
    logits = np.asarray(logits, dtype=np.float32)
    t = temperatures(temperature, logits.shape[0])
    greedy = logits.argmax(axis=-1)
    if (t == 0).all():
        return greedy
    z = logits.astype(np.float64) / np.where(t > 0, t, 1.0)[:, None]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(e, axis=-1)  # sequential, as in the compiled loop
    threshold = np.asarray(u, dtype=np.float64) * cdf[:, -1]
    count = (cdf <= threshold[:, None]).sum(axis=-1)  # cdf is nondecreasing: the first c above the threshold
    last = e.shape[-1] - 1 - (e[:, ::-1] > 0).argmax(axis=-1)
    return np.where(t > 0, np.minimum(count, last), greedy)


@numba.njit(cache=True, error_model="numpy")
def sample_row(logits, temperature, u, cdf, bits):
    """`sample_inverse_cdf` for one stream: logits float32 [Q], u float64; cdf float64 [Q] and bits int64 [2, Q]
    are scratch. Returns the code.

    The same float64 steps in the same order (no fastmath: nothing is reassociated; max z = (max logits) / T
    exactly, since rounding is monotonic), except that exp is `kernels.exp_nonpositive` (vectorized, within 2 ulp
    of numpy's): a different code needs u within ~1e-15 of a CDF step.
    """
    Q = logits.shape[0]
    best = 0
    for c in range(1, Q):
        if logits[c] > logits[best]:
            best = c
    if temperature == 0.0:
        return best
    m = np.float64(logits[best]) / temperature
    for c in range(Q):
        cdf[c] = np.float64(logits[c]) / temperature - m
    exp_nonpositive(cdf, cdf, bits)
    last = Q - 1
    while cdf[last] == 0.0:  # cdf[best] = exp(0) = 1, so this stops
        last -= 1
    total = 0.0
    for c in range(Q):
        total += cdf[c]
        cdf[c] = total
    threshold = u * total
    count = 0
    for c in range(Q):
        count += cdf[c] <= threshold
    return min(count, last)
