"""Numba kernels behind the compiled generator (`movenet.fastgen`): a small float32 matrix product with an
explicit-SIMD inner block, and a rational tanh that vectorizes.

Why a hand-written block: the generator multiplies [B, K] activations by [K, O] weights with K, O of 64..256 and
B of 1..64, thousands of times per second. BLAS (through numpy or numba's np.dot) reaches 40-80 GFLOP/s on these
shapes because of per-call packing; numba's loop vectorizer cannot keep a register tile of accumulators with
runtime sizes. `_gemm_block` emits the register tile directly as LLVM vector code (16-lane float32 vectors, fused
multiply-add), ~250 GFLOP/s for B >= 8 with operands in L1 on an AVX-512 core. LLVM lowers the 16-lane vectors to
whatever the CPU has (two AVX2 registers, four SSE ones), so the code is portable; only the speed varies.
One stream's products (one row) are emitted inline where they are called (`_one_row`, through `matmul`): a call
into matmul_acc cost it as much as a fifth of its time.
On Intel CPUs with AMX, the tiles (`_amx_product`, inline assembly) multiply bfloat16 pairs 16 rows at a time.

Everything compiles with error_model="numpy": under numba's default (Python's), each division checks for zero and
raises, and that branch keeps LLVM from vectorizing the loop. Compiled code is cached (cache=True) beside the
sources; numba checks only the calling function's own file for changes, so after editing this file delete
movenet/__pycache__/*.nb[ci] (the functions in fastgen.py that inline these would otherwise stay stale).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

LANES = 16  # float32 lanes per vector in `_gemm_block` (one AVX-512 register)

# -- tanh ------------------------------------------------------------------------------------------------------------
# Rational minimax approximation of tanh on [-c, c] (Eigen's `generic_fast_tanh_float`: odd degree-13 numerator,
# even degree-6 denominator), clamped outside, where float32 tanh is 1 to within an ulp. Maximum absolute error in
# float32 arithmetic: ~2e-7 (see tests/test_fastgen.py::test_tanh_and_sigmoid_approximations). Library tanh/exp
# per element do not vectorize in numba (a call each); this is 11 multiply-adds and one division, all vectorized.
_CLAMP = np.float32(7.90531110763549805)
_A1, _A3, _A5, _A7 = (np.float32(v) for v in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                                              5.12229709037114e-08))
_A9, _A11, _A13 = (np.float32(v) for v in (-8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (np.float32(v) for v in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                                              1.19825839466702e-06))
_HALF = np.float32(0.5)


@njit(cache=True, inline="always", fastmath={"contract"}, error_model="numpy")
def _rational(x):
    """`tanh`'s numerator and denominator at x (clamped), undivided."""
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p, q


@njit(cache=True, inline="always", fastmath={"contract"}, error_model="numpy")
def tanh(x):
    """float32 -> float32 tanh, |error| <= ~2e-7."""
    p, q = _rational(x)
    return p / q


@njit(cache=True, inline="always", fastmath={"contract"}, error_model="numpy")
def sigmoid(x):
    """float32 -> float32 logistic function as 0.5 + 0.5 tanh(x / 2): |error| <= ~1e-7."""
    return _HALF + _HALF * tanh(_HALF * x)


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def gate(h, z):
    """z = tanh(h[:, :G/2]) * sigmoid(h[:, G/2:]) for h float32 [B, G], into z float32 [B, G/2] (unit stride
    along a row).

    With tanh = p / q and sigmoid(x) = 0.5 + 0.5 tanh(x / 2) = (q' + p') / (2 q'), the product is one division,
    p (q' + p') / (2 q q'), not two: the gate is on every layer's critical path. 16 columns at a time in 16-lane
    vectors (`_gate_16`: numba's own loops here got 8 lanes on AVX-512), the rest one by one.
    """
    half = z.shape[1]
    whole = half - half % LANES
    for b in range(h.shape[0]):
        for c in range(0, whole, LANES):
            _gate_16(h, z, b, c)
        for c in range(whole, half):
            p, q = _rational(h[b, c])
            ps, qs = _rational(_HALF * h[b, half + c])
            z[b, c] = (p * (qs + ps)) / ((q + q) * qs)


def _emit_gate(builder, filter_, gate_, rational=None):
    """tanh(filter_) * sigmoid(gate_) for two 16-lane float32 vectors, as `gate` computes it: p (q' + p') / (2 q q')
    from tanh's rational function (p / q) of filter_ and (p' / q') of gate_ / 2. rational(builder, x) -> (p, q):
    `_emit_rational` unless given (int8's gate takes a cheaper one)."""
    p, q = (rational or _emit_rational)(builder, filter_)
    ps, qs = (rational or _emit_rational)(builder, builder.fmul(_splat_f32(_HALF), gate_))
    return builder.fdiv(builder.fmul(p, builder.fadd(qs, ps)), builder.fmul(builder.fadd(q, q), qs))


def _emit_rational(builder, x):
    """`_rational` on a 16-lane vector: the same operations in the same order."""
    x = _emit_clamp(builder, x, _CLAMP)
    x2 = builder.fmul(x, x)
    p = _splat_f32(_A13)
    for a in (_A11, _A9, _A7, _A5, _A3, _A1):
        p = builder.call(_fma(builder), [p, x2, _splat_f32(a)])
    q = _splat_f32(_B6)
    for a in (_B4, _B2, _B0):
        q = builder.call(_fma(builder), [q, x2, _splat_f32(a)])
    return builder.fmul(p, x), q


def _emit_clamp(builder, x, bound):
    """x clamped to [-bound, bound], lane by lane."""
    x = builder.select(builder.fcmp_ordered(">", x, _splat_f32(-bound)), x, _splat_f32(-bound))
    return builder.select(builder.fcmp_ordered("<", x, _splat_f32(bound)), x, _splat_f32(bound))


def _splat_f32(v):
    return ir.Constant(_VEC, [float(v)] * LANES)


