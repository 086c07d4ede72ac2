"""Compiled incremental generation: MoveNet's `init_state` / `step` loop, sampling included, as numba code.

`FastGenerator(model)` copies the weights into float32 numpy arrays (layout in its docstring) and never calls torch
again: `generate` runs whole frames of audio for B independent streams, with every per-layer buffer preallocated
(one ring per dilated layer, the layout of `model.State`) and constant work per sample. The semantics are those of
`MoveNet.init_state` / `MoveNet.step` (and so of `MoveNet.teacher_forced`), up to float32 rounding and the tanh
approximation in `movenet.kernels` (|error| < 3e-7): logits agree to ~1e-6 (tests/test_fastgen.py allow 1e-4).

Sampling policy (`sample_inverse_cdf`, the reference; the compiled loop implements the same float64 steps): per
stream, the caller draws `u = np.random.default_rng(seed).random(n_samples)`, one uniform per sample, and the code
for target t is the first class c whose cumulative softmax(logits / temperature) exceeds u[t] times the total;
temperature 0 is argmax (first maximum). Draws may be taken in pieces: `rng.random(a)` then `rng.random(b)` is
`rng.random(a + b)`, so frame-by-frame generation equals one-shot generation.

Speed, one core (benchmarks/bench_generate.py, `benchmark` below): one stream re-reads the ~2 MB of weights for
every sample, so it is bound by cache bandwidth; B streams share each weight read, so batches approach the FMA
units' limit. A long video goes chunk by chunk (`generate_iter`): memory stays flat in its length.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numba
import numpy as np
import torch

from movenet.audio import SAMPLE_RATE, SILENCE
from movenet.kernels import exp_nonpositive, gate, matmul_acc, prefetch
from movenet.model import ModelConfig, MoveNet

# -- the sampling policy --------------------------------------------------------------------------------------------


def sample_inverse_cdf(logits, temperature: float, u) -> np.ndarray:
    """The sampling policy, in numpy: logits float32 [B, Q], temperature >= 0, u float64 [B] in [0, 1) -> int64 [B].

    In float64: z = logits / temperature; e = exp(z - max z); cdf = cumsum(e); the code is the first c with
    cdf[c] > u * cdf[-1] (inverse CDF; unnormalized, which is the same as cumsum(softmax) > u * sum(softmax) but
    needs no division), or, where rounding leaves no such c (u within 1e-16 of 1), the last class with e > 0.
    temperature 0: argmax of the float32 logits (first maximum). A torch loop calls this on `logits.numpy()`.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    z = logits.astype(np.float64) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(e, axis=-1)  # sequential, as in the compiled loop
    threshold = np.asarray(u, dtype=np.float64) * cdf[:, -1]
    count = (cdf <= threshold[:, None]).sum(axis=-1)  # cdf is nondecreasing: the first c above the threshold
    last = e.shape[-1] - 1 - (e[:, ::-1] > 0).argmax(axis=-1)
    return np.minimum(count, last)


@numba.njit(cache=True, error_model="numpy")
def _sample_row(logits, temperature, u, cdf, bits):
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


# -- the compiled network ---------------------------------------------------------------------------------------------
# `params` is the tuple FastGenerator.params; state arrays are FastState's; `work` is the tuple of scratch arrays
# made by _scratch. All float32 except where noted.


