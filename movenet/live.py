"""`movenet live`: a web page where the dancer in front of a camera hears the music as they move.

    movenet live [CHECKPOINT] [--host 127.0.0.1] [--port 8000] [--video FILE] [--record OUT.wav|OUT.mp4]

The server (aiohttp) serves the page (movenet/web/: no CDN, it works offline) and one WebSocket per client. The
page asks for the camera and sends a JPEG of each frame (longest side SEND_SIDE) at the model's frame rate. Every
frame tick (hop / sample rate: 40 ms at 25 fps) the server takes each client's newest frame that is due (the last
one again if none is; MediaPipe Pose has run on each as it came, as `prepare` runs it when the model listens to
keypoints), steps every client's stream together in one batched call of the compiled engine
(`movenet.stream.Streams`), and sends each client its frame's PCM with the keypoints and controls it played from. The page plays the PCM through an AudioWorklet with an
adaptive jitter buffer (movenet/web/worklet.js) and draws the skeleton over its preview.

`--video FILE` plays a file instead of a camera, looping, for every client: its movement is read the way
`movenet generate` reads it (a synthetic dancer's sidecar, else MediaPipe on its frames), and the server sends
the frames too, for the page to show. `--record` keeps each session: its audio (.wav), or the frames it played
with their audio (.mp4) and, for a model that listens to keypoints, the keypoint track beside it
(`<name>.json`), from which `movenet generate` plays the same PCM again with the session's seed.

Protocol, little-endian. Client -> server, text (JSON): {"type": "start", "style", "temperature", "spread",
"seed"}, {"type": "set", "style"?, "temperature"?, "spread"?}, {"type": "stop"}; binary: a frame, FRAME_HEADER (FRAME_MAGIC, uint32
frame index, float64 capture time on the page's clock in ms) then the JPEG; or, from a client that finds the pose
itself (for a model that listens to keypoints alone), FRAME_HEADER with KEYPOINTS_MAGIC then float32 keypoints
[15, 3] (x, y normalized to the image, visibility), which costs the server no pose at all. Server -> client, text: {"type":
"hello", ...}, {"type": "started"}, {"type": "stats", ...}; binary: AUDIO_HEADER (AUDIO_MAGIC, uint32 tick, uint32
the frame index it played from, float64 that frame's capture time; NO_FRAME and NaN when it held an earlier
frame), float32 keypoints [15, 3], float32 controls [3] (f0 Hz, loudness dBFS, onset: 0 or the hit's level),
float32 PCM [hop], then in file mode the frame as JPEG.

Safe by default: it binds to 127.0.0.1 (another host prints a warning), frames are never written to disk unless
--record asks for an MP4, and a malformed or oversized message closes that client with one log line while the
others play on.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import math
import re
import signal
import struct
import threading
import time
import wave
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movenet import pose, video
from movenet.checkpoint import Loaded
from movenet.files import atomic_write, write_json
from movenet.inputs import BONES, JOINTS, N_JOINTS
from movenet.movement import count_frames, sidecar_keypoints
from movenet.sampling import DEFAULT_SPREAD
from movenet.stream import Streams

WEB_DIR = Path(__file__).parent / "web"
FRAME_MAGIC, KEYPOINTS_MAGIC, AUDIO_MAGIC = b"MVF1", b"MVK1", b"MVA1"
FRAME_HEADER = struct.Struct("<4sId")
AUDIO_HEADER = struct.Struct("<4sIId")
NO_FRAME = 0xFFFFFFFF
SEND_SIDE = 320  # longest side of the frames the page sends: MediaPipe looks at 256-pixel crops anyway
JPEG_QUALITY = 0.85
MAX_MESSAGE_BYTES = 2 << 20  # a JPEG of a SEND_SIDE frame is 10-60 kB
MAX_FRAME_SIDE = 4096  # a decoded frame larger than this closes the client
MAX_TEXT_BYTES = 4096
MAX_BEHIND_TICKS = 10  # further behind than this, the clock starts afresh instead of catching up
MIN_SEED, MAX_SEED = 0, 2**32 - 1
# Each camera frame plays at a steady latency from its capture. Its time from capture (the page's clock) to its
# pose being found (the server's) varies: MediaPipe tracks in ~15-20 ms, runs its detector as well on some frames,
# skips most frames while nobody is in view, and the machine is shared. A frame is due its client's typical transit
# (capture to arrival) plus the PHASE_ON_TIME quantile of its recent pose times after its capture, and plays in the
# tick nearest that time: a quick frame waits for its time instead of overtaking the one before (which would leave
# the next tick without a frame), and few are late (a late one plays in the first tick after its pose is found,
# unless a newer frame is due by then). The pose's part is never more than a period past its median, where waiting
# would cost more than being late.
# The clock locks its phase to the first camera's due times (a tick PHASE_MARGIN after them). Each tick moves the
# phase by PHASE_GAIN of the error, at most PHASE_STEP; other clients keep their own phase. After the camera's first
# PHASE_ACQUIRE_TICKS the steps are smaller: the clock then follows the camera's drift and slow changes of the pose's
# time, which every client would otherwise hear as jitter. A later tick is audio that comes later, which each page's
# jitter buffer absorbs only by playing slower (at most 0.5 %, 5 ms a second), so then the clock moves later by at
# most PHASE_LATER_STEP a tick (2.5 ms a second, half what a page absorbs; the pose's time grows on a busy host).
PHASE_ON_TIME, PHASE_MARGIN, PHASE_LAGS, MAX_QUEUED = 0.97, 0.002, 250, 8
PHASE_GAIN, PHASE_STEP, PHASE_TRACK_STEP, PHASE_LATER_STEP, PHASE_ACQUIRE_TICKS = 0.2, 0.002, 0.0005, 0.0001, 50


class ClientError(Exception):
    """A client sent something it must not: the message is the one line logged when it is closed."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- what a client sends ----------------------------------------------------------------------------------------------


