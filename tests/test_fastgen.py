"""The compiled generator against the PyTorch reference (MoveNet.teacher_forced, init_state/step), its sampling
policy, chunked and streaming use, and flat memory.

Tolerances. The compiled loop computes in float32 like the reference, but sums in another order and uses a
rational tanh (|error| <= 3e-7, sigmoid from it); its logits agree with PyTorch's to ~1e-6 here, and the tests
allow rtol = atol = 1e-4. A sampled code can differ only where the uniform lands within that logit error of a
CDF step, ~1e-6 of the total probability: `_assert_same_samples` requires identical codes up to the first sample
whose uniform is within 1e-4 of a step (after a flip the streams diverge, as any two samplers would), and the
seeds here meet none, so it checks every sample.
"""

import dataclasses
import os
import re
import tracemalloc

import numba
import numpy as np
import pytest
import torch
from numba.core.runtime import _nrt_python, rtsys
from tests.test_model import audible, inputs, source, tiny_config

from movenet.audio import SILENCE, mu_law_decode
from movenet import controls
from movenet.checkpoint import Loaded
from movenet.controls import SILENT_AMPLITUDE, Excitation, SourceState, gate_silence, loudness_channel
from movenet.inputs import InputConfig
from movenet.fastgen import FastGenerator
from movenet.generate import generate_chunks
from movenet.movement import Movement, condition
from movenet.sampling import sample_inverse_cdf
from movenet.kernels import (exp_block_sums, gate, host_has_amx, host_has_bf16_dot, matmul, matmul_acc, sigmoid,
                             tanh)
from movenet.model import ModelConfig, MoveNet
from movenet.stream import Streamer

RTOL = ATOL = 1e-4  # logits, fast vs PyTorch (observed: ~1e-6)
MARGIN = 1e-5  # samples may differ only where u * total is this close (relative) to a CDF step


def build(features="frames", n_labels=3, seed=0, **overrides) -> MoveNet:
    torch.manual_seed(seed)
    return audible(MoveNet(tiny_config(features=features, n_labels=n_labels, **overrides))).eval()


def movement_inputs(config, n_samples, batch, seed=0):
    """test_model.inputs for any config (it draws labels, which needs n_labels > 0)."""
    return inputs(dataclasses.replace(config, n_labels=max(config.n_labels, 1)), n_samples, batch=batch, seed=seed)


def movement(model, n_samples, batch, seed=0):
    """codes [B, n] int64, the conditioning [B, n_frames, L*G] of random movement (torch), and a random source
    float32 [B, n, E] (numpy; None for a model without controls)."""
    c = model.config
    codes, frames, keypoints, labels = movement_inputs(c, n_samples, batch, seed)
    with torch.no_grad():
        cond = model.condition(frames if c.uses_frames else None, keypoints if c.uses_keypoints else None,
                               labels if c.n_labels else None)
    src = source(c, n_samples, batch, seed)
    return codes, cond, None if src is None else src.numpy()


def _t(src):
    return None if src is None else torch.from_numpy(src)


def _at(src, t):
    return None if src is None else torch.from_numpy(src[:, t])


def _cut(src, a, b):
    return None if src is None else src[:, a:b]


def _policy(logits, temperature, u, spread, src_t, channel):
    """movenet.sampling's policy, then the silence gate: what both engines play for one sample."""
    codes = sample_inverse_cdf(logits, temperature, u, spread)
    return codes if src_t is None else gate_silence(codes, src_t, channel)


def reference_samples(model, cond, temperature, u, src=None, spread=1.0):
    """The PyTorch loop: init_state / step + sample_inverse_cdf + the silence gate. -> codes [B, n], margins [B, n],
    final State.

    margin: how far u * total lies from the nearest CDF step, relative to the total (for temperature 0, the gap
    between the two largest logits); infinite where the gate plays silence whatever was drawn.
    """
    channel = loudness_channel(model.config)
    B, n = u.shape
    state = model.init_state(model.cond_at(cond, 0))
    prev = torch.full((B,), SILENCE)
    codes, margins = np.empty((B, n), np.int64), np.empty((B, n))
    for t in range(n):
        logits, state = model.step(prev, model.cond_at(cond, t), state, _at(src, t))
        logits = logits.numpy()
        codes[:, t] = _policy(logits, temperature, u[:, t], spread, None if src is None else src[:, t], channel)
        if temperature == 0:
            top = np.sort(logits, axis=-1)
            margins[:, t] = top[:, -1] - top[:, -2]
        else:
            z = logits.astype(np.float64) / temperature
            cdf = np.cumsum(np.exp(z - z.max(-1, keepdims=True)), -1)
            margins[:, t] = np.abs(cdf - u[:, t, None] * cdf[:, -1:]).min(-1) / cdf[:, -1]
        if temperature > 0 and spread < 1:  # and how far the pulled value lies from a code's edge, in codes
            e = np.exp(z - z.max(-1, keepdims=True))
            amplitude = mu_law_decode(np.arange(256)).astype(np.float64)
            mean = (e * amplitude).sum(-1) / e.sum(-1)
            v = mean + spread * (amplitude[np.minimum((cdf <= u[:, t, None] * cdf[:, -1:]).sum(-1), 255)] - mean)
            position = (np.sign(v) * np.log1p(255 * np.abs(v)) / np.log1p(255) + 1) / 2 * 255
            margins[:, t] = np.minimum(margins[:, t], np.abs(position - np.floor(position) - 0.5))
        if src is not None and channel >= 0:
            margins[:, t] = np.where(src[:, t, channel] < SILENT_AMPLITUDE, np.inf, margins[:, t])
        prev = torch.from_numpy(codes[:, t])
    return codes, margins, state


