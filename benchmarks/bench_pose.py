"""Keypoint extraction on real videos: share of frames with a pose and milliseconds per frame, printed as JSON.

    python benchmarks/bench_pose.py [--fps 10 25] [--videos vtest.avi Megamind.avi tree.avi]

Runs pose.extract_keypoints (decode, sample to fps, bound to pose.MAX_SIDE, MediaPipe Pose tracking, One-Euro
smoothing) over each whole video. At a frame rate above the source's, held frames reuse their detection, so the
cost per output frame drops. Needs the pose extra (`pip install 'movenet[pose]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from movenet import pose, video

REAL_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-videos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--videos", nargs="+", default=["vtest.avi", "Megamind.avi", "tree.avi"])
    args = parser.parse_args()
    import mediapipe

    results = {"settings": pose.extractor_settings(), "mediapipe": mediapipe.__version__,
               "python": sys.version.split()[0], "machine": platform.machine(), "cpu_count": os.cpu_count(),
               "runs": []}
    for name in args.videos:
        path = REAL_VIDEOS / name
        info = video.probe(path)
        for fps in args.fps:
            start = time.perf_counter()
            keypoints = pose.extract_keypoints(path, fps, progress=False)
            wall = time.perf_counter() - start
            found = pose.detected(keypoints)
            results["runs"].append({
                "video": name, "source_size": [info.width, info.height], "fps": fps, "frames": len(keypoints),
                "frames_with_pose": int(found.sum()), "share_with_pose": round(float(found.mean()), 3),
                "ms_per_frame": round(1000 * wall / len(keypoints), 2),
            })
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