def _fma(builder, vec_type=None):
    """The function a * b + c of vec_type vectors: fused where the CPU multiplies and adds in one instruction; on
    CPUs without FMA (SSE-only or AVX-only x86: pre-2013 cores, and Atom, Celeron and Pentium Silver cores until
    2021) LLVM would call a software fma for every lane (one stream ran at 0.3x real time so), so there a multiply
    and an add, rounded twice."""
    vec_type = vec_type or _VEC  # (defined below)
    kind = f"v{vec_type.count}{'f32' if vec_type.element == _F32 else 'f64'}"
    signature = ir.FunctionType(vec_type, [vec_type] * 3)
    if HAS_FMA:
        return cgutils.get_or_insert_function(builder.module, signature, f"llvm.fma.{kind}")
    fn = cgutils.get_or_insert_function(builder.module, signature, f"movenet_mul_add_{kind}")
    if fn.is_declaration:
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        body = ir.IRBuilder(fn.append_basic_block())
        a, b, c = fn.args
        body.ret(body.fadd(body.fmul(a, b), c))
    return fn


def _operands(context, builder, arg_types, arg_values, n_arrays):
    """An intrinsic's arguments in its code: the first n_arrays as numba's array structs, the rest as int64 values."""
    arrays = [context.make_array(t)(context, builder, v) for t, v in zip(arg_types[:n_arrays], arg_values)]
    rest = zip(arg_types[n_arrays:], arg_values[n_arrays:])
    return arrays + [context.cast(builder, v, t, types.int64) for t, v in rest]


@intrinsic
def _gate_16(typingctx, h, z, b, c):
    """`gate` for z[b, c : c + 16], in 16-lane vectors: the same operations in the same order."""
    def codegen(context, builder, signature, args):
        h_arr, z_arr, bv, cv = _operands(context, builder, signature.args, args, 2)
        h_row, _ = cgutils.unpack_tuple(builder, h_arr.strides, 2)
        z_row, _ = cgutils.unpack_tuple(builder, z_arr.strides, 2)
        _, half = cgutils.unpack_tuple(builder, z_arr.shape, 2)
        i8p = ir.IntType(8).as_pointer()
        four = ir.Constant(_I64, 4)

        def at(arr, row, col):
            base = builder.bitcast(arr.data, i8p)
            return builder.bitcast(builder.gep(base, [builder.add(builder.mul(bv, row), builder.mul(col, four))]),
                                   _VEC.as_pointer())

        filter_, gate_ = (builder.load(at(h_arr, h_row, col), align=4) for col in (cv, builder.add(cv, half)))
        builder.store(_emit_gate(builder, filter_, gate_), at(z_arr, z_row, cv), align=4)
        return context.get_dummy_value()

    return types.void(h, z, b, c), codegen


# -- matrix product --------------------------------------------------------------------------------------------------

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I32, _I64 = ir.IntType(32), ir.IntType(64)
_BF16_VEC, _I32_VEC = ir.VectorType(ir.IntType(16), LANES), ir.VectorType(_I32, LANES)
_SHIFT16 = ir.Constant(_I32_VEC, [16] * LANES)