@dataclass
class Frame:
    index: int
    capture_ms: float
    jpeg: bytes | None = None  # a camera frame
    keypoints: np.ndarray | None = None  # or its pose, float32 [15, 3]
    received_at: float = field(default_factory=time.monotonic)  # when the server read it off the socket


def parse_frame(data: bytes, keypoints_allowed: bool = False) -> Frame:
    """A binary message -> Frame; ClientError unless it is a frame message with a JPEG (or keypoints) in it."""
    if len(data) < FRAME_HEADER.size + 4:
        raise ClientError(f"binary message of {len(data)} bytes is too short for a frame")
    magic, index, capture_ms = FRAME_HEADER.unpack_from(data)
    capture_ms = capture_ms if math.isfinite(capture_ms) else math.nan
    body = bytes(data[FRAME_HEADER.size:])
    if magic == KEYPOINTS_MAGIC:
        if not keypoints_allowed:
            raise ClientError("this model listens to frames: send frames, not keypoints")
        if len(body) != 4 * N_JOINTS * 3:
            raise ClientError(f"keypoints must be {N_JOINTS} x 3 float32, got {len(body)} bytes")
        kp = np.frombuffer(body, "<f4").reshape(N_JOINTS, 3)
        if not np.isfinite(kp).all():
            raise ClientError("keypoints must be finite")
        return Frame(index, capture_ms, keypoints=pose.in_view(kp))
    if magic != FRAME_MAGIC:
        raise ClientError("binary message is not a frame (bad magic)")
    if body[:2] != b"\xff\xd8":
        raise ClientError("frame is not a JPEG")
    _open_jpeg(body).close()  # its header, now: a bad one closes the client even before it starts playing
    return Frame(index, capture_ms, jpeg=body)


def _open_jpeg(jpeg: bytes):
    """The JPEG as an unread PIL image, its format and size checked; ClientError for a bad one."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(jpeg))
    except Exception as err:  # Pillow raises many kinds for damaged data
        raise ClientError(f"damaged JPEG frame ({re.sub(r' *<[^>]*>', '', ' '.join(str(err).split()))})") from None
    if img.format != "JPEG":
        raise ClientError("frame is not a JPEG")
    if max(img.size) > MAX_FRAME_SIDE:
        raise ClientError(f"frame of {img.size[0]}x{img.size[1]} is larger than {MAX_FRAME_SIDE} pixels")
    return img


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a JPEG, its size checked before it is decoded; ClientError for a bad one."""
    with _open_jpeg(jpeg) as img:
        try:
            return np.asarray(img.convert("RGB"))
        except Exception as err:
            raise ClientError(f"damaged JPEG frame ({' '.join(str(err).split())})") from None


def encode_jpeg(rgb: np.ndarray, quality: float = JPEG_QUALITY) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=int(quality * 100))
    return out.getvalue()


