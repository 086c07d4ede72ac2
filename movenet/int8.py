"""int8 weights and activations on AVX512-VNNI (precision "int8" of `movenet.fastgen`): quantization, the products,
and each layer's dilated convolution and gate fused into one pass.

vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four products into one of 16 int32
lanes: 64 multiply-adds an instruction, four times an fp32 FMA's. Weights are quantized once, per output column
(symmetric, scale = the column's largest |w| / 127); a product's inputs per row (scale = the row's largest |x| / 127,
stored offset by 128 as unsigned bytes), where they are made. The sums are integers, exact in any order, and each
output is one rounding from them: y += float(sum) * (scale_w * scale_x), so a stream's values do not depend on the
rows beside it. The offset of 128 comes back out through the accumulators' start, -128 times the column's sum of
weights.

Layout of a weight matrix [K, O] (`to_int8_quads`): int8 [Kq + 2, 4 O] with Kq = ceil(K / 4). Row r < Kq holds, per
column o, the 4 weights of inputs 4r .. 4r + 3 (zero past K): one int32 lane of vpdpbusd's signed operand. Row Kq
holds each column's scale (float32 bits), row Kq + 1 its accumulators' start (int32). Inputs (`pack_quads`): a row
of uint32 words, quad r in word r, the row's scale (float32 bits) in word Kq.

Where the time goes. With K of 32-64, quantizing a product's inputs and turning its sums back into float32 cost as
much as the multiply-adds, so each layer's three products into h (past taps, source, input: `gated_quads`) run in one
pass with h in registers, its gate applied there (tanh a Padé approximant within 1e-3: `_emit_pade`), and z = tanh *
sigmoid (|z| < 1, and its rows' largest |z| is 1 to within 1% on the shipped model) stored as bytes with the fixed
scale 1 / 127, ready for the residual product.
The source is quantized once a sample for all layers, and each layer's input once, into its ring (which then holds
quads: the past taps are read as they were stored).
For one stream (a live instrument) the three calls a layer takes spend most of their instructions on addresses,
strides and arguments: 0.4 of its roofline. `stack_row` runs one stream's layers in one pass compiled for the
model's shape (`StackShape`), its residual and skip sums in registers throughout, and `head_row` its head: 1.7x the
three calls' samples per second (`movenet bench`, Zen 4), with the same values bit for bit, each layer then bound by
reading its weights from L2. A few streams run so one by one (`fastgen.FUSED_STREAMS`); more share each weight
read in the three calls.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import NativeValue, intrinsic, models, register_model, typeof_impl, unbox

from movenet.kernels import (_F32, _I32, _I32_VEC, _I64, _VEC, LANES, _emit_clamp, _emit_gate, _fma, _host_features,
                             _largest_lane, _operands, _splat_f32)

_I8 = ir.IntType(8)
_BYTES_VEC = ir.VectorType(_I8, 4 * LANES)  # vpdpbusd's operands: 64 bytes
_QUAD_ROWS = 2  # rows after the quads: the scales, the accumulators' start
_OFFSET = 128  # an input's quantized value + this is its unsigned byte
Z_SCALE = np.float32(1 / 127)  # the gate's output, |z| < 1, in bytes: z = (byte - 128) * Z_SCALE


def host_has_vnni() -> bool:
    """Whether this CPU has vpdpbusd on 512-bit vectors (AVX512-VNNI: AMD Zen 4 and later, Intel Cascade Lake and
    later), which precision int8 needs; elsewhere its tiles would not compile."""
    return bool(_host_features().get("avx512vnni"))


def takes(config) -> bool:
    """Whether precision int8 takes a model of this ModelConfig: its fused layer holds h in whole 16-lane vectors
    (gate channels a multiple of 32) and reads past taps from rings (a kernel of 2 or more)."""
    return config.gate_channels % 32 == 0 and config.kernel_size >= 2


def to_int8_quads(w: np.ndarray) -> np.ndarray:
    """float32 [..., K, O] -> int8 [..., ceil(K / 4) + 2, 4 O]: the weights quantized per output column, in the
    layout above."""
    w = np.asarray(w, dtype=np.float32)
    K, O = w.shape[-2:]
    Kq = -(-K // 4)
    scale = np.abs(w).max(axis=-2, initial=0) / np.float32(127)  # [..., O]; 0 rows (no source): scale 1
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.zeros(w.shape[:-2] + (4 * Kq, O), np.int8)
    q[..., :K, :] = np.clip(np.rint(w / scale[..., None, :]), -127, 127).astype(np.int8)
    out = np.zeros(w.shape[:-2] + (Kq + _QUAD_ROWS, O), np.int32)
    quads = np.swapaxes(q.reshape(w.shape[:-2] + (Kq, 4, O)), -1, -2)  # [..., Kq, O, 4]: a column's 4 bytes together
    out[..., :Kq, :] = np.ascontiguousarray(quads).view(np.int32)[..., 0]
    out[..., Kq, :] = scale.view(np.int32)
    out[..., Kq + 1, :] = -_OFFSET * q.astype(np.int32).sum(axis=-2)
    return out.view(np.int8)


def from_int8_quads(w: np.ndarray, K: int) -> np.ndarray:
    """The float32 [..., K, O] weights an int8 matrix multiplies: its quantized values times their scales."""
    words = np.ascontiguousarray(w).view(np.int32)
    Kq = words.shape[-2] - _QUAD_ROWS
    q = np.swapaxes(words[..., :Kq, :, None].view(np.int8), -1, -2)  # [..., Kq, 4, O]
    q = q.reshape(words.shape[:-2] + (4 * Kq, words.shape[-1]))[..., :K, :]
    return q.astype(np.float32) * words[..., Kq, :].view(np.float32)[..., None, :]


@njit(cache=True, error_model="numpy", _nrt=False)
def pack_quads(x, xq):
    """Quantize x float32 [B, K] (unit stride along a row) into xq uint32 [>= B, >= ceil(K / 4) + 1] row by row:
    scale = max |x[b]| / 127, byte k of the row = rint(x[b, k] * (127 / max)) + 128 (128 from K to the quads' end),
    the scale's bits after the quads; nothing else of xq's row is written. xq may also be any 2-D array whose rows
    hold ceil(K / 4) + 1 words. In two passes (every row's largest |x|, then every row's bytes), so that the rows'
    chains of maximum, division and rounding overlap."""
    for b in range(x.shape[0]):
        _quantize_row(x, xq, b, False)
    for b in range(x.shape[0]):
        _quantize_row(x, xq, b, True)


@intrinsic
def _quantize_row(typingctx, x, xq, b, rounding):
    """`pack_quads` for row b, 16 inputs at a time in vectors (masked where the row ends). rounding False: the
    row's largest |x| (a tree of vector maxima) into the scale's word; True: from it, each 16 inputs rounded
    (vcvtps2dq), offset and narrowed to bytes (vpmovdb), and the scale in its word."""
    if not isinstance(rounding, types.BooleanLiteral):
        return None
    ROUNDING = rounding.literal_value

    def codegen(context, builder, signature, args):
        x_arr, q_arr, bv = _operands(context, builder, signature.args[:3], args[:3], 2)
        _, K = cgutils.unpack_tuple(builder, x_arr.shape, 2)
        x_row, _ = cgutils.unpack_tuple(builder, x_arr.strides, 2)
        q_row, _ = cgutils.unpack_tuple(builder, q_arr.strides, 2)
        c = lambda v: ir.Constant(_I64, v)  # noqa: E731
        i8p = _I8.as_pointer()
        src = builder.gep(builder.bitcast(x_arr.data, i8p), [builder.mul(bv, x_row)])
        dst = builder.gep(builder.bitcast(q_arr.data, i8p), [builder.mul(bv, q_row)])
        n_bytes = builder.mul(builder.sdiv(builder.add(K, c(3)), c(4)), c(4))
        chunks = builder.sdiv(builder.add(n_bytes, c(LANES - 1)), c(LANES))
        word = builder.bitcast(builder.gep(dst, [n_bytes]), _F32.as_pointer())  # the scale's
        bytes_type = ir.VectorType(_I8, LANES)
        mask_type = ir.VectorType(ir.IntType(1), LANES)
        load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC.as_pointer(), _I32, mask_type,
                                                                                       _VEC]),
                                              "llvm.masked.load.v16f32.p0")
        zeros = ir.Constant(_VEC, [0.0] * LANES)

        def below(start, end):  # lanes whose index start + i < end, as a mask of 16 bits
            left = builder.sub(end, start)
            bits = builder.select(builder.icmp_signed(">=", left, c(LANES)), c(0xFFFF),
                                  builder.sub(builder.shl(c(1), builder.select(builder.icmp_signed(">", left, c(0)),
                                                                               left, c(0))), c(1)))
            return builder.bitcast(builder.trunc(bits, ir.IntType(16)), mask_type)

        def chunk(i):  # x[b, 16 i : 16 i + 16], zeros past K
            at = builder.bitcast(builder.gep(src, [builder.mul(i, c(4 * LANES))]), _VEC.as_pointer())
            return builder.call(load, [at, ir.Constant(_I32, 4), below(builder.mul(i, c(LANES)), K), zeros])

        if not ROUNDING:
            fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.fabs.v16f32")
            top = cgutils.alloca_once_value(builder, zeros)
            with cgutils.for_range(builder, chunks) as loop:
                v, m = builder.call(fabs, [chunk(loop.index)]), builder.load(top)
                builder.store(builder.select(builder.fcmp_ordered(">", v, m), v, m), top)
            builder.store(_largest_lane(builder, builder.load(top)), word, align=4)
            return context.get_dummy_value()
        store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            ir.VoidType(), [bytes_type, bytes_type.as_pointer(), _I32, mask_type]), "llvm.masked.store.v16i8.p0")
        rint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.rint.v16f32")
        largest = builder.load(word, align=4)
        positive = builder.fcmp_ordered(">", largest, ir.Constant(_F32, 0.0))
        inverse = builder.select(positive, builder.fdiv(ir.Constant(_F32, 127.0), largest), ir.Constant(_F32, 0.0))
        inverse = _splat(builder, inverse, _VEC)
        with cgutils.for_range(builder, chunks) as loop:
            q = builder.fptosi(builder.call(rint, [builder.fmul(chunk(loop.index), inverse)]), _I32_VEC)
            q = builder.trunc(builder.add(q, ir.Constant(_I32_VEC, [_OFFSET] * LANES)), bytes_type)
            at = builder.bitcast(builder.gep(dst, [builder.mul(loop.index, c(LANES))]), bytes_type.as_pointer())
            builder.call(store, [q, at, ir.Constant(_I32, 1), below(builder.mul(loop.index, c(LANES)), n_bytes)])
        builder.store(builder.fdiv(largest, ir.Constant(_F32, 127.0)), word, align=4)
        return context.get_dummy_value()

    return types.void(x, xq, b, rounding), codegen


def _splat(builder, value, vec_type):
    """value in every lane of a vec_type."""
    lane0 = ir.Constant(ir.VectorType(_I32, vec_type.count), [0] * vec_type.count)
    first = builder.insert_element(ir.Constant(vec_type, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, ir.Constant(vec_type, ir.Undefined), lane0)


def _emit_int8_block(builder, y_arr, x_arr, w_arr, b0v, o0v, MR, NR, bias_arr=None):
    """The LLVM code of one register tile of `_int8_block`: rows b0v.., columns o0v.. (int64 values); bias_arr
    (float32 [n]), where given, is then added to the tile's columns below n."""
    NV = NR // LANES
    y_row, _ = cgutils.unpack_tuple(builder, y_arr.strides, 2)
    x_row, _ = cgutils.unpack_tuple(builder, x_arr.strides, 2)
    w_row, _ = cgutils.unpack_tuple(builder, w_arr.strides, 2)
    rows, _ = cgutils.unpack_tuple(builder, w_arr.shape, 2)
    c = lambda v: ir.Constant(_I64, v)  # noqa: E731
    Kq = builder.sub(rows, c(_QUAD_ROWS))
    i8p = _I8.as_pointer()
    y_base, x_base, w_base = (builder.bitcast(a.data, i8p) for a in (y_arr, x_arr, w_arr))
    col = builder.mul(o0v, c(4))  # bytes: 4 per column in y (float32) and in w (4 int8)
    dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32_VEC, [_I32_VEC, _BYTES_VEC, _BYTES_VEC]),
                                         "llvm.x86.avx512.vpdpbusd.512")

    def at(base, offset, vec_type):
        return builder.bitcast(builder.gep(base, [offset]), vec_type.as_pointer())

    def w_at(r, v, vec_type):
        return at(w_base, builder.add(builder.mul(r, w_row), builder.add(col, c(4 * LANES * v))), vec_type)

    start = [builder.load(w_at(builder.add(Kq, c(1)), v, _I32_VEC), align=4) for v in range(NV)]
    acc = []
    for i in range(MR):
        for v in range(NV):
            acc.append(cgutils.alloca_once_value(builder, start[v]))
    x_rows = [builder.gep(x_base, [builder.mul(builder.add(b0v, c(i)), x_row)]) for i in range(MR)]
    with cgutils.for_range(builder, Kq) as loop:
        k = loop.index
        w_vecs = [builder.bitcast(builder.load(w_at(k, v, _I32_VEC), align=4), _BYTES_VEC) for v in range(NV)]
        for i in range(MR):
            quad = builder.load(at(x_rows[i], builder.mul(k, c(4)), _I32), align=4)
            x_vec = builder.bitcast(_splat(builder, quad, _I32_VEC), _BYTES_VEC)
            for v in range(NV):
                slot = acc[i * NV + v]
                builder.store(builder.call(dot, [builder.load(slot), x_vec, w_vecs[v]]), slot)
    w_scales = [builder.load(w_at(Kq, v, _VEC), align=4) for v in range(NV)]
    if bias_arr is not None:  # a rounding of its own after the fma's, as when the bias is added later
        n_bias, = cgutils.unpack_tuple(builder, bias_arr.shape, 1)
        lanes = ir.Constant(ir.VectorType(_I64, LANES), list(range(LANES)))
        load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [
            _VEC.as_pointer(), _I32, ir.VectorType(ir.IntType(1), LANES), _VEC]), "llvm.masked.load.v16f32.p0")
        biased = []
        for v in range(NV):
            first = builder.add(o0v, c(LANES * v))
            inside = builder.icmp_signed("<", builder.add(_splat(builder, first, lanes.type), lanes),
                                         _splat(builder, n_bias, lanes.type))
            b_vec = builder.call(load, [at(builder.bitcast(bias_arr.data, i8p), builder.mul(first, c(4)), _VEC),
                                        ir.Constant(_I32, 4), inside, ir.Constant(_VEC, [0.0] * LANES)])
            biased.append(lambda y, inside=inside, b_vec=b_vec: builder.select(inside, builder.fadd(y, b_vec), y))
    for i in range(MR):
        x_scale = _splat(builder, builder.load(at(x_rows[i], builder.mul(Kq, c(4)), _F32), align=4), _VEC)
        y_row_i = builder.mul(builder.add(b0v, c(i)), y_row)
        for v in range(NV):
            y_ptr = at(y_base, builder.add(y_row_i, builder.add(col, c(4 * LANES * v))), _VEC)
            total = builder.sitofp(builder.load(acc[i * NV + v]), _VEC)
            y = builder.call(_fma(builder), [total, builder.fmul(w_scales[v], x_scale), builder.load(y_ptr, align=4)])
            if bias_arr is not None:
                y = biased[v](y)
            builder.store(y, y_ptr, align=4)


