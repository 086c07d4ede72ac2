"""Media I/O for movenet: probing files, streaming frame decode with causal
resampling to a fixed frame rate, mono audio decode, paired clip reading, and
writing / muxing MP4 files.

All media I/O goes through PyAV. This module deliberately has no torch
dependency so data tools can use it without the model stack. Every failure a
user can cause with a bad file surfaces as :class:`MediaError` with a one-line
reason; callers print ``f"{path}: {err}"``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from movenet.files import atomic_write
from movenet.inputs import FPS, FRAME_SIZE, hop_length  # noqa: F401 (hop_length: part of the media API)

# Codecs we stream-copy into MP4 in mux_audio. Anything else (msmpeg4, cinepak,
# and mpeg4-part-2 from AVI, whose packed B-frames come without usable pts) is
# re-encoded as H.264 instead.
_MP4_COPY_CODECS = {"h264", "hevc", "av1", "vp9"}

# Decoders can emit frames slightly out of timestamp order (Megamind.avi's
# packed B-frames swap neighbours); sorting within this many frames fixes it
# while keeping memory bounded: at most _REORDER_WINDOW frames, and at most
# _REORDER_BYTES of decoded frames (a 4096x4096 frame is 25 MB: 2 of them).
_REORDER_WINDOW = 16
_REORDER_BYTES = 64 << 20
_FRAME_THREADING_BYTES = 16 << 20  # 4K UHD (12.4 MB a frame) decodes frame-threaded, 4096x4096 (25 MB) not

# The largest frame movenet decodes (8K UHD, 7680x4320): a bigger one is refused
# rather than decoded, since each decoded frame of it would take over 50 MB.
MAX_FRAME_PIXELS = 7680 * 4320


class MediaError(Exception):
    """A media file cannot be used; ``str(err)`` is a one-line human reason."""

    def __init__(self, reason: str):
        # Keep the message to one line whatever FFmpeg said.
        super().__init__(" ".join(str(reason).split()))


@dataclass
class MediaInfo:
    """What probe() learned about a file. duration is in seconds (None if unknown)."""

    path: Path
    has_video: bool
    has_audio: bool
    duration: float | None
    width: int | None
    height: int | None


def _reason(err: BaseException) -> str:
    # FFmpeg errors carry errno-ish text plus the filename; keep only the text.
    if isinstance(err, av.error.FFmpegError):
        return err.strerror or type(err).__name__
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)


def _size(stream) -> tuple[int, int]:
    """(width, height) a video stream declares; (0, 0) if unknown (a damaged header can leave no codec)."""
    ctx = stream.codec_context
    return (getattr(ctx, "width", 0) or 0, getattr(ctx, "height", 0) or 0) if ctx is not None else (0, 0)


def _open(path) -> av.container.InputContainer:
    """Open for reading, converting every failure into MediaError."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise MediaError(f"cannot read file: {_reason(err)}") from err
    if path.is_dir():
        raise MediaError("is a directory, not a media file")
    if size == 0:
        raise MediaError("empty file")
    try:
        container = av.open(str(path), mode="r")
    except av.error.InvalidDataError as err:
        raise MediaError("not a media file (or damaged beyond reading)") from err
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"not a media file: {_reason(err)}") from err
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaError("not a media file: no audio or video stream")
    for stream in container.streams.video:
        width, height = _size(stream)
        if width * height > MAX_FRAME_PIXELS:
            container.close()
            raise MediaError(f"frames of {width}x{height} are larger than movenet decodes "
                             f"(at most {MAX_FRAME_PIXELS / 1e6:.0f} megapixels)")
    return container


def probe(path) -> MediaInfo:
    """Describe a media file without decoding it. Raises MediaError if unreadable."""
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        duration = c.duration / av.time_base if c.duration else None
        if duration is None:
            durs = [float(s.duration * s.time_base) for s in c.streams if s.duration and s.time_base]
            duration = max(durs) if durs else None
        return MediaInfo(
            path=Path(path),
            has_video=v is not None,
            has_audio=bool(c.streams.audio),
            duration=duration,
            width=_size(v)[0] or None if v is not None else None,
            height=_size(v)[1] or None if v is not None else None,
        )


def _decoded(container, stream) -> Iterator:
    """Decode one stream packet by packet, skipping damaged packets.

    A plain ``container.decode()`` stops at the first bad packet (Megamind.avi's
    first AC3 packet); here a bad packet costs only its own frames. A demuxer
    error (truncated file) ends the stream with whatever decoded so far.
    """
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()  # packet.dts None at the end = flush
            except (av.error.FFmpegError, ValueError):
                continue
            yield from frames
    except av.error.FFmpegError:
        return


