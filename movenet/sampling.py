"""The sampling policy, shared by every engine: one uniform per sample and stream, inverse CDF of the softmax.

Per stream the caller draws `u = np.random.default_rng(seed).random(n_samples)`, one uniform per sample, and the
code for target t is the first class c whose cumulative softmax(logits / temperature) exceeds u[t] times the total;
temperature 0 is argmax (first maximum). With `spread` below 1 the draw is then pulled toward the distribution's
expected sample: the code played is the one nearest (in mu-law) to mean + spread * (drawn - mean), in audio
amplitude. Most of a WaveNet's hiss is its draws' scatter about that mean, a code or two either way at every
sample; keeping a share of it keeps the randomness that lets a note start and stop (spread 0, the mean alone, can
hold a tone through a freeze), with the scatter's power cut by spread squared. This is the variance reduction
FFTNet (Jin et al. 2018) and LPCNet (Valin & Skoglund 2019) apply to voiced speech by sharpening the softmax;
here it acts on the amplitude, where a sharper softmax (a lower temperature) barely narrows the scatter. Draws
may be taken in pieces: `rng.random(a)` then `rng.random(b)` is
`rng.random(a + b)`, so frame-by-frame generation equals one-shot generation, and the same seed gives the same
audio whichever engine runs.

`sample_inverse_cdf` is the reference (numpy); `sample_row` is the same float64 steps compiled, for the compiled
engine's loop.
"""

from __future__ import annotations

import numba
import numpy as np

from movenet.audio import MU, mu_law_decode
from movenet.kernels import block_major, block_major_size, exp_block_sums, max_16

# The share of a draw's scatter about the expected sample that generation keeps unless told otherwise: measured
# on the held-out dancers (README, "Clean tones"), it cuts the hiss by 6 dB and keeps loudness following.
DEFAULT_SPREAD = 0.3
_AMPLITUDE = mu_law_decode(np.arange(MU + 1)).astype(np.float64)  # what each code plays
_LOG1P_MU = float(np.log1p(MU))
_AMPLITUDE_BLOCK_MAJOR = np.zeros(len(_AMPLITUDE))  # what each code plays, where `sample_row` finds its logit
_AMPLITUDE_BLOCK_MAJOR[block_major(len(_AMPLITUDE))] = _AMPLITUDE


