"""The compiled engine: MoveNet's `init_state` / `step` loop, sampling included, as numba code.

`FastGenerator(model)` copies the weights into float32 numpy arrays (layout in its docstring) and never calls torch
again: `generate` runs whole frames of audio for B independent streams, with every per-layer buffer preallocated
(one ring per dilated layer, the layout of `model.State`) and constant work per sample. The semantics are those of
`MoveNet.init_state` / `MoveNet.step` (and so of `MoveNet.teacher_forced`), up to float32 rounding and the tanh
approximation in `movenet.kernels` (|error| < 3e-7): logits agree to ~1e-6 (tests/test_fastgen.py allow 1e-4). The
compact precisions (bf16, bf16dot, amx, int8: `FastGenerator`) give that up for speed, within the bounds their tests
hold.
Samples follow `movenet.sampling` (its compiled `sample_row`), then the silence gate
(`movenet.controls.SILENT_AMPLITUDE`, written out in the loop: numba cannot call `controls.gate_silence`).

Speed, one core (`movenet bench`): one stream re-reads the weights (0.59 MB in fp32) for every sample, so its
products are bound by cache bandwidth, and what else a sample does (the gates, the sampler) adds to them; B streams
share each weight read, so batches approach the multiply units' limit. In int8, a few streams run one by one, each
stream's layers in one pass (`_forward_streams`): the three calls a layer takes cost one stream more in instructions
than its bytes. The loops that run every sample are compiled without reference counting (`_nrt=False`): numba counts
each view of an array it makes, and each count is an atomic increment, which on x86 also waits for the stores before
it and holds back the loads after it. `movenet.generate` drives it chunk by chunk, so memory stays flat in a video's
length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import types
from numba.extending import overload

from movenet.audio import SILENCE
from movenet.controls import SILENT_AMPLITUDE, loudness_channel
from movenet.kernels import (aligned, block_major, block_major_size, columns, gate, host_cache_bytes, host_has_amx,
                             host_has_avx2, host_has_bf16_dot, host_is_intel, matmul, prefetch, tile_rows,
                             to_amx_pairs, to_bf16, to_bf16_pairs)
from movenet.int8 import (StackShape, gated_quads, head_row, host_has_vnni, int8_acc, pack_quads, stack_row,
                          takes as int8_takes, to_int8_quads)
from movenet.model import MoveNet
from movenet.sampling import DEFAULT_SPREAD, sample_row, spreads, temperatures

FUSED_STREAMS = 3  # int8 runs up to this many streams one by one (`_forward_streams`); 4 ran as fast either way

# -- the compiled network ---------------------------------------------------------------------------------------------
# `params` is the tuple FastGenerator.params; state arrays are FastState's; `work` is the tuple of scratch arrays
# made by _scratch. All float32 except where noted.


@numba.njit(cache=True, error_model="numpy")
def _scratch(params, B):
    """Per-call work arrays for B streams (nothing here grows with the number of samples)."""
    in_tables, in_bias, wd_past, wd_source, wd_input, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets, shape = params
    L, G = bd.shape
    C, S, Q = in_bias.shape[0], bs.shape[0], b2.shape[0]
    B = tile_rows(wd_input, B)  # rows beyond the streams' (AMX's whole tiles) are computed and never read
    xs = np.empty((B, C + S), np.float32)  # [residual x | skip sum] of each stream
    h = np.empty((L, B, G), np.float32)  # each layer's dilated convolution, summed into (h[l] is contiguous)
    z = np.empty((B, G // 2), np.float32)
    hc = np.empty((L, B, G), np.float32)  # this frame's conditioning plus the dilated convolutions' biases
    a = np.empty((B, S), np.float32)
    h1 = np.empty((B, S), np.float32)
    logits = np.empty((B, Q), np.float32)
    cdf = np.empty((2, Q), np.float64)  # the sampler's scratch
    bits = np.empty((2, Q), np.int64)
    # each product's inputs rounded to pairs of bfloat16, or quantized to quads of bytes, for weights so stored
    # (kernels.matmul; unused for fp32 and bf16): room for the widest input, with some to spare
    widest = max(C, shape[1], G // 2, S)
    pairs = np.zeros((B, widest + 16), np.uint32)
    # int8's quantized rows (movenet.int8; unused otherwise): the source, a layer's input, z; the past taps' slots
    # of a layer, and of every layer with the row its input goes to (`int8.stack_row`'s)
    quads = (np.zeros((B, shape[1] // 4 + 2), np.uint32), np.zeros((B, C // 4 + 2), np.uint32),
             np.zeros((B, G // 8 + 2), np.uint32), np.zeros(max(shape[0] - 1, 1), np.int64),
             np.zeros((L, max(shape[0], 1)), np.int64))
    return xs, h, z, hc, a, h1, logits, cdf, bits, pairs, quads


@numba.njit(cache=True, error_model="numpy")
def _set_frame(params, cond_row, hc):
    """hc[l, b] = cond_row[b, l*G:(l+1)*G] + b_d[l]: once per frame, so per sample a layer just starts from it."""
    bd = params[5]
    L, G = bd.shape
    for l in range(L):
        for b in range(cond_row.shape[0]):
            for g in range(G):
                hc[l, b, g] = cond_row[b, l * G + g] + bd[l, g]


@numba.njit(cache=True, error_model="numpy", _nrt=False)  # no reference counts (the module docstring says why)
def _forward(t, params, prev, source, input_codes, buffers, work):
    """Logits of every stream for target t into work's `logits` [B, Q]; pushes this step's inputs into the rings.

    prev int64 [B]: the input for target t (the code before it); source float32 [B, E]: the source at target t
    (E = 0 without controls); input_codes int64 [B, input_kernel - 1] and buffers [B, H, C] are the rings of
    FastState, updated in place exactly as MoveNet.step updates State.

    Each dilated convolution sums its inputs in three products, in this order: the past taps (oldest first), the
    source, then this sample's input, each read where it lies (the ring, the source, xs), nothing gathered. The
    first two do not depend on this sample's earlier layers, so layer l + 1's are issued ahead of layer l's own
    chain (input, gate, residual). Every batch size sums in this order, so a stream's values do not depend on the
    streams beside it.
    """
    in_tables, in_bias, wd_past, wd_source, wd_input, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets, shape = params
    xs, h, z, hc, a, h1, logits, cdf, bits, pairs, quads = work
    B = prev.shape[0]
    L = bd.shape[0]
    C, S = in_bias.shape[0], bs.shape[0]
    k = shape[0]
    _embed(t, params, prev, input_codes, xs)
    _copy(hc, h)
    _independent_part(0, t, params, source, buffers, h, pairs)
    for l in range(L):
        if l + 1 < L:
            _independent_part(l + 1, t, params, source, buffers, h, pairs)
        # this sample's input enters the ring after the past taps were read (its slot was the oldest's), with the
        # residual bias of the layer before added in the same pass
        n = (k - 1) * dilations[l]
        slot = offsets[l] + _wrap(t, n) if n else 0
        if l and n:
            for b in range(B):
                for c in range(C):
                    v = xs[b, c] + br[l - 1, c]
                    xs[b, c] = v
                    buffers[b, slot, c] = v
        elif l:
            for b in range(B):
                for c in range(C):
                    xs[b, c] += br[l - 1, c]
        elif n:
            for b in range(B):
                for c in range(C):
                    buffers[b, slot, c] = xs[b, c]
        hl = h[l]
        matmul(hl, xs[:, :C], wd_input[l], pairs)
        gate(hl, z)
        if l < L - 1:
            matmul(xs, z, wrs[l], pairs)  # x += W_r z, skip += W_s z in one product (+ b_r: above, next layer)
        else:  # the last layer's residual output goes nowhere
            matmul(xs[:, C:], z, columns(wrs[l], C, C + S), pairs)
    _head(params, xs, a, h1, logits, pairs)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _forward_int8(t, params, prev, source, input_codes, buffers, work):
    """`_forward` for int8 weights (movenet.int8): the same network, each layer in three steps: its input (the
    residual stream plus the bias of the layer before) quantized once, the fused pass (`int8.gated_quads`: the past
    taps from the ring, which holds quantized inputs, the source quantized once a sample, this input; the gate; z
    as bytes), then the residual and skip product. The input enters the ring after the pass, which read the past
    tap in its slot. buffers: uint32 [B, H, C/4 + 1], each ring row a quantized input."""
    in_tables, in_bias, wd_past, wd_source, wd_input, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets, shape = params
    xs, h, z, hc, a, h1, logits, cdf, bits, pairs, quads = work
    source_q, input_q, zq, past_slots = quads[:4]
    B = prev.shape[0]
    L = bd.shape[0]
    C, S = in_bias.shape[0], bs.shape[0]
    k, E = shape[0], shape[1]
    words = buffers.shape[2]
    _embed(t, params, prev, input_codes, xs)
    if E:
        pack_quads(source, source_q)
    for l in range(L):
        pack_quads(xs[:, :C], input_q)
        for j in range(k - 1):  # oldest first
            past_slots[j] = _ring_row(t, l, j, dilations, offsets, k)
        gated_quads(hc[l, :B], buffers, past_slots, source_q, input_q, wd_past[l], wd_source[l], wd_input[l], zq)
        slot = _ring_row(t, l, k - 1, dilations, offsets, k)
        for b in range(B):
            for w in range(words):
                buffers[b, slot, w] = input_q[b, w]
        if l < L - 1:  # + the next layer's input's bias, b_r (added in the product's last step: one pass fewer)
            int8_acc(xs, zq, wrs[l], br[l])
        else:  # the last layer's residual output goes nowhere
            int8_acc(xs[:, C:], zq, columns(wrs[l], C, C + S))
    _head(params, xs, a, h1, logits, pairs)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _forward_streams(t, params, prev, source, input_codes, buffers, work, stack):
    """`_forward_int8` stream by stream, each stream's layers in one pass (`int8.stack_row`, compiled for the shape
    `stack`) where `_forward_int8` takes each layer for all streams in three calls. A few streams run faster so (one
    stream: 1.7x); many share each weight read better in `_forward_int8`. Its values are `_forward_int8`'s."""
    wd_past, wd_source, wd_input, wrs, br = params[2], params[3], params[4], params[6], params[7]
    w1, b1, w2, b2, dilations, offsets, shape = params[9:]
    xs, hc, logits, quads = work[0], work[3], work[6], work[10]
    source_q, layer_slots = quads[0], quads[4]
    L = dilations.shape[0]
    k, E = shape[0], shape[1]
    _embed(t, params, prev, input_codes, xs)
    if E:
        pack_quads(source, source_q)
    for l in range(L):
        for j in range(k):  # the past taps oldest first, then the row this sample's input goes to
            layer_slots[l, j] = _ring_row(t, l, j, dilations, offsets, k)
    for b in range(prev.shape[0]):
        stack_row(xs[b:], hc[:, b:], buffers[b:], layer_slots, source_q[b:], wd_past, wd_source, wd_input, wrs, br,
                  stack)
        head_row(xs[b:], w1, b1, w2, b2, logits[b:], stack)


