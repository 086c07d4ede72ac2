"""Tests for movenet.video: probing, frame resampling by timestamp, audio
decode/alignment, clip pairing, writing/muxing, real-world and broken files."""

from fractions import Fraction

import av
import numpy as np
import pytest

from movenet.video import (
    FPS,
    MediaError,
    hop_length,
    iter_frames,
    mux_audio,
    probe,
    read_audio,
    read_clip,
    read_frames,
    write_video,
)

SR = 16000


def _index_frames(n: int, size: int = 32) -> np.ndarray:
    """uint8 [n, size, size, 3] flat gray frames whose brightness encodes index % 62.

    Steps of 4 grey levels survive H.264 + YUV->gray rounding exactly."""
    v = (8 + 4 * (np.arange(n) % 62)).astype(np.uint8)
    return np.broadcast_to(v[:, None, None, None], (n, size, size, 3)).copy()


def _decode_index(frames: np.ndarray) -> np.ndarray:
    return np.rint((frames.reshape(len(frames), -1).mean(axis=1) - 8) / 4).astype(int)


def _chirp(n: int, sr: int = SR) -> np.ndarray:
    # A non-periodic signal so cross-correlation has one clear peak.
    t = np.arange(n) / sr
    return (0.5 * np.sin(2 * np.pi * (200 * t + 150 * t**2))).astype(np.float32)


def _lag(got: np.ndarray, ref: np.ndarray, max_lag: int = 400) -> int:
    m = min(len(got), len(ref)) - 2 * max_lag
    scores = [np.dot(got[max_lag + L : max_lag + L + m], ref[max_lag : max_lag + m]) for L in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def test_hop_length():
    assert hop_length(16000, 25) == 640
    assert hop_length(16000, FPS) == 640
    with pytest.raises(ValueError):
        hop_length(16000, 30)


@pytest.mark.parametrize("src_fps", [30, Fraction(30000, 1001), 25, 10])
def test_frames_resampled_by_timestamp(tmp_path, src_fps):
    n = 60
    p = tmp_path / "idx.mp4"
    write_video(p, _index_frames(n), src_fps)
    got = read_frames(p, fps=25, size=(16, 16), gray=True)
    assert got.dtype == np.uint8 and got.shape[1:] == (16, 16, 1)
    n_out = int(Fraction(n) / Fraction(src_fps) * 25)
    assert len(got) == n_out
    # Frame k == latest source frame i with i / src_fps <= k / 25.
    expected = [int(Fraction(k, 25) * Fraction(src_fps)) for k in range(n_out)]
    assert _decode_index(got).tolist() == expected


def test_iter_frames_rgb_and_streaming(tmp_path):
    p = tmp_path / "c.mp4"
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    frames[..., 0] = 200  # red
    write_video(p, frames, 25)
    it = iter_frames(p, size=(8, 12), gray=False)
    first = next(it)  # a generator: yields before decoding the rest
    assert first.shape == (8, 12, 3) and first.dtype == np.uint8
    assert first[..., 0].mean() > 150 and first[..., 1:].mean() < 50
    assert 1 + sum(1 for _ in it) == 10


def test_write_video_read_clip_alignment(tmp_path):
    n_frames, fps = 125, 25
    audio = _chirp(5 * SR)
    p = tmp_path / "clip.mp4"
    write_video(p, _index_frames(n_frames, 64), fps, audio, SR)
    assert [f.name for f in tmp_path.iterdir()] == ["clip.mp4"]  # atomic: no temp left
    info = probe(p)
    assert info.has_video and info.has_audio and (info.width, info.height) == (64, 64)
    assert info.duration == pytest.approx(5.0, abs=0.1)

    wav = read_audio(p, SR)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == len(audio)  # AAC padding trimmed
    assert abs(_lag(wav, audio)) <= 2  # AAC priming dropped
    assert np.abs(wav[2000:-2000] - audio[2000:-2000]).max() < 0.05

    frames, clip_audio = read_clip(p, SR, fps, size=(32, 32), gray=True)
    assert frames.shape == (125, 32, 32, 1)
    assert len(clip_audio) == len(frames) * 640
    assert _decode_index(frames).tolist() == [i % 62 for i in range(125)]
    assert abs(_lag(clip_audio, audio)) <= 2


def test_read_clip_trims_to_shorter_stream(tmp_path):
    p = tmp_path / "short_audio.mp4"
    write_video(p, _index_frames(50), 25, _chirp(int(1.3 * SR)), SR)  # 2 s video, 1.3 s audio
    frames, audio = read_clip(p)
    assert len(frames) == 32 and len(audio) == 32 * 640


def test_write_video_rejects_odd_size(tmp_path):
    with pytest.raises(ValueError):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 32, 3), np.uint8), 25)


