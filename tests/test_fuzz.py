"""Property-based fuzzing (Hypothesis) of the media readers and `prepare` (issue 13): real and synthetic files,
truncated, bit-flipped, overwritten, under the wrong extension, and files whose streams hold nothing. Every input
ends in a prepared clip or a one-line reason: never a traceback or another exception, never a hang (each file has a
time limit). Derandomized, so CI sees the same examples every run; about 20 s in all."""

import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from movenet import audio, synth, video
from movenet.data import MEDIA_SUFFIXES, DataConfig, Job, _prepare_worker, prepare

SECONDS_PER_FILE = 20  # a hang fails the example; decoding any of these files takes well under a second
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
CONFIG = DataConfig(min_seconds=0.2)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    def expire(signum, frame):
        raise Hang(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------------------------------------
# The files mutated: a synthetic dancer, two real encoders' bitstreams, and streams that hold nothing


def _remux_start(source: Path, dest: Path, seconds: float) -> Path:
    """The first `seconds` of a real file, its packets copied as they are (its encoder's own bitstream)."""
    with av.open(str(source)) as src, av.open(str(dest), "w", format="avi") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux(*[s for s in src.streams if s.index in streams]):
            if packet.dts is None or packet.pts is None:
                continue
            if packet.pts * packet.time_base > seconds:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dest


def _empty_streams(dest: Path, video_frames: int, audio_seconds: float) -> Path:
    """An MP4 with a video and an audio stream holding `video_frames` frames and `audio_seconds` of audio (0: a
    stream that holds nothing)."""
    with av.open(str(dest), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width = vs.height = 32
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        out.start_encoding()  # the header, even if no packet follows
        for i in range(video_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if audio_seconds:
            video._feed_audio(out, aus, 0.3 * np.sin(np.arange(int(audio_seconds * 16000)) / 7.0), 16000)
        else:
            for packet in aus.encode(None):
                out.mux(packet)
    return dest


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, real_videos_dir_module) -> "Seeds":
    root = tmp_path_factory.mktemp("fuzz-seeds")
    clip = synth.generate_clip(1.2, seed=11, style=synth.STYLES[0], size=64)
    video.write_video(root / "dancer.mp4", clip.frames, 25, clip.audio, 16000)
    audio.write_wav(root / "tone.wav", clip.audio, 16000)
    files = {
        "dancer.mp4": root / "dancer.mp4",  # H.264 + AAC, the synthetic data set's own encoding
        "tone.wav": root / "tone.wav",  # audio only
        "video-no-audio-packets.mp4": _empty_streams(root / "v.mp4", 10, 0),
        "audio-no-video-packets.mp4": _empty_streams(root / "a.mp4", 0, 1.0),
        "nothing.mp4": _empty_streams(root / "n.mp4", 0, 0),
    }
    if real_videos_dir_module is not None:
        files["megamind.avi"] = _remux_start(real_videos_dir_module / "Megamind.avi", root / "mm.avi", 1.5)
        files["tree.avi"] = _remux_start(real_videos_dir_module / "tree.avi", root / "tree.avi", 2.0)
    return Seeds({name: path.read_bytes() for name, path in files.items()})


class Seeds(dict):
    """The seed files' bytes by name (a short repr: Hypothesis prints its arguments when an example fails)."""

    def __repr__(self) -> str:
        return f"Seeds({', '.join(self)})"


@pytest.fixture(scope="module")
def real_videos_dir_module():
    from tests.conftest import REAL_VIDEOS

    return REAL_VIDEOS if REAL_VIDEOS.is_dir() else None


def mutations():
    """(seed name, [(kind, a, b)...], suffix): what to do to which file."""
    edit = st.one_of(
        st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
        st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
        st.tuples(st.just("flip-head"), st.integers(0, 4095), st.integers(0, 7)),  # the container's header
        st.tuples(st.just("overwrite"), st.floats(0, 1), st.integers(1, 512)),
        st.tuples(st.just("zero"), st.floats(0, 1), st.integers(1, 4096)),
    )
    return st.tuples(st.sampled_from(["dancer.mp4", "megamind.avi", "tree.avi", "tone.wav",
                                      "video-no-audio-packets.mp4", "audio-no-video-packets.mp4", "nothing.mp4"]),
                     st.lists(edit, min_size=0, max_size=6),
                     st.one_of(st.none(), st.sampled_from(sorted(MEDIA_SUFFIXES))))


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    rng = np.random.default_rng(len(edits))
    for kind, a, b in edits:
        if not buf:
            break
        if kind == "truncate":
            del buf[int(a * len(buf)):]
        elif kind == "flip":
            buf[min(len(buf) - 1, int(a * len(buf)))] ^= 1 << b
        elif kind == "flip-head":
            buf[a % len(buf)] ^= 1 << b
        elif kind == "overwrite":
            at = min(len(buf) - 1, int(a * len(buf)))
            buf[at: at + b] = rng.integers(0, 256, len(buf[at: at + b]), dtype=np.uint8).tobytes()
        elif kind == "zero":
            at = min(len(buf) - 1, int(a * len(buf)))
            buf[at: at + b] = bytes(len(buf[at: at + b]))
    return bytes(buf)


def write_mutant(folder: Path, seeds: dict, mutation, index: int = 0) -> Path:
    name, edits, suffix = mutation
    if name not in seeds:
        pytest.skip("real test videos not found")
    path = folder / f"m{index}{suffix or Path(name).suffix}"
    path.write_bytes(mutate(seeds[name], edits))
    return path


def one_line_reason(err: Exception) -> str:
    reason = str(err)
    assert reason and "\n" not in reason and "Traceback" not in reason, repr(reason)
    return reason


# ----------------------------------------------------------------------------------------------------------------
# The properties


# Found by this test (kept as fixed examples): a video stream left without a codec context raised AttributeError.
FOUND = [("video-no-audio-packets.mp4", [("truncate", 0.71875, 0)], None)]


@settings(FUZZ, max_examples=120)
@given(mutation=mutations())
@example(mutation=FOUND[0])
def test_media_readers_give_arrays_or_one_line(seeds, mutation):
    """probe, read_audio, read_frames and read_clip return well-formed arrays or raise MediaError (one line);
    nothing else escapes, and nothing hangs."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_mutant(Path(folder), seeds, mutation)
        with time_limit(SECONDS_PER_FILE):
            try:
                info = video.probe(path)
                assert info.has_video or info.has_audio
            except video.MediaError as err:
                one_line_reason(err)
            try:
                wav = video.read_audio(path, 16000)
                assert wav.dtype == np.float32 and wav.ndim == 1 and np.isfinite(wav).all()
            except video.MediaError as err:
                one_line_reason(err)
            try:
                frames = video.read_frames(path, fps=25, size=(16, 16))
                assert frames.dtype == np.uint8 and frames.shape[1:] == (16, 16, 1) and len(frames) > 0
            except video.MediaError as err:
                one_line_reason(err)
            try:
                frames, wav = video.read_clip(path, 16000, 25, (16, 16))
                assert len(wav) == len(frames) * 640 and len(frames) > 0
                event("read_clip: a clip")
            except video.MediaError as err:
                event(f"read_clip: {one_line_reason(err).split(':')[0]}")


@settings(FUZZ, max_examples=100)
@given(mutation=mutations())
@example(mutation=FOUND[0])
def test_prepare_gives_a_clip_or_a_one_line_reason(seeds, mutation):
    """prepare's per-file step: a prepared clip whose arrays agree with its record, or a skip with a one-line
    reason that names the file's problem, not an unexpected error."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_mutant(Path(folder), seeds, mutation)
        job = Job(str(path), path.name, "none", "train")
        with time_limit(SECONDS_PER_FILE):
            status, result = _prepare_worker(job, str(Path(folder) / "out"), CONFIG)
        event(f"prepare: {status if status == 'ok' else result.split(':')[0].split('(')[0].strip()}")
        if status == "ok":
            base = Path(folder) / "out" / "clips" / result["id"]
            codes = np.load(base.with_name(base.name + ".audio.npy"))
            frames = np.load(base.with_name(base.name + ".frames.npy"))
            assert len(codes) == result["n_samples"] == len(frames) * 640 == result["n_frames"] * 640
        else:
            assert status == "skip"
            reason = one_line_reason(Exception(result))
            assert not reason.startswith("unexpected error"), reason


@settings(FUZZ, max_examples=12)
@given(batch=st.lists(mutations(), min_size=2, max_size=4))
def test_prepare_accounts_for_every_file_of_a_mutated_folder(seeds, batch):
    """The whole of `prepare` over a folder of mutants: each file is prepared or skipped with a reason."""
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "src"
        src.mkdir()
        paths = [write_mutant(src, seeds, mutation, i) for i, mutation in enumerate(batch)]
        lines = []
        with time_limit(SECONDS_PER_FILE * len(paths)):
            report = prepare(src, Path(folder) / "out", CONFIG, workers=1, progress=False, log=lines.append)
        accounted = [r["source"] for r in report.prepared] + [s["source"] for s in report.skipped]
        assert sorted(accounted) == sorted(str(p.resolve()) for p in paths if p.suffix in MEDIA_SUFFIXES)
        for skipped in report.skipped:
            assert not one_line_reason(Exception(skipped["reason"])).startswith("unexpected error")
        assert len(lines) == len(report.skipped)
        assert (Path(folder) / "out" / "manifest.json").exists() == bool(report.prepared)


def test_the_cli_on_a_folder_of_mutants_prints_no_traceback(tmp_path, seeds):
    """`movenet prepare` as a user runs it, with two workers, over fixed mutants of every seed file."""
    src = tmp_path / "src"
    src.mkdir()
    fixed = [(name, edits, suffix) for name in seeds for edits, suffix in (
        ([], None), ([("truncate", 0.5, 0)], None), ([("flip-head", 40, 3), ("flip", 0.6, 1)], ".mkv"),
        ([("zero", 0.3, 4096)], ".avi"), ([("truncate", 0.02, 0)], ".webm"))]
    for i, mutation in enumerate(fixed):
        write_mutant(src, seeds, mutation, i)
    result = subprocess.run([sys.executable, "-m", "movenet", "prepare", src, tmp_path / "out", "--workers", "2",
                             "--quiet", "--min-seconds", "0.2"], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).parents[1])
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr  # the unharmed seed files prepare
    summary = next(line for line in result.stdout.splitlines() if line.startswith("prepared "))
    prepared, reused, skipped = (int(part.split()[-1]) for part in summary.split(" (")[0].split(", "))
    assert prepared + reused + skipped == sum(p.suffix in MEDIA_SUFFIXES for p in src.iterdir())
    shutil.rmtree(src)
