"""Prepare throughput: seconds of video prepared per wall-clock second per core, printed as JSON.

    python benchmarks/bench_prepare.py [--clips 4 --seconds 10]

Measured on one worker (one core): the synthetic dancer set (H.264 + AAC, 128x128) through the whole
`prepare`, and vtest.avi (768x576 msmpeg4, no audio) through the video half of it (decode + sample to 25 fps +
resize to 64x64 gray). As a reference on the same machine in the same run, a bare PyAV decode of every frame
of the same files, so the ratio says how much our sampling/resizing/storing costs on top of decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av

from movenet import synth, video
from movenet.data import DataConfig, prepare

REAL_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-videos"


def bare_decode_seconds(paths: list[Path]) -> float:
    """Wall time to decode every video frame (no resize, no sampling): the floor for any reader."""
    start = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the figure is per core, threads or not
    config = DataConfig(sample_rate=16000, fps=25, frame_size=64, gray=True)
    results = {"config": {"sample_rate": 16000, "fps": 25, "frame_size": 64, "gray": True, "workers": 1, "pinned_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
               "python": sys.version.split()[0], "machine": platform.machine(), "cpu_count": os.cpu_count()}

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "synth"
        paths = synth.write_dataset(src, n_clips=args.clips, seconds=args.seconds, seed=0, progress=False)
        start = time.perf_counter()
        report = prepare(src, Path(tmp) / "prepared", config, workers=1, progress=False)
        wall = time.perf_counter() - start
        seconds = sum(r["seconds"] for r in report.clips)
        ref = bare_decode_seconds(paths)
        results["synthetic"] = {
            "clips": len(report.clips), "video_seconds": round(seconds, 2), "wall_seconds": round(wall, 3),
            "realtime_per_core": round(seconds / wall, 1),
            "reference_bare_decode_realtime": round(seconds / ref, 1),
            "ratio_to_bare_decode": round(ref / wall, 3),
        }

    vtest = REAL_VIDEOS / "vtest.avi"
    if vtest.exists():
        start = time.perf_counter()
        n_frames = sum(1 for _ in video.iter_frames(vtest, fps=25, size=(64, 64), gray=True))
        wall = time.perf_counter() - start
        seconds = n_frames / 25
        ref = bare_decode_seconds([vtest])
        results["vtest.avi"] = {
            "video_seconds": round(seconds, 2), "wall_seconds": round(wall, 3),
            "realtime_per_core": round(seconds / wall, 1),
            "reference_bare_decode_realtime": round(seconds / ref, 1),
            "ratio_to_bare_decode": round(ref / wall, 3),
            "note": "no audio track: video half of prepare only",
        }
    results["target_realtime_per_core"] = 50
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