class _BFloat(ir.types.Type):
    """LLVM's bfloat, which llvmlite's IR builder does not name: only the AVX512-BF16 intrinsic's operands use it."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


_PAIRS_VEC = ir.VectorType(_BFloat(), 2 * LANES)  # 16 pairs of bfloat16: one vdpbf16ps operand


@intrinsic
def _gemm_block(typingctx, y, x, w, b0, o0, mr, nr, pf):
    """y[b0:b0+MR, o0:o0+NR] += x[b0:b0+MR, :K] @ w[:K, o0:o0+NR] with MR x NR/16 vector accumulators.

    y, x: float32 2-D arrays, w float32 or bfloat16 held as uint16 (the top half of a float32: widened in the
    registers, then the same fp32 multiply-adds), each with unit stride along its last axis (any row stride);
    K = w.shape[0]. Or, on a host with AVX512-BF16, x and w both uint32 pairs of bfloat16 (`to_bf16_pairs`: row k
    holds inputs 2k and 2k + 1): then each vdpbf16ps multiplies 16 pairs and adds both products in fp32, twice
    the multiply-adds of an FMA, and K counts pairs.
    mr, nr, pf: literal ints, NR a multiple of 16. No bounds checks: the caller keeps the tile inside the arrays.
    Per k: NR/16 vector loads of w's row k, and per output row one broadcast of x[b, k] and NR/16 FMAs.
    pf > 0 also prefetches w's row k + pf (a prefetch past the end of w is harmless: prefetches never fault).
    """
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nr, types.IntegerLiteral)):
        return None
    MR, NR = mr.literal_value, nr.literal_value
    if not isinstance(pf, types.IntegerLiteral):
        return None
    PF = pf.literal_value
    if NR % LANES:
        raise ValueError(f"NR must be a multiple of {LANES}, got {NR}")
    BF16 = w.dtype == types.uint16
    PAIRS = w.dtype == types.uint32
    if PAIRS != (x.dtype == types.uint32):
        return None
    sig = types.void(y, x, w, b0, o0, mr, nr, pf)

    def codegen(context, builder, signature, args):
        y_arr, x_arr, w_arr, b0v, o0v = _operands(context, builder, signature.args[:5], args[:5], 3)
        _emit_block(builder, y_arr, x_arr, w_arr, b0v, o0v, MR, NR, PF, BF16, PAIRS)
        return context.get_dummy_value()

    return sig, codegen


def _emit_block(builder, y_arr, x_arr, w_arr, b0v, o0v, MR, NR, PF, BF16, PAIRS):
    """The LLVM code of one register tile of `_gemm_block`, at rows b0v.. and columns o0v.. (int64 values)."""
    NV = NR // LANES
    W_ITEM = 2 if BF16 else 4
    y_row, _ = cgutils.unpack_tuple(builder, y_arr.strides, 2)  # strides in bytes
    x_row, x_col = cgutils.unpack_tuple(builder, x_arr.strides, 2)
    w_row, _ = cgutils.unpack_tuple(builder, w_arr.strides, 2)
    K, _ = cgutils.unpack_tuple(builder, w_arr.shape, 2)
    i8p = ir.IntType(8).as_pointer()
    y_base, x_base, w_base = (builder.bitcast(a.data, i8p) for a in (y_arr, x_arr, w_arr))
    col = builder.mul(o0v, ir.Constant(_I64, 4))
    w_col = builder.mul(o0v, ir.Constant(_I64, W_ITEM))
    if PAIRS:
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC, _PAIRS_VEC, _PAIRS_VEC]),
                                             "llvm.x86.avx512bf16.dpbf16ps.512")
    else:
        fma = _fma(builder)
    prefetch = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p] + [_I32] * 3),
                                              "llvm.prefetch.p0i8")
    splat = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)

    def vec_ptr(base, byte_offset):
        return builder.bitcast(builder.gep(base, [byte_offset]), _VEC.as_pointer())

    def y_ptr(i, v):
        row = builder.mul(builder.add(b0v, ir.Constant(_I64, i)), y_row)
        return vec_ptr(y_base, builder.add(row, builder.add(col, ir.Constant(_I64, 4 * LANES * v))))

    # accumulators start from y (so y can hold a bias); allocas in the entry block become registers
    acc = []
    for i in range(MR):
        for v in range(NV):
            slot = cgutils.alloca_once(builder, _VEC)
            builder.store(builder.load(y_ptr(i, v), align=4), slot)
            acc.append(slot)
    x_rows = [builder.gep(x_base, [builder.mul(builder.add(b0v, ir.Constant(_I64, i)), x_row)]) for i in range(MR)]
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        w_k = builder.gep(w_base, [builder.add(builder.mul(k, w_row), w_col)])
        if PF:  # llvm.prefetch(address, read, locality 3 = keep in all levels, data cache)
            ahead = builder.gep(w_k, [builder.mul(ir.Constant(_I64, PF), w_row)])
            for line in range(0, W_ITEM * NR, 64):
                builder.call(prefetch, [builder.gep(ahead, [ir.Constant(_I64, line)]), ir.Constant(_I32, 0),
                                        ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        if BF16:  # 16 bfloat16 -> the high halves of 16 float32
            w_vecs = [builder.bitcast(builder.shl(builder.zext(builder.load(builder.bitcast(
                builder.gep(w_k, [ir.Constant(_I64, 2 * LANES * v)]), _BF16_VEC.as_pointer()), align=2),
                _I32_VEC), _SHIFT16), _VEC) for v in range(NV)]
        elif PAIRS:  # 16 pairs, as one operand of vdpbf16ps
            w_vecs = [builder.bitcast(builder.load(builder.bitcast(builder.gep(
                w_k, [ir.Constant(_I64, 4 * LANES * v)]), _I32_VEC.as_pointer()), align=4), _PAIRS_VEC)
                for v in range(NV)]
        else:
            w_vecs = [builder.load(vec_ptr(w_k, ir.Constant(_I64, 4 * LANES * v)), align=4) for v in range(NV)]
        x_k = builder.mul(k, x_col)
        x_type, x_vec_type = (_I32, _I32_VEC) if PAIRS else (_F32, _VEC)
        for i in range(MR):
            x_ik = builder.load(builder.bitcast(builder.gep(x_rows[i], [x_k]), x_type.as_pointer()), align=4)
            x_vec = builder.shuffle_vector(builder.insert_element(ir.Constant(x_vec_type, ir.Undefined), x_ik,
                                                                  ir.Constant(_I32, 0)),
                                           ir.Constant(x_vec_type, ir.Undefined), splat)
            for v in range(NV):
                slot = acc[i * NV + v]
                if PAIRS:
                    total = builder.call(fma, [builder.load(slot), builder.bitcast(x_vec, _PAIRS_VEC), w_vecs[v]])
                else:
                    total = builder.call(fma, [x_vec, w_vecs[v], builder.load(slot)])
                builder.store(total, slot)
    for i in range(MR):
        for v in range(NV):
            builder.store(builder.load(acc[i * NV + v]), y_ptr(i, v), align=4)


@intrinsic
def _one_row(typingctx, y, x, w):
    """y += x @ w for one row (y float32 [1, O] with O a multiple of 16, x float32 [1, K], w float32 or bfloat16
    [K, O]): `_gemm_block`'s 1-row tiles across the columns (ROW_TILE wide), then one each of the narrower ones for
    the rest, emitted where it is called (why: the module docstring).
    """
    if w.dtype not in (types.float32, types.uint16) or x.dtype != types.float32:
        return None
    BF16 = w.dtype == types.uint16
    wide = ROW_TILE
    sig = types.void(y, x, w)

    def codegen(context, builder, signature, args):
        y_arr, x_arr, w_arr = _operands(context, builder, signature.args, args, 3)
        _, O = cgutils.unpack_tuple(builder, y_arr.shape, 2)
        zero = ir.Constant(_I64, 0)
        with cgutils.for_range(builder, builder.sdiv(O, ir.Constant(_I64, wide))) as loop:
            _emit_block(builder, y_arr, x_arr, w_arr, zero, builder.mul(loop.index, ir.Constant(_I64, wide)), 1,
                        wide, PREFETCH_ROWS, BF16, False)
        o = cgutils.alloca_once_value(builder, builder.mul(builder.sdiv(O, ir.Constant(_I64, wide)),
                                                           ir.Constant(_I64, wide)))
        narrower = wide // 2
        while narrower >= LANES:
            with builder.if_then(builder.icmp_signed("<=", builder.add(builder.load(o), ir.Constant(_I64, narrower)),
                                                     O)):
                _emit_block(builder, y_arr, x_arr, w_arr, zero, builder.load(o), 1, narrower, PREFETCH_ROWS, BF16,
                            False)
                builder.store(builder.add(builder.load(o), ir.Constant(_I64, narrower)), o)
            narrower //= 2
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, error_model="numpy")
def _columns(y, x, w, b, o, rows):
    """The columns o.. of rows b..b+rows-1 left over after the vector tiles: plain loops (small configs only)."""
    K, O = w.shape
    for i in range(b, b + rows):
        for j in range(o, O):
            s = y[i, j]
            for k in range(K):
                s += product(x[i, k], w[k, j])
            y[i, j] = s


@intrinsic
def product(typingctx, x, w):
    """One input times one weight in float32: x * w for a float32 or bfloat16 (uint16) weight; for uint32 pairs of
    bfloat16 (input and weight alike), the sum of the two products."""
    if x == types.float32 and w in (types.float32, types.uint16):
        def codegen(context, builder, signature, args):
            weight = args[1] if w == types.float32 else _widen(builder, args[1])
            return builder.fmul(args[0], weight)
    elif x == types.uint32 and w == types.uint32:
        def codegen(context, builder, signature, args):
            halves = [[_widen(builder, builder.trunc(builder.lshr(v, ir.Constant(_I32, shift)), ir.IntType(16)))
                       for shift in (0, 16)] for v in args]
            return builder.fadd(builder.fmul(halves[0][0], halves[1][0]), builder.fmul(halves[0][1], halves[1][1]))
    else:
        return None
    return types.float32(x, w), codegen


def _widen(builder, v16):
    return builder.bitcast(builder.shl(builder.zext(v16, _I32), ir.Constant(_I32, 16)), _F32)


def aligned(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts on an `alignment`-byte boundary (a cache line). numpy starts
    arrays on 16 bytes: a tile's 64-byte loads of weights that start elsewhere each span two cache lines (one
    stream in fp32 on an Intel Xeon: 107,000 samples/s with the weights as numpy placed them, 135,000 aligned)."""
    a = np.ascontiguousarray(a)
    raw = np.empty(a.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start: start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even), held as uint16; the tiles (or `from_bf16`) turn it back."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def to_bf16_pairs(w: np.ndarray) -> np.ndarray:
    """float32 [..., K, O] -> uint32 [..., ceil(K / 2), O]: row k holds bfloat16 rows 2k (low half) and 2k + 1
    (high half; zero past K), the layout vdpbf16ps multiplies."""
    w = np.asarray(w, dtype=np.float32)
    if w.shape[-2] % 2:
        w = np.concatenate([w, np.zeros(w.shape[:-2] + (1, w.shape[-1]), np.float32)], axis=-2)
    bf = to_bf16(w).astype(np.uint32)
    return np.ascontiguousarray(bf[..., 0::2, :] | (bf[..., 1::2, :] << np.uint32(16)))


