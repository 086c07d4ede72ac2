"""2D body keypoints: one 15-joint layout for real videos (MediaPipe Pose) and synthetic clips (their sidecar).

Keypoints are float32 [T, J=15, 3] per video frame at the prepared frame rate, joints in `JOINTS` order (the
synthetic dancer's layout, `inputs.JOINTS`), each (x, y, visibility):
    x, y        normalized image coordinates in [0, 1]: x / width to the right, y / height downward
    visibility  in [0, 1]; 0 means "not seen" (no person, or the joint lies outside the image), and then x = y = 0

Left and right are the person's own (a dancer facing the camera has "l_" joints on the image's right), as in
both MediaPipe and the synthetic dancer.

Real videos go through MediaPipe Pose (the legacy `solutions.pose`, tracking mode, model_complexity=1: the only
model shipped inside the wheel; 0 and 2 download theirs at run time, so they are never used). Its 33 landmarks map
onto the 15 joints as in `LANDMARKS`: head = nose, neck = mid-shoulders, pelvis = mid-hips, hands = wrists,
feet = ankles. Ankles rather than the mean of ankle, heel and toe: the dancer's foot joint ends the shin, and the
ankle is the foot landmark MediaPipe finds most reliably (heel and toe often drop out when the feet are small).
A joint built from two landmarks has their mean position and the smaller visibility.

Jitter is smoothed causally with a One-Euro filter (Casiez et al., CHI 2012) per joint, so the same code runs
live: frame t depends on frames <= t only. MediaPipe's own landmark smoothing is off, so smoothing has one owner.

mediapipe is an optional extra (`pip install 'movenet[pose]'`) imported lazily; synthetic clips never need it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from movenet import video
from movenet.inputs import FPS, JOINTS, N_JOINTS

# MediaPipe Pose landmark indices per joint (JOINTS order); two indices mean the midpoint of the pair.
LANDMARKS = {
    "head": (0,),  # nose
    "neck": (11, 12),  # mid-shoulders
    "pelvis": (23, 24),  # mid-hips
    "l_shoulder": (11,), "l_elbow": (13,), "l_hand": (15,),  # hand = wrist
    "r_shoulder": (12,), "r_elbow": (14,), "r_hand": (16,),
    "l_hip": (23,), "l_knee": (25,), "l_foot": (27,),  # foot = ankle
    "r_hip": (24,), "r_knee": (26,), "r_foot": (28,),
}
assert tuple(LANDMARKS) == JOINTS
N_LANDMARKS = 33

# Frames reach MediaPipe with their longer side at most this many pixels (aspect kept). Its detector and landmark
# models look at 224-256 px crops anyway; a 1080p frame would only cost more to decode, convert and crop. On
# vtest.avi (768x576) 640 px finds as many poses as the full size (423 vs 429 of 795 frames).
MAX_SIDE = 640
MODEL_COMPLEXITY = 1  # the only one whose model ships in the wheel; 0 and 2 download theirs (no network here)
MIN_DETECTION_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5
# With nobody in view MediaPipe runs its person detector on every frame, which costs twice a tracked frame (36 vs
# 19 ms on one core here); searching every SEARCH_EVERY-th frame instead keeps an empty room as cheap as a dancer,
# and finds a person who walks in at most SEARCH_EVERY - 1 frames later.
SEARCH_EVERY = 2

# One-Euro filter, in normalized image units: at rest the cutoff is MIN_CUTOFF_HZ (jitter removed), and it rises
# by BETA Hz per (image width / s) of speed, so fast moves are followed with little lag.
MIN_CUTOFF_HZ = 1.5
BETA = 5.0
D_CUTOFF_HZ = 1.0  # cutoff of the speed estimate that drives the adaptive cutoff

LONG_VIDEO_SECONDS = 30.0  # extract_keypoints shows a progress bar from this length on


class MediaPipeMissing(ImportError):
    """Keypoints from a real video were asked for, but mediapipe is not installed. The message is one line."""


def import_mediapipe():
    """The mediapipe module, or MediaPipeMissing saying how to install it."""
    try:
        import mediapipe
    except ImportError:
        raise MediaPipeMissing(
            "keypoints from real videos need MediaPipe, which is not installed: pip install 'movenet[pose]'"
        ) from None
    return mediapipe


_silence_lock = threading.Lock()
_silenced_depth = 0
_saved_stderr = [None]


@contextlib.contextmanager
def native_logs_silenced(enabled: bool | None = None):
    """Send what native code writes to stderr (MediaPipe's glog / absl lines, TFLite's "INFO: Created TensorFlow
    Lite XNNPACK delegate") to /dev/null while the block runs. They ignore every logging setting, so this is done
    at the file descriptor. enabled=None: when `movenet --quiet` asked for quiet (MOVENET_QUIET=1, which the CLI
    sets, so prepare's worker processes see it too)."""
    if enabled is None:
        enabled = os.environ.get("MOVENET_QUIET") == "1"
    if not enabled:
        yield
        return
    global _silenced_depth
    with _silence_lock:  # file descriptor 2 is the process's: threads (the live server's) share one redirection
        if _silenced_depth == 0:
            sys.stderr.flush()
            _saved_stderr[0] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
            finally:
                os.close(devnull)
        _silenced_depth += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silenced_depth -= 1
            if _silenced_depth == 0:
                sys.stderr.flush()
                os.dup2(_saved_stderr[0], 2)
                os.close(_saved_stderr[0])


def extractor_settings() -> dict:
    """What fixes MediaPipe keypoints beside the frame rate; stored with each clip so live use can match it."""
    return {
        "model": "mediapipe.solutions.pose", "model_complexity": MODEL_COMPLEXITY, "max_side": MAX_SIDE,
        "min_detection_confidence": MIN_DETECTION_CONFIDENCE, "min_tracking_confidence": MIN_TRACKING_CONFIDENCE,
        "search_every": SEARCH_EVERY, "feet": "ankles", "smoothing": {"filter": "one-euro", "min_cutoff_hz": MIN_CUTOFF_HZ, "beta": BETA,
                                        "d_cutoff_hz": D_CUTOFF_HZ},
    }


# ----------------------------------------------------------------------------------------------------------------
# The joint layout


def no_pose() -> np.ndarray:
    """Keypoints of a frame without a person: float32 [J, 3] of zeros (visibility 0)."""
    return np.zeros((N_JOINTS, 3), np.float32)


def in_view(keypoints: np.ndarray) -> np.ndarray:
    """Joints outside the image become unseen; unseen joints get x = y = 0. [..., J, 3] -> same, float32."""
    kp = np.array(keypoints, np.float32)
    xy, vis = kp[..., :2], np.clip(kp[..., 2], 0.0, 1.0)
    inside = np.all((xy >= 0.0) & (xy <= 1.0), axis=-1) & np.isfinite(xy).all(-1)
    vis = np.where(inside, vis, 0.0)
    kp[..., :2] = np.where((vis > 0)[..., None], xy, 0.0)
    kp[..., 2] = vis
    return kp


def joints_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Map MediaPipe Pose's 33 landmarks to the 15 joints.

    Args:
        landmarks: float [33, 3] (x, y, visibility), x and y normalized to the image (may lie outside [0, 1]).
    Returns:
        float32 [15, 3] in JOINTS order: a pair's mean position and smaller visibility; joints outside the image
        get visibility 0.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (N_LANDMARKS, 3):
        raise ValueError(f"expected landmarks [33, 3], got {lm.shape}")
    out = np.empty((N_JOINTS, 3))
    for j, idx in enumerate(LANDMARKS.values()):
        out[j, :2] = lm[list(idx), :2].mean(0)
        out[j, 2] = lm[list(idx), 2].min()
    return in_view(out)


def detected(keypoints: np.ndarray) -> np.ndarray:
    """bool [T]: frames of keypoints [T, J, 3] with at least one visible joint (a pose was found)."""
    return (np.asarray(keypoints)[..., 2] > 0).any(-1)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic clips: the dancer's true joints


def read_sidecar(video_path) -> dict | None:
    """The synthetic dancer's sidecar `<clip>.json` beside `<clip>.<ext>`, or None if the video has none.

    Only a JSON object whose `joint_names` equal JOINTS counts: any other JSON file beside a video is ignored.
    """
    path = Path(video_path).with_suffix(".json")
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("joint_names") != list(JOINTS):
        return None
    return sidecar


def dancer_truth(video_path) -> dict | None:
    """The sidecar of a synthetic dancer (its true joints and controls: the ground truth of evaluation), or None;
    a keypoint-track sidecar holds no truth."""
    sidecar = read_sidecar(video_path)
    return sidecar if sidecar is not None and "joints" in sidecar and "pitch_hz" in sidecar else None


def _fraction(rate) -> Fraction:
    return Fraction(str(rate)) if isinstance(rate, float) else Fraction(rate)


def keypoints_from_sidecar(sidecar: dict, n_frames: int, fps=FPS) -> np.ndarray:
    """The keypoints a sidecar holds, resampled to `fps`.

    Two kinds of sidecar: the synthetic dancer's (`joints` [T_src][15][2] in pixels, x right, y down, on a
    `size`x`size` canvas: its true joints, each seen) and a keypoint track (`keypoints` [T_src][15][3], x, y
    normalized to the image and visibility, as this module makes them: what `movenet live --record` keeps, or a
    pose a user computed elsewhere), both at the sidecar's `fps`. Output frame k holds source frame
    floor(k * sidecar_fps / fps), the latest one whose timestamp is <= k / fps, the rule video.iter_frames follows;
    past the end the last source frame is held.

    Args:
        sidecar: the clip's sidecar, as read by read_sidecar.
        n_frames: frames to return (the prepared clip's frame count).
        fps: the prepared frame rate.
    Returns:
        float32 [n_frames, 15, 3]: x, y in [0, 1], visibility (0 for a joint off the image).
    Raises:
        ValueError if the sidecar's joints or keypoints, size or fps are malformed.
    """
    src_fps = sidecar.get("fps")
    if not isinstance(src_fps, (int, float)) or isinstance(src_fps, bool) or src_fps <= 0:
        raise ValueError(f"sidecar needs a positive fps, got fps={src_fps!r}")
    if "keypoints" in sidecar:
        track = np.asarray(sidecar["keypoints"], np.float32)
        if track.ndim != 3 or track.shape[1:] != (N_JOINTS, 3) or len(track) == 0:
            raise ValueError(f"sidecar keypoints must be [T, {N_JOINTS}, 3], got {list(track.shape)}")
    else:
        joints = np.asarray(sidecar.get("joints"), np.float32)
        size = sidecar.get("size")
        if joints.ndim != 3 or joints.shape[1:] != (N_JOINTS, 2) or len(joints) == 0:
            raise ValueError(f"sidecar joints must be [T, {N_JOINTS}, 2], got {list(joints.shape)}")
        if not isinstance(size, (int, float)) or size <= 0:
            raise ValueError(f"sidecar needs a positive size, got size={size!r}")
        track = np.ones((len(joints), N_JOINTS, 3), np.float32)
        track[..., :2] = joints / np.float32(size)
    ratio = _fraction(src_fps) / _fraction(fps)
    src = np.minimum(np.arange(n_frames) * ratio.numerator // ratio.denominator, len(track) - 1)
    return in_view(track[src])


def keypoint_sidecar(keypoints: np.ndarray, fps, **extra) -> dict:
    """A keypoint-track sidecar (see keypoints_from_sidecar) of keypoints float [T, 15, 3] at `fps`; `extra` keys
    are kept beside (e.g. how the track was made)."""
    kp = np.asarray(keypoints, np.float32)
    return {"joint_names": list(JOINTS), "fps": float(fps) if isinstance(fps, float) else int(fps),
            "keypoints": kp.astype(np.float64).tolist(), **extra}  # float32 values, exactly


# ----------------------------------------------------------------------------------------------------------------
# Causal smoothing


class OneEuroFilter:
    """Causal One-Euro filter over the joints of keypoint frames [J, 3], one frame per call.

    Each visible joint's (x, y) is low-passed with a cutoff that grows with its (smoothed) speed:
    cutoff = min_cutoff_hz + beta * speed, speed in normalized image units per second. A joint that becomes
    unseen (visibility 0) resets: when it reappears it starts from its new position, not from where it vanished.
    Visibility passes through unchanged. The state is the filter's only memory, so output t depends on inputs
    <= t alone.
    """

    def __init__(self, fps=FPS, min_cutoff_hz: float = MIN_CUTOFF_HZ, beta: float = BETA,
                 d_cutoff_hz: float = D_CUTOFF_HZ, n_joints: int = N_JOINTS):
        self.dt = 1.0 / float(fps)
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = min_cutoff_hz, beta, d_cutoff_hz
        self.xy = np.zeros((n_joints, 2))  # filtered positions
        self.speed = np.zeros((n_joints, 2))  # filtered velocity (units / s)
        self.seen = np.zeros(n_joints, bool)  # joints that have a state to continue from

    def _alpha(self, cutoff_hz):
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff_hz))
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, keypoints: np.ndarray) -> np.ndarray:
        """keypoints float [J, 3] -> smoothed float32 [J, 3]."""
        kp = np.asarray(keypoints, np.float64)
        xy, vis = kp[:, :2], kp[:, 2] > 0
        go_on = vis & self.seen
        velocity = (xy - self.xy) / self.dt
        speed = np.where(go_on[:, None], self.speed + self._alpha(self.d_cutoff_hz) * (velocity - self.speed), 0.0)
        a = self._alpha(self.min_cutoff_hz + self.beta * np.linalg.norm(speed, axis=-1))[:, None]
        self.xy = np.where(go_on[:, None], self.xy + a * (xy - self.xy), np.where(vis[:, None], xy, 0.0))
        self.speed, self.seen = speed, vis
        out = kp.astype(np.float32)
        out[:, :2] = self.xy
        return out


