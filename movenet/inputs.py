"""What a model hears and sees: the input settings, fixed when a data set is prepared, stored in every checkpoint,
and checked in one place.

    InputConfig(sample_rate=16000, fps=25, frame_size=64, gray=True, features="frames")

- audio at `sample_rate`, mono, mu-law coded (`movenet.audio`);
- video at `fps`: frame k covers audio samples k * hop .. (k + 1) * hop - 1, hop = sample_rate / fps (whole);
- `features`: what the model sees of the video: `frames` (frame_size x frame_size, gray or RGB), `keypoints`
  (the 15 body joints of `JOINTS`, float32 [T, 15, 3] = x, y, visibility), or `both`.

A prepared set provides an InputConfig (its `features` are what it stores); a model requires one (its `features`
are what it listens to). `require` is the one compatibility check between the two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from fractions import Fraction

from movenet.audio import SAMPLE_RATE

FPS = 25
FRAME_SIZE = 64
FEATURES = ("frames", "keypoints", "both")

# The body keypoint layout, for synthetic dancers (their true joints) and MediaPipe Pose (mapped onto it) alike.
# Left and right are the person's own: a dancer facing the camera has its "r_" joints on the image's left.
JOINTS = (
    "head", "neck", "pelvis",
    "l_shoulder", "l_elbow", "l_hand",
    "r_shoulder", "r_elbow", "r_hand",
    "l_hip", "l_knee", "l_foot",
    "r_hip", "r_knee", "r_foot",
)
N_JOINTS = len(JOINTS)
# The bones between them: what the synthetic dancer is drawn with, and the skeleton the live page draws.
BONES = (
    ("head", "neck"), ("neck", "pelvis"), ("l_shoulder", "r_shoulder"),
    ("l_shoulder", "l_elbow"), ("l_elbow", "l_hand"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_hand"),
    ("l_hip", "r_hip"), ("l_hip", "l_knee"), ("l_knee", "l_foot"), ("r_hip", "r_knee"), ("r_knee", "r_foot"),
)


class InputMismatch(ValueError):
    """Data or movement that does not match what a model needs; the message is one line naming the differences."""


def hop_length(sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Audio samples per video frame; 16000 Hz / 25 fps -> 640.

    Raises ValueError unless sample_rate / fps is a positive whole number, so that audio and frames stay exactly
    aligned.
    """
    if fps <= 0 or sample_rate <= 0:
        raise ValueError(f"sample rate ({sample_rate}) and fps ({fps}) must be positive")
    ratio = Fraction(sample_rate) / Fraction(fps)
    if ratio.denominator != 1:
        raise ValueError(f"sample_rate {sample_rate} is not a whole multiple of fps {fps}")
    return int(ratio)


def uses_frames(features: str) -> bool:
    return features in ("frames", "both")


def uses_keypoints(features: str) -> bool:
    return features in ("keypoints", "both")


@dataclass(frozen=True)
class InputConfig:
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS
    frame_size: int = FRAME_SIZE
    gray: bool = True
    features: str = "frames"  # FEATURES

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.frame_size < 1:
            raise ValueError(f"frame size must be positive, got {self.frame_size}")
        hop_length(self.sample_rate, self.fps)  # raises for a rate that does not divide

    @property
    def hop(self) -> int:
        return hop_length(self.sample_rate, self.fps)

    @property
    def channels(self) -> int:
        return 1 if self.gray else 3

    @property
    def uses_frames(self) -> bool:
        return uses_frames(self.features)

    @property
    def uses_keypoints(self) -> bool:
        return uses_keypoints(self.features)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(InputConfig)}

    @classmethod
    def from_dict(cls, d: dict) -> "InputConfig":
        """The input settings among `d`'s keys (a data set's config holds more)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def require(self, provided: "InputConfig", where: str) -> None:
        """Raise InputMismatch unless `provided` (a data set's settings) gives what these settings need: the same
        rates, the same frame size and colour if frames are seen, and the features listened to (a set of `both`
        provides either)."""
        need, got = self.to_dict(), InputConfig.from_dict(asdict(provided)).to_dict()
        keys = ("sample_rate", "fps") + (("frame_size", "gray") if self.uses_frames else ())
        diffs = [f"{k}={got[k]!r} (the model needs {need[k]!r})" for k in keys if got[k] != need[k]]
        if (self.uses_frames and not provided.uses_frames) or (self.uses_keypoints and not provided.uses_keypoints):
            diffs.append(f"features={provided.features!r} (the model listens to {self.features}; prepare with "
                         f"--features {self.features})")
        if diffs:
            raise InputMismatch(f"{where}: " + ", ".join(diffs))