@njit(cache=True, error_model="numpy", _nrt=False)
def pack_pairs(x, xp):
    """xp[b, k] = the bfloat16 pair (x[b, 2k], x[b, 2k + 1]) (round to nearest even; zero past x's columns), for
    x float32 [B, K] (unit stride along a row) and xp uint32 [>= B, >= ceil(K / 2)], C-contiguous. A pair is two
    bfloat16 in memory order (little-endian: 2k in the low half), so a row is x's row rounded in order: 16 at a
    time with vcvtneps2bf16 where the CPU has it (every CPU the pairs run on), then one by one."""
    B, K = x.shape
    whole = K - K % LANES if HAS_BF16_CONVERT else 0
    for b in range(B):
        for k in range(0, whole, LANES):
            _round_16(x, xp, b, k)
        for k in range(whole, K - K % 2, 2):
            xp[b, k // 2] = _round_bf16(x[b, k]) | (_round_bf16(x[b, k + 1]) << np.uint32(16))
        if K % 2:
            xp[b, K // 2] = _round_bf16(x[b, K - 1])


@intrinsic
def _round_16(typingctx, x, xp, b, k):
    """xp's row b from pair k / 2 on = x[b, k : k + 16] rounded to bfloat16 (vcvtneps2bf16), k even."""
    def codegen(context, builder, signature, args):
        x_arr, p_arr, bv, kv = _operands(context, builder, signature.args, args, 2)
        x_row, x_col = cgutils.unpack_tuple(builder, x_arr.strides, 2)
        p_row, _ = cgutils.unpack_tuple(builder, p_arr.strides, 2)
        i8p = ir.IntType(8).as_pointer()
        src = builder.gep(builder.bitcast(x_arr.data, i8p),
                          [builder.add(builder.mul(bv, x_row), builder.mul(kv, x_col))])
        dst = builder.gep(builder.bitcast(p_arr.data, i8p), [builder.add(builder.mul(bv, p_row),
                                                                          builder.mul(kv, ir.Constant(_I64, 2)))])
        convert = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VectorType(_BFloat(), LANES), [_VEC]),
            "llvm.x86.avx512bf16.cvtneps2bf16.512")
        rounded = builder.call(convert, [builder.load(builder.bitcast(src, _VEC.as_pointer()), align=4)])
        builder.store(builder.bitcast(rounded, _BF16_VEC), builder.bitcast(dst, _BF16_VEC.as_pointer()), align=2)
        return context.get_dummy_value()

    return types.void(x, xp, b, k), codegen