def smooth(keypoints: np.ndarray, fps=FPS, **filter_args) -> np.ndarray:
    """Run a fresh OneEuroFilter over a whole sequence: float [T, J, 3] -> float32 [T, J, 3] (causal)."""
    filt = OneEuroFilter(fps, n_joints=np.shape(keypoints)[1], **filter_args)
    return np.stack([filt(k) for k in keypoints]) if len(keypoints) else np.zeros(np.shape(keypoints), np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Real videos: MediaPipe Pose


class PoseTracker:
    """MediaPipe Pose in tracking mode plus causal smoothing, one RGB frame per call (offline and live alike).

    MediaPipe follows one person: it runs its detector until it finds someone, then tracks that pose from frame to
    frame. While nobody is in view it looks every `search_every` frames (SEARCH_EVERY), the frames between keeping
    "no pose". A frame without a person gives visibility 0 everywhere. Use as a context manager, or call close().
    """

    def __init__(self, fps=FPS, smoothing: bool = True, search_every: int = SEARCH_EVERY):
        mp = import_mediapipe()
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=False, model_complexity=MODEL_COMPLEXITY, smooth_landmarks=False,
            enable_segmentation=False, min_detection_confidence=MIN_DETECTION_CONFIDENCE,
            min_tracking_confidence=MIN_TRACKING_CONFIDENCE,
        )
        self._filter = OneEuroFilter(fps) if smoothing else None
        self._raw = no_pose()
        self.search_every = max(1, int(search_every))
        self._skip = 0  # new frames to pass before the next search for a person

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Unsmoothed keypoints float32 [J, 3] of one uint8 [H, W, 3] RGB frame (advances the tracker)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB frame uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
        result = self._pose.process(np.ascontiguousarray(frame))
        if result.pose_landmarks is None:
            return no_pose()
        lm = result.pose_landmarks.landmark
        return joints_from_landmarks(np.array([(p.x, p.y, p.visibility) for p in lm]))

    def __call__(self, frame: np.ndarray, repeated: bool = False) -> np.ndarray:
        """Keypoints float32 [J, 3] of the next frame, uint8 [H, W, 3] RGB.

        repeated=True says the frame is the previous image again (sample-and-hold up to a higher frame rate): the
        previous detection is reused instead of running MediaPipe on the same pixels, and smoothing still steps.
        """
        if not repeated:
            if self._skip:
                self._skip -= 1
            else:
                self._raw = self.detect(frame)
                self._skip = 0 if self._raw.any() else self.search_every - 1
        return self._filter(self._raw) if self._filter is not None else self._raw.copy()

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> "PoseTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bounded_size(width: int | None, height: int | None, max_side: int | None = MAX_SIDE) -> tuple[int, int] | None:
    """(height, width) scaled so the longer side is at most max_side, aspect kept; None for the source size."""
    if not width or not height or not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def extract_keypoints(path, fps=FPS, max_side: int | None = MAX_SIDE, smoothing: bool = True,
                      max_frames: int | None = None, progress: bool = True) -> np.ndarray:
    """Keypoints of a real video with MediaPipe Pose, one per frame of video.iter_frames(path, fps).

    Args:
        path: any video PyAV reads.
        fps: the frame rate to sample at (frame k = latest source frame with timestamp <= k / fps).
        max_side: longest side (pixels) of the frames given to MediaPipe; None for the source size.
        smoothing: apply the causal One-Euro filter.
        max_frames: stop after this many frames (None: the whole video).
        progress: show a tqdm bar for videos of LONG_VIDEO_SECONDS or more.
    Returns:
        float32 [T_v, 15, 3] (x, y, visibility), T_v as video.read_frames(path, fps) gives (or max_frames).
    Raises:
        video.MediaError (one line) for an unreadable video; MediaPipeMissing if mediapipe is not installed.
    """
    from tqdm import tqdm

    import_mediapipe()  # before any decoding: a missing extra fails at once
    info = video.probe(path)
    size = bounded_size(info.width, info.height, max_side)
    total = int(info.duration * fps) if info.duration else None
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    long = total is not None and total >= LONG_VIDEO_SECONDS * fps
    out = []
    with native_logs_silenced(), PoseTracker(fps, smoothing) as tracker:
        frames = itertools.islice(video.iter_frames(path, fps, size, gray=False), max_frames)
        previous = None
        for frame in tqdm(frames, total=total, unit="frame", desc=f"pose {Path(path).name}", leave=False,
                          disable=not (progress and long), dynamic_ncols=True):
            # iter_frames yields the very same array again for a held frame (source slower than fps).
            out.append(tracker(frame, repeated=frame is previous))
            previous = frame
    return np.stack(out) if out else np.zeros((0, N_JOINTS, 3), np.float32)