def _step(t, params, prev, source, input_codes, buffers, work, stack):
    """The logits of target t: `_forward`, or `_forward_int8` for int8 weights (stack: the model's
    `int8.StackShape`). Compiled code only."""
    raise NotImplementedError("fastgen._step runs inside compiled code")


@overload(_step, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _step_for(t, params, prev, source, input_codes, buffers, work, stack):
    if params[4].dtype == types.int8 and stack.code:
        def streams_or_layers(t, params, prev, source, input_codes, buffers, work, stack):
            if prev.shape[0] <= FUSED_STREAMS:
                _forward_streams(t, params, prev, source, input_codes, buffers, work, stack)
            else:
                _forward_int8(t, params, prev, source, input_codes, buffers, work)
        return streams_or_layers
    if params[4].dtype == types.int8:
        return lambda t, params, prev, source, input_codes, buffers, work, stack: _forward_int8(
            t, params, prev, source, input_codes, buffers, work)
    return lambda t, params, prev, source, input_codes, buffers, work, stack: _forward(
        t, params, prev, source, input_codes, buffers, work)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _embed(t, params, prev, input_codes, xs):
    """xs = [the input convolution of the embedded codes | the skip biases' sum] for every stream, and prev enters
    input_codes' ring. The embedding and the convolution are folded: the input is a sum of table rows."""
    in_tables, in_bias, bs = params[0], params[1], params[8]
    C, S = in_bias.shape[0], bs.shape[0]
    n_in = input_codes.shape[1]
    for b in range(prev.shape[0]):
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


@numba.njit(cache=True, inline="always", error_model="numpy")
def _head(params, xs, a, h1, logits, pairs):
    """logits = the head of the skip sums in xs[:, C:]: ReLU -> Linear(S, S) -> ReLU -> Linear(S, Q)."""
    w1, b1, w2, b2 = params[9], params[10], params[11], params[12]
    S = b1.shape[0]
    C = xs.shape[1] - S
    for b in range(a.shape[0]):
        for c in range(S):
            a[b, c] = max(xs[b, C + c], np.float32(0))
            h1[b, c] = b1[c]
        for q in range(logits.shape[1]):
            logits[b, q] = b2[q]
    matmul(h1, a, w1, pairs)
    for b in range(a.shape[0]):
        for c in range(S):
            h1[b, c] = max(h1[b, c], np.float32(0))
    matmul(logits, h1, w2, pairs)


def _tap(wd_past, l, j, rows):
    """Layer l's weights of past tap j: its `rows` rows of the 3-D wd_past, or the matrix wd_past[l, j] of int8's
    4-D one. Compiled code only."""
    raise NotImplementedError("fastgen._tap runs inside compiled code")


@overload(_tap, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _tap_of(wd_past, l, j, rows):
    if wd_past.ndim == 4:
        return lambda wd_past, l, j, rows: wd_past[l, j]
    return lambda wd_past, l, j, rows: wd_past[l, j * rows: (j + 1) * rows]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _wrap(i, n):
    """i % n (Python's: from 0 to n - 1, negative i too) for n > 0, a mask where n is a power of two (a ring of
    kernel size 2 with a dilation 2^j): a division on every layer of every sample otherwise."""
    return i & (n - 1) if n & (n - 1) == 0 else i % n


@numba.njit(cache=True, inline="always", error_model="numpy")
def _ring_row(t, l, j, dilations, offsets, k):
    """The row of layer l's ring (kernel size k) that holds its input at target t - (k - 1 - j) d: past tap j,
    oldest first, and j = k - 1 the row this sample's input goes to."""
    n = (k - 1) * dilations[l]
    return offsets[l] + _wrap(t - (k - 1 - j) * dilations[l], n)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _copy(a, b):
    """b[...] = a for float32 arrays of one shape, C-contiguous (numba's slice assignment may allocate)."""
    fa, fb = a.reshape(a.size), b.reshape(b.size)
    for i in range(fa.shape[0]):
        fb[i] = fa[i]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _independent_part(l, t, params, source, buffers, h, pairs):
    """h[l] += layer l's past taps and the source times their weights (what does not wait for layer l - 1)."""
    wd_past, wd_source, dilations, offsets, shape = params[2], params[3], params[13], params[14], params[15]
    k, E = shape[0], shape[1]
    C = buffers.shape[2]
    d = dilations[l]
    n = (k - 1) * d
    hl = h[l]
    for j in range(k - 1):  # oldest first
        slot = _ring_row(t, l, j, dilations, offsets, k)
        matmul(hl, buffers[:, slot], _tap(wd_past, l, j, shape[2]), pairs)
    if E:
        matmul(hl, source, wd_source[l], pairs)
    if n:  # the oldest tap of the next step: a row last touched n steps ago, likely out of L1/L2 by now
        row = offsets[l] + _wrap(t + 1, n)
        for b in range(buffers.shape[0]):
            for c in range(0, C, 16):
                prefetch(buffers, (b * buffers.shape[1] + row) * C + c)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _generate(params, stack, cond, source, t0, hop, temperature, spread, gate, u, prev, input_codes, buffers, out):
    """Sample u.shape[1] targets from t0 for every stream into out uint8 [B, n]; cond [B, n_rows, L*G] starts at
    frame t0 // hop, source [B, n, E] at target t0, temperature and spread float64 [B] (each stream's own), gate
    the source's loudness channel (-1: no silence gate; movenet.controls.SILENT_AMPLITUDE). Leaves
    prev/input_codes/buffers as the state at t0 + n. stack: `FastGenerator.stack`, compiled in as constants. Holds
    no GIL: a live server's other threads run meanwhile."""
    _sample(params, stack, cond, source, t0, hop, temperature, spread, gate, u, prev, input_codes, buffers, out,
            _scratch(params, u.shape[0]))


@numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
def _sample(params, stack, cond, source, t0, hop, temperature, spread, gate, u, prev, input_codes, buffers, out, work):
    """`_generate`'s loop, in work arrays made before it and without reference counts: the views it takes every
    sample (the sample's source, each stream's logits), each counted up and down, cost one fp32 stream 7-11% of
    its time (the module docstring says why; alternating runs in one process, Zen 4)."""
    B, n = u.shape
    logits, cdf, bits = work[6], work[7], work[8]
    first_frame = t0 // hop
    for i in range(n):
        t = t0 + i
        if i == 0 or t % hop == 0:
            _set_frame(params, cond[:, t // hop - first_frame], work[3])
        _step(t, params, prev, source[:, i], input_codes, buffers, work, stack)
        for b in range(B):
            code = sample_row(logits[b], temperature[b], spread[b], u[b, i], cdf, bits)
            if gate >= 0 and source[b, i, gate] < SILENT_AMPLITUDE:
                code = SILENCE
            out[b, i] = code
            prev[b] = code


@numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _generate_parallel(params, stack, cond, source, t0, hop, temperature, spread, gate, u, prev, input_codes, buffers,
                       out, bounds):
    """_generate on the stream groups bounds[g]:bounds[g+1], one group per thread (streams are independent)."""
    for g in numba.prange(bounds.shape[0] - 1):
        s, e = bounds[g], bounds[g + 1]
        _generate(params, stack, cond[s:e], source[s:e], t0, hop, temperature[s:e], spread[s:e], gate, u[s:e],
                  prev[s:e], input_codes[s:e], buffers[s:e], out[s:e])


@numba.njit(cache=True, error_model="numpy")
def _teacher_forced(params, stack, cond, source, t0, hop, codes, prev, input_codes, buffers, out):
    """Logits for targets t0 .. t0 + T - 1 given the true codes [B, T] into out float32 [B, T, P] (block-major)."""
    B, n = codes.shape
    work = _scratch(params, B)
    logits = work[6]
    first_frame = t0 // hop
    for i in range(n):
        t = t0 + i
        if i == 0 or t % hop == 0:
            _set_frame(params, cond[:, t // hop - first_frame], work[3])
        _step(t, params, prev, source[:, i], input_codes, buffers, work, stack)
        out[:, i] = logits[:B]
        for b in range(B):
            prev[b] = codes[b, i]


@numba.njit(cache=True, error_model="numpy")
def _init_buffers(params, cond0, buffers):
    """The pre-roll of MoveNet.init_state: every layer's ring holds the input it would see after silence forever
    under cond0 [B, L*G]; computed with the same kernels as a step whose taps are all that input."""
    in_tables, in_bias, wd_past, wd_source, wd_input, bd, wrs, br, bs, w1, b1, w2, b2, dilations, offsets, shape = params
    B = cond0.shape[0]
    L = bd.shape[0]
    C = in_bias.shape[0]
    k = shape[0]
    xs, h, z, hc, a, h1, logits, cdf, bits, pairs, quads = _scratch(params, B)
    _set_frame(params, cond0, hc)
    for b in range(B):
        for c in range(C):
            xs[b, c] = in_bias[c]
        for j in range(in_tables.shape[0]):
            for c in range(C):
                xs[b, c] += in_tables[j, SILENCE, c]
    h[...] = hc
    for l in range(L):
        n = (k - 1) * dilations[l]
        off = offsets[l]
        _fill_ring(buffers, off, n, xs[:, :C], quads[1])
        hl = h[l]
        for j in range(k - 1):  # every tap holds the same input; no source before the clip
            matmul(hl, xs[:, :C], _tap(wd_past, l, j, shape[2]), pairs)
        matmul(hl, xs[:, :C], wd_input[l], pairs)
        gate(hl, z)
        matmul(xs[:, :C], z, columns(wrs[l], 0, C), pairs)
        for b in range(B):
            for c in range(C):
                xs[b, c] += br[l, c]


def _fill_ring(buffers, start, n, x, scratch):
    """buffers[b, start : start + n] = x[b] for every stream: x's rows float32, or quantized where the ring holds
    quads (int8's uint32 rings; `scratch` takes them first). Compiled code only."""
    raise NotImplementedError("fastgen._fill_ring runs inside compiled code")


@overload(_fill_ring, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _fill_ring_for(buffers, start, n, x, scratch):
    if buffers.dtype == types.uint32:
        def quantized(buffers, start, n, x, scratch):
            pack_quads(x, scratch)
            for b in range(x.shape[0]):
                for s in range(n):
                    buffers[b, start + s] = scratch[b, : buffers.shape[2]]
        return quantized

    def plain(buffers, start, n, x, scratch):
        for b in range(x.shape[0]):
            for s in range(n):
                buffers[b, start + s] = x[b]
    return plain


# -- the Python side ------------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "bf16dot", "amx", "int8")


def auto_precision(fp32_weight_bytes: int, int8_fits: bool = True) -> str:
    """What precision="auto" picks for a model whose fp32 weights take `fp32_weight_bytes` (and which int8 takes,
    `int8_fits`): fp32 on a CPU without AVX2 and on an Intel CPU whose L2 holds them twice over; int8 on other CPUs
    with AVX512-VNNI; bf16 elsewhere.

    Why: one stream re-reads every weight for every sample. bf16 halves the bytes, and widening them costs two
    vector operations per 16 weights. On every AMD core measured bf16 was the faster of the two for one stream
    (`movenet bench`: 1.13x fp32 on an AVX2 Zen 3, 1.42x on a Zen 4, 1.28x on a Zen 5); on an Intel Xeon, whose
    cores issue that shuffle and shift on the ports of their FMAs, fp32 was, its weights staying in the 2 MB of L2
    (174,000 samples/s against 145,000 in bf16). int8 reads a quarter of fp32's bytes and multiplies 64 pairs an
    instruction: on a Zen 4, 1.3x bf16 for one stream and 1.9x fp32 for 32; its samples' pitch, loudness and hits
    match fp32's on held-out dancers (README, Generation speed). It has not been measured on an Intel CPU, so
    Intel's rule stands. bf16dot, which also multiplies in bfloat16, halves the multiply-adds' cost but not the
    rest of a sample's work: 0.62x bf16 for one stream on a Zen 5 (1.15x at batch 32), so it is there to ask for;
    so is amx (Intel's AMX tiles: 1.4-1.6x fp32 for 16 or more streams, a third of fp32's speed for one).
    Without AVX2 (SSE or AVX only: x86 before 2013, Atom, Celeron and Pentium Silver cores until 2021) the
    widening runs in 128-bit integer vectors: built for SSE4.2 on a Zen 4, one stream ran 44,800 samples/s in bf16
    against 59,500 in fp32. The choice is the host's, never the batch's: a stream plays the same codes alone as
    beside others, and one host's live sessions play what its `movenet generate` makes.
    """
    if not host_has_avx2():
        return "fp32"
    if host_is_intel():
        return "fp32" if 0 < 2 * fp32_weight_bytes <= host_cache_bytes(2) else "bf16"
    return "int8" if int8_fits and host_has_vnni() else "bf16"


def _int8_params(params: tuple, taps: int) -> tuple:
    """The fp32 params with the matrices quantized for precision int8 (movenet.int8), the past taps' [L, taps,
    Cq + 2, 4 G] (each tap its own matrix, as its ring rows are), and all but the logits' own product (w2, 6% of
    the multiply-adds), which stays in fp32. Quantized, it alone moved the shipped model's logits 15 times as far
    from fp32's as all the other products together (KL per sample 0.014 against 0.0009); in bfloat16 pairs, half
    as far again as they do (0.0004), for no speed that a batch of 32 showed."""
    params = list(params)
    wd_past = params[2]
    params[2] = wd_past.reshape(wd_past.shape[0], taps, -1, wd_past.shape[2])
    for i in FastGenerator.MATRICES:
        if i != OUTPUT_MATRIX:
            params[i] = to_int8_quads(params[i])
    return tuple(params)


OUTPUT_MATRIX = 11  # w2 in FastGenerator.params


@dataclass
class FastState:
    """Everything generation carries from one sample to the next, batch-first numpy arrays (cf. `model.State`)."""

    t: int  # index of the next target sample
    prev_codes: np.ndarray  # int64 [B]: the input for target t, i.e. the code before it (SILENCE at t = 0)
    input_codes: np.ndarray  # int64 [B, input_kernel - 1]: earlier inputs, input position p at slot p % (k_in - 1)
    buffers: np.ndarray  # float32 [B, H, C_res]: layer l's ring at rows offsets[l] : offsets[l] + (k-1) d_l,
    #                     input position p at slot p % ((k-1) d_l), as State.buffers[l]; H = sum of histories
    #                     (int8: uint32 [B, H, C_res / 4 + 1], each row the input quantized, movenet.int8)

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
        wd_past    [L, (k-1)*C, G] dilated convolutions (DilatedCausalConv.linear.weight.T), split by input: the
        wd_source  [L, E, G]        past taps oldest first, the source at the current sample, and the current
        wd_input   [L, C, G]        sample's input (summed in that order: `_forward` says why); a compact
                                    precision stores each tap's rows alone (`_tap`)
        bd         [L, G]         their biases, added to the frame's conditioning once per frame
        wrs        [L, G/2, C+S]  residual and skip 1x1 convolutions side by side
        br         [L, C]         residual biases
        bs         [S]            the sum of all skip biases
        w1, b1     [S, S], [S]    head
        w2, b2     [S, P], [P]    its logits in the sampler's block-major order (`sampling.sample_row`: P = Q
                                  rounded up to 64; where no class is, a column of zeros and a bias of -inf)
        dilations  int64 [L]; offsets int64 [L]: layer l's ring rows in FastState.buffers
        shape      int64 [3]      the dilated convolutions' kernel size k and source channels E (0 without controls):
                                  the layers' products take k taps of C, then E inputs of the source; and the rows
                                  of wd_past that each past tap takes as stored (`_tap`)

    Nothing refers back to torch: build a new FastGenerator after changing the model's weights.
    """

    name = "fast"
    MATRICES = (2, 3, 4, 6, 9, 11)  # the weight matrices in `params`: what a compact precision stores otherwise

    def __init__(self, model: MoveNet, precision: str = "fp32"):
        """precision: "fp32"; "bf16": the four weight matrices (wd, wrs, w1, w2) stored as bfloat16, widened to
        float32 in the registers and multiplied in fp32 (half the bytes each sample reads; logits within ~1e-2 of
        fp32's); "bf16dot" (AVX512-BF16 hosts): those weights in pairs of bfloat16 and each product's inputs rounded
        to bfloat16 too, multiplied pair by pair with fp32 sums (vdpbf16ps: half the multiply-adds as well); "amx"
        (CPUs with AMX tiles): the same pairs multiplied in tiles of 16 streams (the work arrays padded to whole
        tiles; fast for batches, slow for one stream); "int8" (AVX512-VNNI hosts): all but w2 in bytes, scaled per
        column, each product's inputs quantized per row, integer sums (movenet.int8; `_forward_int8`: the rings
        hold quantized inputs); or "auto": `auto_precision`'s choice for this host."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16dot" and not host_has_bf16_dot():
            raise ValueError("precision bf16dot needs a CPU with AVX512-BF16 (this one has none): use bf16 or fp32")
        if precision == "int8" and not host_has_vnni():
            raise ValueError("precision int8 needs a CPU with AVX512-VNNI (AMD Zen 4 or later, Intel Cascade Lake or "
                             "later) and this one has none: use bf16 or fp32")
        if precision == "amx" and not host_has_amx():
            raise ValueError("precision amx needs a CPU with AMX tiles (Intel Sapphire Rapids or later) and this one "
                             "has none: use bf16 or fp32")
        self.config = c = model.config
        C, G = c.residual_channels, c.gate_channels
        int8_fits = int8_takes(c)
        if precision == "int8" and not int8_fits:
            raise ValueError("precision int8 needs gate channels in multiples of 32 and a kernel size of 2 or more "
                             "(its fused layer's vectors and rings): use bf16 or fp32 for this model")
        if precision == "amx" and any(n % 16 for n in (G, C + c.skip_channels, c.skip_channels, c.n_classes)):
            raise ValueError("precision amx needs gate, skip and residual + skip channels and classes in multiples "
                             "of 16 (its tiles' columns): use bf16 or fp32 for this model")
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
        self.class_positions = block_major(c.n_classes)  # where the head writes each class's logit
        P = block_major_size(c.n_classes)
        w2 = np.zeros((c.skip_channels, P))
        w2[:, self.class_positions] = f64["head.3.weight"].T
        b2 = np.full(P, -np.inf)
        b2[self.class_positions] = f64["head.3.bias"]
        past, now = (c.kernel_size - 1) * C, c.kernel_size * C  # wd's rows: taps oldest first, then the source
        self.params = (f32(in_tables), f32(f64["input_conv.linear.bias"]), f32(wd[:, :past]), f32(wd[:, now:]),
                       f32(wd[:, past:now]), f32(bd), f32(wrs), f32(br),
                       f32(bs), f32(f64["head.1.weight"].T), f32(f64["head.1.bias"]), f32(w2), f32(b2),
                       np.array(c.dilations, dtype=np.int64),
                       np.cumsum([0] + histories[:-1]).astype(np.int64),
                       np.array([c.kernel_size, c.source_channels, C], dtype=np.int64))
        # auto goes by the fp32 weights' bytes: the params are still all fp32 here
        self.precision = auto_precision(self.n_weight_bytes, int8_fits) if precision == "auto" else precision
        # the multiply-adds, counted before bf16dot folds the matrices' rows into pairs
        wrs = self.params[6]
        self.macs_per_sample = sum(self.params[i].size for i in self.MATRICES) - wrs.shape[1] * C
        if self.precision == "int8":
            self.params = _int8_params(self.params, c.kernel_size - 1)
        elif self.precision != "fp32":
            compact = {"bf16": to_bf16, "bf16dot": to_bf16_pairs, "amx": to_amx_pairs}[self.precision]
            params = list(self.params)
            for i in self.MATRICES[1:]:
                params[i] = compact(params[i])
            # the past taps' (MATRICES[0]) each alone: pairs and tiles must not straddle two taps' rows
            taps = compact(params[2].reshape(c.n_layers, c.kernel_size - 1, C, G))
            params[2] = taps.reshape(c.n_layers, -1, taps.shape[-1])
            params[15] = np.array([c.kernel_size, c.source_channels, taps.shape[-2]], dtype=np.int64)
            self.params = tuple(params)
        self.params = tuple(aligned(p) for p in self.params)  # each on a cache line: the tiles load 64 bytes at once
        # one int8 stream runs its layers fused, compiled for this shape (int8.StackShape says which it takes)
        self.stack = (StackShape(C, G, c.skip_channels, self.params[3].shape[1] - 2, c.kernel_size - 1, P)
                      if self.precision == "int8" else StackShape())
        self.hop = c.hop
        self.cond_channels = c.n_layers * G
        self.gate_channel = loudness_channel(c)

    @property
    def n_weight_bytes(self) -> int:
        """Bytes of matrices and biases that one stream reads per sample (not counting 2 rows of in_tables)."""
        return sum(p.nbytes for p in self.params[2:13])

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
        if self.precision == "int8":  # each ring row a quantized input: C/4 quads and the scale (movenet.int8)
            buffers = np.empty((B, self.n_history, -(-c.residual_channels // 4) + 1), np.uint32)
        else:
            buffers = np.empty((B, self.n_history, c.residual_channels), np.float32)
        _init_buffers(self.params, cond0, buffers)
        return FastState(t=0, prev_codes=np.full(B, SILENCE, np.int64),
                         input_codes=np.full((B, c.input_kernel - 1), SILENCE, np.int64), buffers=buffers)

    def _source(self, source, B: int, n: int) -> np.ndarray:
        """The source as float32 [B, n, E] (E = 0 without controls), checked."""
        E = self.config.source_channels
        if not E:
            return np.zeros((B, n, 0), np.float32)
        source = _rows(source, "source", 3) if source is not None else None
        if source is None or source.shape != (B, n, E):
            raise ValueError(f"source must be [B={B}, n={n}, E={E}], got {None if source is None else source.shape}")
        return source

    def _n_rows(self, t0: int, n: int) -> int:
        """Conditioning rows that targets t0 .. t0 + n - 1 span."""
        return (t0 + n - 1) // self.hop - t0 // self.hop + 1 if n else 0

    def generate(self, cond_rows, source, state: FastState, temperature: float, u, threads: int = 1, *,
                 spread=DEFAULT_SPREAD) -> np.ndarray:
        """Sample the next n = u.shape[1] codes of every stream, advancing `state` in place.

        cond_rows: float32 [B, n_rows, n_layers * G]: row i is the conditioning of frame state.t // hop + i, and
            the rows must cover the targets (n_rows >= n / hop when state.t is at a frame boundary);
        source: float32 [B, n, E], the source at each target (movenet.controls; None for a model without controls);
        temperature: >= 0 (0: argmax), one for all streams or one per stream [B]; u: float64 [B, n], uniforms in
            [0, 1) (see the module docstring); spread: in [0, 1], one or one per stream (movenet.sampling);
        threads: streams are split into this many groups, one per numba thread (at most B, and the CPU count).
        Returns codes uint8 [B, n]. Calling it frame by frame or once gives the same codes.
        """
        cond_rows = _rows(cond_rows, "cond_rows", 3)
        u = np.ascontiguousarray(u, dtype=np.float64)
        B = state.batch_size
        if u.ndim != 2 or u.shape[0] != B:
            raise ValueError(f"u must be [B={B}, n_samples], got {u.shape}")
        temperature, spread = temperatures(temperature, B), spreads(spread, B)
        n = u.shape[1]
        self._check_cond(cond_rows, B, self._n_rows(state.t, n), "cond_rows")
        source = self._source(source, B, n)
        out = np.empty((B, n), np.uint8)
        if n == 0:
            return out
        args = (self.params, self.stack, cond_rows, source, state.t, self.hop, temperature, spread, self.gate_channel,
                u, state.prev_codes, state.input_codes, state.buffers, out)
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

    def teacher_forced_logits(self, codes, cond_rows, state: FastState, source=None) -> np.ndarray:
        """Logits for targets state.t .. state.t + T - 1 with the true codes as inputs (for tests).

        codes: int [B, T], the targets (target t's input is the code before it: state.prev_codes, then codes);
        cond_rows and source as in `generate`. Returns float32 [B, T, Q]; advances `state` past the codes.
        """
        codes = np.ascontiguousarray(np.asarray(codes), dtype=np.int64)
        cond_rows = _rows(cond_rows, "cond_rows", 3)
        B, T = codes.shape
        if B != state.batch_size:
            raise ValueError(f"codes are for {B} streams, the state for {state.batch_size}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.config.n_classes):
            raise ValueError(f"codes must lie in 0 .. {self.config.n_classes - 1}")
        self._check_cond(cond_rows, B, self._n_rows(state.t, T), "cond_rows")
        out = np.empty((B, T, self.params[12].shape[0]), np.float32)
        if T:
            _teacher_forced(self.params, self.stack, cond_rows, self._source(source, B, T), state.t, self.hop, codes,
                            state.prev_codes, state.input_codes, state.buffers, out)
        state.t += T
        return out[..., self.class_positions]  # in class order