@njit(cache=True, inline="always", error_model="numpy")
def _round_bf16(v):
    bits = _float_bits(v)
    return (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@intrinsic
def _float_bits(typingctx, v):
    """A float32's bits as uint32."""
    if v != types.float32:
        return None
    return types.uint32(v), lambda context, builder, signature, args: builder.bitcast(args[0], _I32)


@functools.cache  # the CPU does not change under a running process
def _host_features() -> dict:
    """The instruction sets numba compiles for: the host's, or those NUMBA_CPU_FEATURES names ("+avx2,-avx512f,
    ..."), which numba then compiles for instead (to build for an older CPU, or to run that CPU's code here)."""
    from numba.core import config

    if config.CPU_FEATURES:
        return {f[1:]: f[0] == "+" for f in config.CPU_FEATURES.split(",") if f[:1] in "+-" and f[1:]}
    try:
        import llvmlite.binding as llvm

        return dict(llvm.get_host_cpu_features())
    except Exception:  # an unknown host: the narrow tiles are right for 16 vector registers and fine for 32
        return {}


def host_has_avx2() -> bool:
    """Whether numba compiles for a CPU with AVX2 (256-bit integer vectors, which bf16's widening takes)."""
    return bool(_host_features().get("avx2"))


def _host_has_avx512() -> bool:
    return bool(_host_features().get("avx512f"))


def host_has_bf16_dot() -> bool:
    """Whether this CPU has vdpbf16ps (AVX512-BF16: AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and
    later), which the uint32-pair tiles need; elsewhere they would not compile."""
    return bool(_host_features().get("avx512bf16"))


@functools.cache
def host_is_intel() -> bool:
    """Whether this CPU is Intel's (Linux's /proc/cpuinfo; False where it cannot tell)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip() == "GenuineIntel"
    except OSError:
        pass
    return False


@functools.cache
def host_cache_bytes(level: int) -> int:
    """The size of one core's data (or unified) cache of this level, in bytes (Linux's sysfs); 0 where unknown."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "level")) as f, open(os.path.join(base, entry, "type")) as g:
                if int(f.read()) != level or g.read().strip() not in ("Data", "Unified"):
                    continue
            with open(os.path.join(base, entry, "size")) as f:
                size = f.read().strip()  # "2048K"
            unit = {"K": 1 << 10, "M": 1 << 20}.get(size[-1], 1)
            return int(size.rstrip("KM")) * unit
    except (OSError, ValueError):
        pass
    return 0


# The register tiles fit the host's vector registers: AVX-512 has 32 of 16 lanes, AVX2 16 of 8 (each 16-lane
# accumulator takes two). Tiles that do not fit spill to memory on every multiply-add: with AVX-512's tiles an
# AVX2 core ran batches no faster than one stream. Fixed when this module is compiled (numba folds the branch).
WIDE_TILES = _host_has_avx512()
# One stream's tiles: a row of ROW_TILE columns, 8 accumulators of AVX-512 (or AVX2's 8 of 8 lanes); with SSE's 16
# registers of 4 lanes, 64 columns took all 16 and spilled (one stream 59,500 samples/s against 77,800 at 32)
ROW_TILE = 128 if WIDE_TILES else 64 if _host_features().get("avx") else 32
HAS_FMA = bool(_host_features().get("fma"))  # `_fma`
HAS_BF16_CONVERT = host_has_bf16_dot()  # vcvtneps2bf16 comes with vdpbf16ps (AVX512-BF16)
# Rows of w the tiles prefetch ahead. Weights that live in L3 between samples (2 MB of them, an earlier default
# config on a Zen 4 with 1 MB of L2) went from ~19 to ~16 us a sample with 4; the default weights now (0.3 MB in
# bf16, 0.6 MB in fp32) stay in L2 on every host seen, and there the prefetches cost: on an Intel Xeon a 75 x 64
# product from L2 took 382 ns with them and 211 ns without, and 32 streams in bf16 ran 26 % faster without.
PREFETCH_ROWS = 0


@njit(cache=True, error_model="numpy")
def matmul_acc(y, x, w):
    """y += x @ w for float32 y [B, O], x [B, K], w [K, O] (unit stride along the last axis of each).

    Tiles with AVX-512 (WIDE_TILES): 8 rows x 32 columns (16 accumulators), then 4 x 64, 2 x 64 and 1 x 128 (or
    64, 32) for the rows left over (one stream is the 1-row case: 8 independent accumulators keep the FMA units
    busy), then 16-column tiles. Otherwise (AVX2: 16 registers of 8 lanes): 6 x 16 (12 registers of
    accumulators), 4 x 16, 2 x 32 and 1 x 64 (8 each; 1 x 32 with SSE only: ROW_TILE). Then plain loops for the
    last O % 16 columns.
    """
    B, O = y.shape
    b = 0
    if WIDE_TILES:
        while b + 8 <= B:
            o = 0
            while o + 32 <= O:
                _gemm_block(y, x, w, b, o, 8, 32, PREFETCH_ROWS)
                o += 32
            if o + 16 <= O:
                _gemm_block(y, x, w, b, o, 8, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 8)
            b += 8
        if b + 4 <= B:
            o = 0
            while o + 64 <= O:
                _gemm_block(y, x, w, b, o, 4, 64, PREFETCH_ROWS)
                o += 64
            while o + 16 <= O:
                _gemm_block(y, x, w, b, o, 4, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 4)
            b += 4
        if b + 2 <= B:
            o = 0
            while o + 64 <= O:
                _gemm_block(y, x, w, b, o, 2, 64, PREFETCH_ROWS)
                o += 64
            while o + 16 <= O:
                _gemm_block(y, x, w, b, o, 2, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 2)
            b += 2
    else:
        while b + 6 <= B:
            o = 0
            while o + 16 <= O:
                _gemm_block(y, x, w, b, o, 6, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 6)
            b += 6
        if b + 4 <= B:
            o = 0
            while o + 16 <= O:
                _gemm_block(y, x, w, b, o, 4, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 4)
            b += 4
        if b + 2 <= B:
            o = 0
            while o + 32 <= O:
                _gemm_block(y, x, w, b, o, 2, 32, PREFETCH_ROWS)
                o += 32
            while o + 16 <= O:
                _gemm_block(y, x, w, b, o, 2, 16, PREFETCH_ROWS)
                o += 16
            _columns(y, x, w, b, o, 2)
            b += 2
    if b < B:
        o = 0
        if ROW_TILE >= 128:
            while o + 128 <= O:
                _gemm_block(y, x, w, b, o, 1, 128, PREFETCH_ROWS)
                o += 128
        while ROW_TILE >= 64 and o + 64 <= O:
            _gemm_block(y, x, w, b, o, 1, 64, PREFETCH_ROWS)
            o += 64
        while o + 32 <= O:
            _gemm_block(y, x, w, b, o, 1, 32, PREFETCH_ROWS)
            o += 32
        if o + 16 <= O:
            _gemm_block(y, x, w, b, o, 1, 16, PREFETCH_ROWS)
            o += 16
        _columns(y, x, w, b, o, 1)