@numba.njit(cache=True, error_model="numpy")
def _scratch(params, B):
    """Per-call work arrays for B streams (nothing here grows with the number of samples)."""
    in_tables, in_bias, wd, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets = params
    L, KC, G = wd.shape
    C, S, Q = in_bias.shape[0], bs.shape[0], b2.shape[0]
    xs = np.empty((B, C + S), np.float32)  # [residual x | skip sum] of each stream
    taps = np.empty((B, KC), np.float32)  # the dilated convolution's inputs, oldest first
    h = np.empty((B, G), np.float32)
    z = np.empty((B, G // 2), np.float32)
    hc = np.empty((B, L, G), np.float32)  # this frame's conditioning plus the dilated convolutions' biases
    a = np.empty((B, S), np.float32)
    h1 = np.empty((B, S), np.float32)
    logits = np.empty((B, Q), np.float32)
    cdf = np.empty(Q, np.float64)
    bits = np.empty((2, Q), np.int64)
    return xs, taps, h, z, hc, a, h1, logits, cdf, bits


@numba.njit(cache=True, error_model="numpy")
def _set_frame(params, cond_row, hc):
    """hc[b, l] = cond_row[b, l*G:(l+1)*G] + b_d[l]: once per frame, so per sample a layer just starts from it."""
    bd = params[3]
    B, L, G = hc.shape
    for b in range(B):
        for l in range(L):
            for g in range(G):
                hc[b, l, g] = cond_row[b, l * G + g] + bd[l, g]


@numba.njit(cache=True, error_model="numpy")
def _forward(t, params, prev, input_codes, buffers, work):
    """Logits of every stream for target t into work's `logits` [B, Q]; pushes this step's inputs into the rings.

    prev int64 [B]: the input for target t (the code before it); input_codes int64 [B, input_kernel - 1] and
    buffers [B, H, C] are the rings of FastState, updated in place exactly as MoveNet.step updates State.
    """
    in_tables, in_bias, wd, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets = params
    xs, taps, h, z, hc, a, h1, logits, cdf, bits = work
    B = prev.shape[0]
    L, KC, G = wd.shape
    C, S = in_bias.shape[0], bs.shape[0]
    k = KC // C
    n_in = input_codes.shape[1]
    # input convolution of the embedded codes = a sum of table rows (embedding and convolution folded)
    for b in range(B):
        for c in range(C):
            xs[b, c] = in_bias[c]
        for j in range(n_in):
            code = input_codes[b, (t - n_in + j) % n_in]
            for c in range(C):
                xs[b, c] += in_tables[j, code, c]
        code = prev[b]
        for c in range(C):
            xs[b, c] += in_tables[n_in, code, c]
        if n_in:
            input_codes[b, t % n_in] = code
        for c in range(S):
            xs[b, C + c] = bs[c]
    for l in range(L):
        d = dilations[l]
        n = (k - 1) * d
        off = offsets[l]
        for b in range(B):
            for j in range(k - 1):  # past taps, oldest first, read before this step overwrites the oldest slot
                slot = off + (t - (k - 1 - j) * d) % n
                for c in range(C):
                    taps[b, j * C + c] = buffers[b, slot, c]
            for c in range(C):
                taps[b, (k - 1) * C + c] = xs[b, c]
            if n:
                slot = off + t % n
                for c in range(C):
                    buffers[b, slot, c] = xs[b, c]
                # the oldest tap of the next step: a row last touched n steps ago, likely out of L1/L2 by now
                row = (b * buffers.shape[1] + off + (t + 1) % n) * C
                for c in range(0, C, 16):
                    prefetch(buffers, row + c)
            for g in range(G):
                h[b, g] = hc[b, l, g]
        matmul_acc(h, taps, wd[l])
        gate(h, z)
        if l < L - 1:
            matmul_acc(xs, z, wrs[l])  # x += W_r z, skip += W_s z in one product
            for b in range(B):
                for c in range(C):
                    xs[b, c] += br[l, c]
        else:  # the last layer's residual output goes nowhere
            matmul_acc(xs[:, C:], z, wrs[l, :, C:])
    # head: ReLU -> Linear(S, S) -> ReLU -> Linear(S, Q)
    for b in range(B):
        for c in range(S):
            a[b, c] = max(xs[b, C + c], np.float32(0))
            h1[b, c] = b1[c]
        for q in range(logits.shape[1]):
            logits[b, q] = b2[q]
    matmul_acc(h1, a, w1)
    for b in range(B):
        for c in range(S):
            h1[b, c] = max(h1[b, c], np.float32(0))
    matmul_acc(logits, h1, w2)


@numba.njit(cache=True, error_model="numpy")
def _generate(params, cond, t0, hop, temperature, u, prev, input_codes, buffers, out):
    """Sample u.shape[1] targets from t0 for every stream into out uint8 [B, n]; cond [B, n_rows, L*G] starts at
    frame t0 // hop. Leaves prev/input_codes/buffers as the state at t0 + n."""
    B, n = u.shape
    work = _scratch(params, B)
    logits, cdf, bits = work[7], work[8], work[9]
    first_frame = t0 // hop
    for i in range(n):
        t = t0 + i
        if i == 0 or t % hop == 0:
            _set_frame(params, cond[:, t // hop - first_frame], work[4])
        _forward(t, params, prev, input_codes, buffers, work)
        for b in range(B):
            code = _sample_row(logits[b], temperature, u[b, i], cdf, bits)
            out[b, i] = code
            prev[b] = code


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _generate_parallel(params, cond, t0, hop, temperature, u, prev, input_codes, buffers, out, bounds):
    """_generate on the stream groups bounds[g]:bounds[g+1], one group per thread (streams are independent)."""
    for g in numba.prange(bounds.shape[0] - 1):
        s, e = bounds[g], bounds[g + 1]
        _generate(params, cond[s:e], t0, hop, temperature, u[s:e], prev[s:e], input_codes[s:e], buffers[s:e],
                  out[s:e])


@numba.njit(cache=True, error_model="numpy")
def _teacher_forced(params, cond, t0, hop, codes, prev, input_codes, buffers, out):
    """Logits for targets t0 .. t0 + T - 1 given the true codes [B, T] into out float32 [B, T, Q]."""
    B, n = codes.shape
    work = _scratch(params, B)
    logits = work[7]
    first_frame = t0 // hop
    for i in range(n):
        t = t0 + i
        if i == 0 or t % hop == 0:
            _set_frame(params, cond[:, t // hop - first_frame], work[4])
        _forward(t, params, prev, input_codes, buffers, work)
        out[:, i] = logits
        for b in range(B):
            prev[b] = codes[b, i]


@numba.njit(cache=True, error_model="numpy")
def _init_buffers(params, cond0, buffers):
    """The pre-roll of MoveNet.init_state: every layer's ring holds the input it would see after silence forever
    under cond0 [B, L*G]; computed with the same kernels as a step whose taps are all that input."""
    in_tables, in_bias, wd, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets = params
    B = cond0.shape[0]
    L, KC, G = wd.shape
    C = in_bias.shape[0]
    k = KC // C
    xs, taps, h, z, hc, a, h1, logits, cdf, bits = _scratch(params, B)
    _set_frame(params, cond0, hc)
    for b in range(B):
        for c in range(C):
            xs[b, c] = in_bias[c]
        for j in range(in_tables.shape[0]):
            for c in range(C):
                xs[b, c] += in_tables[j, SILENCE, c]
    for l in range(L):
        n = (k - 1) * dilations[l]
        off = offsets[l]
        for b in range(B):
            for s in range(n):
                buffers[b, off + s] = xs[b, :C]
            for j in range(k):
                taps[b, j * C: (j + 1) * C] = xs[b, :C]
            h[b] = hc[b, l]
        matmul_acc(h, taps, wd[l])
        gate(h, z)
        matmul_acc(xs[:, :C], z, wrs[l, :, :C])
        for b in range(B):
            for c in range(C):
                xs[b, c] += br[l, c]


# -- the Python side ------------------------------------------------------------------------------------------------


@dataclass
class FastState:
    """Everything generation carries from one sample to the next, batch-first numpy arrays (cf. `model.State`)."""

    t: int  # index of the next target sample
    prev_codes: np.ndarray  # int64 [B]: the input for target t, i.e. the code before it (SILENCE at t = 0)
    input_codes: np.ndarray  # int64 [B, input_kernel - 1]: earlier inputs, input position p at slot p % (k_in - 1)
    buffers: np.ndarray  # float32 [B, H, C_res]: layer l's ring at rows offsets[l] : offsets[l] + (k-1) d_l,
    #                     input position p at slot p % ((k-1) d_l), as State.buffers[l]; H = sum of histories

    @property
    def batch_size(self) -> int:
        return self.prev_codes.shape[0]


def _rows(x, name: str, ndim: int) -> np.ndarray:
    """float32 C-contiguous numpy from numpy or a CPU tensor, with its dimension count checked."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return x


class FastGenerator:
    """A MoveNet's weights as float32 numpy arrays, and the compiled loop that generates with them.

    Weight layout (`params`, a tuple; C residual, G gate, S skip channels, Q classes, L layers, k kernel size,
    k_in input kernel; every matrix stored inputs-major, [in, out], so a product streams through it row by row):

        in_tables  [k_in, Q, C]   embedding folded into the input convolution: tap j of code c is in_tables[j, c]
        in_bias    [C]
        wd         [L, k*C, G]    dilated convolutions, taps oldest first (DilatedCausalConv.linear.weight.T)
        bd         [L, G]         their biases, added to the frame's conditioning once per frame
        wrs        [L, G/2, C+S]  residual and skip 1x1 convolutions side by side
        br         [L, C]         residual biases
        bs         [S]            the sum of all skip biases
        w1, b1     [S, S], [S]    head
        w2, b2     [S, Q], [Q]
        dilations  int64 [L]; offsets int64 [L]: layer l's ring rows in FastState.buffers

    Nothing refers back to torch: build a new FastGenerator after changing the model's weights.
    """

    name = "fast"

    def __init__(self, model: MoveNet):
        self.config = c = model.config
        C, G, S = c.residual_channels, c.gate_channels, c.skip_channels
        f64 = {name: p.detach().to(torch.float64).cpu().numpy() for name, p in model.state_dict().items()}
        k_in = c.input_kernel
        w_in = f64["input_conv.linear.weight"]  # [C, k_in * C]
        embed = f64["embed.weight"]  # [Q, C]
        in_tables = np.stack([embed @ w_in[:, j * C: (j + 1) * C].T for j in range(k_in)])
        blocks = [f"blocks.{i}." for i in range(c.n_layers)]
        wd = np.stack([f64[p + "dilated.linear.weight"].T for p in blocks])
        bd = np.stack([f64[p + "dilated.linear.bias"] for p in blocks])
        wrs = np.stack([np.concatenate([f64[p + "residual.weight"], f64[p + "skip.weight"]]).T for p in blocks])
        br = np.stack([f64[p + "residual.bias"] for p in blocks])
        bs = sum(f64[p + "skip.bias"] for p in blocks)
        histories = [(c.kernel_size - 1) * d for d in c.dilations]
        self.n_history = int(sum(histories))
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self.params = (f32(in_tables), f32(f64["input_conv.linear.bias"]), f32(wd), f32(bd), f32(wrs), f32(br),
                       f32(bs), f32(f64["head.1.weight"].T), f32(f64["head.1.bias"]), f32(f64["head.3.weight"].T),
                       f32(f64["head.3.bias"]), np.array(c.dilations, dtype=np.int64),
                       np.cumsum([0] + histories[:-1]).astype(np.int64))
        self.hop = c.hop
        self.cond_channels = c.n_layers * G

    @property
    def n_weight_bytes(self) -> int:
        """Bytes of matrices and biases that one stream reads per sample (not counting 2 rows of in_tables)."""
        return sum(p.nbytes for p in self.params[2:11])

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds per sample and stream: the matrix products (the last residual output is skipped)."""
        wd, wrs, w1, w2 = self.params[2], self.params[4], self.params[7], self.params[9]
        C = self.config.residual_channels
        return wd.size + wrs.size - wrs.shape[1] * C + w1.size + w2.size

    def _check_cond(self, cond: np.ndarray, B: int, n_rows: int, name: str) -> None:
        if cond.shape[0] != B or cond.shape[2] != self.cond_channels or cond.shape[1] < n_rows:
            raise ValueError(f"{name} must be [B={B}, >= {n_rows} frames, {self.cond_channels}], got {cond.shape}")

    def init_state(self, cond0) -> FastState:
        """The state after MoveNet's pre-roll (silence for ever under the first frame's conditioning).

        cond0: float32 [B, n_layers * G], the conditioning row of frame 0 (numpy or a CPU tensor).
        """
        cond0 = _rows(cond0, "cond0", 2)
        self._check_cond(cond0[:, None], cond0.shape[0], 1, "cond0[:, None]")
        B = cond0.shape[0]
        c = self.config
        buffers = np.empty((B, self.n_history, c.residual_channels), np.float32)
        _init_buffers(self.params, cond0, buffers)
        return FastState(t=0, prev_codes=np.full(B, SILENCE, np.int64),
                         input_codes=np.full((B, c.input_kernel - 1), SILENCE, np.int64), buffers=buffers)

    def _n_rows(self, t0: int, n: int) -> int:
        """Conditioning rows that targets t0 .. t0 + n - 1 span."""
        return (t0 + n - 1) // self.hop - t0 // self.hop + 1 if n else 0

    def generate(self, cond_rows, state: FastState, temperature: float, u, threads: int = 1) -> np.ndarray:
        """Sample the next n = u.shape[1] codes of every stream, advancing `state` in place.

        cond_rows: float32 [B, n_rows, n_layers * G]: row i is the conditioning of frame state.t // hop + i, and
            the rows must cover the targets (n_rows >= n / hop when state.t is at a frame boundary);
        temperature: >= 0 (0: argmax); u: float64 [B, n], uniforms in [0, 1) (see the module docstring);
        threads: streams are split into this many groups, one per numba thread (at most B, and the CPU count).
        Returns codes uint8 [B, n]. Calling it frame by frame or once gives the same codes.
        """
        cond_rows = _rows(cond_rows, "cond_rows", 3)
        u = np.ascontiguousarray(u, dtype=np.float64)
        B = state.batch_size
        if u.ndim != 2 or u.shape[0] != B:
            raise ValueError(f"u must be [B={B}, n_samples], got {u.shape}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        n = u.shape[1]
        self._check_cond(cond_rows, B, self._n_rows(state.t, n), "cond_rows")
        out = np.empty((B, n), np.uint8)
        if n == 0:
            return out
        args = (self.params, cond_rows, state.t, self.hop, float(temperature), u, state.prev_codes, state.input_codes,
                state.buffers, out)
        threads = max(1, min(int(threads), B, numba.config.NUMBA_NUM_THREADS))
        if threads == 1:
            _generate(*args)
        else:
            bounds = np.linspace(0, B, threads + 1).round().astype(np.int64)
            previous = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                _generate_parallel(*args, bounds)
            finally:
                numba.set_num_threads(previous)
        state.t += n
        return out

    def teacher_forced_logits(self, codes, cond_rows, state: FastState) -> np.ndarray:
        """Logits for targets state.t .. state.t + T - 1 with the true codes as inputs (for tests).

        codes: int [B, T], the targets (target t's input is the code before it: state.prev_codes, then codes);
        cond_rows as in `generate`. Returns float32 [B, T, Q]; advances `state` past the codes.
        """
        codes = np.ascontiguousarray(np.asarray(codes), dtype=np.int64)
        cond_rows = _rows(cond_rows, "cond_rows", 3)
        B, T = codes.shape
        if B != state.batch_size:
            raise ValueError(f"codes are for {B} streams, the state for {state.batch_size}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.config.n_classes):
            raise ValueError(f"codes must lie in 0 .. {self.config.n_classes - 1}")
        self._check_cond(cond_rows, B, self._n_rows(state.t, T), "cond_rows")
        out = np.empty((B, T, self.config.n_classes), np.float32)
        if T:
            _teacher_forced(self.params, cond_rows, state.t, self.hop, codes, state.prev_codes, state.input_codes,
                            state.buffers, out)
        state.t += T
        return out


# -- long videos with bounded memory ----------------------------------------------------------------------------------


def _movement(x, dtype):
    return None if x is None else torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=dtype)


@torch.no_grad()
def condition_rows(model: MoveNet, start: int, stop: int, frames=None, keypoints=None, labels=None) -> np.ndarray:
    """Conditioning rows of frames start .. stop - 1: float32 [B, stop - start, n_layers * G].

    frames uint8 [B, T_v, H, W, C] / keypoints [B, T_v, J, 3] (numpy or tensors, whole video or memory-mapped) and
    labels int [B] as for `MoveNet.condition`. Runs the movement encoders on frames start - frame_lookback .. stop - 1
    only: row k depends on frames k - frame_lookback .. k (causal), so these rows equal those of the whole video
    (to float32 rounding of the encoders' matrix products, which may group work differently by size).
    """
    lo = max(0, start - model.frame_lookback)
    cond = model.condition(_movement(None if frames is None else frames[:, lo:stop], torch.uint8),
                           _movement(None if keypoints is None else keypoints[:, lo:stop], torch.float32),
                           _movement(labels, torch.int64))
    return cond[:, start - lo:].numpy()


def generate_iter(model: MoveNet, gen: FastGenerator, n_frames: int, seeds, temperature: float = 1.0, frames=None,
                  keypoints=None, labels=None, chunk_frames: int = 250, threads: int = 1):
    """Generate a whole video's soundtrack chunk by chunk, in memory that does not grow with its length.

    Per chunk of `chunk_frames` frames (default 10 s at 25 fps): its conditioning rows (`condition_rows`), one
    uniform per sample for each stream from np.random.default_rng(seeds[b]) (drawn in pieces, the same numbers as
    one draw), and `gen.generate`. Yields codes uint8 [B, chunk_frames * hop] (the last chunk may be shorter);
    concatenated, they equal one `gen.generate` over the whole video with the same seeds.
    """
    rngs = [np.random.default_rng(seed) for seed in seeds]
    state = None
    for start in range(0, n_frames, chunk_frames):
        stop = min(n_frames, start + chunk_frames)
        cond = condition_rows(model, start, stop, frames, keypoints, labels)
        if len(rngs) != cond.shape[0]:
            raise ValueError(f"{len(rngs)} seeds for {cond.shape[0]} streams")
        if state is None:
            state = gen.init_state(cond[:, 0])
        u = np.stack([rng.random((stop - start) * gen.hop) for rng in rngs])
        yield gen.generate(cond, state, temperature, u, threads)


# -- benchmark --------------------------------------------------------------------------------------------------------


def _pin(threads: int) -> tuple[set, list[int]]:
    """Restrict this process to `threads` of its CPUs (numba, torch likewise); returns the old affinity and the new."""
    old = os.sched_getaffinity(0)
    cpus = sorted(old)[-threads:]  # the last ones: CPU 0 tends to take interrupts and housekeeping
    os.sched_setaffinity(0, cpus)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    return old, cpus


def _rate(run, n_per_call: int, seconds: float, min_calls: int = 3) -> float:
    """Items per second of run() (n_per_call items per call), timed for at least `seconds` after one warm-up call."""
    run()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * n_per_call / (time.perf_counter() - start)


def benchmark(config: ModelConfig | None = None, seconds: float = 3.0, batch_sizes=(1, 8, 32), threads: int = 1,
              reference_seconds: float = 3.0, long_seconds: float = 600.0, chunk_frames: int = 250,
              seed: int = 0) -> dict:
    """Generation speed and memory, as a JSON-ready dict (`benchmarks/bench_generate.py` prints it).

    - "fast": per batch size B, samples/s in total and per stream and the real-time factors (samples/s / 16 kHz),
      generating 5 frames per call for >= `seconds` after a warm-up, streams in lockstep on `threads` threads;
    - "reference": the PyTorch loop (`MoveNet.step` + `sample_inverse_cdf`, one stream) for `reference_seconds`,
      the same-run yardstick: "speedup" is one fast stream over it, robust to a busy machine where absolute rates
      are not;
    - "long": `long_seconds` of audio (default 10 min) for one stream from a video's frames, chunk by chunk with
      `generate_iter`, then decoded and written as a WAV, in a fresh process: the resident memory before
      generating (Python, torch, numba, the model and the video's frames), the peak up to the end of generation,
      and the peak with the decoding and writing of the whole WAV at once; 0 skips it.
    The process is pinned to `threads` CPUs meanwhile (restored after); the load average tells how busy the machine
    was. The model has random weights (speed does not depend on them), the default config unless one is given.
    """
    config = config or ModelConfig()
    old_affinity, cpus = _pin(threads)
    old_torch_threads = torch.get_num_threads()
    try:
        torch.manual_seed(seed)
        model = MoveNet(config).eval()
        gen = FastGenerator(model)
        n_cond = 25
        rng = np.random.default_rng(seed)
        frames = torch.from_numpy(rng.integers(0, 256, (1, n_cond, config.frame_size, config.frame_size,
                                                        config.frame_channels), dtype=np.uint8))
        keypoints = torch.from_numpy(rng.random((1, n_cond, config.n_joints, 3), dtype=np.float32))
        labels = torch.zeros(1, dtype=torch.int64) if config.n_labels else None
        with torch.no_grad():
            cond1 = model.condition(frames if config.uses_frames else None,
                                    keypoints if config.uses_keypoints else None, labels).numpy()
        results = {
            "config": config.to_dict(), "threads": threads, "cpus": cpus, "load_average": os.getloadavg(),
            "weight_bytes": gen.n_weight_bytes, "flops_per_sample": 2 * gen.macs_per_sample,
            "numba": numba.__version__, "torch": torch.__version__, "fast": [],
        }
        hop, chunk = config.hop, 5
        for B in batch_sizes:
            cond = np.ascontiguousarray(np.repeat(cond1, B, axis=0))
            state = gen.init_state(cond[:, 0])
            u = rng.random((B, chunk * hop))

            def run():
                if state.t + chunk * hop > n_cond * hop:  # cycle through the frames
                    state.t = 0
                gen.generate(cond[:, state.t // hop: state.t // hop + chunk], state, 1.0, u, threads)

            rate = _rate(run, B * chunk * hop, seconds)
            results["fast"].append({"batch": B, "samples_per_s": round(rate), "per_stream_samples_per_s": round(rate / B),
                                    "realtime_factor": round(rate / SAMPLE_RATE, 2),
                                    "per_stream_realtime_factor": round(rate / B / SAMPLE_RATE, 2)})
        cond_t = torch.from_numpy(cond1)
        ref_state = model.init_state(cond_t[:, 0])
        prev = torch.full((1,), SILENCE)

        def ref_step():
            nonlocal prev
            logits, _ = model.step(prev, cond_t[:, (ref_state.t // hop) % n_cond], ref_state)
            prev = torch.from_numpy(sample_inverse_cdf(logits.numpy(), 1.0, rng.random(1)))

        ref_rate = _rate(ref_step, 1, reference_seconds, min_calls=20)
        results["reference"] = {"batch": 1, "samples_per_s": round(ref_rate),
                                "realtime_factor": round(ref_rate / SAMPLE_RATE, 3)}
        one = [r for r in results["fast"] if r["batch"] == 1]
        if one:
            results["speedup"] = round(one[0]["samples_per_s"] / ref_rate, 1)
        results["load_average_after"] = os.getloadavg()
    finally:
        os.sched_setaffinity(0, old_affinity)
        torch.set_num_threads(old_torch_threads)
    if long_seconds > 0:
        code = (f"import json, movenet.fastgen as f; print(json.dumps(f._long_run({config.to_dict()!r}, "
                f"{long_seconds}, {chunk_frames}, {threads}, {seed})))")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        results["long"] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def _rss_mb() -> float:
    """Current resident memory of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _long_run(config: dict, seconds: float, chunk_frames: int, threads: int, seed: int) -> dict:
    """`benchmark`'s long run, in a process of its own so that its peak resident memory is its own."""
    import tempfile

    from movenet.audio import mu_law_decode, write_wav

    _pin(threads)
    c = ModelConfig.from_dict(config)
    torch.manual_seed(seed)
    model = MoveNet(c).eval()
    gen = FastGenerator(model)
    n_frames = int(round(seconds * SAMPLE_RATE / c.hop))
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (1, n_frames, c.frame_size, c.frame_size, c.frame_channels), dtype=np.uint8) \
        if c.uses_frames else None
    keypoints = rng.random((1, n_frames, c.n_joints, 3), dtype=np.float32) if c.uses_keypoints else None
    labels = np.zeros(1, np.int64) if c.n_labels else None
    list(generate_iter(model, gen, 1, [seed], frames=frames, keypoints=keypoints, labels=labels))  # compile/load
    rss_before = _rss_mb()
    start = time.perf_counter()
    chunks = list(generate_iter(model, gen, n_frames, [seed], 1.0, frames, keypoints, labels, chunk_frames, threads))
    wall = time.perf_counter() - start
    peak_generating = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    with tempfile.TemporaryDirectory() as tmp:  # decoded whole, as a caller holding all codes would
        write_wav(os.path.join(tmp, "long.wav"), mu_law_decode(np.concatenate(chunks, axis=1)[0]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_samples = n_frames * c.hop
    return {"seconds_of_audio": seconds, "frames": n_frames, "chunk_frames": chunk_frames,
            "movement_input_mb": round(sum(a.nbytes for a in (frames, keypoints) if a is not None) / 2**20, 1),
            "rss_before_generating_mb": round(rss_before), "peak_rss_generating_mb": round(peak_generating),
            "peak_rss_with_wav_mb": round(peak),
            "generate_wall_s": round(wall, 1), "samples_per_s": round(n_samples / wall)}