@intrinsic
def _int8_block(typingctx, y, xq, w, b0, o0, mr, nr, bias):
    """y[b0:b0+MR, o0:o0+NR] += the int8 product of xq's rows (`pack_quads`) and w (`to_int8_quads`), with MR x NR/16
    int32 accumulators, then + bias (float32 [n], or None) in the columns below n. mr, nr: literal ints, NR a
    multiple of 16; no bounds checks."""
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nr, types.IntegerLiteral)):
        return None
    MR, NR = mr.literal_value, nr.literal_value
    if NR % LANES:
        raise ValueError(f"NR must be a multiple of {LANES}, got {NR}")

    def codegen(context, builder, signature, args):
        y_arr, x_arr, w_arr, b0v, o0v = _operands(context, builder, signature.args[:5], args[:5], 3)
        bias_arr = None if bias == types.none else context.make_array(bias)(context, builder, args[7])
        _emit_int8_block(builder, y_arr, x_arr, w_arr, b0v, o0v, MR, NR, bias_arr)
        return context.get_dummy_value()

    return types.void(y, xq, w, b0, o0, mr, nr, bias), codegen


@njit(cache=True, error_model="numpy", _nrt=False)
def int8_acc(y, xq, w, bias=None):
    """y += the int8 product of xq (`pack_quads`'s rows) and w (`to_int8_quads`), y float32 [B, O] with unit stride
    along a row; then, given bias float32 [n] (n <= O), y[:, :n] += bias, rounded after the product's rounding as
    a later addition would be. Tiles of 8 rows x 32 columns (16 accumulators), then 4 x 64, 2 x 64, 1 x 64 for the
    rows left over, 16-column tiles, and plain loops for the last O % 16 columns."""
    B, O = y.shape
    b = 0
    while b + 8 <= B:
        o = 0
        while o + 32 <= O:
            _int8_block(y, xq, w, b, o, 8, 32, bias)
            o += 32
        if o + 16 <= O:
            _int8_block(y, xq, w, b, o, 8, 16, bias)
            o += 16
        if o < O:
            _int8_columns(y, xq, w, b, o, 8, bias)
        b += 8
    if b + 4 <= B:
        _int8_rows(y, xq, w, b, 4, bias)
        b += 4
    if b + 2 <= B:
        _int8_rows(y, xq, w, b, 2, bias)
        b += 2
    if b < B:
        _int8_rows(y, xq, w, b, 1, bias)


