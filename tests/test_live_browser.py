"""`movenet live` in a real browser: Debian's Chromium (installed by `make test`'s set-up) with a fake camera that
plays a synthetic dancer, driven by Playwright. For over 20 s the audio must arrive continuously and each frame's
audio must reach the page within one frame period of the host's own work on it (95th percentiles; on a busy
machine, in the better of two sessions), and the PCM the page received must equal what `movenet generate` makes
offline of the same frames with the same seed. The latency target itself (one frame period + 50 ms, which a host
half as fast as this one cannot meet) is benchmarks/bench_live_browser.py's."""

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from movenet import bench, checkpoint, demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLAY_SECONDS = 22.0


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    return bench.dancer_camera(tmp_path_factory.mktemp("camera"))


TRANSPORT_MS = 10  # the page's JPEG encoding and the socket both ways, on one host: 2-3 ms measured


def latency_bound_ms(stats: dict) -> float:
    """A frame's time to its sound as the server schedules it: the host's work on it (the pose from its arrival,
    the tick that plays it, 95th percentiles of the session), at most one frame period waiting for that tick, and
    the transport. A frame that waits a tick longer than it must, or queues behind another, is past it."""
    server = stats["server"]
    return server["frame_ms"] + server["see_ms_p95"] + server["tick_ms_p95"] + TRANSPORT_MS


def late_underruns(stats: dict) -> list[float]:
    return [t for t in stats["underrunTimes"] if t > stats["startedAt"] + 1.0]


def p95_latency(stats: dict) -> float:
    return float(np.percentile(stats["latencies"], 95))


def test_a_browser_plays_the_camera_dancer_live(camera, tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    record = tmp_path / "session.mp4"
    run = bench.browser_session(camera, PLAY_SECONDS, record=record, chromium=CHROMIUM)
    stats, received = run["stats"], run["received"]
    assert not run["errors"], run["errors"]
    assert record.exists() and record.with_suffix(".json").exists(), run["server_lines"]

    # continuous: no underrun once the first second has played, and audio at the frame rate; a frame's audio on
    # the page within latency_bound_ms of its capture (95th percentile). The machine is shared, so a session that
    # another process slowed gets one more session, and the better of the two is held to each bound.
    assert stats["startedAt"] is not None, stats
    sessions = [stats]
    if late_underruns(stats) or p95_latency(stats) > latency_bound_ms(stats):
        sessions.append(bench.browser_session(camera, PLAY_SECONDS, chromium=CHROMIUM)["stats"])
    for s in sessions:
        assert s["startedAt"] is not None, s
        played_seconds = s["contextTime"] - s["startedAt"]
        assert played_seconds > 20 and s["audioMessages"] >= 0.95 * 25 * played_seconds, s
        assert len(s["latencies"]) > 0.8 * 25 * PLAY_SECONDS, len(s["latencies"])
    assert min(len(late_underruns(s)) for s in sessions) == 0, [
        (late_underruns(s), s["server"], s["bufferTrace"][:40]) for s in sessions]
    assert min(p95_latency(s) - latency_bound_ms(s) for s in sessions) <= 0, [
        (p95_latency(s), latency_bound_ms(s), s["server"], np.round(s["latencies"]).tolist()) for s in sessions]

    # the same PCM as offline generation on the frames the session played, with its seed and style
    offline = tmp_path / "offline.wav"
    subprocess.run([sys.executable, "-m", "movenet", "generate", str(demo.SHIPPED), str(record), "-o", str(offline),
                    "--seed", "0", "--style", run["style"], "--quiet"], check=True, capture_output=True)
    hop = checkpoint.load(demo.SHIPPED).model.config.hop
    assert len(received) % hop == 0 and len(received) >= 20 * 25 * hop
    with wave.open(str(offline)) as w:
        offline_pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(offline_pcm) == len(received)
    np.testing.assert_array_equal(offline_pcm, np.rint(np.clip(received, -1, 1) * 32767).astype("<i2"))