def matmul(y, x, w, pairs):
    """y += x @ w: matmul_acc for float32 or bfloat16 weights; for uint32 pairs (`to_bf16_pairs`), x's rows are
    first rounded into `pairs` (uint32 [>= B, >= w.shape[0]] scratch), then multiplied pair by pair. Compiled code
    only (the overload below)."""
    raise NotImplementedError("kernels.matmul runs inside compiled code")


@overload(matmul, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _matmul(y, x, w, pairs):
    if w.dtype == types.int8:  # int8 quads (movenet.int8): x's rows quantized into `pairs`, then multiplied
        from movenet.int8 import int8_acc, pack_quads

        def with_quads(y, x, w, pairs):
            pack_quads(x, pairs)
            int8_acc(y, pairs, w)
        return with_quads
    if w.dtype == types.int32:  # AMX tiles (`to_amx_pairs`): y's rows are a multiple of 16
        def with_tiles(y, x, w, pairs):
            pack_pairs(x, pairs)
            _amx_product(y, pairs[: y.shape[0]], w)
        return with_tiles
    if w.dtype == types.uint32:
        def with_pairs(y, x, w, pairs):
            pack_pairs(x, pairs)
            matmul_acc(y, pairs[: x.shape[0], : w.shape[0]], w)
        return with_pairs

    def plain(y, x, w, pairs):
        if y.shape[0] == 1 and y.shape[1] % LANES == 0:
            _one_row(y, x, w)  # inline: one stream's products are too small to pay for a call
        else:
            matmul_acc(y, x, w)
    return plain


def columns(w, start, stop):
    """The weight matrix w's columns start .. stop - 1 (a view), whatever its layout. Compiled code only."""
    raise NotImplementedError("kernels.columns runs inside compiled code")


@overload(columns, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _columns_of(w, start, stop):
    if w.dtype == types.int8:  # 4 bytes a column
        return lambda w, start, stop: w[:, 4 * start: 4 * stop]
    return lambda w, start, stop: w[:, start:stop]


# -- AMX tiles ----------------------------------------------------------------------------------------------------
# Intel's AMX (Sapphire Rapids and later) multiplies whole tiles: one tdpbf16ps adds a [16 rows x 32 bfloat16] by
# [16 pairs x 16 columns] product into a [16 x 16] fp32 tile, 8192 multiply-adds, where an FMA does 16. Its
# operands are the bf16dot layout: inputs as rows of bfloat16 pairs, weights as `to_bf16_pairs` rows (here padded to
# a multiple of 16 rows of pairs with zeros, and held as int32 so that the product can tell them from vdpbf16ps's
# uint32). The instructions go in as inline assembly (LLVM has no usable intrinsics for them through llvmlite). A
# tile always spans 16 rows, whatever the number of streams: each output row is computed alone, from its own input
# row, so a stream's values do not depend on how many others run beside it (the work arrays are padded to 16 rows).
AMX_ROWS = 16  # rows of a tile
AMX_PAIRS = 16  # pairs of bfloat16 in a tile row (64 bytes)
AMX_COLUMNS = 16  # fp32 columns of an output tile


@functools.cache  # the permission is the process's, for good
def host_has_amx() -> bool:
    """Whether this CPU has AMX tiles with bfloat16 and the kernel lets this process use them (Linux asks each
    process to request the tiles' state: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA))."""
    features = _host_features()
    if not (features.get("amx-tile") and features.get("amx-bf16")):
        return False
    try:
        import ctypes
        import llvmlite.binding as llvm

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(158, 0x1023, 18) != 0:  # SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
            return False
        llvm.initialize_native_asmparser()  # numba's LLVM then assembles the tiles' inline assembly
        return True
    except Exception:
        return False


def to_amx_pairs(w: np.ndarray) -> np.ndarray:
    """float32 [..., K, O] -> int32 [..., 16 * ceil(K / 32), O]: `to_bf16_pairs`, padded with zero rows to whole
    tiles of 16 pairs (zero weights: whatever the inputs' padding holds adds nothing)."""
    pairs = to_bf16_pairs(w)
    rows = -(-pairs.shape[-2] // AMX_PAIRS) * AMX_PAIRS
    out = np.zeros(pairs.shape[:-2] + (rows, pairs.shape[-1]), np.uint32)
    out[..., : pairs.shape[-2], :] = pairs
    return out.view(np.int32)


def tile_rows(w, B):
    """Rows a work array needs for B streams multiplied by w: B, or B padded to whole tiles for AMX weights.
    Compiled code only (the overload below)."""
    raise NotImplementedError("kernels.tile_rows runs inside compiled code")


@overload(tile_rows, inline="always", jit_options={"cache": True, "error_model": "numpy"})
def _tile_rows(w, B):
    if w.dtype == types.int32:
        def padded(w, B):
            amx_configure(amx_config())  # this thread's tiles, before any product
            return -(-B // AMX_ROWS) * AMX_ROWS
        return padded
    return lambda w, B: B


def _asm(builder, text, constraint, args):
    builder.asm(ir.FunctionType(ir.VoidType(), [a.type for a in args]), text, constraint, args, side_effect=True)


@intrinsic
def amx_configure(typingctx, config):
    """ldtilecfg: every tile 16 rows of 64 bytes (config: uint8 [64], `amx_config`). Once per thread and call."""
    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        _asm(builder, "ldtilecfg ($0)", "r,~{memory}", [builder.bitcast(arr.data, ir.IntType(8).as_pointer())])
        return context.get_dummy_value()

    return types.void(config), codegen


@njit(cache=True, error_model="numpy")
def amx_config():
    """The tile configuration `amx_configure` loads: palette 1, tiles 0-7 of 16 rows x 64 bytes."""
    config = np.zeros(64, np.uint8)
    config[0] = 1
    for t in range(8):
        config[16 + 2 * t] = 64  # bytes per row (little-endian uint16)
        config[48 + t] = AMX_ROWS
    return config


@intrinsic
def _amx_product(typingctx, y, xp, w):
    """y += xp @ w with tiles: y float32 [R, O] (R a multiple of 16, O of 16), xp uint32 pairs [R, >= K] (the
    inputs, unit stride along a row), w int32 pairs [K, O] with K a multiple of 16 (`to_amx_pairs`), any row
    strides. Per 16 rows: 64 columns at a time in tiles 0-3, the inputs' tile in 4 and the weights' in 5-6 (two, so
    that a load need not wait for the product before it), the rest 16 columns at a time."""
    if not (w.dtype == types.int32 and xp.dtype == types.uint32 and y.dtype == types.float32):
        return None

    def codegen(context, builder, signature, args):
        y_arr, x_arr, w_arr = _operands(context, builder, signature.args, args, 3)
        R, O = cgutils.unpack_tuple(builder, y_arr.shape, 2)
        K, _ = cgutils.unpack_tuple(builder, w_arr.shape, 2)
        y_row, _ = cgutils.unpack_tuple(builder, y_arr.strides, 2)
        x_row, _ = cgutils.unpack_tuple(builder, x_arr.strides, 2)
        w_row, _ = cgutils.unpack_tuple(builder, w_arr.strides, 2)
        i8p = ir.IntType(8).as_pointer()
        y_base, x_base, w_base = (builder.bitcast(a.data, i8p) for a in (y_arr, x_arr, w_arr))
        c = lambda v: ir.Constant(_I64, v)  # noqa: E731

        def load(tile, base, offset, stride):
            _asm(builder, f"tileloadd ($0,$1,1), %tmm{tile}", "r,r,~{memory}", [builder.gep(base, [offset]), stride])

        def store(tile, base, offset, stride):
            _asm(builder, f"tilestored %tmm{tile}, ($0,$1,1)", "r,r,~{memory}",
                 [builder.gep(base, [offset]), stride])

        def dot(out, a, b):
            _asm(builder, f"tdpbf16ps %tmm{b}, %tmm{a}, %tmm{out}", "~{memory}", [])

        def tiles(m, col, n):  # rows m.. (a multiple of 16), n output tiles from column col
            def y_at(j):
                return builder.add(builder.mul(m, y_row), builder.mul(builder.add(col, c(16 * j)), c(4)))

            for j in range(n):
                load(j, y_base, y_at(j), y_row)
            with cgutils.for_range(builder, builder.sdiv(K, c(AMX_PAIRS))) as ks:
                k0 = builder.mul(ks.index, c(AMX_PAIRS))
                load(4, x_base, builder.add(builder.mul(m, x_row), builder.mul(k0, c(4))), x_row)
                for j in range(n):
                    w_at = builder.add(builder.mul(k0, w_row), builder.mul(builder.add(col, c(16 * j)), c(4)))
                    load(5 + j % 2, w_base, w_at, w_row)
                    dot(j, 4, 5 + j % 2)
            for j in range(n):
                store(j, y_base, y_at(j), y_row)

        with cgutils.for_range(builder, builder.sdiv(R, c(AMX_ROWS))) as mt:
            m = builder.mul(mt.index, c(AMX_ROWS))
            with cgutils.for_range(builder, builder.sdiv(O, c(64))) as nb:
                tiles(m, builder.mul(nb.index, c(64)), 4)
            with cgutils.for_range(builder, builder.sdiv(builder.srem(O, c(64)), c(16))) as nt:
                tiles(m, builder.add(builder.mul(builder.sdiv(O, c(64)), c(64)), builder.mul(nt.index, c(16))), 1)
        return context.get_dummy_value()

    return types.void(y, xp, w), codegen


# -- exp in float64 ---------------------------------------------------------------------------------------------------
# For the sampler's softmax: libm's exp is a call per element (~10 ns); this vectorizes. exp(x) = 2^k exp(r) with
# k = round(x / ln 2), r = x - k ln 2 (ln 2 split in two so k ln 2 is exact), |r| <= 0.35, exp(r) by its Taylor
# polynomial of degree 13 (truncation < 1e-17), times 2^k: one vscalefpd with AVX-512, else built from exponent
# bits in two halves, so that results down to the subnormal range round like a single multiplication. Within 2 ulp
# of numpy's exp.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_INV_FACTORIALS = tuple(1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(14))
(_F0, _F1, _F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12, _F13) = _INV_FACTORIALS


def _largest_lane(builder, v):
    """The largest of a 16-lane float32 vector's lanes, as a tree of 4 vector maxima (llvm.vector.reduce.fmax
    becomes 15 dependent scalar steps, each checking for NaN: ~75 cycles where this takes ~15)."""
    for width in (8, 4, 2, 1):
        other = builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined),
                                       ir.Constant(_I32_VEC, [(i + width) % LANES for i in range(LANES)]))
        v = builder.select(builder.fcmp_ordered(">", other, v), other, v)
    return builder.extract_element(v, ir.Constant(_I32, 0))


@intrinsic
def max_16(typingctx, x, start, n):
    """The largest of x[start : start + 16 n] (float32, n >= 1): 16 lanes at a time, then across the lanes (any
    order gives the same maximum of numbers)."""
    def codegen(context, builder, signature, args):
        arr, s0, nv = _operands(context, builder, signature.args, args, 1)
        def at(i):
            return builder.bitcast(builder.gep(arr.data, [builder.add(s0, builder.mul(i, ir.Constant(_I64, LANES)))]),
                                   _VEC.as_pointer())

        top = cgutils.alloca_once_value(builder, builder.load(at(ir.Constant(_I64, 0)), align=4))
        with cgutils.for_range(builder, nv) as loop:
            v, m = builder.load(at(loop.index), align=4), builder.load(top)
            builder.store(builder.select(builder.fcmp_ordered(">", v, m), v, m), top)
        return _largest_lane(builder, builder.load(top))

    return types.float32(x, start, n), codegen


_F64 = ir.DoubleType()
_DVEC, _QVEC = ir.VectorType(_F64, 8), ir.VectorType(_I64, 8)


def _emit_exp(builder, v):
    """exp of an 8-lane float64 vector v <= 0 (above; v < -745 gives 0)."""
    d = lambda c: ir.Constant(_DVEC, [float(c)] * 8)  # noqa: E731
    q = lambda c: ir.Constant(_QVEC, [int(c)] * 8)  # noqa: E731
    fma = _fma(builder, _DVEC)
    floor = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_DVEC, [_DVEC]), "llvm.floor.v8f64")
    v = builder.select(builder.fcmp_ordered(">", v, d(-1000.0)), v, d(-1000.0))
    k = builder.call(floor, [builder.call(fma, [v, d(_LOG2E), d(0.5)])])
    minus_k = builder.fneg(k)
    r = builder.call(fma, [minus_k, d(_LN2_LO), builder.call(fma, [minus_k, d(_LN2_HI), v])])
    p = d(_F13)
    for f in (_F12, _F11, _F10, _F9, _F8, _F7, _F6, _F5, _F4, _F3, _F2, _F1, _F0):
        p = builder.call(fma, [p, r, d(f)])
    if WIDE_TILES:  # p * 2^k in one vscalefpd, rounded once (as the two steps below where the result is normal)
        scalef = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            _DVEC, [_DVEC, _DVEC, _DVEC, ir.IntType(8), _I32]), "llvm.x86.avx512.mask.scalef.pd.512")
        return builder.call(scalef, [p, k, d(0.0), ir.Constant(ir.IntType(8), -1), ir.Constant(_I32, 4)])
    # 2^k in two factors, each a normal number down to x = -1000 (2^k alone is not below -1022)
    ki = builder.fptosi(k, _QVEC)
    k1 = builder.ashr(ki, q(1))
    s1 = builder.bitcast(builder.shl(builder.add(k1, q(1023)), q(52)), _DVEC)
    s2 = builder.bitcast(builder.shl(builder.add(builder.sub(ki, k1), q(1023)), q(52)), _DVEC)
    return builder.fmul(builder.fmul(p, s1), s2)