@njit(cache=True, inline="always", error_model="numpy")
def _int8_rows(y, xq, w, b, rows, bias):
    """`int8_acc` for rows b .. b + rows - 1 (rows a literal): 64-column tiles, then 16-column ones, then loops."""
    O = y.shape[1]
    o = 0
    while o + 64 <= O:
        _int8_block(y, xq, w, b, o, rows, 64, bias)
        o += 64
    while o + 16 <= O:
        _int8_block(y, xq, w, b, o, rows, 16, bias)
        o += 16
    if o < O:
        _int8_columns(y, xq, w, b, o, rows, bias)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)  # views without reference counts
def _int8_columns(y, xq, w, b, o, rows, bias):
    """Columns o.. of rows b..b+rows-1 left over after the tiles, in the tiles' steps (small configs only)."""
    O = y.shape[1]
    Kq = w.shape[0] - _QUAD_ROWS
    words = w.view(np.int32)
    x_bytes = xq.view(np.uint8)
    for i in range(b, b + rows):
        x_scale = _bits_float(xq[i, Kq])
        for j in range(o, O):
            total = words[Kq + 1, j]
            for k in range(4 * Kq):
                total += np.int32(x_bytes[i, k]) * np.int32(w[k // 4, 4 * j + k % 4])
            y[i, j] = np.float32(total) * (_bits_float(np.uint32(words[Kq, j])) * x_scale) + y[i, j]
            if bias is not None:
                if j < bias.shape[0]:
                    y[i, j] += bias[j]


@intrinsic
def _bits_float(typingctx, v):
    """uint32 bits as the float32 they are."""
    if v != types.uint32:
        return None
    return types.float32(v), lambda context, builder, signature, args: builder.bitcast(args[0], _F32)


# The gate's tanh for bytes: the Pade approximant [5/4] of tanh, x (945 + 105 x^2 + x^4) / (945 + 420 x^2 + 15 x^4),
# with x clamped to +-3.46, is within 1e-3 of tanh everywhere (an eighth of z's step of 1 / 127; the shipped model's
# logits moved no further from fp32's than with the exact tanh: KL per sample 0.00086 both), in 5 multiplies where
# `kernels.tanh` takes 11.
_PADE_CLAMP = 3.46


def _emit_pade(builder, x):
    """The approximant's numerator and denominator at x (clamped), for `kernels._emit_gate`."""
    x = _emit_clamp(builder, x, _PADE_CLAMP)
    x2 = builder.fmul(x, x)
    p = builder.fmul(x, builder.call(_fma(builder), [builder.fadd(x2, _splat_f32(105.0)), x2, _splat_f32(945.0)]))
    q = builder.call(_fma(builder), [builder.call(_fma(builder), [x2, _splat_f32(15.0), _splat_f32(420.0)]), x2,
                                     _splat_f32(945.0)])
    return p, q


# -- one layer's dilated convolution and gate, fused -------------------------------------------------------------


@njit(cache=True, error_model="numpy", _nrt=False)
def gated_quads(hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq):
    """One layer's gated activation for every stream, z quantized into zq, in one pass (the module docstring).

    h = hc + the past taps' product (ring[:, past_slots[j]], w_past[j], oldest first) + the source's (source_q,
    w_source; none where it has no quads) + this sample's input's (input_q, w_input); z = tanh(h[:, :G/2]) *
    sigmoid(h[:, G/2:]); zq's row b: z's bytes (round(z * 127) + 128) and Z_SCALE after them.
    hc float32 [B, G] (G / 2 a multiple of 16), ring uint32 [B, H, >= Cq + 1], source_q and input_q uint32 rows
    (`pack_quads`), weights int8 (`to_int8_quads`), zq uint32 [B, >= G / 8 + 1]. Four streams at a time (then two,
    one): each stream's values are its own, whatever the group.
    """
    B = hc.shape[0]
    b = 0
    while b + 4 <= B:
        _gated_rows(hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq, b, 4)
        b += 4
    if b + 2 <= B:
        _gated_rows(hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq, b, 2)
        b += 2
    if b < B:
        _gated_rows(hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq, b, 1)


@intrinsic
def _gated_rows(typingctx, hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq, b0, rows):
    """`gated_quads` for the streams b0 .. b0 + R - 1 (rows: a literal R). Per 16 columns of z: the filter's and the
    gate's 16 columns of h start from hc, each input's int32 sums (vpdpbusd) are turned into float32 and added as
    that input ends, then the gate, rounding and narrowing to bytes: h never leaves the registers."""
    if not isinstance(rows, types.IntegerLiteral):
        return None
    R = rows.literal_value
    sig = types.void(hc, ring, past_slots, source_q, input_q, w_past, w_source, w_input, zq, b0, rows)

    def codegen(context, builder, signature, args):
        hc_a, ring_a, slots_a, src_a, in_a, wp_a, ws_a, wi_a, zq_a = (
            context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:9], args[:9]))
        b0v = context.cast(builder, args[9], signature.args[9], types.int64)
        c = lambda v: ir.Constant(_I64, v)  # noqa: E731
        i8p = _I8.as_pointer()
        base = lambda arr: builder.bitcast(arr.data, i8p)  # noqa: E731
        strides = lambda arr, n: cgutils.unpack_tuple(builder, arr.strides, n)  # noqa: E731
        shape = lambda arr, n: cgutils.unpack_tuple(builder, arr.shape, n)  # noqa: E731
        _, G = shape(hc_a, 2)
        half = builder.sdiv(G, c(2))
        hc_row, _ = strides(hc_a, 2)
        ring_b, ring_s, _ = strides(ring_a, 3)
        taps, wp_rows, _ = shape(wp_a, 3)
        wp_tap, wp_row, _ = strides(wp_a, 3)
        ws_rows, _ = shape(ws_a, 2)
        ws_row, _ = strides(ws_a, 2)
        wi_rows, _ = shape(wi_a, 2)
        wi_row, _ = strides(wi_a, 2)
        src_row, _ = strides(src_a, 2)
        in_row, _ = strides(in_a, 2)
        zq_row, _ = strides(zq_a, 2)
        dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            _I32_VEC, [_I32_VEC, _BYTES_VEC, _BYTES_VEC]), "llvm.x86.avx512.vpdpbusd.512")
        fma = _fma(builder)
        rint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.rint.v16f32")
        rows_b = [builder.add(b0v, c(r)) for r in range(R)]
        slot_ptr = builder.bitcast(slots_a.data, _I64.as_pointer())

        def ptr(p, offset, t):
            return builder.bitcast(builder.gep(p, [offset]), t.as_pointer())

        h_slots = [[cgutils.alloca_once(builder, _VEC) for _ in range(2)] for _ in range(R)]
        acc = [[cgutils.alloca_once(builder, _I32_VEC) for _ in range(2)] for _ in range(R)]

        def product(w, w_row, n_rows, x_rows, cols):
            """h[r] += the int8 product of rows x_rows[r] (pointers to their words) and w (its first byte, row
            stride in bytes, rows including the two after the quads) at byte columns cols (filter, gate)."""
            Kq = builder.sub(n_rows, c(_QUAD_ROWS))
            start = [builder.load(ptr(w, builder.add(builder.mul(builder.add(Kq, c(1)), w_row), col), _I32_VEC),
                                  align=4) for col in cols]
            for r in range(R):
                for i in range(2):
                    builder.store(start[i], acc[r][i])
            with cgutils.for_range(builder, Kq) as loop:
                k = loop.index
                w_vecs = [builder.bitcast(builder.load(ptr(w, builder.add(builder.mul(k, w_row), col), _I32_VEC),
                                                       align=4), _BYTES_VEC) for col in cols]
                for r in range(R):
                    quad = builder.load(ptr(x_rows[r], builder.mul(k, c(4)), _I32), align=4)
                    x_vec = builder.bitcast(_splat(builder, quad, _I32_VEC), _BYTES_VEC)
                    for i in range(2):
                        builder.store(builder.call(dot, [builder.load(acc[r][i]), x_vec, w_vecs[i]]), acc[r][i])
            scales = [builder.load(ptr(w, builder.add(builder.mul(Kq, w_row), col), _VEC), align=4) for col in cols]
            for r in range(R):
                x_scale = _splat(builder, builder.load(ptr(x_rows[r], builder.mul(Kq, c(4)), _F32), align=4), _VEC)
                for i in range(2):
                    total = builder.sitofp(builder.load(acc[r][i]), _VEC)
                    builder.store(builder.call(fma, [total, builder.fmul(scales[i], x_scale),
                                                     builder.load(h_slots[r][i])]), h_slots[r][i])

        source_rows = [builder.gep(base(src_a), [builder.mul(b, src_row)]) for b in rows_b]
        input_rows = [builder.gep(base(in_a), [builder.mul(b, in_row)]) for b in rows_b]
        with cgutils.for_range(builder, builder.sdiv(half, c(LANES))) as blocks:
            col_f = builder.mul(blocks.index, c(LANES))  # the filter's first column; the gate's is half on
            cols = [col_f, builder.add(col_f, half)]
            byte_cols = [builder.mul(col, c(4)) for col in cols]  # 4 bytes a column in hc and in the weights
            for r, b in enumerate(rows_b):
                for i in range(2):
                    builder.store(builder.load(ptr(base(hc_a), builder.add(builder.mul(b, hc_row), byte_cols[i]),
                                                   _VEC), align=4), h_slots[r][i])
            with cgutils.for_range(builder, taps) as tap:
                slot = builder.load(builder.gep(slot_ptr, [tap.index]))
                past_rows = [builder.gep(base(ring_a), [builder.add(builder.mul(b, ring_b), builder.mul(slot, ring_s))])
                             for b in rows_b]
                product(builder.gep(base(wp_a), [builder.mul(tap.index, wp_tap)]), wp_row, wp_rows, past_rows,
                        byte_cols)
            with builder.if_then(builder.icmp_signed(">", ws_rows, c(_QUAD_ROWS))):  # a source to add
                product(base(ws_a), ws_row, ws_rows, source_rows, byte_cols)
            product(base(wi_a), wi_row, wi_rows, input_rows, byte_cols)
            bytes_type = ir.VectorType(_I8, LANES)
            for r, b in enumerate(rows_b):
                z = _emit_gate(builder, builder.load(h_slots[r][0]), builder.load(h_slots[r][1]), _emit_pade)
                q = builder.fptosi(builder.call(rint, [builder.fmul(z, _splat(builder, ir.Constant(_F32, 127.0),
                                                                                  _VEC))]), _I32_VEC)
                q = builder.trunc(builder.add(q, ir.Constant(_I32_VEC, [_OFFSET] * LANES)), bytes_type)
                builder.store(q, ptr(base(zq_a), builder.add(builder.mul(b, zq_row), col_f), bytes_type), align=1)
        scale_word = builder.mul(builder.sdiv(half, c(4)), c(4))  # after half / 4 words of quads
        for b in rows_b:
            builder.store(ir.Constant(_F32, float(Z_SCALE)),
                          ptr(base(zq_a), builder.add(builder.mul(b, zq_row), scale_word), _F32), align=4)
        return context.get_dummy_value()

    return sig, codegen