def _time(frame, stream, fallback: Fraction) -> Fraction:
    """Exact presentation time in seconds (Fraction) relative to stream start."""
    if frame.pts is None or frame.time_base is None:
        return fallback
    start = stream.start_time or 0
    return (frame.pts - start) * frame.time_base


def iter_frames(
    path,
    fps=FPS,
    size: tuple[int, int] | None = (FRAME_SIZE, FRAME_SIZE),
    gray: bool = True,
) -> Iterator[np.ndarray]:
    """Stream frames resampled to ``fps`` by causal sample-and-hold.

    Output frame k is the latest source frame whose timestamp is <= k / fps
    (timestamps relative to the video stream's start; before the first source
    frame, the first frame is held). Works for any source rate, variable frame
    rate and dropped frames, because it follows timestamps, not frame counts.
    Emits floor(duration * fps) frames, duration = last source timestamp + that
    frame's duration. Memory stays bounded: only a small reorder window of
    decoded frames is held.

    size: (height, width) of the output, or None for the source size.
    Yields uint8 [H, W] if gray else uint8 [H, W, 3] (RGB).
    """
    fps = Fraction(fps)
    fmt = "gray" if gray else "rgb24"
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError("no video stream")
        stream = c.streams.video[0]
        frame_bytes = 1.5 * max(1, _size(stream)[0] * _size(stream)[1])  # yuv420p
        # frame+slice threading: a big speedup for HD, but each thread holds frames; beyond 4K, slices only
        stream.thread_type = "AUTO" if frame_bytes <= _FRAME_THREADING_BYTES else "SLICE"
        window = max(1, min(_REORDER_WINDOW, int(_REORDER_BYTES // frame_bytes)))
        rate = stream.average_rate or stream.guessed_rate or Fraction(FPS)
        default_dur = 1 / Fraction(rate)

        def convert(frame) -> np.ndarray:
            h, w = size if size is not None else (frame.height, frame.width)
            # one thread: the scaler's own threads (FFmpeg 8, PyAV 18.1.1) left a worker forked after this process
            # had scaled frames waiting for ever on a thread the fork did not copy (prepare's workers fork)
            return frame.reformat(width=w, height=h, format=fmt, threads=1).to_ndarray()

        def in_order() -> Iterator[tuple[Fraction, Fraction, object]]:
            heap: list = []
            last_t = Fraction(0) - default_dur
            tie = itertools.count()
            for frame in _decoded(c, stream):
                t = _time(frame, stream, last_t + default_dur)
                last_t = t
                dur = frame.duration * frame.time_base if frame.duration and frame.time_base else default_dur
                heapq.heappush(heap, (t, next(tie), dur, frame))
                if len(heap) > window:
                    t0, _, d0, f0 = heapq.heappop(heap)
                    yield t0, d0, f0
            while heap:
                t0, _, d0, f0 = heapq.heappop(heap)
                yield t0, d0, f0

        k = 0
        current = None  # (converted image or None, av frame)
        end = None
        for t, dur, frame in in_order():
            if current is not None:
                # Emit every output slot before this frame's time from the held frame.
                while Fraction(k) / fps < t:
                    if current[0] is None:
                        current = (convert(current[1]), None)
                    yield current[0]
                    k += 1
            current = (None, frame)
            end = t + dur if end is None else max(end, t + dur)
        if current is None:
            raise MediaError("damaged: no decodable video frames")
        n_out = int(end * fps)  # floor
        while k < n_out:
            if current[0] is None:
                current = (convert(current[1]), None)
            yield current[0]
            k += 1


def read_frames(
    path,
    fps=FPS,
    size: tuple[int, int] | None = (FRAME_SIZE, FRAME_SIZE),
    gray: bool = True,
) -> np.ndarray:
    """All frames via iter_frames: uint8 [T_v, H, W, C], C = 1 (gray) or 3 (RGB)."""
    frames = [f[..., None] if gray else f for f in iter_frames(path, fps, size, gray)]
    return np.stack(frames)


_MAX_AUDIO_CHANNELS = 8  # 7.1; a frame claiming more comes from a damaged header (and crashed PyAV's to_ndarray)


def _plausible_audio(frame) -> bool:
    """Whether a decoded audio frame's header makes sense (rate, channels, samples)."""
    try:
        channels = frame.layout.nb_channels
    except (AttributeError, ValueError):
        return False
    return 1 <= channels <= _MAX_AUDIO_CHANNELS and 1000 <= (frame.sample_rate or 0) <= 384_000 and \
        0 < frame.samples <= 1 << 20 and len(frame.planes) in (1, channels)


def read_audio(path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio track as mono float32 [N] at ``sample_rate``.

    Sample n sits at time n / sample_rate relative to the audio stream start:
    damaged packets are skipped and their gap filled with silence, leading
    encoder priming (negative pts) is dropped, and trailing encoder padding
    (AAC returns 80,896 samples for 80,000 written) is trimmed to the stream's
    declared duration. Channels are averaged, so identical L/R comes back at the
    mono amplitude (PyAV's own stereo->mono downmix scales by ~0.707 instead).
    Raises MediaError("no audio track") if the file has no audio.
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError("no audio track")
        stream = c.streams.audio[0]
        chunks: list[np.ndarray] = []
        produced_in = None  # input-rate time (s) where the next frame should start
        drop = 0  # output samples to drop at the front (priming)
        resampler = None
        layout = None

        def run(frame) -> None:
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))

        for frame in _decoded(c, stream):
            if not _plausible_audio(frame):  # a damaged header decoded as nonsense: skipped as a bad packet is
                continue
            t = _time(frame, stream, produced_in if produced_in is not None else Fraction(0))
            if resampler is None or frame.layout.name != layout:
                if resampler is not None:
                    run(None)
                layout = frame.layout.name
                # Keep the source layout; we average channels ourselves.
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
            if produced_in is None:
                if t < 0:
                    drop = round(-t * sample_rate)
                elif t > 0:
                    chunks.append(np.zeros(round(t * sample_rate), np.float32))
            elif t - produced_in > Fraction(1, 1000):
                # Gap left by a skipped packet: keep later audio at its time.
                chunks.append(np.zeros(round((t - produced_in) * sample_rate), np.float32))
            run(frame)
            produced_in = t + Fraction(frame.samples, frame.sample_rate)
        if resampler is None:
            raise MediaError("damaged: no decodable audio")
        run(None)  # flush the resampler's delay line
        wav = np.concatenate(chunks)[drop:] if chunks else np.zeros(0, np.float32)
        if stream.duration and stream.time_base:
            declared = stream.duration * stream.time_base
        elif c.duration:
            declared = Fraction(c.duration, av.time_base)
        else:
            declared = None
        if declared is not None:
            wav = wav[: int(declared * sample_rate)]
        return np.ascontiguousarray(wav, dtype=np.float32)


def read_clip(
    path,
    sample_rate: int = 16000,
    fps: int = FPS,
    size: tuple[int, int] | None = (FRAME_SIZE, FRAME_SIZE),
    gray: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames and audio on one clock, trimmed to the shorter stream.

    Returns (frames uint8 [T_v, H, W, C], audio float32 [T_v * hop]) with
    hop = sample_rate / fps, so frame k covers audio[k*hop:(k+1)*hop] and
    len(audio) == T_v * hop exactly.
    """
    hop = hop_length(sample_rate, fps)
    audio = read_audio(path, sample_rate)  # first: cheap "no audio track" check
    frames = read_frames(path, fps, size, gray)
    t_v = min(len(frames), len(audio) // hop)
    if t_v == 0:
        raise MediaError("damaged: audio and video do not overlap")
    return frames[:t_v], audio[: t_v * hop]


def _add_h264(out, fps, width: int, height: int):
    vs = out.add_stream("libx264", rate=Fraction(fps))
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"crf": "18", "preset": "fast"}
    return vs


def _add_aac(out, sample_rate: int):
    """Add a mono AAC stream (filled later by _feed_audio)."""
    stream = out.add_stream("aac", rate=int(sample_rate))
    stream.layout = "mono"
    return stream


class _AudioFeed:
    """Mono float32 audio into an AAC stream, any number of samples at a time (the encoder takes 1024 a frame)."""

    FRAME = 1024

    def __init__(self, out, stream, sample_rate: int):
        self.out, self.stream, self.sample_rate = out, stream, int(sample_rate)
        self.pending = np.zeros(0, np.float32)
        self.pts = 0

    def _encode(self, chunk) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None]), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = self.sample_rate, self.pts, Fraction(1, self.sample_rate)
        self.pts += len(chunk)
        for pkt in self.stream.encode(frame):
            self.out.mux(pkt)

    def add(self, wav: np.ndarray) -> None:
        wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
        self.pending = np.concatenate([self.pending, wav])
        n = len(self.pending) // self.FRAME * self.FRAME
        for i in range(0, n, self.FRAME):
            self._encode(self.pending[i: i + self.FRAME])
        self.pending = self.pending[n:]

    def close(self) -> None:
        if len(self.pending):
            self._encode(self.pending)
        for pkt in self.stream.encode(None):
            self.out.mux(pkt)


def _feed_audio(out, stream, wav: np.ndarray, sample_rate: int) -> None:
    feed = _AudioFeed(out, stream, sample_rate)
    feed.add(wav)
    feed.close()


class VideoWriter:
    """An H.264 (yuv420p, crf 18) + AAC MP4 written a frame at a time: `add_frame(rgb)`, `add_audio(wav)` in any
    order and amounts, then `close()`. It lies under a temporary name until close renames it; `abort()` (or an
    exception inside a with block) leaves nothing.

    width and height must be even (yuv420p); frames are uint8 [height, width, 3] RGB; audio float32 mono in
    [-1, 1] at sample_rate (None: no audio track).
    """

    def __init__(self, path, fps, width: int, height: int, sample_rate: int | None = 16000):
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"width/height must be positive and even for yuv420p, got {width}x{height}")
        self.size = (height, width)
        self._stack = contextlib.ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_write(path))
            self._out = self._stack.enter_context(av.open(str(tmp), mode="w"))
            self._video = _add_h264(self._out, fps, width, height)
            self._audio = None if sample_rate is None else \
                _AudioFeed(self._out, _add_aac(self._out, sample_rate), sample_rate)
        except BaseException:
            self._stack.close()
            raise
        self.n_frames = 0

    def add_frame(self, rgb: np.ndarray) -> None:
        rgb = np.asarray(rgb)
        if rgb.shape != (*self.size, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 {[*self.size, 3]}, got {rgb.dtype} {list(rgb.shape)}")
        for pkt in self._video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self._out.mux(pkt)
        self.n_frames += 1

    def add_audio(self, wav: np.ndarray) -> None:
        self._audio.add(wav)

    def close(self) -> None:
        """Flush the encoders and put the file in place."""
        try:
            for pkt in self._video.encode(None):
                self._out.mux(pkt)
            if self._audio is not None:
                self._audio.close()
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._stack.close()

    def abort(self) -> None:
        """Leave no file."""
        err = RuntimeError("aborted")
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, err, None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()


def write_video(
    path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Write an H.264 (yuv420p, crf 18) + AAC MP4 atomically (see VideoWriter).

    frames: uint8 [T, H, W, 3] RGB with even H and W (yuv420p needs it).
    audio: float32 [N] mono in [-1, 1] at sample_rate, or None (video only).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    with VideoWriter(path, fps, w, h, sample_rate if audio is not None else None) as writer:
        for img in frames:
            writer.add_frame(img)
        if audio is not None:
            writer.add_audio(audio)


def mux_audio(video_path, wav: np.ndarray, sample_rate: int, out_path) -> None:
    """Write ``out_path`` (MP4): the source's video plus ``wav`` as AAC, atomically.

    The video stream is copied without re-encoding when its codec is safe in
    MP4 (H.264/HEVC/AV1/VP9). Otherwise (msmpeg4 in vtest.avi, cinepak in
    tree.avi, AVI mpeg4 with packed B-frames) it is re-encoded as H.264 at the
    source's nominal frame rate and size (rounded down to even), frames placed
    by timestamp as in iter_frames. Any audio in the source is replaced.
    wav: float32 [N] mono at sample_rate.
    """
    out_path = Path(out_path)
    with _open(video_path) as src:
        if not src.streams.video:
            raise MediaError("no video stream")
        vin = src.streams.video[0]
        if vin.codec_context is None:
            raise MediaError("damaged: no decoder for its video stream")
        copy = vin.codec_context.name in _MP4_COPY_CODECS
        rate = vin.average_rate or vin.guessed_rate or Fraction(FPS)
        w, h = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        try:
            with atomic_write(out_path) as tmp, av.open(str(tmp), mode="w") as out:
                if copy:
                    vout = out.add_stream_from_template(vin)
                else:
                    vout = _add_h264(out, rate, w, h)
                aus = _add_aac(out, sample_rate)
                if copy:
                    for pkt in src.demux(vin):
                        if pkt.dts is None:  # demuxer flush packet
                            continue
                        pkt.stream = vout
                        out.mux(pkt)
                else:
                    for img in iter_frames(video_path, fps=rate, size=(h, w), gray=False):
                        for pkt in vout.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                            out.mux(pkt)
                    for pkt in vout.encode(None):
                        out.mux(pkt)
                _feed_audio(out, aus, wav, sample_rate)
        except av.error.FFmpegError as err:
            raise MediaError(f"cannot write {out_path.name}: {_reason(err)}") from err


def write_y4m(path, frames: np.ndarray, fps: int) -> None:
    """RGB uint8 [T, H, W, 3] (even H and W) as a YUV4MPEG2 file, 4:2:0 with BT.601 full-range colour: what
    Chromium's fake camera plays (--use-file-for-fake-video-capture), looping."""
    frames = np.asarray(frames)
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        raise ValueError(f"width/height must be even for 4:2:0, got {W}x{H}")
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames.astype(np.float32):
            y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
            u = 128 + 0.564 * (rgb[..., 2] - y)
            v = 128 + 0.713 * (rgb[..., 0] - y)
            half = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean((1, 3))  # noqa: E731
            f.write(b"FRAME\n")
            for plane in (y, half(u), half(v)):
                f.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())