def _assert_same_samples(gen, cond, src, temperature, u, fast, codes, margins, spread=1.0):
    """The fast sampler picks the reference's codes except where u lands within MARGIN of a CDF step.

    Per sample, along the reference trajectory (so one flip cannot make later samples differ): the policy applied
    to the fast logits of the reference codes gives the reference code in >= 99.9% of samples, and every difference
    is near a step. Generation itself (`fast`) must equal the reference up to its first difference, which must be
    such a sample; after it the streams diverge, as any two samplers would.
    """
    state = gen.init_state(cond[:, 0])
    logits = gen.teacher_forced_logits(codes, cond, state, src)
    channel = loudness_channel(gen.config)
    resampled = np.stack([_policy(logits[:, t], temperature, u[:, t], spread, None if src is None else src[:, t],
                                  channel) for t in range(u.shape[1])], 1)
    differ = resampled != codes
    assert differ.mean() <= 1e-3 and (margins[differ] < MARGIN).all()
    for b in range(codes.shape[0]):
        first = np.flatnonzero(fast[b] != codes[b])
        if first.size:
            assert margins[b, first[0]] < MARGIN, f"stream {b} differs at {first[0]}, not near a CDF step"


def _assert_state_equal(fast_state, ref_state, gen):
    for off, buffer in zip(gen.params[14], ref_state.buffers):
        np.testing.assert_allclose(fast_state.buffers[:, off: off + buffer.shape[1]], buffer.numpy(), rtol=RTOL,
                                   atol=ATOL)
    assert fast_state.t == ref_state.t


# -- numerics ---------------------------------------------------------------------------------------------------------


@numba.njit(error_model="numpy", fastmath={"contract"})
def _apply(f, x, out):
    for i in range(x.size):
        out[i] = f(x[i])