def _dvec_at(builder, arr, i):
    """A pointer to the 8 float64 from element i of a contiguous 1-D array on."""
    return builder.bitcast(builder.gep(arr.data, [i]), _DVEC.as_pointer())


@intrinsic
def _exp_8_blocks(typingctx, x, out, weights, totals, weighted, v):
    """`exp_block_sums` for blocks 8 v .. 8 v + 7: their 8 classes' exps (8 vectors), each block's sums in its
    lane."""
    def codegen(context, builder, signature, args):
        x_arr, o_arr, w_arr, t_arr, s_arr, vv = _operands(context, builder, signature.args, args, 5)
        (n,) = cgutils.unpack_tuple(builder, x_arr.shape, 1)
        stride = builder.sdiv(n, ir.Constant(_I64, 8))  # a row of blocks: one class of each
        first = builder.mul(vv, ir.Constant(_I64, 8))
        total = weighted_total = ir.Constant(_DVEC, [0.0] * 8)
        for i in range(8):  # class 8 j + i of blocks j = 8 v ..: the order of the reference's additions
            at = builder.add(builder.mul(stride, ir.Constant(_I64, i)), first)
            e = _emit_exp(builder, builder.load(_dvec_at(builder, x_arr, at), align=8))
            builder.store(e, _dvec_at(builder, o_arr, at), align=8)
            total = builder.fadd(total, e)
            weight = builder.load(_dvec_at(builder, w_arr, at), align=8)
            weighted_total = builder.fadd(weighted_total, builder.fmul(e, weight))
        builder.store(total, _dvec_at(builder, t_arr, first), align=8)
        builder.store(weighted_total, _dvec_at(builder, s_arr, first), align=8)
        return context.get_dummy_value()

    return types.void(x, out, weights, totals, weighted, v), codegen