# -- one stream's layers, fused -----------------------------------------------------------------------------------
# `stack_row` makes the same operations in the same order as `pack_quads`, `gated_quads` and `int8_acc` (and
# `head_row` as `fastgen._head`), so its values are theirs bit for bit; its shapes are compile-time constants, so
# every offset is one and the loops over channels unroll.

_STACK_FIELDS = 6  # C, G, S, source quads, past taps, logits: 12 bits each in a stack code


class StackShape:
    """The shape `stack_row` compiles for, as an argument that numba types by its value (`StackShapeType`), so that
    compiled code holds it as constants. A literal int would do the same but costs every call from Python a new
    type inference (numba's dispatcher has no fast path for literal arguments: 8 ms a call)."""

    __slots__ = ("code",)

    def __init__(self, C: int = 0, G: int = 0, S: int = 0, source_quads: int = 0, taps: int = 0, logits: int = 0):
        """Residual, gate and skip channels, the source's quads, the past taps and the logits (block-major, a
        multiple of 64) of a model; a shape that `stack_row` does not take (or none given) holds code 0: residual,
        skip and half the gate channels must be whole 16-lane vectors, the model no wider than 64 residual x 128
        gate channels and 64 skip channels x 256 logits (the unrolled code grows with their products)."""
        fields = (C, G, S, source_quads, taps, logits)
        takes = (C and not (C % LANES or S % LANES or G % (2 * LANES) or logits % LANES) and taps >= 1
                 and C * G <= 64 * 128 and S * logits <= 64 * 256 and max(fields) < 1 << 12)
        self.code = sum(v << (12 * i) for i, v in enumerate(fields)) if takes else 0

    def __bool__(self) -> bool:
        return bool(self.code)


