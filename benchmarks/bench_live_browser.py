"""`movenet live` in a real browser (headless Chromium, a fake camera playing a synthetic dancer): the latency from
a frame's capture to its audio reaching the page against the target (95th percentile within one frame period +
50 ms), and underruns, as JSON. --screenshot writes a PNG of the page.

    python benchmarks/bench_live_browser.py [--seconds 20] [--screenshot docs/images/live.png] [--video FILE]
"""

import argparse
import json
import tempfile

from movenet import bench

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seconds", type=float, default=20.0)
parser.add_argument("--screenshot")
parser.add_argument("--checkpoint", help="a model.pt (default: the shipped one)")
parser.add_argument("--video", help="have the server play this file instead of the fake camera (movenet live --video)")
args = parser.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    run = bench.browser_session(None if args.video else bench.dancer_camera(tmp), args.seconds,
                                screenshot=args.screenshot, checkpoint_path=args.checkpoint, video_path=args.video)
stats = run["stats"]
started = stats["startedAt"]
print(json.dumps({
    "host": bench._host(), "seconds": args.seconds, "latency_ms_capture_to_audio": run["latency_ms"],
    "target_p95_ms": stats["server"].get("frame_ms", 40) + 50,
    "meets_target": None if run["latency_ms"][95] is None  # --video: the page captures no frames
    else run["latency_ms"][95] <= stats["server"].get("frame_ms", 40) + 50,
    "frames_sent": stats["framesSent"], "audio_messages": stats["audioMessages"],
    "audio_messages_of_a_new_frame": len(stats["latencies"]),
    "underruns_after_first_second": sum(t > started + 1.0 for t in stats["underrunTimes"]),
    "underruns": stats["underruns"], "server_tick_ms_p95": stats["server"].get("tick_ms_p95"),
    "frame_ms": stats["server"].get("frame_ms"), "page_errors": run["errors"],
    "frame_wait_for_tick_ms": [stats["server"].get("wait_ms_p50"), stats["server"].get("wait_ms_p95")],
    "frame_arrival_to_pose_ms": [stats["server"].get("see_ms_p50"), stats["server"].get("see_ms_p95")],
    "server_tick_ms_p50": stats["server"].get("tick_ms_p50"),
}, indent=1))