def block_major_size(n_classes: int) -> int:
    """The length of `block_major`'s order: n_classes rounded up to a multiple of 64."""
    return -(-n_classes // 64) * 64


def block_major(n_classes: int) -> np.ndarray:
    """Where each class lies in the block-major order of `exp_block_sums`: int64 [n_classes]. Blocks of 8 classes
    (class 8 j + i is the i-th of block j), padded to a multiple of 8 blocks (64 classes); a row per class position
    i, a column per block j: class 8 j + i at i * n_blocks + j, so that 8 blocks' sums are 8 lanes of one vector."""
    n_blocks = block_major_size(n_classes) // 8
    c = np.arange(n_classes)
    return (c % 8) * n_blocks + c // 8


@njit(cache=True, error_model="numpy", _nrt=False)
def exp_block_sums(x, out, weights, totals, weighted):
    """out = exp(x) for float64 x [64 n] <= 0 in block-major order (`block_major`; x < -745 gives 0; the exp
    above), and for each block j of 8 classes: totals[j] = 0 + its exps in class order, weighted[j] = 0 + its exps
    times weights (block-major too; each product rounded) in class order. A block's classes are one lane of 8
    vectors, so the sums are whole-vector additions, 8 blocks at once."""
    for v in range(x.shape[0] // 64):
        _exp_8_blocks(x, out, weights, totals, weighted, v)


@intrinsic
def prefetch(typingctx, a, i):
    """Hint the cache to fetch the line holding element i (flat, C order) of array a: nothing else, never faults."""
    sig = types.void(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.int64)
        address = builder.bitcast(builder.gep(arr.data, [index]), ir.IntType(8).as_pointer())
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [address.type] + [_I32] * 3),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [address, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return sig, codegen