def test_tanh_and_sigmoid_approximations():
    """Max abs error on a 4M-point grid of [-20, 20]: 2.8e-7 (tanh), 1.7e-7 (sigmoid); float32 rounding is 6e-8.
    On a CPU without FMA each multiply-add rounds twice: 3.9e-7 and 2.3e-7."""
    from movenet.kernels import HAS_FMA

    x = np.linspace(-20, 20, 4_000_001, dtype=np.float32)
    x64, out = x.astype(np.float64), np.empty_like(x)
    _apply(tanh, x, out)
    assert np.abs(out - np.tanh(x64)).max() < (3e-7 if HAS_FMA else 4.5e-7)
    _apply(sigmoid, x, out)
    assert np.abs(out - 1 / (1 + np.exp(-x64))).max() < (2e-7 if HAS_FMA else 2.5e-7)
    h = np.stack([x[::100], -x[::100]]).reshape(1, -1)  # the gate: the same rational functions, divided once
    z = np.empty((1, h.shape[1] // 2), np.float32)
    gate(h, z)
    # within the two approximations' errors together (2.8e-7 + 1.7e-7) and a rounding
    np.testing.assert_allclose(z[0], np.tanh(x64[::100]) / (1 + np.exp(x64[::100])), rtol=0, atol=5e-7)


def test_exp_is_within_two_ulp_of_numpy_and_block_sums_add_in_class_order():
    x = -np.concatenate([np.linspace(0, 760, 200_001), [1e-300, 708.5, 745.1, 1e6, np.inf]])
    x = np.concatenate([x, np.zeros(-len(x) % 64)])  # whole groups of 8 blocks
    out = np.empty_like(x)
    n_blocks = len(x) // 8
    weights = np.random.default_rng(0).standard_normal(len(x))
    totals, weighted = np.empty(n_blocks), np.empty(n_blocks)
    exp_block_sums(x, out, weights, totals, weighted)
    ref = np.exp(x)
    assert (np.abs(out - ref) <= 2 * np.spacing(ref)).all()
    assert out[200_004] == out[200_005] == 0 and out[0] == 1
    # block j's classes are x[i * n_blocks + j] for i = 0 .. 7 (kernels.block_major): added in that order from 0
    want, want_weighted = np.zeros(n_blocks), np.zeros(n_blocks)
    for i in range(8):
        row = slice(i * n_blocks, (i + 1) * n_blocks)
        want, want_weighted = want + out[row], want_weighted + out[row] * weights[row]
    np.testing.assert_array_equal(totals, want)
    np.testing.assert_array_equal(weighted, want_weighted)


@pytest.mark.parametrize("B", [1, 2, 3, 5, 8, 13, 32])
def test_matmul_acc_matches_numpy(B):
    rng = np.random.default_rng(B)
    for K, O in [(1, 8), (16, 16), (64, 128), (128, 128), (64, 256), (24, 136)]:
        x, w = rng.standard_normal((B, K), dtype=np.float32), rng.standard_normal((K, O), dtype=np.float32)
        y = rng.standard_normal((B, O), dtype=np.float32)
        expected = y + x.astype(np.float64) @ w
        matmul_acc(y, x, w)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    # strided views: rows of a wider array
    wide, w = rng.standard_normal((B, 192), dtype=np.float32), rng.standard_normal((64, 192), dtype=np.float32)
    x = rng.standard_normal((B, 64), dtype=np.float32)
    expected = wide[:, 64:] + x.astype(np.float64) @ w[:, 64:]
    matmul_acc(wide[:, 64:], x, w[:, 64:])
    np.testing.assert_allclose(wide[:, 64:], expected, rtol=1e-5, atol=1e-4)


# -- equality with the PyTorch reference ------------------------------------------------------------------------------


@pytest.mark.parametrize("features", ["frames", "keypoints", "both"])
@pytest.mark.parametrize("n_labels", [0, 3])
def test_teacher_forced_logits_equal_the_sequence_pass(features, n_labels):
    model = build(features, n_labels)
    T = 2 * model.receptive_field + 37  # more than a receptive field, and not whole frames
    codes, cond, src = movement(model, T, batch=3)
    expected = model.teacher_forced(codes, cond, _t(src)).detach().numpy()
    gen = FastGenerator(model)
    state = gen.init_state(cond[:, 0])
    _assert_state_equal(state, model.init_state(cond[:, 0]), gen)
    got = gen.teacher_forced_logits(codes.numpy(), cond.numpy(), state, src)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert state.t == T


def test_teacher_forced_logits_default_config():
    model = MoveNet(ModelConfig(n_labels=3)).eval()
    T = model.receptive_field + 300
    codes, _, keypoints, labels = inputs(model.config, T, batch=2)
    src = source(model.config, T, batch=2)
    with torch.no_grad():
        cond = model.condition(keypoints=keypoints, labels=labels)
        expected = model.teacher_forced(codes, cond, src).numpy()
    gen = FastGenerator(model)
    got = gen.teacher_forced_logits(codes.numpy(), cond.numpy(), gen.init_state(cond[:, 0]), src.numpy())
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("features,n_labels,temperature,spread", [
    ("frames", 3, 1.0, 1.0), ("keypoints", 0, 0.7, 1.0), ("both", 3, 1.3, 0.3), ("frames", 0, 0.0, 0.3),
    ("keypoints", 3, 1.0, 0.0)])
def test_samples_equal_the_pytorch_step_loop(features, n_labels, temperature, spread):
    model = build(features, n_labels)
    n_frames = 3 * model.config.context_frames + 5
    n = n_frames * model.config.hop
    _, cond, src = movement(model, n, batch=3, seed=1)
    u = np.stack([np.random.default_rng(seed).random(n) for seed in (10, 11, 12)])
    codes, margins, ref_state = reference_samples(model, cond, temperature, u, src, spread)
    gen = FastGenerator(model)
    state = gen.init_state(cond[:, 0])
    fast = gen.generate(cond.numpy(), src, state, temperature, u, spread=spread)
    assert fast.dtype == np.uint8 and fast.shape == (3, n)
    _assert_same_samples(gen, cond.numpy(), src, temperature, u, fast, codes, margins, spread)
    if (fast == codes).all():  # as with these seeds
        _assert_state_equal(state, ref_state, gen)
        np.testing.assert_array_equal(state.prev_codes, codes[:, -1])


def test_samples_equal_the_pytorch_step_loop_default_config():
    torch.manual_seed(0)
    model = MoveNet(ModelConfig()).eval()
    n = 400
    _, _, keypoints, _ = movement_inputs(model.config, n, batch=1)
    src = source(model.config, n, batch=1).numpy()
    with torch.no_grad():
        cond = model.condition(keypoints=keypoints)
    u = np.random.default_rng(5).random((1, n))
    codes, margins, _ = reference_samples(model, cond, 1.0, u, src)
    gen = FastGenerator(model)
    fast = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 1.0, u, spread=1.0)
    _assert_same_samples(gen, cond.numpy(), src, 1.0, u, fast, codes, margins)


def test_temperature_zero_is_argmax():
    model = build()
    n = 6 * model.config.hop
    _, cond, src = movement(model, n, batch=2)
    gen = FastGenerator(model)
    codes = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 0.0, np.random.default_rng(0).random((2, n)))
    logits = gen.teacher_forced_logits(codes, cond.numpy(), gen.init_state(cond[:, 0]), src)
    gated = src[..., loudness_channel(model.config)] < SILENT_AMPLITUDE  # the silence gate (test below)
    assert 0 < gated.mean() < 1
    np.testing.assert_array_equal(codes, np.where(gated, SILENCE, logits.argmax(-1)))


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_the_silence_gate_plays_silence_where_the_controls_are_silent(engine):
    """Where the source's loudness channel is below a sine's amplitude at SILENT_DB, the code is silence whatever
    the WaveNet would draw; elsewhere, and in a model without a source, nothing is gated."""
    from movenet.generate import make_engine

    model = build()
    hop = model.config.hop
    n = 8 * hop
    _, cond, src = movement(model, n, batch=2)
    channel = loudness_channel(model.config)
    src[..., channel] = 0.5  # loud everywhere ...
    src[0, 2 * hop: 5 * hop, channel] = 0.0  # ... but stream 0's frames 2-4, which the controls call silent
    src[1, 2 * hop: 5 * hop, channel] = 1.01 * SILENT_AMPLITUDE  # stream 1 just above the gate there
    runner = make_engine(model, engine)
    u = np.random.default_rng(2).random((2, n))
    codes = runner.generate(cond.numpy(), src, runner.init_state(cond[:, 0]), 1.0, u)
    assert (codes[0, 2 * hop: 5 * hop] == SILENCE).all()
    assert (codes[0, :2 * hop] != SILENCE).mean() > 0.5 and (codes[0, 5 * hop:] != SILENCE).mean() > 0.5
    assert (codes[1, 2 * hop: 5 * hop] != SILENCE).mean() > 0.5
    assert loudness_channel(build(controls=False).config) == -1


# -- chunks, streams, memory ------------------------------------------------------------------------------------------


