"""Precision int8 (movenet.int8): the quantized weights and inputs, the integer products, the fused layer, and the
engine built on them against fp32: its logits within the quantization's bound, each stream's values its own, and
live streams that play what generate makes."""

import numpy as np
import pytest
from tests.test_fastgen import build, movement
from tests.test_stream import dancers, loaded_model, offline

from movenet.fastgen import FUSED_STREAMS, FastGenerator
from movenet.int8 import (Z_SCALE, StackShape, from_int8_quads, gated_quads, host_has_vnni, int8_acc, pack_quads,
                          to_int8_quads)
from movenet.movement import BLOCK_FRAMES
from movenet.stream import Streams

needs_vnni = pytest.mark.skipif(not host_has_vnni(), reason="this CPU has no AVX512-VNNI")
# whole vectors of the fused layer: G / 2 a multiple of 16
SHAPES = dict(residual_channels=16, gate_channels=32, skip_channels=16)


def quantized_rows(x):
    """What pack_quads should store, in numpy: the bytes [B, 4 Kq] (offset by 128) and the scales [B]."""
    B, K = x.shape
    Kq = -(-K // 4)
    top = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore"):
        inverse = np.where(top > 0, np.float32(127) / top, np.float32(0)).astype(np.float32)
    q = np.full((B, 4 * Kq), 128, np.uint8)
    q[:, :K] = (np.rint(x * inverse[:, None]) + 128).astype(np.uint8)
    return q, (top / np.float32(127)).astype(np.float32)


def test_weights_quantize_per_column_within_half_a_step():
    rng = np.random.default_rng(0)
    for K, O in [(1, 16), (7, 20), (32, 64), (75, 64)]:
        w = rng.standard_normal((2, K, O), dtype=np.float32) * rng.uniform(0.01, 10, O).astype(np.float32)
        w[0, :, 3] = 0  # a column of zeros quantizes to zeros
        q = to_int8_quads(w)
        assert q.dtype == np.int8 and q.shape == (2, -(-K // 4) + 2, 4 * O)
        back = from_int8_quads(q, K)
        step = np.abs(w).max(axis=1, keepdims=True) / 127
        assert (np.abs(back - w) <= 0.5 * step * (1 + 1e-6)).all()
        assert (back[0, :, 3] == 0).all()
        words = q.view(np.int32)  # the accumulators' start: -128 times each column's sum of quantized weights
        np.testing.assert_allclose(words[:, -1] * words[:, -2].view(np.float32), -128 * back.sum(axis=1), rtol=1e-5,
                                   atol=1e-4)


@needs_vnni
def test_inputs_quantize_per_row_and_touch_nothing_past_their_words():
    rng = np.random.default_rng(1)
    for K in (1, 3, 4, 5, 11, 16, 17, 32, 33, 64, 75):
        x = rng.standard_normal((4, K), dtype=np.float32) * np.float32([1, 100, 0.01, 0])[:, None]
        xq = np.full((4, K + 20), 0xDEADBEEF, np.uint32)
        pack_quads(x, xq)
        Kq = -(-K // 4)
        want, scales = quantized_rows(x)
        np.testing.assert_array_equal(xq[:, :Kq].copy().view(np.uint8), want, err_msg=str(K))
        np.testing.assert_array_equal(xq[:, Kq].view(np.float32), scales)
        assert (xq[:, Kq + 1:] == 0xDEADBEEF).all()
    wide = rng.standard_normal((3, 40), dtype=np.float32)  # strided rows, into a ring of uint32 rows
    ring = np.zeros((3, 5, 11), np.uint32)
    pack_quads(wide[:, 8:], ring[:, 2])
    want, _ = quantized_rows(wide[:, 8:])
    np.testing.assert_array_equal(ring[:, 2, :8].copy().view(np.uint8), want)
    assert (ring[:, [0, 1, 3, 4]] == 0).all()


@needs_vnni
@pytest.mark.parametrize("B", [1, 2, 3, 5, 8, 13, 32])
def test_int8_products_are_the_exact_integer_sums_scaled_once(B):
    """y += float(sum of quantized products) * (scale_w * scale_x), the sum exact: whatever the tile (8, 4, 2, 1
    rows; 32, 64 or 16 columns; plain loops past the last 16), each output is one rounding from its integers; a
    bias is one more rounding after it."""
    rng = np.random.default_rng(B)
    for K, O in [(1, 16), (13, 20), (32, 64), (77, 64), (64, 128), (33, 256), (24, 136)]:
        x, w = rng.standard_normal((B, K), dtype=np.float32), rng.standard_normal((K, O), dtype=np.float32)
        y0 = rng.standard_normal((B, O), dtype=np.float32)
        xq = np.zeros((B, K // 4 + 3), np.uint32)
        pack_quads(x, xq)
        wq = to_int8_quads(w)
        x_bytes, x_scales = quantized_rows(x)
        w_scales = wq.view(np.int32)[-2].view(np.float32)
        exact = (x_bytes[:, :K].astype(np.int64) - 128) @ np.rint(from_int8_quads(wq, K) / w_scales).astype(np.int64)
        want = y0 + exact * (w_scales[None, :].astype(np.float64) * x_scales[:, None])
        y = y0.copy()
        int8_acc(y, xq, wq)
        np.testing.assert_allclose(y, want, rtol=2e-6, atol=2e-5 * np.abs(want).max(), err_msg=f"{K} x {O}")
        assert np.abs(y - (y0 + x.astype(np.float64) @ w)).max() < 0.05 * np.abs(x @ w).max()  # and near x @ w
        # a bias over the first columns is added after the product's rounding, as a later addition would be
        bias = rng.standard_normal(O - O // 3, dtype=np.float32)
        biased = y0.copy()
        int8_acc(biased, xq, wq, bias)
        y[:, : bias.shape[0]] += bias
        np.testing.assert_array_equal(biased, y, err_msg=f"{K} x {O}")


@needs_vnni
@pytest.mark.parametrize("B", [1, 3, 6])
def test_the_fused_layer_is_its_products_gate_and_rounding(B):
    """h = hc + the past taps', the source's and the input's int8 products; z = tanh(h_f) * sigmoid(h_g) to within
    2e-3 (its approximant: an eighth of z's step), stored as round(127 z) + 128: each byte within one of numpy's
    from the exact gate, most equal, and Z_SCALE after them."""
    rng = np.random.default_rng(B)
    C, E, G, taps = 20, 11, 64, 2
    hc = rng.standard_normal((B, G), dtype=np.float32)
    ring = np.zeros((B, 7, C // 4 + 1), np.uint32)
    past = [rng.standard_normal((B, C), dtype=np.float32) for _ in range(taps)]
    slots = np.array([4, 1], np.int64)
    for x, slot in zip(past, slots):
        pack_quads(x, ring[:, slot])
    source, now = rng.standard_normal((B, E), dtype=np.float32), rng.standard_normal((B, C), dtype=np.float32)
    source_q, input_q = np.zeros((B, 5), np.uint32), np.zeros((B, 7), np.uint32)
    pack_quads(source, source_q)
    pack_quads(now, input_q)
    w_past = rng.standard_normal((taps, C, G), dtype=np.float32) * 0.3
    w_source, w_input = (rng.standard_normal((n, G), dtype=np.float32) * 0.3 for n in (E, C))
    zq = np.zeros((B, G // 8 + 3), np.uint32)
    gated_quads(hc, ring, slots, source_q, input_q, to_int8_quads(w_past), to_int8_quads(w_source),
                to_int8_quads(w_input), zq)

    def product(x, w):  # the int8 product in float64: quantized rows times quantized columns
        q, s = quantized_rows(x)
        return ((q[:, : x.shape[1]].astype(np.float64) - 128) * s[:, None]) @ from_int8_quads(to_int8_quads(w),
                                                                                                 w.shape[0])

    h = hc + sum(product(x, w) for x, w in zip(past, w_past)) + product(source, w_source) + product(now, w_input)
    z = np.tanh(h[:, : G // 2]) / (1 + np.exp(-h[:, G // 2:]))
    got = zq[:, : G // 8].copy().view(np.uint8).astype(np.int64) - 128
    assert np.abs(got - np.rint(127 * z)).max() <= 1 and (got == np.rint(127 * z)).mean() > 0.9
    assert np.abs(got / 127 - z).max() <= 0.5 / 127 + 2e-3
    assert (zq[:, G // 8].view(np.float32) == Z_SCALE).all()


@needs_vnni
@pytest.mark.parametrize("features", ["frames", "keypoints"])
def test_int8_gives_the_logits_of_fp32_within_the_quantizations_bound(features):
    model = build(features, **SHAPES)
    c = model.config
    codes, cond, src = movement(model, 6 * c.hop, batch=3, seed=4)
    exact, quantized = FastGenerator(model, "fp32"), FastGenerator(model, "int8")
    assert quantized.precision == "int8" and quantized.n_weight_bytes < 0.6 * exact.n_weight_bytes  # w2 in fp32
    assert quantized.macs_per_sample == exact.macs_per_sample
    args = (codes.numpy(), cond.numpy())
    want = exact.teacher_forced_logits(*args, exact.init_state(cond[:, 0]), src)
    got = quantized.teacher_forced_logits(*args, quantized.init_state(cond[:, 0]), src)
    spread = np.abs(want).max()
    assert 0 < np.abs(got - want).max() <= 0.02 * (1 + spread)  # observed: 0.004
    # one stream alone gives the logits it gives in a batch, bit for bit: every row is quantized on its own
    alone = quantized.teacher_forced_logits(args[0][1:2], args[1][1:2], quantized.init_state(cond[1:2, 0]), src[1:2])
    np.testing.assert_array_equal(alone[0], got[1])
    u = np.random.default_rng(0).random((3, 4 * c.hop))
    together = quantized.generate(cond.numpy(), src[:, : 4 * c.hop], quantized.init_state(cond[:, 0]), 1.0, u)
    assert len(np.unique(together)) > 20
    for b in range(3):
        one = quantized.generate(cond.numpy()[b: b + 1], src[b: b + 1, : 4 * c.hop],
                                 quantized.init_state(cond[b: b + 1, 0]), 1.0, u[b: b + 1])
        np.testing.assert_array_equal(one[0], together[b])


@needs_vnni
@pytest.mark.parametrize("overrides, fused", [
    (SHAPES, True), ({**SHAPES, "kernel_size": 3}, True), ({**SHAPES, "controls": False}, True),
    (dict(residual_channels=32, gate_channels=64, skip_channels=32), True),  # the default's widths
    ({**SHAPES, "residual_channels": 24}, False),  # no whole vectors of x: layer by layer, one stream too
])
def test_streams_one_by_one_give_what_the_layer_by_layer_batch_gives(overrides, fused):
    """Up to FUSED_STREAMS streams run one by one, each stream's layers and head in one pass (`int8.stack_row`,
    `int8.head_row`); a bigger batch runs layer by layer, all streams at once (`gated_quads`, `int8_acc`). The same
    operations in the same order: the same logits, codes and rings, bit for bit."""
    model = build("keypoints", **overrides)
    c = model.config
    gen = FastGenerator(model, "int8")
    assert bool(gen.stack) == fused
    B, n = FUSED_STREAMS + 2, 4 * c.hop
    codes, cond, src = movement(model, n, batch=B, seed=5)
    codes, cond = codes.numpy(), cond.numpy()
    pick = lambda a, rows: None if a is None else a[rows]  # noqa: E731
    batch = gen.teacher_forced_logits(codes, cond, gen.init_state(cond[:, 0]), src)
    for rows in ([0], [1, B - 1]):
        few = gen.teacher_forced_logits(codes[rows], cond[rows], gen.init_state(cond[rows, 0]), pick(src, rows))
        np.testing.assert_array_equal(few, batch[rows])
    u = np.random.default_rng(1).random((B, n))
    state = gen.init_state(cond[:, 0])
    together = gen.generate(cond, src, state, 1.0, u)
    assert len(np.unique(together)) > 20
    for b in (0, B - 1):
        alone = gen.init_state(cond[b: b + 1, 0])
        one = gen.generate(cond[b: b + 1], pick(src, slice(b, b + 1)), alone, 1.0, u[b: b + 1])
        np.testing.assert_array_equal(one[0], together[b])
        np.testing.assert_array_equal(alone.buffers[0], state.buffers[b])  # the rings, quantized alike


def test_the_fused_pass_takes_whole_vectors_of_a_bounded_width():
    default = (32, 64, 32, 3, 1, 256)  # C, G, S, source quads, past taps, logits
    assert StackShape(*default) and StackShape(16, 32, 16, 0, 2, 64)
    assert StackShape(*default).code != StackShape(16, 32, 16, 0, 2, 64).code  # each shape compiles its own
    for i, value in ((0, 24), (1, 48), (2, 8), (4, 0), (5, 200), (1, 512)):  # 32 x 512 residual x gate: too wide
        dims = list(default)
        dims[i] = value
        assert not StackShape(*dims), dims
    assert not StackShape()


@needs_vnni
def test_int8_streams_joining_and_leaving_play_what_generate_makes():
    """Live streams in int8 (their rings hold quantized rows): taken apart and joined as streams come and go, each
    plays what generate makes of it alone."""
    loaded = loaded_model("keypoints", **SHAPES)
    gen = FastGenerator(loaded.model, "int8")
    n_frames = BLOCK_FRAMES + 3
    moves = dancers(loaded.model.config, 2, n_frames)
    streams = Streams(loaded, gen)
    played = {"x": [], "y": []}
    for tick in range(n_frames):
        if tick == 0:
            streams.add("x", "a", 1.0, 1)
        if tick == 2:
            streams.add("y", "b", 1.0, 2)
        step = {"x": (None, moves[0].keypoints[tick])}
        if tick >= 2:
            step["y"] = (None, moves[1].keypoints[tick - 2])
        for key, pcm in streams.step(step).items():
            played[key].append(pcm)
    for k, (key, style, seed, first) in enumerate((("x", "a", 1, 0), ("y", "b", 2, 2))):
        alone = offline(loaded, moves[k].window(0, n_frames - first), style, 1.0, seed, gen)
        np.testing.assert_array_equal(np.concatenate(played[key]), alone, err_msg=key)


def test_int8_is_refused_where_the_cpu_has_none_or_the_model_has_no_whole_vectors(monkeypatch):
    from movenet import fastgen

    if host_has_vnni():
        for overrides in ({"gate_channels": 16}, {**SHAPES, "kernel_size": 1}):
            with pytest.raises(ValueError, match="multiples of 32"):
                FastGenerator(build("keypoints", **overrides), "int8")
    monkeypatch.setattr(fastgen, "host_has_vnni", lambda: False)
    with pytest.raises(ValueError, match="AVX512-VNNI"):
        FastGenerator(build("keypoints", **SHAPES), "int8")
    assert FastGenerator(build(), "auto").precision in ("fp32", "bf16")
