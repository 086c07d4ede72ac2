"""`prepare` and prepared sets with bad input: symlink loops get a line, nothing prepared leaves nothing behind, a
full disk stops the run in one line, killing it ends its workers, manifests cannot point outside the set, huge
frames are decoded in bounded memory, --quiet silences MediaPipe (issue 13, items 5, 8, 9, 10)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from movenet import files, synth, video
from movenet.data import ClipDataset, DataConfig, DataError, load_manifest, open_clip, prepare

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def dancers(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dancers")
    synth.write_dataset(root, n_clips=2, seconds=1.2, seed=7, progress=False)
    return root


# ----------------------------------------------------------------------------------------------------------------
# Item 10: symlink loops, and nothing prepared


def test_a_symlink_loop_gets_a_line(tmp_path, dancers):
    src = tmp_path / "src"
    shutil.copytree(dancers, src)
    (src / "sine_major" / "again").symlink_to("..")  # a folder loop
    (src / "self.mp4").symlink_to("self.mp4")  # a link to itself
    (src / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")  # broken
    lines = []
    report = prepare(src, tmp_path / "out", DataConfig(), workers=1, progress=False, log=lines.append)
    assert len(report.prepared) == 2  # each clip once, not once per trip round the loop
    reasons = {Path(s["source"]).name: s["reason"] for s in report.skipped}
    assert reasons.keys() == {"again", "self.mp4", "gone.mp4"}
    assert "symlink loop" in reasons["again"] and "symlink loop" in reasons["self.mp4"]
    assert "broken symlink" in reasons["gone.mp4"]
    assert all(any(line.startswith(s["source"] + ": ") for line in lines) for s in report.skipped)
    assert "symlink loop" in report.summary()


def test_a_symlinked_folder_is_followed(tmp_path, dancers):
    src = tmp_path / "src"
    src.mkdir()
    (src / "style").symlink_to(dancers / "sine_major")
    report = prepare(src, tmp_path / "out", DataConfig(), workers=1, progress=False, log=lambda line: None)
    assert len(report.prepared) == 1 and not report.skipped


def test_nothing_prepared_leaves_no_manifest(cli_run, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.mp4").write_text("not a video")
    out = tmp_path / "out"
    code, _, err = cli_run("prepare", src, out, "--quiet")
    assert code == 1 and "nothing prepared" in err
    assert not out.exists()  # made for this run, and left empty: removed
    out.mkdir()
    (out / "mine.txt").write_text("x")
    code, _, _ = cli_run("prepare", src, out, "--quiet")
    assert code == 1 and sorted(p.name for p in out.iterdir()) == ["mine.txt"]


# ----------------------------------------------------------------------------------------------------------------
# Item 5: a full disk during prepare


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_stops_prepare_in_one_line_and_leaves_no_temporary_file(cli_run, tmp_path, dancers, monkeypatch,
                                                                            workers):
    out = tmp_path / "out"
    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).startswith(str(out)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)  # the fork-started workers inherit it
    code, stdout, err = cli_run("prepare", dancers, out, "--quiet", "--workers", workers)
    assert code == 1, stdout + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot write (No space left on device)" in err and str(out) in err
    assert "unexpected error" not in stdout + err  # not blamed on each video in turn
    assert not [p for p in out.rglob("*") if p.is_file()]  # no temporary file, no half clip


# ----------------------------------------------------------------------------------------------------------------
# Item 9: killing prepare ends its workers


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_prepare_ends_its_workers(tmp_path):
    """Each worker is held in a 60 s job; kill -9 of `movenet prepare` must end them within a few seconds."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"clip{i}.mp4").write_bytes(b"never read")
    script = textwrap.dedent(f"""
        import multiprocessing, sys, time
        multiprocessing.set_start_method("fork")  # the workers inherit the slow job below
        import movenet.data
        def slow(job, out_dir, config, progress=False):
            time.sleep(60)
            raise RuntimeError("not reached")
        movenet.data.prepare_clip = slow
        from movenet.cli import main
        main(["prepare", {str(src)!r}, {str(tmp_path / 'out')!r}, "--workers", "2", "--quiet"])
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        workers = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = {pid for pid in _children(parent.pid) if _running(pid)}
        assert len(workers) == 2, "the workers did not start"
        time.sleep(1.0)  # they are in their jobs
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers), "workers outlived their parent"
    finally:
        parent.kill()
        for pid in _children(parent.pid):
            os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------------------
# Item 8: a manifest cannot point reads outside the set


@pytest.fixture
def prepared_kp(tmp_path, dancers) -> Path:
    out = tmp_path / "prepared"
    prepare(dancers, out, DataConfig(features="keypoints", valid_fraction=0.5), workers=1, progress=False)
    return out


@pytest.mark.parametrize("escape", ["../../outside/secret", "{outside}/secret", "sine_major/../../../outside/secret"])
def test_clip_ids_that_leave_the_set_are_refused(cli_run, tmp_path, prepared_kp, escape):
    from movenet.demo import SHIPPED

    outside = tmp_path / "outside"
    outside.mkdir()
    manifest_path = prepared_kp / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    victim = manifest["clips"][0]
    for kind in ("audio", "keypoints"):  # what the escaping id would read: a readable clip, outside the set
        shutil.copy(prepared_kp / "clips" / f"{victim['id']}.{kind}.npy", outside / f"secret.{kind}.npy")
    bad_id = escape.format(outside=outside)
    for record in manifest["clips"]:
        record["id"] = bad_id
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="outside"):
        load_manifest(prepared_kp)
    with pytest.raises(DataError, match="outside"):
        open_clip(prepared_kp, {**victim, "id": bad_id})
    with pytest.raises(DataError):
        ClipDataset(prepared_kp, split=None)
    code, out, err = cli_run("evaluate", SHIPPED, prepared_kp, "--clips", 1, "--quiet")
    assert code == 1 and "outside" in err and len(err.strip().splitlines()) == 1, out + err


def test_ordinary_clip_ids_still_load(prepared_kp):
    manifest = load_manifest(prepared_kp)
    assert all("/" in c["id"] for c in manifest["clips"])
    assert len(open_clip(prepared_kp, manifest["clips"][0])["codes"]) == manifest["clips"][0]["n_samples"]


# ----------------------------------------------------------------------------------------------------------------
# Item 10: huge frames are decoded in bounded memory, and bigger ones refused


def _peak_mb_reading(path: Path) -> float:
    # VmHWM, the peak resident memory of this process image (ru_maxrss would carry pytest's over the exec)
    code = f"""
from pathlib import Path
from movenet import video
n = sum(1 for _ in video.iter_frames({str(path)!r}, fps=25, size=(64, 64)))
peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
print(n, int(peak.split()[1]) / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    n, peak = result.stdout.split()
    assert int(n) > 20
    return float(peak)


def _write_h264(path: Path, side: int, n_frames: int) -> Path:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "45"}
        for i in range(n_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_4096x4096_video_is_decoded_in_bounded_memory(tmp_path):
    small = _peak_mb_reading(_write_h264(tmp_path / "small.mp4", 64, 30))
    big = _peak_mb_reading(_write_h264(tmp_path / "big.mp4", 4096, 30))
    # a decoded 4096x4096 frame is 25 MB; unbounded, the reorder window and frame threads held ~20 of them
    assert big - small < 250, f"reading 4096x4096 frames took {big - small:.0f} MB more than 64x64 ones"


def test_frames_above_the_limit_are_refused_in_one_line(tmp_path, monkeypatch):
    path = _write_h264(tmp_path / "v.mp4", 64, 3)
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 32 * 32)
    for read in (video.probe, video.read_frames):
        with pytest.raises(video.MediaError, match="64x64 are larger than movenet decodes"):
            read(path)


# ----------------------------------------------------------------------------------------------------------------
# Item 10: --quiet silences MediaPipe's and TFLite's own log lines


def test_quiet_prepare_with_mediapipe_prints_nothing_on_stderr(tmp_path, walker_video):
    pytest.importorskip("mediapipe")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(walker_video, src / "walker.mp4")
    for workers in (1, 2):
        shutil.copy(walker_video, src / f"walker{workers}.mp4")
        result = subprocess.run([sys.executable, "-m", "movenet", "prepare", src, tmp_path / f"out{workers}",
                                 "--features", "keypoints", "--quiet", "--workers", str(workers)],
                                capture_output=True, text=True, timeout=300, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
    assert not any(p.name.startswith(files.TEMP_PREFIX) for p in tmp_path.rglob("*"))


def test_a_worker_that_crashes_is_one_line_and_keeps_the_clips_prepared(tmp_path, dancers):
    """A decoder crash (SIGSEGV) in a worker: one line naming the files in flight, not a BrokenProcessPool
    traceback; a second run prepares what is left."""
    src = tmp_path / "src"
    shutil.copytree(dancers, src)
    (src / "sine_major" / "crash.mp4").write_bytes(b"crashes the decoder")
    script = textwrap.dedent(f"""
        import multiprocessing, os, signal
        multiprocessing.set_start_method("fork")
        import movenet.data
        real = movenet.data.prepare_clip
        def crashing(job, out_dir, config, progress=False):
            if job.source.endswith("crash.mp4"):
                os.kill(os.getpid(), signal.SIGSEGV)
            return real(job, out_dir, config, progress)
        movenet.data.prepare_clip = crashing
        from movenet.cli import main
        main(["prepare", {str(src)!r}, {str(tmp_path / 'out')!r}, "--workers", "2", "--quiet"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "a worker process died" in result.stderr
    assert "crash.mp4" in result.stderr
    (src / "sine_major" / "crash.mp4").unlink()
    report = prepare(src, tmp_path / "out", DataConfig(), workers=1, progress=False)
    assert len(report.prepared) + len(report.reused) == 2