def test_frame_by_frame_equals_one_shot():
    model = build(features="both")
    hop = model.config.hop
    n_frames = 12
    _, cond, src = movement(model, n_frames * hop, batch=3)
    cond = cond.numpy()
    u = np.random.default_rng(3).random((3, n_frames * hop))
    gen = FastGenerator(model)
    one = gen.init_state(cond[:, 0])
    whole = gen.generate(cond, src, one, 1.0, u)
    by_frame = gen.init_state(cond[:, 0])
    frames = np.concatenate([gen.generate(cond[:, k: k + 1], _cut(src, k * hop, (k + 1) * hop), by_frame, 1.0,
                                          u[:, k * hop: (k + 1) * hop]) for k in range(n_frames)], axis=1)
    np.testing.assert_array_equal(frames, whole)
    # and pieces that do not follow frames: row i of cond_rows is frame state.t // hop + i
    ragged, pieces, t = gen.init_state(cond[:, 0]), [], 0
    for n in (1, 5, hop, 3 * hop + 7, n_frames * hop):
        n = min(n, n_frames * hop - t)
        pieces.append(gen.generate(cond[:, t // hop:], _cut(src, t, t + n), ragged, 1.0, u[:, t: t + n]))
        t += n
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    for a, b in [(one.buffers, by_frame.buffers), (one.buffers, ragged.buffers), (one.prev_codes, ragged.prev_codes),
                 (one.input_codes, ragged.input_codes)]:
        np.testing.assert_array_equal(a, b)
    assert one.t == by_frame.t == ragged.t == n_frames * hop


def test_threads_give_the_same_codes():
    model = build()
    n = 4 * model.config.hop
    _, cond, src = movement(model, n, batch=5)
    u = np.random.default_rng(4).random((5, n))
    gen = FastGenerator(model)
    one = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 1.0, u, threads=1)
    two = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 1.0, u, threads=2)
    np.testing.assert_array_equal(one, two)


def test_generate_checks_its_inputs():
    model = build()
    gen = FastGenerator(model)
    _, cond, src = movement(model, 32, batch=2)
    state = gen.init_state(cond[:, 0])
    with pytest.raises(ValueError, match="cond_rows"):
        gen.generate(cond.numpy()[:, :1], src[:, :17], state, 1.0, np.zeros((2, 17)))  # 17 samples need 2 frames
    with pytest.raises(ValueError, match="u must be"):
        gen.generate(cond.numpy(), src[:, :16], state, 1.0, np.zeros((3, 16)))
    with pytest.raises(ValueError, match="temperature"):
        gen.generate(cond.numpy(), src[:, :16], state, -1.0, np.zeros((2, 16)))
    with pytest.raises(ValueError, match="source"):
        gen.generate(cond.numpy(), None, state, 1.0, np.zeros((2, 16)))


@pytest.mark.parametrize("features,labels", [("frames", 2), ("keypoints", None)])
def test_streamer_plays_what_generate_makes_from_the_whole_video(features, labels):
    model = build(features, n_labels=3 if labels is not None else 0)
    c = model.config
    n_frames = 10
    _, frames, keypoints, _ = movement_inputs(c, n_frames * c.hop, batch=1, seed=2)
    with torch.no_grad():
        cond, head = model.encode(frames if c.uses_frames else None, keypoints if c.uses_keypoints else None,
                                  torch.tensor([labels]) if labels is not None else None)
    src = Excitation.of(c).render(controls.from_head(head.numpy()), SourceState.silent(1))
    gen = FastGenerator(model)
    codes = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 0.9,
                         np.random.default_rng(42).random((1, n_frames * c.hop)))
    styles = ["a", "b", "c"] if labels is not None else []
    loaded = Loaded(model, InputConfig(sample_rate=c.hop * 25, fps=25, frame_size=c.frame_size, features=features),
                    styles)
    streamer = Streamer(loaded, style=styles[labels] if styles else None, temperature=0.9, seed=42, generator=gen)
    movement_ = frames[0].numpy() if c.uses_frames else keypoints[0].numpy()
    played = [streamer.push(movement_[k]) for k in range(n_frames)]
    assert all(a.dtype == np.float32 and a.shape == (c.hop,) for a in played)
    # what the codes play: for a model that plays its kick directly (the default), with the source's kick
    np.testing.assert_array_equal(np.concatenate(played), controls.soundtrack(codes[0], src[0], c.plays_kick))
    assert streamer.frame_period == 1 / 25  # hop samples at the checkpoint's sample rate
    assert streamer.frame_period < streamer.latency < streamer.frame_period + 1.0


def test_chunked_conditioning_and_generation_equal_the_whole_video():
    model = build(features="both")
    c = model.config
    n_frames = 23
    _, frames, keypoints, labels = inputs(c, n_frames * c.hop, batch=2, seed=3)
    with torch.no_grad():
        cond, head = model.encode(frames, keypoints, labels)
    cond, played = cond.numpy(), controls.from_head(head.numpy())
    movements = [Movement(frames[b].numpy(), keypoints[b].numpy()) for b in range(2)]
    chunks = [[condition(model, m, int(label), s, min(s + 5, n_frames)) for m, label in zip(movements, labels)]
              for s in range(0, n_frames, 5)]
    np.testing.assert_allclose(np.concatenate([np.stack([p.rows for p in chunk]) for chunk in chunks], axis=1), cond,
                               rtol=1e-6, atol=1e-6)
    # the same controls, up to float32 rounding (a chunk's product may be blocked otherwise than the whole's)
    np.testing.assert_allclose(
        np.concatenate([np.stack([p.controls for p in chunk]) for chunk in chunks], axis=1), played, rtol=1e-6,
        atol=1e-6)
    src = Excitation.of(c).render(played, SourceState.silent(2))
    gen = FastGenerator(model)
    u = np.stack([np.random.default_rng(s).random(n_frames * c.hop) for s in (8, 9)])
    whole = gen.generate(cond, src, gen.init_state(cond[:, 0]), 1.0, u)
    pieces = list(generate_chunks(gen, model, movements, [int(x) for x in labels], seeds=(8, 9), chunk_frames=5))
    assert [p.shape[1] for p in pieces] == [5 * c.hop] * 4 + [3 * c.hop]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)


def test_memory_does_not_grow_with_length():
    """Generating N frames allocates the output and a fixed set of work arrays, whatever N."""
    model = build()
    gen = FastGenerator(model)
    hop = model.config.hop
    _, cond, src = movement(model, 200 * hop, batch=2)
    cond = cond.numpy()

    def allocations(n_frames):
        state = gen.init_state(cond[:, 0])
        u = np.random.default_rng(0).random((2, n_frames * hop))
        before = rtsys.get_allocation_stats().alloc
        tracemalloc.start()
        gen.generate(cond[:, :n_frames], src[:, : n_frames * hop], state, 1.0, u)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return rtsys.get_allocation_stats().alloc - before, peak

    _nrt_python.memsys_enable_stats()
    try:
        allocations(1)  # compile
        (short_count, short_peak), (long_count, long_peak) = allocations(2), allocations(200)
    finally:
        _nrt_python.memsys_disable_stats()
    assert short_count == long_count, "the compiled loop allocates per sample"
    output_growth = 2 * 198 * hop  # uint8 codes
    assert long_peak - short_peak <= output_growth + 4096