def model_frame(rgb: np.ndarray, size: int, gray: bool) -> np.ndarray:
    """A frame as a frames model sees it, uint8 [size, size, 1 or 3] (scaled as the video reader scales)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out = frame.reformat(width=size, height=size, format="gray" if gray else "rgb24").to_ndarray()
    return out[..., None] if gray else out


def check_settings(message: dict, labels: list[str], start: bool) -> dict:
    """The settings a start or set message asks for, checked; ClientError for a bad one."""
    settings = {}
    if "style" in message and message["style"] is not None:
        if not isinstance(message["style"], str) or (labels and message["style"] not in labels):
            raise ClientError(f"unknown style {str(message['style'])[:40]!r}")
        settings["style"] = message["style"] if labels else None
    if "temperature" in message:
        t = message["temperature"]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not (0 <= t <= 10):
            raise ClientError(f"temperature must be a number from 0 to 10, got {str(t)[:40]}")
        settings["temperature"] = float(t)
    if "spread" in message:
        v = message["spread"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 <= v <= 1):
            raise ClientError(f"spread must be a number from 0 to 1, got {str(v)[:40]}")
        settings["spread"] = float(v)
    if start and "seed" in message:
        seed = message["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or not (MIN_SEED <= seed <= MAX_SEED):
            raise ClientError(f"seed must be a whole number from 0 to {MAX_SEED}, got {str(seed)[:40]}")
        settings["seed"] = seed
    return settings


# -- a video file as the camera ---------------------------------------------------------------------------------------


class FileSource:
    """A video file played as a camera, looping: each call gives its next frame at the model's rate, with the
    movement `movenet generate` reads off it (so the first pass plays what generate makes, with the same seed).

    Returns (rgb frame to show, model frame or None, keypoints or None). Frames are decoded as pose.extract_keypoints
    decodes them (longest side at most pose.MAX_SIDE), a synthetic dancer's keypoints come from its sidecar, any
    other file's from MediaPipe, a fresh tracker each pass as for a new video.
    """

    def __init__(self, path: Path, loaded: Loaded):
        self.path, self.inputs, self.config = Path(path), loaded.inputs, loaded.model.config
        info = video.probe(self.path)
        if not info.has_video:
            raise video.MediaError("no video stream")
        self.pose_size = pose.bounded_size(info.width, info.height)
        # the style the file was made in, which the page selects first
        sidecar = pose.read_sidecar(self.path)
        self.style = sidecar.get("style") if sidecar and sidecar.get("style") in loaded.labels else None
        self.keypoints = None  # else MediaPipe on each frame, as generate reads a file without a sidecar
        if self.config.uses_keypoints:
            self.keypoints = sidecar_keypoints(self.path, count_frames(self.path, self.inputs.fps), self.inputs.fps)
        self.tracker = None
        self._pass = None

    def _start_pass(self):
        frames = video.iter_frames(self.path, self.inputs.fps, self.pose_size, gray=False)
        model_frames = video.iter_frames(self.path, self.inputs.fps, (self.inputs.frame_size,) * 2,
                                         gray=self.inputs.gray) if self.config.uses_frames else None
        if self.config.uses_keypoints and self.keypoints is None:
            self.close()
            self.tracker = pose.PoseTracker(self.inputs.fps)
        return {"frames": frames, "model_frames": model_frames, "k": 0, "previous": None}

    def __call__(self):
        if self._pass is None:
            self._pass = self._start_pass()
        try:
            rgb = next(self._pass["frames"])
        except StopIteration:
            if self._pass["k"] == 0:
                raise video.MediaError("no frames") from None
            self._pass = self._start_pass()
            rgb = next(self._pass["frames"])
        p = self._pass
        frame = next(p["model_frames"]) if p["model_frames"] is not None else None
        keypoints = None
        if self.config.uses_keypoints:
            if self.keypoints is not None:
                keypoints = self.keypoints[min(p["k"], len(self.keypoints) - 1)]
            else:
                with pose.native_logs_silenced():
                    keypoints = self.tracker(rgb, repeated=rgb is p["previous"])
        p["previous"], p["k"] = rgb, p["k"] + 1
        return rgb, frame, keypoints

    def close(self):
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


# -- keeping a session ------------------------------------------------------------------------------------------------


class Recorder:
    """One session on disk: .wav its audio; .mp4 the frames it played with their audio, and for a keypoints model
    the keypoint track beside it (<name>.json). Written under temporary names, in place when the session ends."""

    def __init__(self, path: Path, loaded: Loaded, settings: dict):
        self.path, self.loaded, self.settings = Path(path), loaded, dict(settings)
        self.sample_rate, self.fps = loaded.inputs.sample_rate, loaded.inputs.fps
        self.keypoints: list[np.ndarray] = []
        self._stack = contextlib.ExitStack()
        self._wave = self._video = None
        if self.path.suffix.lower() == ".wav":
            tmp = self._stack.enter_context(atomic_write(self.path))
            self._wave = self._stack.enter_context(wave.open(str(tmp), "wb"))
            self._wave.setnchannels(1)
            self._wave.setsampwidth(2)
            self._wave.setframerate(self.sample_rate)

    def add(self, rgb: np.ndarray | None, keypoints: np.ndarray | None, pcm: np.ndarray) -> None:
        if self._wave is not None:
            self._wave.writeframes(np.rint(np.clip(pcm, -1, 1) * 32767.0).astype("<i2").tobytes())  # as write_wav
            return
        if self._video is None:
            h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
            self._video = video.VideoWriter(self.path, self.fps, w, h, self.sample_rate)
        h, w = self._video.size
        if rgb.shape[:2] != (h, w):  # the camera changed its size: keep the first one
            rgb = model_frame_rgb(rgb, h, w)
        self._video.add_frame(rgb[:h, :w])
        self._video.add_audio(pcm)
        if keypoints is not None:
            self.keypoints.append(np.asarray(keypoints, np.float32))

    def close(self) -> Path | None:
        """Put the recording in place; returns its path (None if nothing was played)."""
        if self._wave is not None:
            self._stack.close()
            return self.path
        if self._video is None:
            return None
        self._video.close()
        if self.loaded.model.config.uses_keypoints and self.keypoints:
            write_json(self.path.with_suffix(".json"), pose.keypoint_sidecar(
                np.stack(self.keypoints), self.fps, movenet_live={**self.settings, "frames": len(self.keypoints)}))
        return self.path

    def abort(self) -> None:
        if self._video is not None:
            self._video.abort()
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def model_frame_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
        width=width, height=height, format="rgb24").to_ndarray()


def numbered(path: Path, n: int) -> Path:
    """The recording of the n-th session (1: path itself, then name-2, name-3, ...)."""
    return path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")


# -- one client -------------------------------------------------------------------------------------------------------


@dataclass
class Session:
    key: int
    ws: object
    peer: str
    settings: dict = field(default_factory=lambda: {"style": None, "temperature": 1.0, "spread": DEFAULT_SPREAD,
                                                    "seed": 0})
    playing: bool = False  # between start and stop
    streaming: bool = False  # its stream is in the Streams (from its first played frame)
    pending: Frame | None = None  # the newest frame received, not looked at yet
    analysing: bool = False  # the pose thread is at it
    seen: deque = field(default_factory=deque)  # frames looked at (decoded, their pose found), not played yet
    last: "Seen | None" = None  # the frame the last tick played (played again while no newer one is seen)
    tracker: object = None
    source: FileSource | None = None
    recorder: Recorder | None = None
    close_reason: str | None = None
    received: int = 0
    dropped: int = 0  # frames a newer one replaced before a tick played them
    held: int = 0  # ticks that played an earlier frame again
    # of the recent frames: seconds from capture to arrival (with the offset between the page's clock and the
    # server's), and from arrival to the pose found
    transits: deque = field(default_factory=lambda: deque(maxlen=PHASE_LAGS))
    poses: deque = field(default_factory=lambda: deque(maxlen=PHASE_LAGS))
    lag: float | None = None  # due_lag as of the last tick (None before any frame's timing), read under the lock
    played: int = 0  # frames of audio sent since start
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ready(self) -> bool:
        return self.playing and self.close_reason is None and (
            self.source is not None or bool(self.seen) or self.last is not None)

    def due_lag(self, period: float) -> float:
        """Seconds (with the clocks' offset) from a frame's capture to when a tick may play it: the typical transit
        and the PHASE_ON_TIME quantile of the pose's time. (Transit is late when the server itself is busy, as it
        is with many clients on one core: waiting for that lateness would only put the ticks later still.)"""
        poses = np.asarray(self.poses)
        return float(np.median(self.transits)) + min(float(np.quantile(poses, PHASE_ON_TIME)),
                                                      float(np.median(poses)) + period)


@dataclass
class Seen:
    """A camera frame as the model takes it: the message it came in, the picture, the model's frame, the pose."""

    frame: Frame
    rgb: np.ndarray
    model_frame: np.ndarray | None
    keypoints: np.ndarray | None
    ready_at: float = field(default_factory=time.monotonic)  # when it was looked at (the clock's time base)


