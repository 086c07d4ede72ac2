"""`movenet live` in a real browser: Debian's Chromium (installed by `make test`'s set-up) with a fake camera that
plays a synthetic dancer, driven by Playwright. For over 20 s the audio must arrive continuously, each frame's
audio must reach the page within one frame period + 50 ms (95th percentile; on a busy machine, of the better of two
sessions) of the frame's capture, and the PCM
the page received must equal what `movenet generate` makes offline of the same frames with the same seed."""

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


def test_a_browser_plays_the_camera_dancer_live(camera, tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    record = tmp_path / "session.mp4"
    run = bench.browser_session(camera, PLAY_SECONDS, record=record, chromium=CHROMIUM)
    stats, received = run["stats"], run["received"]
    assert not run["errors"], run["errors"]
    assert record.exists() and record.with_suffix(".json").exists(), run["server_lines"]

    # continuous: no underrun once the first second has played, and audio at the frame rate
    started = stats["startedAt"]
    assert started is not None, stats
    late = [t for t in stats["underrunTimes"] if t > started + 1.0]
    assert not late, (late, stats)
    played_seconds = stats["contextTime"] - started
    assert played_seconds > 20 and stats["audioMessages"] >= 0.95 * 25 * played_seconds, stats

    # latency from a frame's capture to its audio on the page; the machine is shared, so a session whose tail
    # another process lengthened gets one more session, and the better of the two is held to the bound
    latencies = np.array(stats["latencies"])
    assert len(latencies) > 0.8 * 25 * PLAY_SECONDS, len(latencies)
    p95 = np.percentile(latencies, 95)
    if p95 > 40 + 50:
        again = np.array(bench.browser_session(camera, PLAY_SECONDS, chromium=CHROMIUM)["stats"]["latencies"])
        assert len(again) > 0.8 * 25 * PLAY_SECONDS, len(again)
        p95 = min(p95, np.percentile(again, 95))
        assert p95 <= 40 + 50, (run["latency_ms"], np.round(latencies).tolist(), np.round(again).tolist())

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