class StackShapeType(types.Type):
    def __init__(self, code: int):
        self.code = code
        super().__init__(name=f"StackShape({code})")

    @property
    def dims(self) -> tuple:
        """C, G, S, source quads, past taps, logits."""
        return tuple((self.code >> (12 * i)) & 0xFFF for i in range(_STACK_FIELDS))


@typeof_impl.register(StackShape)
def _typeof_stack_shape(value, context):
    return StackShapeType(value.code)


register_model(StackShapeType)(models.OpaqueModel)


@unbox(StackShapeType)
def _unbox_stack_shape(typ, obj, c):
    return NativeValue(c.context.get_constant_null(typ))  # all it says is in its type


class _Row:
    """LLVM emitters for `stack_row` and `head_row`: one stream's vectors, their quantization and products, at
    constant byte offsets from base pointers."""

    def __init__(self, builder):
        self.builder = b = builder
        self.dot = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(_I32_VEC, [_I32_VEC, _BYTES_VEC, _BYTES_VEC]), "llvm.x86.avx512.vpdpbusd.512")
        self.fma = _fma(b)
        self.rint = cgutils.get_or_insert_function(b.module, ir.FunctionType(_VEC, [_VEC]), "llvm.rint.v16f32")
        self.fabs = cgutils.get_or_insert_function(b.module, ir.FunctionType(_VEC, [_VEC]), "llvm.fabs.v16f32")

    def at(self, p, offset, t):
        """p (an i8*) + offset bytes, as a t*."""
        offset = offset if isinstance(offset, ir.Value) else ir.Constant(_I64, offset)
        return self.builder.bitcast(self.builder.gep(p, [offset]), t.as_pointer())

    def load(self, p, offset, t):
        return self.builder.load(self.at(p, offset, t), align=4)

    def to_bytes(self, v, scale):
        """rint(v * scale) + 128 narrowed to bytes, as `_quantize_row` and `_gated_rows` make them."""
        b = self.builder
        q = b.fptosi(b.call(self.rint, [b.fmul(v, scale)]), _I32_VEC)
        return b.trunc(b.add(q, ir.Constant(_I32_VEC, [_OFFSET] * LANES)), ir.VectorType(_I8, LANES))

    def words(self, parts):
        """<16 x i8> vectors -> one <4 n x i32>: their bytes in order, 4 to a word."""
        b = self.builder
        words = ir.Constant(ir.VectorType(_I32, 4 * len(parts)), ir.Undefined)
        for i, part in enumerate(parts):
            part = b.bitcast(part, ir.VectorType(_I32, 4))
            for j in range(4):
                words = b.insert_element(words, b.extract_element(part, ir.Constant(_I32, j)),
                                         ir.Constant(_I32, 4 * i + j))
        return words

    def quantize(self, vectors):
        """`_quantize_row` of a row held as 16-lane vectors: (its quads as <4 n x i32>, its scale)."""
        b = self.builder
        top = ir.Constant(_VEC, [0.0] * LANES)
        for v in vectors:
            v = b.call(self.fabs, [v])
            top = b.select(b.fcmp_ordered(">", v, top), v, top)
        largest = _largest_lane(b, top)
        inverse = b.select(b.fcmp_ordered(">", largest, ir.Constant(_F32, 0.0)),
                           b.fdiv(ir.Constant(_F32, 127.0), largest), ir.Constant(_F32, 0.0))
        inverse = _splat(b, inverse, _VEC)
        return self.words([self.to_bytes(v, inverse) for v in vectors]), b.fdiv(largest, ir.Constant(_F32, 127.0))

    def quad_in(self, words):
        """quad(k): word k of words in every lane, as vpdpbusd's unsigned operand."""
        b = self.builder
        return lambda k: b.bitcast(b.shuffle_vector(words, ir.Constant(words.type, ir.Undefined),
                                                    ir.Constant(_I32_VEC, [k] * LANES)), _BYTES_VEC)

    def quad_at(self, row):
        """quad(k): word k of the row at the i8* row, in every lane."""
        b = self.builder
        return lambda k: b.bitcast(_splat(b, self.load(row, 4 * k, _I32), _I32_VEC), _BYTES_VEC)

    def product(self, w, row_bytes, col, n_quads, quad, x_scale, y):
        """y + the int8 product of quads 0 .. n_quads - 1 (quad(k)) and w (`to_int8_quads` at the i8* w, rows of
        row_bytes) at byte column col, as `_emit_int8_block` makes it: the integer sums in two chains of vpdpbusd
        (exact in any order), then fma(sums, w's scales * x_scale, y)."""
        b = self.builder
        chains = [self.load(w, (n_quads + 1) * row_bytes + col, _I32_VEC), ir.Constant(_I32_VEC, [0] * LANES)]
        for k in range(n_quads):
            w_vec = b.bitcast(self.load(w, k * row_bytes + col, _I32_VEC), _BYTES_VEC)
            chains[k % 2] = b.call(self.dot, [chains[k % 2], quad(k), w_vec])
        total = b.sitofp(b.add(chains[0], chains[1]) if n_quads > 1 else chains[0], _VEC)
        scales = self.load(w, n_quads * row_bytes + col, _VEC)
        return b.call(self.fma, [total, b.fmul(scales, _splat(b, x_scale, _VEC)), y])