# -- the server -------------------------------------------------------------------------------------------------------


class LiveServer:
    """The live instrument: `app()` is the aiohttp application (page, static files, WebSocket); `run(host, port)`
    serves it until Ctrl-C. loaded: the model; video_path: a file to play instead of cameras; record: where to keep
    sessions (.wav or .mp4); log: where one-line events go."""

    def __init__(self, loaded: Loaded, video_path: str | Path | None = None, record: str | Path | None = None,
                 log=print, model_name: str = "model", precision: str = "auto"):
        self.loaded, self.log, self.model_name = loaded, log, model_name
        self.config = loaded.model.config
        self.streams = Streams(loaded, precision=precision)  # as `movenet generate` builds its engine
        self.video_path = Path(video_path) if video_path else None
        self.file_style = None
        if self.video_path is not None:
            probe = FileSource(self.video_path, loaded)  # a file that cannot be played fails now, in one line
            self.file_style = probe.style
            probe.close()
        self.record = Path(record) if record else None
        self.sessions: dict[int, Session] = {}
        self._next_key = 1
        self._recordings = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="movenet-live")  # the ticks: the model's calls
        # Camera frames are decoded and their pose found as they arrive, in a thread of their own: by the tick that
        # plays a frame its pose is ready, and pose (MediaPipe's ~20 ms) runs beside generation, not before it.
        self.pose_executor = ThreadPoolExecutor(1, thread_name_prefix="movenet-pose")
        self.tick_seconds: deque = deque(maxlen=250)  # compute time of the recent ticks
        self.ticks = self.late = 0
        self.phase_shift = 0.0  # seconds the clock's next tick moves (phase lock, see PHASE_ON_TIME)
        self.waits: deque = deque(maxlen=250)  # how long the first camera's recent frames waited for their tick
        self.sees: deque = deque(maxlen=250)  # and how long from their arrival to their pose (decode, MediaPipe)
        self.recorded: list[Path] = []
        self._ticker = None
        self.warm_up()

    def warm_up(self) -> None:
        """Compile and touch what a tick runs (the engine, the encoders, MediaPipe's graph), so that the first
        client's first frames come on time."""
        c, key = self.config, object()
        frame = np.zeros((c.frame_size, c.frame_size, c.frame_channels), np.uint8) if c.uses_frames else None
        self.streams.add(key)
        for _ in range(2):
            self.streams.step({key: (frame, pose.no_pose() if c.uses_keypoints else None)})
        self.streams.remove(key)
        decode_jpeg(encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
        if c.uses_keypoints and self.video_path is None:
            with contextlib.suppress(ImportError), pose.native_logs_silenced(), pose.PoseTracker() as tracker:
                tracker(np.zeros((240, 320, 3), np.uint8))

    # -- HTTP ---------------------------------------------------------------------------------------------------------

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 << 10)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", WEB_DIR, show_index=False)
        app.on_startup.append(self._start_ticks)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _index(self, request):
        from aiohttp import web

        return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-store"})

    def hello(self) -> dict:
        inputs = self.loaded.inputs
        return {"type": "hello", "model": self.model_name, "sample_rate": inputs.sample_rate, "fps": inputs.fps,
                "hop": self.streams.hop, "styles": list(self.loaded.labels), "features": self.config.features,
                "source": "file" if self.video_path else "camera",
                "bones": [[JOINTS.index(a), JOINTS.index(b)] for a, b in BONES], "video": self.video_path.name if self.video_path
                else None, "send_side": SEND_SIDE, "jpeg_quality": JPEG_QUALITY, "joints": N_JOINTS,
                "max_message_bytes": MAX_MESSAGE_BYTES, "style": self.file_style, "spread": DEFAULT_SPREAD}

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=None)
        await ws.prepare(request)
        session = Session(self._next_key, ws, request.remote or "?")
        self._next_key += 1
        self.sessions[session.key] = session
        self.log(f"live: client {session.key} ({session.peer}) connected; {len(self.sessions)} in all")
        await ws.send_str(json.dumps(self.hello()))
        loop = asyncio.get_running_loop()
        try:
            async for msg in ws:
                if session.close_reason:
                    break
                if msg.type == WSMsgType.BINARY:
                    if self.video_path is not None:
                        raise ClientError("this server plays a file: it takes no frames")
                    frame = parse_frame(msg.data, keypoints_allowed=self.config.features == "keypoints")
                    with session.lock:
                        session.dropped += session.pending is not None
                        session.pending = frame
                        session.received += 1
                    self._look(session)
                elif msg.type == WSMsgType.TEXT:
                    await self._command(session, msg.data, loop)
                elif msg.type == WSMsgType.ERROR:
                    err = ws.exception()
                    raise ClientError(f"message larger than {MAX_MESSAGE_BYTES >> 20} MB"
                                      if "exceeds limit" in str(err) or "too big" in str(err).lower() else
                                      f"bad WebSocket data ({' '.join(str(err).split())})")
        except ClientError as err:
            session.close_reason = str(err)
        finally:
            await self._end(session, loop)
        return ws

    async def _command(self, session: Session, text: str, loop) -> None:
        if len(text) > MAX_TEXT_BYTES:
            raise ClientError(f"text message of {len(text)} characters")
        try:
            message = json.loads(text)
        except ValueError:
            raise ClientError("text message is not JSON") from None
        if not isinstance(message, dict) or message.get("type") not in ("start", "set", "stop"):
            raise ClientError(f"unknown message {str(message)[:60]!r}")
        kind = message["type"]
        if kind == "start":
            settings = {**session.settings, **check_settings(message, self.loaded.labels, start=True)}
            # MediaPipe's graph takes a while to build: not in the tick thread, where it would hold up every client
            made = await loop.run_in_executor(None, self._make_movement_source)
            await loop.run_in_executor(self.executor, self._start, session, settings, made)
            await session.ws.send_str(json.dumps({"type": "started", **session.settings}))
        elif kind == "set":
            settings = check_settings(message, self.loaded.labels, start=False)
            await loop.run_in_executor(self.executor, self._set, session, settings)
        else:
            await loop.run_in_executor(self.executor, self._stop, session)
            await session.ws.send_str(json.dumps({"type": "stopped", "played": session.played}))

    # -- in the executor thread: every call that touches the model, pose or a recording ------------------------------

    def _make_movement_source(self):
        """What a new session reads its movement with: the file (--video), else a pose tracker (for a model that
        listens to keypoints), else None."""
        if self.video_path is not None:
            return FileSource(self.video_path, self.loaded)
        if self.config.uses_keypoints:
            with pose.native_logs_silenced():
                return pose.PoseTracker(self.loaded.inputs.fps)
        return None

    def _start(self, session: Session, settings: dict, made) -> None:
        self._stop(session)
        session.settings, session.played = settings, 0
        with session.lock:
            session.pending = session.last = None
            session.seen.clear()
        if isinstance(made, FileSource):
            session.source = made
        else:
            session.tracker = made
        if self.record is not None:
            self._recordings += 1
            session.recorder = Recorder(numbered(self.record, self._recordings), self.loaded,
                                        {**settings, "model": self.model_name})
        session.playing = True
        self._look(session)  # a frame that came with the start

    def _set(self, session: Session, settings: dict) -> None:
        session.settings.update(settings)
        if session.streaming:
            if "temperature" in settings:
                self.streams.set_temperature(session.key, settings["temperature"])
            if "spread" in settings:
                self.streams.set_spread(session.key, settings["spread"])
            if "style" in settings:
                self.streams.set_style(session.key, settings["style"])

    def _stop(self, session: Session) -> None:
        session.playing = False
        if session.streaming:
            self.streams.remove(session.key)
            session.streaming = False
        if session.source is not None:
            session.source.close()
        if session.tracker is not None:  # after whatever the pose thread is doing with it
            self.pose_executor.submit(session.tracker.close)
        session.tracker = session.source = None
        if session.recorder is not None:
            try:
                path = session.recorder.close()
                if path is not None:
                    self.recorded.append(path)
                    self.log(f"live: client {session.key}: session recorded in {path}")
            except Exception as err:  # a full disk: say so, and go on serving
                session.recorder.abort()
                self.log(f"live: client {session.key}: recording lost ({' '.join(str(err).split())})")
            session.recorder = None

    def _look(self, session: Session) -> None:
        """Have the pose thread look at the session's newest frame (if it is not at it already)."""
        with session.lock:
            if session.analysing or not session.playing or session.pending is None:
                return
            session.analysing = True
        self.pose_executor.submit(self._analyse, session)

    def _analyse(self, session: Session) -> None:
        """In the pose thread: decode each newest frame and find its pose, until none is waiting."""
        while True:
            with session.lock:
                frame, session.pending = session.pending, None
                if frame is None or not session.playing or session.close_reason:
                    session.analysing = False
                    return
            try:
                seen = self._see(session, frame)
            except ClientError as err:
                session.close_reason = str(err)
                with session.lock:
                    session.analysing = False
                return
            with session.lock:
                session.seen.append(seen)
                while len(session.seen) > MAX_QUEUED:  # a client sending faster than the frame rate
                    session.seen.popleft()
                    session.dropped += 1
                if math.isfinite(frame.capture_ms):
                    session.transits.append(frame.received_at - frame.capture_ms / 1000)
                    session.poses.append(seen.ready_at - frame.received_at)

    def _see(self, session: Session, frame: Frame) -> Seen:
        if frame.keypoints is not None:  # the client found the pose itself: nothing to see or detect
            return Seen(frame, _NOTHING_TO_SEE, None, frame.keypoints)
        rgb = decode_jpeg(frame.jpeg)
        model_input = model_frame(rgb, self.config.frame_size, self.config.frame_channels == 1) \
            if self.config.uses_frames else None
        keypoints = None
        if self.config.uses_keypoints:
            with pose.native_logs_silenced():
                keypoints = session.tracker(rgb)
        return Seen(frame, rgb, model_input, keypoints)

    def _movement(self, session: Session, slot: float):
        """The session's movement for the tick meant for `slot`: (rgb, model frame, keypoints, the frame message
        it plays first now, or None when it plays an earlier frame again)."""
        if session.source is not None:
            rgb, frame, keypoints = session.source()
            return rgb, frame, keypoints, None
        period = self.streams.frame_period
        with session.lock:
            session.lag = lag = session.due_lag(period) if session.poses else None
            due = [s for s in session.seen if not math.isfinite(s.frame.capture_ms)
                   or s.frame.capture_ms / 1000 + (lag or 0.0) <= slot + period / 2]  # due at the nearest tick
            if not due and session.last is None and session.seen:  # the first frame: no need to wait
                due = [session.seen[0]]
            for _ in due:
                session.seen.popleft()
            session.dropped += max(0, len(due) - 1)
        if not due:
            session.held += 1
            seen = session.last
        else:
            seen = session.last = due[-1]
        return seen.rgb, seen.model_frame, seen.keypoints, None if not due else seen.frame

    def tick(self, sessions: list[Session], slot: float | None = None) -> list[tuple[Session, bytes]]:
        """One frame tick of these sessions: their movement, one batched step, one audio message each. slot: the
        time.monotonic() the clock meant this tick for (default: now)."""
        moves, played = {}, {}
        now = time.monotonic()
        slot = now if slot is None else slot
        sessions = [s for s in sessions if s.ready()]  # a stop may have run between the clock's look and now
        lead = next((s for s in sessions if s.source is None), None)
        for session in sessions:
            try:
                rgb, frame, keypoints, fresh = self._movement(session, max(slot, now))  # a late tick: what is due now
            except (ClientError, video.MediaError) as err:
                session.close_reason = str(err)
                continue
            if session is lead and fresh is not None:
                self.waits.append(now - session.last.ready_at)  # how long its frame waited for this tick
                self.sees.append(session.last.ready_at - fresh.received_at)
                self._lock_phase(session, fresh, slot)
            if not session.streaming:
                self.streams.add(session.key, session.settings["style"], session.settings["temperature"],
                                 session.settings["seed"], session.settings["spread"])
                session.streaming = True
            moves[session.key] = (frame, keypoints)
            played[session.key] = (session, rgb, keypoints, fresh)
        for session in sessions:  # a session closed meanwhile leaves the batch before it steps
            if session.close_reason and session.streaming:
                self.streams.remove(session.key)
                session.streaming = False
                moves.pop(session.key, None)
                played.pop(session.key, None)
        audio = self.streams.step(moves) if moves else {}
        out = []
        for key, pcm in audio.items():
            session, rgb, keypoints, fresh = played[key]
            controls = self.streams.controls(key)
            header = AUDIO_HEADER.pack(AUDIO_MAGIC, self.ticks & 0xFFFFFFFF, fresh.index if fresh else NO_FRAME,
                                       fresh.capture_ms if fresh else math.nan)
            parts = [header,
                     np.asarray(keypoints if keypoints is not None else np.zeros((N_JOINTS, 3)), "<f4").tobytes(),
                     np.asarray(controls if controls is not None else np.zeros(3), "<f4").tobytes(),
                     np.asarray(pcm, "<f4").tobytes()]
            if session.source is not None:
                parts.append(encode_jpeg(_fit(rgb, SEND_SIDE)))
            out.append((session, b"".join(parts)))
            session.played += 1
            if session.recorder is not None:
                try:
                    session.recorder.add(rgb, keypoints, pcm)
                except Exception as err:
                    session.recorder.abort()
                    session.recorder = None
                    self.log(f"live: client {session.key}: recording stopped ({' '.join(str(err).split())})")
        self.ticks += 1
        return out

    def _lock_phase(self, session: Session, fresh: Frame, slot: float) -> None:
        """Move the clock's phase towards ticks PHASE_MARGIN after the session's frames are due (session.lag: as
        this tick's _movement found it; the pose thread adds to the deques meanwhile)."""
        if not math.isfinite(fresh.capture_ms) or session.lag is None:
            return
        period = self.streams.frame_period
        due = fresh.capture_ms / 1000 + session.lag
        # the captures lie a period apart, so any frame tells the phase, whether it is played on time or late
        error = (due + PHASE_MARGIN - slot + period / 2) % period - period / 2
        if session.played < PHASE_ACQUIRE_TICKS:
            earlier = later = PHASE_STEP
        else:
            earlier, later = PHASE_TRACK_STEP, PHASE_LATER_STEP
        self.phase_shift += float(np.clip(PHASE_GAIN * error, -earlier, later))

    # -- the clock ----------------------------------------------------------------------------------------------------

    async def _start_ticks(self, app) -> None:
        self._ticker = asyncio.create_task(self._run_ticks())

    async def _run_ticks(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.streams.frame_period
        next_tick = loop.time()
        last_stats = loop.time()
        while True:
            shift, self.phase_shift = self.phase_shift, 0.0
            next_tick += period + shift
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_BEHIND_TICKS * period:
                self.late += 1
                next_tick = loop.time()
            ready = [s for s in self.sessions.values() if s.ready()]
            if ready:
                started = time.perf_counter()
                try:
                    out = await loop.run_in_executor(self.executor, self.tick, ready, next_tick)
                except Exception as err:  # a bug must not stop every client's music: say it, close them
                    self.log(f"live: tick failed: {type(err).__name__}: {' '.join(str(err).split())}")
                    for session in ready:
                        session.close_reason = "server error"
                    out = []
                self.tick_seconds.append(time.perf_counter() - started)
                await asyncio.gather(*(self._send(s, data) for s, data in out))
                for session in ready:
                    if session.close_reason and not session.ws.closed:
                        await session.ws.close(code=1003, message=session.close_reason[:100].encode())
            if loop.time() - last_stats >= 1.0:
                last_stats = loop.time()
                await asyncio.gather(*(self._send(s, json.dumps(self.stats(s))) for s in self.sessions.values()))

    async def _send(self, session: Session, data) -> None:
        if session.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await (session.ws.send_bytes(data) if isinstance(data, bytes) else session.ws.send_str(data))

    def stats(self, session: Session | None = None) -> dict:
        ticks = np.array(self.tick_seconds) * 1000 if self.tick_seconds else np.zeros(1)
        out = {"type": "stats", "clients": len(self.sessions), "playing": len(self.streams),
               "tick_ms_p50": round(float(np.percentile(ticks, 50)), 2),
               "tick_ms_p95": round(float(np.percentile(ticks, 95)), 2),
               "frame_ms": round(1000 * self.streams.frame_period, 2), "late": self.late}
        if self.waits:
            out["wait_ms_p50"], out["wait_ms_p95"] = (round(float(np.percentile(self.waits, q)) * 1000, 1)
                                                      for q in (50, 95))
            out["see_ms_p50"], out["see_ms_p95"] = (round(float(np.percentile(self.sees, q)) * 1000, 1)
                                                    for q in (50, 95))
        if session is not None:
            out.update(received=session.received, dropped=session.dropped, held=session.held)
        return out

    async def _end(self, session: Session, loop) -> None:
        if session.close_reason:
            self.log(f"live: client {session.key} ({session.peer}) closed: {session.close_reason}")
            if not session.ws.closed:
                await session.ws.close(code=1003, message=session.close_reason[:100].encode())
        self.sessions.pop(session.key, None)
        await loop.run_in_executor(self.executor, self._stop, session)
        self.log(f"live: client {session.key} left; {len(self.sessions)} in all")

    async def _shutdown(self, app) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


_NOTHING_TO_SEE = np.zeros((240, 320, 3), np.uint8)  # the picture of a client that sends keypoints (a recording's)


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """rgb scaled down so its longer side is at most `side` (for the page's preview)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    size = pose.bounded_size(w, h, side)
    return model_frame_rgb(rgb, *size)


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe: whoever started the server waits for its address


def serve(loaded: Loaded, host: str = "127.0.0.1", port: int = 8000, video_path=None, record=None,
          model_name: str = "model", log=_say, ready=None, precision: str = "auto") -> None:
    """Run the live server until Ctrl-C or SIGTERM. ready(url) is called once it listens."""
    from aiohttp import web

    server = LiveServer(loaded, video_path, record, log, model_name, precision)
    if not is_loopback(host):
        log(f"movenet live: warning: listening on {host}, not on this machine alone: anyone who can reach it can "
            f"use this server (frames are not stored, but its CPU and the music are theirs to use)")

    async def main():
        runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
        url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"
        (ready or (lambda u: log(f"movenet live: open {u} in a browser (Ctrl-C stops)")))(url)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # SIGTERM ends it as Ctrl-C does
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await asyncio.get_running_loop().run_in_executor(server.executor, lambda: [
                server._stop(s) for s in list(server.sessions.values())])
            server.executor.shutdown(wait=True)
            server.pose_executor.shutdown(wait=True)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    for path in server.recorded:
        log(f"movenet live: recorded {path}")



def server_address(stdout, timeout: float = 120.0) -> tuple[str | None, list[str]]:
    """The address a `movenet live` process printed on `stdout` (a text pipe), and the lines before it; None if it
    printed none within `timeout` seconds or ended (for scripts and tests that start a server)."""
    import queue

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stdout] + [lines.put(None)], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        found = re.search(r"open (http://\S+)", line)
        if found:
            return found.group(1), seen
    return None, seen
