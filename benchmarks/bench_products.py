"""What bounds one stream's products: their read rate against the bandwidth probe's, printed as JSON.

    python benchmarks/bench_products.py [--seconds 0.5]

One stream multiplies a row of activations by each weight matrix in turn, every sample. This times the engine's
own one-row products (`kernels.matmul`, fp32 and bf16 weights) over a run of same-shape matrices laid one after
another, as many as fit L1 (24 KB of fp32) and as many as live in L2 (320 KB), beside `movenet bench`'s probe (a
plain sum) over the same bytes, and a dependent chain of integer additions to estimate the clock. Per case: GB/s,
cycles per weight row, and the ratio to the probe in the same run. Pinned to one CPU.

Read it so, per case: from L1, about the FMA latency per row (4 cycles with 64 columns: 4 accumulators, one
chain each) means the accumulator chains bind; the same from L2 and L1 means the work on the bytes binds, not the
reads; longer from L2 than from L1 means the rate at which L1 fills in this pattern binds, which can be well below
the probe's (Zen 5: fp32 from L2 ~33 bytes a cycle, 0.65-0.69 of the probe; bf16 at 64 columns 4.2-4.3 cycles a row
from either, its chains, and at 128-256 columns 7-15, from either: widening costs two vector operations per 16
weights, 24 a row of 128 columns beside its 8 FMAs).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numba
import numpy as np

from movenet.bench import _host, _rate, _read_all
from movenet.kernels import aligned, matmul, to_bf16

SHAPES = ((32, 64), (64, 64), (32, 128), (32, 256))  # (rows K, columns O): the default model's products and w2
# the bytes of fp32 matrices in a run: within L1 (32-48 KB on recent cores) and within L2 but not L1 (>= 512 KB)
RUN_BYTES = {"l1": 24 << 10, "l2": 320 << 10}


@numba.njit(error_model="numpy", _nrt=False)
def _products(y, x, ws, pairs, n):
    for _ in range(n):
        for i in range(ws.shape[0]):
            matmul(y, x, ws[i], pairs)


@numba.njit
def _chain(n):
    s = 0
    for i in range(n):
        s = (s + i) ^ 1  # two dependent one-cycle operations an iteration
    return s


def _clock_ghz(seconds: float) -> float:
    n = 50_000_000
    _chain(10)
    best = min(_timed(lambda: _chain(n)) for _ in range(max(1, int(seconds / 0.03))))
    return 2 * n / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(seconds: float = 0.5) -> dict:
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {sorted(old)[-1]})
    try:
        ghz = _clock_ghz(seconds)
        rng = np.random.default_rng(0)
        cases = []
        for K, O in SHAPES:
            x = aligned(rng.standard_normal((1, K)).astype(np.float32))
            y = aligned(np.zeros((1, O), np.float32))
            pairs = np.zeros((16, K + 16), np.uint32)
            for where, run_bytes in RUN_BYTES.items():
                n = max(1, run_bytes // (K * O * 4))
                for kind in ("fp32", "bf16"):
                    ws = (rng.standard_normal((n, K, O)) * 0.01).astype(np.float32)
                    ws = aligned(to_bf16(ws) if kind == "bf16" else ws)
                    calls = max(1, int(2e7 // ws.nbytes))
                    rate = max(_rate(lambda: _products(y, x, ws, pairs, calls), calls * ws.nbytes, seconds / 3)
                               for _ in range(3))  # bytes/s, the best of three
                    block = aligned(np.ones(ws.nbytes // 4, np.float32))
                    times = max(1, int(2e7 // ws.nbytes))
                    probe = max(_rate(lambda: _read_all(block, times), times * ws.nbytes, seconds / 3)
                                for _ in range(3))
                    row_bytes = ws.nbytes / (n * K)
                    cases.append({"rows": K, "columns": O, "weights": kind, "matrices": n, "from": where,
                                  "kb": round(ws.nbytes / 1024), "gb_s": round(rate / 1e9, 1),
                                  "cycles_per_row": round(row_bytes / rate * ghz * 1e9, 2),
                                  "probe_gb_s": round(probe / 1e9, 1), "of_probe": round(rate / probe, 2)})
        return {"host": _host(), "clock_ghz_estimate": round(ghz, 2), "cases": cases}
    finally:
        os.sched_setaffinity(0, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per case")
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds), indent=1))


if __name__ == "__main__":
    main()