def _stack_signature(stack, weights, *args):
    """An intrinsic's signature on its args (stack among them), or None where stack is no StackShape or a weight
    array is not C-contiguous (the code takes their rows' offsets as constants)."""
    if not isinstance(stack, StackShapeType) or any(w.layout != "C" for w in weights):
        return None
    return types.void(*args)


def _nothing(context, builder, signature, args):
    """The code of a pass for a StackShape of code 0 (a shape it does not take)."""
    return context.get_dummy_value()


@intrinsic
def stack_row(typingctx, xs, hc, ring, slots, source_q, w_past, w_source, w_input, wrs, br, stack):
    """Every layer of stream 0, as `fastgen._forward_int8` runs them with `pack_quads`, `gated_quads` and
    `int8_acc`: xs float32 [>= 1, C + S] holds [x | skip sum] on entry (after the embedding) and on return (after
    the last layer); hc float32 [L, >= 1, G]; ring uint32 [>= 1, H, C / 4 + 1]; slots int64 [L, taps + 1], layer
    l's past taps' ring rows (oldest first) and then the row its input goes to; source_q (`pack_quads`) uint32
    [>= 1, source quads + 1]; the weights as `fastgen._int8_params` makes them (C-contiguous); br float32 [L, C];
    stack: the model's StackShape (code 0: nothing is done)."""
    sig = _stack_signature(stack, (w_past, w_source, w_input, wrs, br), xs, hc, ring, slots, source_q, w_past, w_source,
                           w_input, wrs, br, stack)
    if sig is None:
        return None
    if not stack.code:
        return sig, _nothing
    C, G, S, Eq, taps, _ = stack.dims
    half = G // 2
    CV, SV, HV = C // LANES, S // LANES, half // LANES  # vectors of x, of the skip sum, of z
    Cq, Zq = C // 4, half // 4  # quads of a layer's input and of z
    wg_row, wr_row = 4 * G, 4 * (C + S)  # bytes in a row of the gated weights and of the residual ones

    def codegen(context, builder, signature, args):
        xs_a, hc_a, ring_a, slots_a, src_a, wp_a, ws_a, wi_a, wr_a, br_a = (
            context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:10], args[:10]))
        row = _Row(builder)
        c = lambda v: ir.Constant(_I64, v)  # noqa: E731
        base = lambda arr: builder.bitcast(arr.data, _I8.as_pointer())  # noqa: E731
        stride = lambda arr, i: cgutils.unpack_tuple(builder, arr.strides, arr.strides.type.count)[i]  # noqa: E731
        x_slots = [cgutils.alloca_once(builder, _VEC) for _ in range(CV + SV)]  # [x | skip], promoted to registers
        xs_row = base(xs_a)
        for i, slot in enumerate(x_slots):
            builder.store(row.load(xs_row, 4 * LANES * i, _VEC), slot)
        L = cgutils.unpack_tuple(builder, wi_a.shape, 3)[0]
        ring_row = stride(ring_a, 1)
        source_quad = row.quad_at(base(src_a))
        source_scale = row.load(base(src_a), 4 * Eq, _F32)
        with cgutils.for_range(builder, L) as layers:
            l = layers.index
            layer = lambda arr: builder.gep(base(arr), [builder.mul(l, stride(arr, 0))])  # noqa: E731
            hc_l, wp_l, ws_l, wi_l, wr_l, br_l = (layer(a) for a in (hc_a, wp_a, ws_a, wi_a, wr_a, br_a))
            slot_l = builder.bitcast(layer(slots_a), _I64.as_pointer())
            ring_at = lambda j: builder.gep(base(ring_a), [  # noqa: E731  (the ring row of slots[l, j])
                builder.mul(builder.load(builder.gep(slot_l, [c(j)])), ring_row)])
            x = [builder.load(slot) for slot in x_slots]
            x_words, x_scale = row.quantize(x[:CV])
            past_rows = [ring_at(j) for j in range(taps)]
            past_scales = [row.load(r, 4 * Cq, _F32) for r in past_rows]
            z_parts = []
            for v in range(HV):
                cols = [4 * LANES * v, 4 * (half + LANES * v)]  # the filter's 16 columns, the gate's: byte offsets
                h = [row.load(hc_l, col, _VEC) for col in cols]
                for j, past in enumerate(past_rows):
                    wp_j = builder.gep(wp_l, [c(j * (Cq + _QUAD_ROWS) * wg_row)])
                    h = [row.product(wp_j, wg_row, col, Cq, row.quad_at(past), past_scales[j], hv)
                         for col, hv in zip(cols, h)]
                if Eq:
                    h = [row.product(ws_l, wg_row, col, Eq, source_quad, source_scale, hv) for col, hv in zip(cols, h)]
                h = [row.product(wi_l, wg_row, col, Cq, row.quad_in(x_words), x_scale, hv) for col, hv in zip(cols, h)]
                z_parts.append(row.to_bytes(_emit_gate(builder, h[0], h[1], _emit_pade), _splat_f32(127.0)))
            # the input enters its ring row after the past taps were read from it (a kernel of 2: the same row)
            in_row = ring_at(taps)
            builder.store(x_words, row.at(in_row, 0, x_words.type), align=4)
            builder.store(x_scale, row.at(in_row, 4 * Cq, _F32), align=4)
            z_quad = row.quad_in(row.words(z_parts))
            z_scale = ir.Constant(_F32, float(Z_SCALE))
            out = [row.product(wr_l, wr_row, 4 * LANES * i, Zq, z_quad, z_scale, x[i]) for i in range(CV + SV)]
            # the next layer's input adds this layer's residual bias; the last layer's residual goes nowhere
            last = builder.icmp_signed("==", l, builder.sub(L, c(1)))
            for i in range(CV):
                biased = builder.fadd(out[i], row.load(br_l, 4 * LANES * i, _VEC))
                builder.store(builder.select(last, x[i], biased), x_slots[i])
            for i in range(CV, CV + SV):
                builder.store(out[i], x_slots[i])
        for i, slot in enumerate(x_slots):
            builder.store(builder.load(slot), row.at(xs_row, 4 * LANES * i, _VEC), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def head_row(typingctx, xs, w1, b1, w2, b2, logits, stack):
    """`fastgen._head` for stream 0, with w1 int8 (`to_int8_quads`) and w2 float32 [S, P], as `matmul` computes
    it: a = ReLU(the skip sums xs[0, C:]) quantized; h1 = ReLU(b1 + the int8 product); logits[0] = b2 + h1 @ w2,
    each column's multiply-adds in the order of k from b2 (`kernels._emit_block`'s), with all P / 16 columns'
    accumulators in registers. stack: the model's StackShape (code 0: nothing is done)."""
    sig = _stack_signature(stack, (w1, b1, w2, b2), xs, w1, b1, w2, b2, logits, stack)
    if sig is None:
        return None
    if not stack.code:
        return sig, _nothing
    C, _, S, _, _, P = stack.dims
    SV, Sq = S // LANES, S // 4

    def codegen(context, builder, signature, args):
        xs_a, w1_a, b1_a, w2_a, b2_a, out_a = (
            context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:6], args[:6]))
        row = _Row(builder)
        base = lambda arr: builder.bitcast(arr.data, _I8.as_pointer())  # noqa: E731
        zero = ir.Constant(_VEC, [0.0] * LANES)
        relu = lambda v: builder.select(builder.fcmp_ordered(">", v, zero), v, zero)  # noqa: E731
        a = [relu(row.load(base(xs_a), 4 * (C + LANES * i), _VEC)) for i in range(SV)]
        a_words, a_scale = row.quantize(a)
        h1 = [relu(row.product(base(w1_a), 4 * S, 4 * LANES * i, Sq, row.quad_in(a_words), a_scale,
                               row.load(base(b1_a), 4 * LANES * i, _VEC))) for i in range(SV)]
        acc = [row.load(base(b2_a), 4 * LANES * o, _VEC) for o in range(P // LANES)]
        for k in range(S):
            h_k = builder.shuffle_vector(h1[k // LANES], ir.Constant(_VEC, ir.Undefined),
                                         ir.Constant(_I32_VEC, [k % LANES] * LANES))
            acc = [builder.call(row.fma, [h_k, row.load(base(w2_a), 4 * (k * P + LANES * o), _VEC), acc[o]])
                   for o in range(P // LANES)]
        for o, v in enumerate(acc):
            builder.store(v, row.at(base(out_a), 4 * LANES * o, _VEC), align=4)
        return context.get_dummy_value()

    return sig, codegen