def _write_pcm(path, data: np.ndarray, sr: int) -> None:
    """data float32 [channels, N] -> 16-bit PCM in a WAV container via PyAV."""
    layout = "mono" if data.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as out:
        s = out.add_stream("pcm_s16le", rate=sr)
        s.layout = layout
        pcm = np.rint(data.T * 32767).astype(np.int16).reshape(1, -1)  # packed s16
        f = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
        f.sample_rate = sr
        for pkt in s.encode(f):
            out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)


@pytest.mark.parametrize("sr_in", [16000, 44100])
def test_stereo_identical_channels_keep_amplitude(tmp_path, sr_in):
    t = np.arange(sr_in) / sr_in
    x = (0.6 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    _write_pcm(tmp_path / "mono.wav", x[None], sr_in)
    _write_pcm(tmp_path / "stereo.wav", np.stack([x, x]), sr_in)
    mono = read_audio(tmp_path / "mono.wav", SR)
    stereo = read_audio(tmp_path / "stereo.wav", SR)
    assert len(mono) == len(stereo) == SR
    assert np.abs(stereo).max() == pytest.approx(0.6, abs=0.01)
    np.testing.assert_allclose(stereo, mono, atol=1e-3)


def test_no_audio_track(tmp_path):
    p = tmp_path / "silent.mp4"
    write_video(p, _index_frames(10), 25)
    assert not probe(p).has_audio
    for fn in (read_audio, read_clip):
        with pytest.raises(MediaError, match="no audio"):
            fn(p)


def test_audio_only_file_has_no_video(tmp_path):
    p = tmp_path / "a.wav"
    _write_pcm(p, _chirp(SR)[None], SR)
    with pytest.raises(MediaError, match="no video"):
        read_frames(p)


def _bad_files(tmp_path):
    good = tmp_path / "good.mp4"
    write_video(good, _index_frames(50), 25, _chirp(2 * SR), SR)
    data = good.read_bytes()
    files = {
        "empty.mp4": b"",
        "random.mp4": np.random.default_rng(0).bytes(50_000),
        "text.mp4": b"this is not a video\njust text\n",
        "truncated.mp4": data[: len(data) // 2],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / n for n in files] + [tmp_path / "missing.mp4", tmp_path]


def test_bad_files_raise_media_error(tmp_path):
    for p in _bad_files(tmp_path):
        for fn in (probe, read_audio, read_frames, read_clip):
            with pytest.raises(MediaError) as exc:
                fn(p)
            msg = str(exc.value)
            assert msg and "\n" not in msg, (p.name, fn.__name__, msg)
    with pytest.raises(MediaError, match="empty"):
        probe(tmp_path / "empty.mp4")


def test_mux_audio_copies_h264(tmp_path):
    src = tmp_path / "src.mp4"
    write_video(src, _index_frames(50), 25)  # 2 s, no audio
    wav = _chirp(2 * SR)
    out = tmp_path / "out.mp4"
    mux_audio(src, wav, SR, out)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        sp = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
        op = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
        assert op == sp  # bit-identical video: stream copy, no re-encode
    frames, audio = read_clip(out, size=(32, 32))
    assert _decode_index(frames).tolist() == list(range(50))
    assert abs(_lag(audio, wav)) <= 2


# --- real videos -------------------------------------------------------------


def test_vtest(real_videos_dir):
    p = real_videos_dir / "vtest.avi"
    info = probe(p)
    assert info.has_video and not info.has_audio
    assert (info.width, info.height) == (768, 576)
    assert info.duration == pytest.approx(79.5, abs=0.01)
    frames = read_frames(p)  # 10 fps x 795 frames -> 79.5 s -> 1987 frames at 25 fps
    assert frames.shape == (1987, 64, 64, 1)
    assert frames.std() > 10  # real picture, not blank
    with pytest.raises(MediaError, match="no audio"):
        read_audio(p)


def test_megamind_audio_survives_damaged_packet(real_videos_dir):
    p = real_videos_dir / "Megamind.avi"
    wav = read_audio(p)
    assert len(wav) / SR == pytest.approx(11.25, abs=0.1)
    assert np.abs(wav[SR:]).max() > 0.05
    frames, audio = read_clip(p)
    assert len(audio) == len(frames) * 640
    assert len(frames) == pytest.approx(11.26 * 25, abs=3)


def test_megamind_out_of_order_timestamps(real_videos_dir):
    # Source at ~23.976 fps with neighbour pts swapped: resampled to the same
    # rate, each output frame must be a distinct source frame (no frame shown
    # twice and its neighbour skipped, which the unsorted order would cause).
    p = real_videos_dir / "Megamind.avi"
    frames = read_frames(p, fps=Fraction(24000, 1001), size=(32, 32))
    diffs = np.abs(np.diff(frames.astype(int), axis=0)).mean(axis=(1, 2, 3))
    assert len(frames) == 271  # pts 1..270 (+1 frame duration), first one held
    assert (diffs[1:] > 0).mean() > 0.95


def test_megamind_bugy_decodes(real_videos_dir):
    p = real_videos_dir / "Megamind_bugy.avi"
    frames = read_frames(p, gray=False)
    assert frames.shape == (225, 64, 64, 3)  # header says 30 fps -> 9.0 s
    assert not probe(p).has_audio


def test_tree_uses_timestamps_not_frame_count(real_videos_dir):
    p = real_videos_dir / "tree.avi"
    frames = read_frames(p)
    # 68 decodable frames, but timestamps span 444 / 15 s = 29.6 s.
    assert len(frames) == 740
    n_distinct = 1 + int((np.abs(np.diff(frames.astype(int), axis=0)).max(axis=(1, 2, 3)) > 0).sum())
    assert n_distinct <= 68


def test_mux_audio_reencodes_cinepak(real_videos_dir, tmp_path):
    out = tmp_path / "tree_music.mp4"
    wav = _chirp(int(29.6 * SR))
    mux_audio(real_videos_dir / "tree.avi", wav, SR, out)
    info = probe(out)
    assert info.has_video and info.has_audio and (info.width, info.height) == (320, 240)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        vdur = float(c.streams.video[0].duration * c.streams.video[0].time_base)
        adur = float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
    assert vdur == pytest.approx(29.6, abs=0.2) and adur == pytest.approx(29.6, abs=0.1)
    frames, audio = read_clip(out)
    assert len(frames) == pytest.approx(740, abs=2) and len(audio) == len(frames) * 640


def test_truncated_avi_does_not_crash(real_videos_dir, tmp_path):
    data = (real_videos_dir / "Megamind.avi").read_bytes()
    p = tmp_path / "cut.avi"
    p.write_bytes(data[: len(data) // 2])
    try:
        frames = read_frames(p)
        assert len(frames) > 0
    except MediaError as err:
        assert "\n" not in str(err)