def check_temperature(temperature: float) -> float:
    """The temperature as a float; ValueError unless it is finite and >= 0 (nan would sample garbage)."""
    temperature = float(temperature)
    if not (0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    return temperature


def check_spread(spread: float) -> float:
    """The spread as a float; ValueError unless it is in [0, 1]."""
    spread = float(spread)
    if not (0 <= spread <= 1):
        raise ValueError(f"spread must be a number from 0 to 1, got {spread}")
    return spread


def _per_stream(value, batch: int, check, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(batch, check(float(v)))
    if v.shape != (batch,):
        raise ValueError(f"{name} must be one number or one per stream [{batch}], got shape {v.shape}")
    for x in v:
        check(x)
    return np.ascontiguousarray(v)


def temperatures(temperature, batch: int) -> np.ndarray:
    """float64 [batch]: one temperature for every stream, or one per stream, each checked."""
    return _per_stream(temperature, batch, check_temperature, "temperature")


def spreads(spread, batch: int) -> np.ndarray:
    """float64 [batch]: one spread for every stream, or one per stream, each checked."""
    return _per_stream(spread, batch, check_spread, "spread")


@numba.njit(cache=True, error_model="numpy")
def _nearest_code(v):
    """The code whose amplitude is nearest v in mu-law (audio.mu_law_encode's steps, float64, v in [-1, 1]); one
    compiled function for both paths, so their log1p is the same."""
    return np.rint((np.sign(v) * np.log1p(MU * np.abs(v)) / _LOG1P_MU + 1.0) / 2.0 * MU)


# The CDF is summed in blocks of this many classes: each block's sum in order, then the blocks' running sums in
# order, so the additions form short independent chains (a plain running sum over 256 classes is one chain of 256
# dependent additions), and the draw looks for its block among 32 running sums before it adds within one block.
BLOCK = 8


def sample_inverse_cdf(logits, temperature, u, spread=1.0) -> np.ndarray:
    """The sampling policy, in numpy: logits float32 [B, Q], temperature >= 0 and spread in [0, 1] (each one, or
    one per stream [B]; below 1 needs Q = 256 mu-law codes), u float64 [B] in [0, 1) -> int64 [B].

    In float64: z = logits / temperature; e = exp(z - max z); the CDF of e (unnormalized: the same as the CDF of
    softmax(z) scaled by the total, which needs no division) is summed in blocks of BLOCK classes: block sums in
    class order, their running sums P in block order (P's last is the total), and within a block the running sum
    from the blocks before it. The code is the first class whose CDF exceeds u * total; where rounding leaves none
    (u within 1e-16 of 1), the last class with e > 0. temperature 0: argmax of the float32 logits (first maximum).
    Then, where spread < 1 and temperature > 0, the drawn code d becomes the nearest code to mean + spread *
    (amplitude[d] - mean), mean = (sum of e * amplitude) / total, both sums blocked alike. A torch loop calls this
    on `logits.numpy()`.
    """
    logits = np.asarray(logits, dtype=np.float32)
    t = temperatures(temperature, logits.shape[0])
    greedy = logits.argmax(axis=-1)
    if (t == 0).all():
        return greedy
    z = logits.astype(np.float64) / np.where(t > 0, t, 1.0)[:, None]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    B, Q = e.shape
    rows = np.arange(B)
    total, blocks, partial, starts = _blocked_sums(e)
    threshold = np.asarray(u, dtype=np.float64) * total
    block = (starts[:, 1:] <= threshold[:, None]).sum(axis=-1)  # the first block whose running sum exceeds it
    inside = np.minimum(block, blocks.shape[1] - 1)
    within = (starts[rows, inside, None] + partial[rows, inside] <= threshold[:, None]).sum(axis=-1)
    last = Q - 1 - (e[:, ::-1] > 0).argmax(axis=-1)
    drawn = np.where(block < blocks.shape[1], np.minimum(inside * BLOCK + within, last), last)
    s = spreads(spread, logits.shape[0])
    if (s >= 1).all():
        return np.where(t > 0, drawn, greedy)
    mean = _blocked_sums(e * _AMPLITUDE)[0] / total
    pulled = _nearest_code(mean + s * (_AMPLITUDE[drawn] - mean)).astype(np.int64)
    return np.where(t > 0, np.where(s < 1, pulled, drawn), greedy)


def _blocked_sums(e: np.ndarray):
    """The policy's sums of e [B, Q]: (total [B], block sums [B, nb], running sums within each block [B, nb, BLOCK],
    starts [B, nb + 1]: the running sum of the blocks before each, from 0), zeros padding the last block."""
    B, Q = e.shape
    padded = np.zeros((B, -(-Q // BLOCK) * BLOCK))
    padded[:, :Q] = e
    padded = padded.reshape(B, -1, BLOCK)
    partial = np.empty_like(padded)
    running = np.zeros(padded.shape[:2])
    for i in range(BLOCK):  # each block's sum in class order, as the compiled loop adds
        running = running + padded[:, :, i]
        partial[:, :, i] = running
    starts = np.zeros((B, padded.shape[1] + 1))
    starts[:, 1:] = np.cumsum(running, axis=-1)  # sequential
    return starts[:, -1], running, partial, starts


def to_block_major(logits) -> np.ndarray:
    """float32 [..., Q] logits in class order -> [..., P] in `sample_row`'s (block-major) order, -inf where no
    class is."""
    logits = np.asarray(logits, np.float32)
    Q = logits.shape[-1]
    out = np.full(logits.shape[:-1] + (block_major_size(Q),), -np.inf, np.float32)
    out[..., block_major(Q)] = logits
    return out


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def sample_row(logits, temperature, spread, u, scratch, bits):
    """`sample_inverse_cdf` for one stream whose logits float32 [P] lie in block-major order (`kernels.block_major`,
    P = 64 n: the engine's head writes them so, -inf where no class is), u float64; scratch float64 [2, P] and bits
    int64 [2, P] are scratch. Returns the code.

    The same float64 steps in the same order (no fastmath: nothing is reassociated; max z = (max logits) / T
    exactly, since rounding is monotonic), except that exp is `kernels.exp_block_sums`'s (vectorized, within 2 ulp
    of numpy's): a different code needs u within ~1e-15 of a CDF step. In block-major order the blocks' sums are
    whole-vector additions, 8 blocks at once, made as the exps are (in class order, scalar additions block by block:
    345 ns a row against 292, Zen 4).
    """
    P = logits.shape[0]
    n_blocks = P // BLOCK
    if temperature == 0.0:
        best, top = 0, logits[0]
        for c in range(1, P):  # the first maximum in class order
            v = logits[(c % BLOCK) * n_blocks + c // BLOCK]
            if v > top:
                best, top = c, v
        return best
    z, e = scratch[0], scratch[1]
    top = _max(logits)
    if temperature == 1.0:  # x / 1 is x: the division is skipped, not changed
        m = np.float64(top)
        for c in range(P):
            z[c] = np.float64(logits[c]) - m
    else:
        m = np.float64(top) / temperature
        for c in range(P):
            z[c] = np.float64(logits[c]) / temperature - m
    sums = bits.view(np.float64)  # each block's sum of exps (row 0) and of exps times amplitudes (row 1)
    if P == _AMPLITUDE_BLOCK_MAJOR.shape[0]:
        exp_block_sums(z, e, _AMPLITUDE_BLOCK_MAJOR, sums[0], sums[1])
    else:  # classes that are not the 256 mu-law codes (spread 1 only): no amplitudes, row 1 unused
        exp_block_sums(z, e, z, sums[0], sums[1])
    last = P - 1
    while e[(last % BLOCK) * n_blocks + last // BLOCK] == 0.0:  # the maximum's exp(0) = 1, so this stops
        last -= 1
    starts = z  # z is spent: it now holds the running sum before each block
    total = 0.0
    weighted = 0.0
    for j in range(n_blocks):  # one chain of n_blocks additions (the blocks' own: exp_block_sums)
        starts[j] = total
        total += sums[0, j]
        weighted += sums[1, j]
    threshold = u * total
    passed = 0  # blocks whose running sum, to their end, is at most the threshold
    for j in range(1, n_blocks):
        passed += starts[j] <= threshold
    passed += total <= threshold
    drawn = last  # where u * total rounded up to the total
    if passed < n_blocks:
        block = 0.0
        for i in range(BLOCK):
            block += e[i * n_blocks + passed]
            if starts[passed] + block > threshold:  # at the block's end this is its running sum: it stops
                drawn = min(passed * BLOCK + i, last)
                break
    if spread >= 1.0:
        return drawn
    mean = weighted / total
    return int(_nearest_code(mean + spread * (_AMPLITUDE[drawn] - mean)))


@numba.njit(cache=True, inline="always", error_model="numpy")
def _max(x):
    """The largest of x float32 [Q] (any order gives the same maximum): 16 lanes at a time, not one chain."""
    Q = x.shape[0]
    whole = Q - Q % 16
    top = max_16(x, 0, whole // 16) if whole else x[0]
    for c in range(whole, Q):
        top = max(top, x[c])
    return top