# ----------------------------------------------------------------------------------------------------------------
# Compact weights (bfloat16, multiplied in fp32)


def test_bfloat16_rounds_to_nearest_and_widens_back_exactly():
    from movenet.kernels import from_bf16, to_bf16

    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 10.0 ** np.arange(-4, 4).repeat(1250)
    back = from_bf16(to_bf16(x))
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0 ** -8)  # 8 bits of mantissa: half an ulp at most
    np.testing.assert_array_equal(from_bf16(to_bf16(back)), back)  # representable values are kept exactly
    assert to_bf16(np.float32([1.0 + 2 ** -8]))[0] == to_bf16(np.float32([1.0]))[0]  # a tie rounds to even


@pytest.mark.parametrize("features", ["frames", "keypoints"])
def test_bf16_weights_give_the_logits_of_fp32_within_their_rounding(features):
    from movenet.kernels import from_bf16

    model = build(features)
    c = model.config
    codes, cond, src = movement(model, 6 * c.hop, batch=3, seed=4)
    exact, compact = FastGenerator(model, "fp32"), FastGenerator(model, "bf16")
    assert compact.precision == "bf16" and compact.n_weight_bytes < 0.6 * exact.n_weight_bytes
    args = (codes.numpy(), cond.numpy())
    want = exact.teacher_forced_logits(*args, exact.init_state(cond[:, 0]), src)
    got = compact.teacher_forced_logits(*args, compact.init_state(cond[:, 0]), src)
    gen_rounded = FastGenerator(model, "fp32")
    for i in FastGenerator.MATRICES:  # the same matrices, rounded to bf16 and kept in fp32: what bf16 should compute
        gen_rounded.params[i][...] = from_bf16(compact.params[i])
    same = gen_rounded.teacher_forced_logits(*args, gen_rounded.init_state(cond[:, 0]), src)
    np.testing.assert_allclose(got, same, rtol=RTOL, atol=ATOL)  # bf16 path = rounded weights, to fp32 rounding
    spread = np.abs(want).max()
    assert 0 < np.abs(got - want).max() <= 0.02 * (1 + spread)  # and rounding moves the logits by ~1% at most


needs_bf16_dot = pytest.mark.skipif(not host_has_bf16_dot(), reason="this CPU has no AVX512-BF16")


@numba.njit
def _product(y, x, w, pairs):
    matmul(y, x, w, pairs)


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_one_streams_inline_product_matches_numpy(weights):
    """`matmul` on one row runs `_one_row`'s tiles inline: every width it splits into wide and narrower tiles, a
    width it hands to matmul_acc (not a multiple of 16), a strided view, bfloat16 weights widened."""
    from movenet.kernels import from_bf16, to_bf16

    rng = np.random.default_rng(7)
    pairs = np.zeros((1, 1), np.uint32)
    for K, O in [(1, 16), (75, 64), (32, 48), (32, 80), (32, 112), (16, 128), (33, 144), (32, 256), (8, 272), (5, 24)]:
        x, w = rng.standard_normal((1, K), dtype=np.float32), rng.standard_normal((K, O), dtype=np.float32)
        y = rng.standard_normal((1, O), dtype=np.float32)
        stored = to_bf16(w) if weights == "bf16" else w
        expected = y + x.astype(np.float64) @ (from_bf16(stored) if weights == "bf16" else w)
        _product(y, x, stored, pairs)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4, err_msg=f"{K} x {O}")
    wide, w = rng.standard_normal((1, 96), dtype=np.float32), rng.standard_normal((40, 96), dtype=np.float32)
    x = rng.standard_normal((1, 40), dtype=np.float32)
    expected = wide[:, 32:] + x.astype(np.float64) @ w[:, 32:]
    _product(wide[:, 32:], x, w[:, 32:], pairs)
    np.testing.assert_allclose(wide[:, 32:], expected, rtol=1e-5, atol=1e-4)


def test_inputs_pack_into_rounded_pairs_of_bfloat16():
    from movenet.kernels import pack_pairs, to_bf16, to_bf16_pairs

    x = np.random.default_rng(1).standard_normal((3, 7), dtype=np.float32)
    xp = np.full((3, 5), 0xFFFFFFFF, np.uint32)
    pack_pairs(x, xp)
    bf = np.concatenate([to_bf16(x), np.zeros((3, 1), np.uint16)], axis=1).astype(np.uint32)
    np.testing.assert_array_equal(xp[:, :4], bf[:, 0::2] | (bf[:, 1::2] << np.uint32(16)))  # 7th: high half zero
    assert (xp[:, 4] == 0xFFFFFFFF).all()  # nothing past the pairs is touched
    np.testing.assert_array_equal(to_bf16_pairs(x.T).T, xp[:, :4])  # weights pack the same way, along their rows


