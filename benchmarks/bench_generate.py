"""Generation speed (samples/s, real-time factor) and the memory of a 10-minute video, printed as JSON.

    python benchmarks/bench_generate.py [--seconds 3] [--batch 1 8 32] [--threads 1] [--long-seconds 600]

Measures the compiled generator (`movenet.fastgen`) for one stream and for batches of streams, the PyTorch
`MoveNet.step` loop as a same-run reference, and the peak resident memory of generating and writing
--long-seconds of audio chunk by chunk (0 skips that run, which takes a few minutes). Default model config,
random weights, pinned to --threads CPUs. See `movenet.bench.benchmark`.
"""

from __future__ import annotations

import argparse
import json

from movenet.bench import benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per batch size")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-seconds", type=float, default=3.0)
    parser.add_argument("--long-seconds", type=float, default=600.0, help="audio for the memory run; 0 skips it")
    args = parser.parse_args()
    print(json.dumps(benchmark(seconds=args.seconds, batch_sizes=tuple(args.batch), threads=args.threads,
                               reference_seconds=args.reference_seconds, long_seconds=args.long_seconds), indent=1))


if __name__ == "__main__":
    main()