@needs_bf16_dot
@pytest.mark.parametrize("B", [1, 2, 3, 8, 13, 32])
def test_bf16_pair_products_are_the_exact_products_of_the_rounded_operands(B):
    from movenet.kernels import from_bf16, to_bf16, to_bf16_pairs

    rng = np.random.default_rng(B)
    for K, O in [(1, 8), (13, 20), (32, 64), (77, 64), (64, 128), (33, 256), (24, 136)]:
        x, w = rng.standard_normal((B, K), dtype=np.float32), rng.standard_normal((K, O), dtype=np.float32)
        y0 = rng.standard_normal((B, O), dtype=np.float32)
        xr, wr = (from_bf16(to_bf16(a)).astype(np.float64) for a in (x, w))
        expected, scale = y0 + xr @ wr, np.abs(y0) + np.abs(xr) @ np.abs(wr)
        y = y0.copy()
        _product(y, x, to_bf16_pairs(w), np.zeros((B, (K + 1) // 2 + 3), np.uint32))
        error = np.abs(y - expected)
        assert (error <= 2e-6 * scale).all()  # fp32 sums of exact products: only their rounding
        assert (np.abs(y - (y0 + x @ wr)) > 100 * error + 1e-6).any()  # the inputs were rounded too


@needs_bf16_dot
@pytest.mark.parametrize("features", ["frames", "keypoints"])
def test_bf16dot_gives_the_logits_of_fp32_within_the_rounding_of_its_operands(features):
    model = build(features)
    c = model.config
    codes, cond, src = movement(model, 6 * c.hop, batch=3, seed=4)
    exact, dot, compact = (FastGenerator(model, p) for p in ("fp32", "bf16dot", "bf16"))
    assert dot.precision == "bf16dot" and dot.n_weight_bytes < 0.6 * exact.n_weight_bytes
    assert dot.macs_per_sample == exact.macs_per_sample  # the pairs count the same multiply-adds
    args = (codes.numpy(), cond.numpy())
    want = exact.teacher_forced_logits(*args, exact.init_state(cond[:, 0]), src)
    got = dot.teacher_forced_logits(*args, dot.init_state(cond[:, 0]), src)
    weights_only = compact.teacher_forced_logits(*args, compact.init_state(cond[:, 0]), src)
    spread = np.abs(want).max()
    assert 0 < np.abs(got - want).max() <= 0.03 * (1 + spread)  # rounding weights and inputs: ~1 % at most
    assert np.abs(got - weights_only).max() > 0  # the inputs were rounded too
    # one stream alone gives the logits it gives in a batch: the pairs are packed per row
    alone = dot.teacher_forced_logits(args[0][1:2], args[1][1:2], dot.init_state(cond[1:2, 0]), src[1:2])
    np.testing.assert_allclose(alone[0], got[1], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "bf16dot", "int8"])
def test_compact_weights_keep_each_past_taps_rows_apart(precision):
    """A kernel of 3 (two past taps a layer, 5 residual channels: odd, so a tap's bfloat16 pairs would straddle the
    next tap's rows if the taps were packed together): each compact precision's logits lie as near fp32's as with
    one tap."""
    from movenet.int8 import host_has_vnni

    if (precision == "bf16dot" and not host_has_bf16_dot()) or (precision == "int8" and not host_has_vnni()):
        pytest.skip(f"this CPU cannot run {precision}")
    model = build("keypoints", residual_channels=5, gate_channels=32, skip_channels=16, kernel_size=3)
    codes, cond, src = movement(model, 4 * model.config.hop, batch=2, seed=3)
    exact, compact = FastGenerator(model, "fp32"), FastGenerator(model, precision)
    args = (codes.numpy(), cond.numpy())
    want = exact.teacher_forced_logits(*args, exact.init_state(cond[:, 0]), src)
    got = compact.teacher_forced_logits(*args, compact.init_state(cond[:, 0]), src)
    assert np.abs(got - want).max() <= 0.02 * (1 + np.abs(want).max())


def test_bf16dot_is_refused_on_a_cpu_without_it(monkeypatch):
    from movenet import fastgen

    monkeypatch.setattr(fastgen, "host_has_bf16_dot", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16"):
        FastGenerator(build(), "bf16dot")
    assert FastGenerator(build(), "auto").precision in ("fp32", "bf16")


def test_auto_is_fp32_without_avx2_or_on_an_intel_cpu_whose_l2_holds_the_weights_twice_int8_on_others_with_vnni(
        monkeypatch):
    from movenet import fastgen

    fits = build("keypoints", residual_channels=16, gate_channels=32, skip_channels=16)  # int8's whole vectors
    narrow = build()  # gate channels 16: int8 does not take it
    fp32_bytes = FastGenerator(fits, "fp32").n_weight_bytes
    cases = [  # (model, Intel?, L2 bytes, VNNI?, wanted)
        (fits, True, 2 * fp32_bytes, True, "fp32"), (fits, True, 2 * fp32_bytes - 1, True, "bf16"),
        (fits, True, 0, False, "bf16"),  # 0: the size is unknown
        (fits, False, 100 * fp32_bytes, True, "int8"), (fits, False, 100 * fp32_bytes, False, "bf16"),
        (narrow, False, 100 * fp32_bytes, True, "bf16")]
    for model, intel, l2, vnni, want in cases:
        monkeypatch.setattr(fastgen, "host_is_intel", lambda intel=intel: intel)
        monkeypatch.setattr(fastgen, "host_cache_bytes", lambda level, l2=l2: l2 if level == 2 else 10**9)
        monkeypatch.setattr(fastgen, "host_has_vnni", lambda vnni=vnni: vnni)
        monkeypatch.setattr(fastgen, "host_has_avx2", lambda: True)
        assert FastGenerator(model, "auto").precision == want, (intel, l2, vnni)
        monkeypatch.setattr(fastgen, "host_has_avx2", lambda: False)  # SSE or AVX only: bf16's widening costs more
        assert FastGenerator(model, "auto").precision == "fp32", (intel, l2, vnni)


@pytest.mark.skipif(not os.path.isdir("/sys/devices/system/cpu/cpu0/cache"), reason="no sysfs cache sizes here")
def test_the_host_cache_sizes_are_read_and_grow_with_the_level():
    from movenet.kernels import host_cache_bytes

    l1, l2 = host_cache_bytes(1), host_cache_bytes(2)
    assert 16 << 10 <= l1 < l2  # every x86 core of the last decade: 32-48 KB of L1 data, 0.25-2 MB of L2
    assert host_cache_bytes(9) == 0


needs_amx = pytest.mark.skipif(not host_has_amx(), reason="no AMX tiles on this CPU (or not for this process)")


@needs_amx
@pytest.mark.parametrize("features", ["frames", "keypoints"])
def test_amx_gives_the_logits_of_bf16dot_within_the_rounding_of_its_sums(features):
    """The tiles multiply the operands bf16dot multiplies (rounded weights and inputs), with fp32 sums of their own
    order: the logits lie within fp32 rounding of bf16dot's, and as far from fp32's. Each stream's logits are its
    own: one stream alone (one tile row of 16) gives what it gives beside others, bit for bit."""
    model = build(features, residual_channels=16, gate_channels=32, skip_channels=16)  # whole tiles of columns
    c = model.config
    codes, cond, src = movement(model, 6 * c.hop, batch=3, seed=4)
    exact, dot, tiles = (FastGenerator(model, p) for p in ("fp32", "bf16dot", "amx"))
    assert tiles.precision == "amx" and tiles.macs_per_sample == exact.macs_per_sample
    args = (codes.numpy(), cond.numpy())
    want = exact.teacher_forced_logits(*args, exact.init_state(cond[:, 0]), src)
    pairs = dot.teacher_forced_logits(*args, dot.init_state(cond[:, 0]), src)
    got = tiles.teacher_forced_logits(*args, tiles.init_state(cond[:, 0]), src)
    spread = np.abs(want).max()
    assert 0 < np.abs(got - want).max() <= 0.03 * (1 + spread)
    assert np.abs(got - pairs).max() <= 0.01 * (1 + spread)
    alone = tiles.teacher_forced_logits(args[0][1:2], args[1][1:2], tiles.init_state(cond[1:2, 0]), src[1:2])
    np.testing.assert_array_equal(alone[0], got[1])
    u = np.random.default_rng(0).random((3, 4 * c.hop))
    together = tiles.generate(cond.numpy(), src[:, : 4 * c.hop], tiles.init_state(cond[:, 0]), 1.0, u)
    for b in range(3):  # and so a live server's streams play what generate makes of each alone
        one = tiles.generate(cond.numpy()[b: b + 1], src[b: b + 1, : 4 * c.hop], tiles.init_state(cond[b: b + 1, 0]),
                             1.0, u[b: b + 1])
        np.testing.assert_array_equal(one[0], together[b])


@pytest.mark.parametrize("precision", ["fp32", "bf16"] + (["bf16dot"] if host_has_bf16_dot() else []))
def test_a_stream_plays_the_same_codes_alone_as_beside_others(precision):
    """One stream's products run inline, a batch's in tiles of several rows (and 5 streams: 4-, then 1-row ones):
    every output sums its inputs in one order whatever the tile, so `auto`, which never depends on the batch, lets a
    live server's streams play what generate makes of each alone, bit for bit."""
    model = build("keypoints", n_labels=0, residual_channels=16, gate_channels=32, skip_channels=16)
    c = model.config
    codes, cond, src = movement(model, 4 * c.hop, batch=5, seed=6)
    gen = FastGenerator(model, precision)
    logits = gen.teacher_forced_logits(codes.numpy(), cond.numpy(), gen.init_state(cond[:, 0]), src)
    for b in (0, 4):  # a first row of the 4-row tiles, and the row alone after them
        alone = gen.teacher_forced_logits(codes.numpy()[b: b + 1], cond.numpy()[b: b + 1],
                                          gen.init_state(cond[b: b + 1, 0]), src[b: b + 1])
        np.testing.assert_array_equal(alone[0], logits[b])
    u = np.random.default_rng(1).random((5, 4 * c.hop))
    together = gen.generate(cond.numpy(), src, gen.init_state(cond[:, 0]), 1.0, u)
    assert len(np.unique(together)) > 20  # they play, not a silence that any order would give
    for b in range(5):
        one = gen.generate(cond.numpy()[b: b + 1], src[b: b + 1], gen.init_state(cond[b: b + 1, 0]), 1.0, u[b: b + 1])
        np.testing.assert_array_equal(one[0], together[b])


def test_amx_is_refused_where_the_cpu_has_none_or_the_model_has_no_whole_tiles(monkeypatch):
    from movenet import fastgen

    if host_has_amx():  # the tiles' columns: 16 at a time
        with pytest.raises(ValueError, match="multiples of 16"):
            FastGenerator(build(gate_channels=24), "amx")
    monkeypatch.setattr(fastgen, "host_has_amx", lambda: False)
    with pytest.raises(ValueError, match="AMX"):
        FastGenerator(build(), "amx")


def test_compact_samples_follow_the_same_statistics_as_fp32(tmp_path):
    """The shipped model on held-out synthetic dancers: pitch accuracy and loudness following of bf16's audio (and
    bf16dot's, amx's and int8's, where the CPU has them) within sampling noise of fp32's (the same seeds, two per
    clip; samples part ways after the first rounding flip)."""
    from movenet.int8 import host_has_vnni
    from movenet import checkpoint, demo, metrics, pose, synth, video
    from movenet.generate import generate_audio
    from movenet.movement import read_movement

    loaded = checkpoint.load(demo.SHIPPED)
    scores = ({"fp32": [], "bf16": []} | ({"bf16dot": []} if host_has_bf16_dot() else {})
              | ({"amx": []} if host_has_amx() else {}) | ({"int8": []} if host_has_vnni() else {}))
    for clip in synth.write_dataset(tmp_path, n_clips=3, seconds=6.0, seed=321, progress=False):
        sidecar = pose.read_sidecar(clip)
        movement = read_movement(clip, loaded.inputs)
        truth = video.read_audio(clip, 16000)
        label = loaded.label_index(sidecar["style"])
        for precision in scores:
            for seed in (5, 6):
                wav = generate_audio(loaded, movement, label, seed=seed, progress=False, precision=precision)
                m = metrics.clip_metrics(wav, 16000, 25, keypoints=np.asarray(sidecar["joints"], np.float32),
                                         sidecar=sidecar, reference_wav=truth[: len(wav)])
                scores[precision].append((m["pitch_accuracy"], m["loudness_following"]))
    fp32 = np.array(scores.pop("fp32")).mean(0)
    # the model plays the dancers (else the comparison says nothing): chance is about 0 for both; on these three
    # 6 s clips loudness following moves by 0.03-0.1 a clip with the seed (one kick's tail more or less), so each
    # precision's mean is over two seeds (with one, bf16dot once came out 0.067 above fp32)
    assert fp32[0] > 0.6 and fp32[1] > 0.6
    for precision, got in scores.items():
        compact = np.array(got).mean(0)
        assert abs(compact[0] - fp32[0]) < 0.05 and abs(compact[1] - fp32[1]) < 0.05, (precision, fp32, compact)


def test_the_engines_weights_start_on_cache_lines():
    """The tiles load 64 bytes of weights at once: each array of FastGenerator.params starts on a cache line, and
    holds the values it was made from."""
    from movenet.kernels import aligned

    model = build("keypoints")
    for precision in ("fp32", "bf16"):
        gen = FastGenerator(model, precision)
        assert all(p.ctypes.data % 64 == 0 and p.flags.c_contiguous for p in gen.params)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1:]
    copy = aligned(a)
    assert copy.ctypes.data % 64 == 0 and copy.dtype == a.dtype and np.array_equal(copy, a)


# Older x86 than this host, as numba builds for them (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES; kernels._host_features):
# x86-64-v3 (Intel Haswell, AMD Zen 1 and later: AVX2 and FMA, no AVX-512), whose narrow tiles and two-factor exp
# an AVX-512 host otherwise never compiles, and x86-64-v2 (SSE4.2 only: x86 before 2011, Atom, Celeron and Pentium
# Silver cores until 2021), where the multiply-adds are a multiply and an add (kernels._fma).
OTHER_CPUS = {
    "avx2": {"NUMBA_CPU_NAME": "haswell",
             "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,"
                                   "+invpcid,+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,"
                                   "+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt"},
    "sse4.2": {"NUMBA_CPU_NAME": "nehalem",
               "NUMBA_CPU_FEATURES": "+64bit,+cmov,+cx16,+cx8,+fxsr,+mmx,+popcnt,+sahf,+sse,+sse2,+sse3,+sse4.1,"
                                     "+sse4.2,+ssse3"}}
# the engine's tests that hold on any CPU, for those builds (with the first, which fails a build that silently
# stayed AVX-512 rather than passing everything again)
ON_ANY_CPU = ["the_kernels_compile_for", "exp_is_within", "compiled_sampler_equals", "tanh_and_sigmoid",
              "matmul_acc_matches", "samples_equal_the_pytorch", "frame_by_frame", "bf16_weights_give",
              "inline_product", "same_codes_alone", "auto_is", "bf16dot_is_refused", "int8_is_refused"]


def test_the_kernels_compile_for_the_cpu_numba_compiles_for():
    """The tiles' width follows the instruction sets numba targets (the host's, or NUMBA_CPU_FEATURES's), and the
    code is that target's: 512-bit registers exactly where AVX-512 is on, 256-bit ones where AVX is, and a fused
    multiply-add exactly where FMA is."""
    from movenet import kernels
    from movenet.kernels import _gemm_block

    @numba.njit  # not cached, so that its machine code can be read back
    def tile(y, x, w):
        _gemm_block(y, x, w, 0, 0, 4, 16, 0)

    y = np.zeros((4, 16), np.float32)
    x, w = np.ones((4, 8), np.float32), np.full((8, 16), 0.5, np.float32)
    tile(y, x, w)
    np.testing.assert_array_equal(y, x @ w)
    features = kernels._host_features()
    assert kernels.WIDE_TILES == bool(features.get("avx512f"))
    assert kernels.HAS_FMA == bool(features.get("fma"))
    code = "".join(tile.inspect_asm().values())
    registers = set(re.findall(r"%([xyz])mm\d", code))
    assert ("z" in registers) == kernels.WIDE_TILES and bool(registers & {"y", "z"}) == bool(features.get("avx"))
    assert ("vfmadd" in code) == kernels.HAS_FMA


@pytest.mark.skipif("NUMBA_CPU_FEATURES" in os.environ, reason="a build for another CPU is running these")
@pytest.mark.parametrize("cpu", OTHER_CPUS)
def test_older_cpus_pass_the_engines_tests(cpu):
    """"Any x86 CPU": the engine's tests that hold on any CPU, run again in a process of their own with numba
    compiling for an older one (about a minute each with a cold cache)."""
    import subprocess
    import sys

    here = os.path.dirname(__file__)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                             os.path.join(here, "test_int8.py"), os.path.join(here, "test_sampling.py"),
                             "-k", " or ".join(ON_ANY_CPU)], env={**os.environ, **OTHER_CPUS[cpu]},
                            capture_output=True, text=True, timeout=1200, cwd=os.path.dirname(here))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 40, result.stdout[-2000:]


def test_compiled_code_is_dropped_when_any_source_of_the_package_changes(tmp_path):
    """numba checks a cached function against its own file only; kernels.py's intrinsics live on inside fastgen's
    cached loops, so the package drops all its cached code when any of its sources changes (movenet/__init__)."""
    import shutil
    import subprocess
    import sys

    package = tmp_path / "movenet"
    shutil.copytree(os.path.dirname(controls.__file__), package,
                    ignore=shutil.ignore_patterns("__pycache__", "assets", "web"))
    cache = package / "__pycache__"

    def import_it():
        subprocess.run([sys.executable, "-c", "import movenet"], cwd=tmp_path, check=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})

    import_it()  # the first import stamps the sources
    compiled = [cache / "fastgen._sample-1.py311.nbi", cache / "fastgen._sample-1.py311.0.nbc"]
    for f in compiled:
        f.write_bytes(b"machine code")
    import_it()
    assert all(f.exists() for f in compiled)  # nothing changed: kept
    with open(package / "kernels.py", "a") as f:
        f.write("\n# an update\n")
    import_it()
    assert not any(f.exists() for f in compiled)  # dropped, fastgen.py untouched as it was
    assert (cache / "compiled-sources.sha256").exists() and not list(cache.glob("*.tmp"))
