"""Synthetic dance data: a stick figure that plays its own soundtrack.

This module owns the synthetic data set movenet trains on. There is no
downloadable dance-with-music data, so we make clips where the music is
*caused* by the movement: a model that watches the video can learn the
soundtrack, one that ignores the video cannot.

Pipeline (each stage a pure function, so each can be tested on its own):

    generate_pose   -> joints [T, J, 2] (pixels, x right, y down) + beat times
    render_frames   -> RGB frames uint8 [T, size, size, 3]
    controls_from_pose -> per-frame musical controls (causal in the pose)
    render_audio    -> float32 audio [T * hop] (causal in the controls)
    generate_clip   -> all of the above as a `Clip`
    write_dataset   -> out_dir/<style>/<style>_<i:04d>.mp4 + .json sidecars

Movement -> sound mapping:
    right hand height (relative to right shoulder) -> pitch, quantized to the
        style's scale over two octaves
    left hand height (relative to left shoulder)   -> brightness (harmonics)
    mean joint speed (motion energy)               -> loudness (still = silent)
    a foot landing on the floor                    -> percussive hit (kick+noise)
    nothing in the movement (write_dataset(timbres=True)) -> the clip's own timbre:
        a spectral tilt and a formant, from its seed alone

Causality: controls at frame t use only joints[:t+1] (backward differences,
running maxima); audio in [t*hop, (t+1)*hop) uses only controls[:t+1]
(sample-and-hold + backward-looking one-pole slews, cumulative phase).
Level: fixed gains + a memoryless soft knee (not per-clip peak normalization,
which would let the future change the past); peaks land near, never above, 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movenet.files import write_json
from movenet import inputs
from movenet.inputs import JOINTS

FORMAT_VERSION = 1

J = {name: i for i, name in enumerate(JOINTS)}

# Bones drawn as thick segments: (joint a, joint b, half-width in units of size/128).
BONES = tuple((a, b, width) for (a, b), width in zip(inputs.BONES, (1.5, 2.2, 1.8, 1.6, 1.5, 1.6, 1.5, 1.8, 1.8,
                                                                      1.6, 1.8, 1.6)))

# Styles differ in timbre and scale so style conditioning has something to learn.
STYLE_SPECS = {
    "sine_major": {"wave": "sine", "scale": (0, 2, 4, 5, 7, 9, 11), "base_midi": 60},
    "square_minor": {"wave": "square", "scale": (0, 2, 3, 5, 7, 8, 10), "base_midi": 57},
    "pluck_pentatonic": {"wave": "pluck", "scale": (0, 2, 4, 7, 9), "base_midi": 62},
}
STYLES = tuple(STYLE_SPECS)

# A clip's own timbre (`write_dataset(timbres=True)`, `movenet synth --timbres`): a spectral tilt and one formant,
# drawn from the clip's seed apart from its dance, so the same kind of movement sounds in more than one way. Nothing
# in the movement tells them: they are what a style latent (`train --latent`) has to find in the audio.
TIMBRE_TILT = (-1.2, 1.2)            # harmonic k's gain times k ** -tilt (brighter below 0, darker above)
TIMBRE_FORMANT_HZ = (500.0, 4000.0)  # a resonance's centre, log-uniform ...
TIMBRE_FORMANT_GAIN = (0.0, 8.0)     # ... its peak boost (gain x (1 + this)) ...
TIMBRE_FORMANT_OCTAVES = 0.5         # ... and its width (Gaussian sigma in octaves)

TONE_GAIN = 0.9   # max tone amplitude (before the soft knee)
HIT_GAIN = 0.45   # max hit amplitude (before the soft knee)
KNEE, CEILING = 0.7, 0.9  # memoryless soft limiter: linear below KNEE, never reaches CEILING


@dataclass
class Clip:
    """One synthetic clip.

    frames: uint8 [T, size, size, 3]; audio: float32 [T * hop] in (-0.9, 0.9);
    controls: per-frame arrays (see `controls_from_pose`) plus hit/beat times;
    joints: float32 [T, J, 2] pixel coordinates (x right, y down).
    """

    frames: np.ndarray
    audio: np.ndarray
    controls: dict
    joints: np.ndarray
    style: str = ""
    seed: int = 0
    timbre: dict | None = None  # draw_timbre's, or None: the style's own
    fps: int = 25
    sample_rate: int = 16000
    size: int = 128
    tempo_bpm: float = 0.0
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- pose


def _wander(rng: np.random.Generator, tau: np.ndarray, n: int = 3,
            fmin: float = 0.08, fmax: float = 0.5) -> np.ndarray:
    """Smooth random signal in [-1, 1]: normalized sum of n low-frequency sinusoids of tau."""
    f = rng.uniform(fmin, fmax, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.5, 1.0, n)
    s = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * tau[None, :] + ph[:, None])).sum(0)
    return s / amp.sum()


def _activity(rng: np.random.Generator, T: int, fps: int) -> np.ndarray:
    """Per-frame activity in [0, 1]: dancing stretches (1) broken by short freezes (0).

    Freezes give the data set silent stretches, so loudness must be read off motion.
    """
    a = np.ones(T)
    cur, dancing = 0, True
    while cur < T:
        seg = int((rng.uniform(1.5, 4.0) if dancing else rng.uniform(0.5, 1.2)) * fps)
        if not dancing:
            a[cur:cur + seg] = 0.0
        cur += seg
        dancing = not dancing
    k = 5  # ~0.2 s ease in/out so the figure doesn't teleport into a freeze
    padded = np.pad(a, (k // 2, k // 2), mode="edge")
    return np.convolve(padded, np.ones(k) / k, mode="valid")


def generate_pose(n_frames: int, fps: int, size: int, rng: np.random.Generator) -> dict:
    """Random dance: smooth joint-angle trajectories, steps on a beat, sway and freezes.

    Returns dict with joints float32 [T, J, 2] (pixels, x right, y down),
    beat_times float64 [B] (s), tempo_bpm, floor_y (pixel row the feet stand on),
    step_amp [B] (lift amplitude of the step landing on each beat, 0 = no step).
    """
    T = n_frames
    t = np.arange(T) / fps
    u = size / 128.0
    act = _activity(rng, T, fps)
    tau = np.cumsum(act) / fps  # "dance time": stands still while frozen

    tempo = float(rng.uniform(90, 140))
    period = 60.0 / tempo
    offset = float(rng.uniform(0, period))
    beat_pos = (t - offset) / period
    beat_idx = np.floor(beat_pos).astype(int)  # -1 before the first beat
    phase = beat_pos - beat_idx
    n_beats = int(np.floor(((T - 1) / fps - offset) / period)) + 1
    beat_times = offset + period * np.arange(max(n_beats, 0))

    # body dimensions (pixels)
    thigh = shin = 0.16 * size
    torso, head_off, head_r = 0.22 * size, 0.075 * size, 0.055 * size
    upper, fore = 0.13 * size, 0.12 * size
    shoulder_w, hip_w = 0.08 * size, 0.045 * size
    floor_y = 0.9 * size
    cx = size / 2

    # steps: the foot for beat interval k (alternating) lifts and lands on beat k+1
    n_int = n_beats + 2
    step_amp = np.where(rng.random(n_int) < 0.85, rng.uniform(0.4, 1.0, n_int), 0.0)
    # activity sampled at the start of each beat interval: a step in progress always
    # lands on the beat (never mid-beat because a freeze began)
    starts = offset + period * (np.arange(n_int) - 1)  # interval k-1 starts at beat k-1
    step_amp = step_amp * np.interp(starts, t, act)
    amp_t = step_amp[beat_idx + 1]  # index shift: beat_idx starts at -1
    lift = amp_t * 0.10 * size * np.sin(np.pi * phase)
    moving_foot = np.mod(beat_idx, 2)  # 0: left foot moves, 1: right foot moves
    bounce = act * np.sin(2 * np.pi * phase)

    sway = 0.08 * size * _wander(rng, tau, fmax=0.3)
    bob = 0.025 * size * act * 0.5 * (1 - np.cos(2 * np.pi * phase))  # knees dip each beat
    lean = 0.12 * _wander(rng, tau)
    th_r = np.clip(1.55 + 1.35 * _wander(rng, tau) + 0.12 * bounce, 0.1, 3.0)
    ph_r = 0.5 + 0.45 * _wander(rng, tau)
    th_l = np.clip(1.3 + 1.1 * _wander(rng, tau) - 0.1 * bounce, 0.1, 3.0)
    ph_l = 0.6 + 0.5 * _wander(rng, tau)

    P = np.zeros((T, len(JOINTS), 2))
    pelvis = np.stack([cx + sway, floor_y - 0.93 * (thigh + shin) + bob], -1)
    up = np.stack([np.sin(lean), -np.cos(lean)], -1)
    side = np.stack([np.cos(lean), np.sin(lean)], -1)  # toward image right
    neck = pelvis + torso * up
    P[:, J["pelvis"]] = pelvis
    P[:, J["neck"]] = neck
    P[:, J["head"]] = neck + head_off * up
    for name, sgn, th, ph in (("l", 1.0, th_l, ph_l), ("r", -1.0, th_r, ph_r)):
        sh = neck - 0.02 * size * up + sgn * shoulder_w * side
        a2 = np.minimum(th + ph, 3.1)  # forearm never swings across the head
        el = sh + upper * np.stack([sgn * np.sin(th), np.cos(th)], -1)
        hd = el + fore * np.stack([sgn * np.sin(a2), np.cos(a2)], -1)
        P[:, J[f"{name}_shoulder"]], P[:, J[f"{name}_elbow"]], P[:, J[f"{name}_hand"]] = sh, el, hd

        hip = pelvis + sgn * hip_w * side
        mine = moving_foot == (0 if name == "l" else 1)
        h = np.where(mine, lift, 0.0)
        foot = np.stack([pelvis[:, 0] + sgn * (hip_w + 0.03 * size + 0.03 * size * (h > 0) * np.sin(np.pi * phase)),
                         floor_y - h], -1)
        # two-link IK, knee pushed outward
        d = foot - hip
        dist = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
        half = np.minimum(dist, 0.999 * (thigh + shin)) / 2
        perp = np.stack([-d[:, 1], d[:, 0]], -1) / dist
        perp *= np.sign(perp[:, :1] * sgn + 1e-9)
        knee = hip + d / 2 + perp * np.sqrt(np.maximum(thigh ** 2 - half ** 2, 0))
        P[:, J[f"{name}_hip"]], P[:, J[f"{name}_knee"]], P[:, J[f"{name}_foot"]] = hip, knee, foot
    return {
        "joints": P.astype(np.float32), "beat_times": beat_times, "tempo_bpm": tempo,
        "floor_y": float(floor_y), "head_radius": float(head_r), "activity": act,
        "unit": u,
    }


# ----------------------------------------------------------------------------- video


def render_frames(joints: np.ndarray, size: int, fg=(235, 235, 235), bg=(20, 20, 28),
                  floor_y: float | None = None) -> np.ndarray:
    """Draw the stick figure: joints float [T, J, 2] -> uint8 [T, size, size, 3].

    Pixel (row i, col j) has its center at (x=j, y=i). Coverage per pixel is
    clip(half_width + 0.5 - distance, 0, 1) (cheap anti-aliasing), vectorized
    over all bones x pixels of the figure's bounding box, one frame at a time.
    """
    T = joints.shape[0]
    u = size / 128.0
    fg = np.asarray(fg, np.float32)
    bg = np.asarray(bg, np.float32)
    base = np.broadcast_to(bg, (size, size, 3)).copy()
    if floor_y is not None:  # dim floor line just below the feet
        r = int(round(floor_y + 3 * u))
        if 0 <= r < size:
            base[r:r + max(1, int(u)), :] = bg + 25
    out = np.empty((T, size, size, 3), np.uint8)
    out[:] = base.astype(np.uint8)
    ia = np.array([J[a] for a, _, _ in BONES])
    ib = np.array([J[b] for _, b, _ in BONES])
    hw = np.array([w for _, _, w in BONES], np.float32)[:, None] * u
    head_r = 0.055 * size
    pad = head_r + 3 * u + 2
    for f in range(T):
        p = joints[f].astype(np.float32)
        x0, y0 = np.floor(p.min(0) - pad).astype(int)
        x1, y1 = np.ceil(p.max(0) + pad).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        px, py = xx.ravel()[None], yy.ravel()[None]
        A, B = p[ia], p[ib]
        ab = B - A
        ax, ay = A[:, :1], A[:, 1:]
        abx, aby = ab[:, :1], ab[:, 1:]
        tt = np.clip(((px - ax) * abx + (py - ay) * aby) / np.maximum(abx ** 2 + aby ** 2, 1e-6), 0, 1)
        d = np.hypot(px - ax - tt * abx, py - ay - tt * aby)
        cov = np.clip(hw + 0.5 - d, 0, 1).max(0)
        hx, hy = p[J["head"]]
        cov = np.maximum(cov, np.clip(head_r + 0.5 - np.hypot(px[0] - hx, py[0] - hy), 0, 1))
        cov = cov.reshape(y1 - y0, x1 - x0, 1)
        crop = base[y0:y1, x0:x1]
        out[f, y0:y1, x0:x1] = np.rint(crop * (1 - cov) + fg * cov).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- controls


def _scale_notes(style: str) -> np.ndarray:
    """MIDI notes of the style's scale over two octaves (inclusive top tonic)."""
    spec = STYLE_SPECS[style]
    deg = np.array(spec["scale"])
    return np.concatenate([spec["base_midi"] + deg, spec["base_midi"] + 12 + deg, [spec["base_midi"] + 24]])


def controls_from_pose(joints: np.ndarray, style: str, fps: int = 25) -> dict:
    """Per-frame musical controls from joints [T, J, 2]; causal (frame t uses joints[:t+1]).

    Returns float32 arrays of length T: pitch_midi (quantized to the style's
    scale), pitch_hz, brightness [0,1], loudness [0,1], hit (strike strength,
    0 = no hit). All measures are body-relative, so translation/size don't matter.
    """
    P = np.asarray(joints, np.float64)

    def seg(a, b):
        return np.linalg.norm(P[:, J[a]] - P[:, J[b]], axis=-1)

    def hand_height(side):  # in [-1, 1]: -1 hanging straight down, +1 straight up
        arm = seg(f"{side}_shoulder", f"{side}_elbow") + seg(f"{side}_elbow", f"{side}_hand")
        return np.clip((P[:, J[f"{side}_shoulder"], 1] - P[:, J[f"{side}_hand"], 1]) / np.maximum(arm, 1e-6), -1, 1)

    notes = _scale_notes(style)
    idx = np.rint((hand_height("r") + 1) / 2 * (len(notes) - 1)).astype(int)
    midi = notes[idx].astype(np.float32)
    hz = 440.0 * 2.0 ** ((midi - 69) / 12)
    brightness = (hand_height("l") + 1) / 2

    leg = seg("l_hip", "l_knee") + seg("l_knee", "l_foot")  # body scale, pixels
    vel = np.zeros_like(P)
    vel[1:] = P[1:] - P[:-1]  # backward difference: no future frames
    speed = np.linalg.norm(vel, axis=-1).mean(-1) / np.maximum(leg, 1e-6)
    loudness = 1.0 - np.exp(-speed / 0.015)

    # foot strike: foot arrives at the floor (running max of foot y so far) while moving down
    feet_y = P[:, [J["l_foot"], J["r_foot"]], 1]
    floor = np.maximum.accumulate(feet_y.max(1))
    vy = np.zeros_like(feet_y)
    vy[1:] = feet_y[1:] - feet_y[:-1]
    tol = 0.01 * leg[:, None]
    strike = (feet_y >= floor[:, None] - tol) & (vy > tol)
    strength = np.where(strike, np.clip(vy / (0.06 * leg[:, None]), 0.3, 1.0), 0.0).max(1)
    return {
        "pitch_midi": midi, "pitch_hz": hz.astype(np.float32),
        "brightness": brightness.astype(np.float32), "loudness": loudness.astype(np.float32),
        "hit": strength.astype(np.float32),
    }


# ----------------------------------------------------------------------------- audio


def _slew(x: np.ndarray, hop: int, tau_s: float, sample_rate: int) -> np.ndarray:
    """Sample-and-hold per-frame x [T] to audio rate [T*hop] through a causal one-pole.

    The input is constant within a frame, so the one-pole response is exact and
    closed-form inside each frame; only the T frame boundaries need a loop.
    """
    x = np.asarray(x, np.float64)
    a = np.exp(-1.0 / (tau_s * sample_rate))
    decay = a ** np.arange(1, hop + 1)
    start = np.empty_like(x)
    y0 = x[0] if len(x) else 0.0
    for k in range(len(x)):
        start[k] = y0
        y0 = x[k] + (y0 - x[k]) * decay[-1]
    return (x[:, None] + (start - x)[:, None] * decay[None, :]).ravel()


def _hit_wave(sample_rate: int) -> np.ndarray:
    """Kick (150->50 Hz pitch drop) plus a short noise click; peak <= 1, 0.2 s long."""
    n = int(0.2 * sample_rate)
    t = np.arange(n) / sample_rate
    f = 50 + 100 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f) / sample_rate) * np.exp(-t / 0.05)
    noise = np.random.default_rng(1234).standard_normal(n)  # fixed: hits are deterministic
    noise = noise / np.abs(noise).max() * np.exp(-t / 0.006)
    w = 0.75 * kick + 0.25 * noise
    return w * np.minimum(1.0, (n - np.arange(n)) / (0.01 * sample_rate))  # fade tail, no click


def draw_timbre(rng: np.random.Generator) -> dict:
    """A clip's own timbre (see TIMBRE_TILT): {"tilt", "formant_hz", "formant_gain"}, rounded as a sidecar keeps it."""
    lo, hi = np.log(TIMBRE_FORMANT_HZ)
    return {"tilt": round(float(rng.uniform(*TIMBRE_TILT)), 4),
            "formant_hz": round(float(np.exp(rng.uniform(lo, hi))), 4),
            "formant_gain": round(float(rng.uniform(*TIMBRE_FORMANT_GAIN)), 4)}


def _timbre_gain(timbre: dict, k: int, freq: np.ndarray) -> np.ndarray:
    """Harmonic k's gain under a timbre, at its frequency freq [n] (Hz)."""
    octaves = np.log2(np.maximum(freq, 1.0) / timbre["formant_hz"])
    formant = np.exp(-0.5 * (octaves / TIMBRE_FORMANT_OCTAVES) ** 2)
    return k ** -timbre["tilt"] * (1.0 + timbre["formant_gain"] * formant)


def render_audio(controls: dict, style: str, fps: int = 25, sample_rate: int = 16000,
                 timbre: dict | None = None) -> np.ndarray:
    """Synthesize float32 audio [T * sample_rate // fps] from per-frame controls, in the style's timbre shaped by
    `timbre` (draw_timbre's; None: the style's own).

    Causal: samples of frame t depend only on controls of frames <= t.
    Peak |audio| < CEILING = 0.9 (soft knee above KNEE = 0.7; no hard clipping).
    """
    if sample_rate % fps:
        raise ValueError(f"sample_rate {sample_rate} must be a multiple of fps {fps}")
    hop = sample_rate // fps
    hz = np.asarray(controls["pitch_hz"], np.float64)
    T = len(hz)
    if T == 0:
        return np.zeros(0, np.float32)
    wave = STYLE_SPECS[style]["wave"]
    f = 2.0 ** _slew(np.log2(hz), hop, 0.008, sample_rate)  # short portamento
    b = np.clip(_slew(controls["brightness"], hop, 0.02, sample_rate), 0, 1)
    loud = np.clip(_slew(controls["loudness"], hop, 0.02, sample_rate), 0, 1)
    phase = 2 * np.pi * np.cumsum(f) / sample_rate  # phase-continuous: no clicks on note changes

    if wave == "sine":
        ks = np.array([1, 2, 3])
        g = [np.ones_like(b), 0.5 * b, 0.25 * b ** 2]
    elif wave == "square":
        ks = np.arange(1, 16, 2)
        g = [b ** ((k - 1) / 2) / k for k in ks]  # dark = sine, bright = square
    else:  # pluck: saw-like, retriggered on each new note, upper harmonics die first
        ks = np.arange(1, 11)
        midi = np.asarray(controls["pitch_midi"])
        change = np.r_[True, midi[1:] != midi[:-1]]
        onset = np.maximum.accumulate(np.where(change, np.arange(T), 0))
        age = (np.arange(T * hop) - np.repeat(onset, hop) * hop) / sample_rate
        bb = 0.2 + 0.8 * b
        g = [bb ** ((k - 1) / 2) / k * (0.3 + 0.7 * np.exp(-age * (1 + 0.4 * (k - 1)) / 0.35)) for k in ks]
    g0 = [bb ** ((k - 1) / 2) / k for k in ks] if wave == "pluck" else g
    if timbre is not None:
        shape = [_timbre_gain(timbre, k, k * f) for k in ks]
        g, g0 = [gk * sk for gk, sk in zip(g, shape)], [gk * sk for gk, sk in zip(g0, shape)]
    norm = np.sum(g0, axis=0)  # per-sample normalization: |tone| <= 1
    tone = np.zeros_like(f)
    for k, gk in zip(ks, g):
        tone += np.where(k * f < 0.45 * sample_rate, gk, 0.0) * np.sin(k * phase)
    audio = TONE_GAIN * loud * tone / norm

    hits = np.asarray(controls["hit"], np.float64)
    hw = _hit_wave(sample_rate)
    for k in np.flatnonzero(hits > 0):
        s = k * hop
        e = min(s + len(hw), len(audio))
        audio[s:e] += HIT_GAIN * hits[k] * hw[: e - s]
    return _soft_limit(audio).astype(np.float32)


def _soft_limit(x: np.ndarray) -> np.ndarray:
    """Identity below KNEE, tanh-compressed above so |y| < CEILING (no hard clipping).

    Pointwise, hence causal: a fixed gain + soft knee instead of per-clip peak
    normalization, which would let future frames change the level of past audio.
    """
    a = np.abs(x)
    over = a > KNEE
    y = x.copy()
    y[over] = np.sign(x[over]) * (KNEE + (CEILING - KNEE) * np.tanh((a[over] - KNEE) / (CEILING - KNEE)))
    return y


# ----------------------------------------------------------------------------- clips


def generate_clip(seconds: float, seed: int, style: str, fps: int = 25, size: int = 128,
                  sample_rate: int = 16000, timbre: dict | None = None) -> Clip:
    """Generate one clip (deterministic in seed; the dance depends on seed only, the
    sound on dance + style + timbre). frames uint8 [T,size,size,3], audio float32 [T*hop]."""
    if style not in STYLE_SPECS:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    T = int(round(seconds * fps))
    rng = np.random.default_rng(seed)
    pose = generate_pose(T, fps, size, rng)
    fg = np.rint(255 * rng.uniform(0.6, 1.0, 3)).astype(int)
    bg = np.rint(rng.uniform(5, 35, 3)).astype(int)
    joints = pose["joints"]
    frames = render_frames(joints, size, fg, bg, floor_y=pose["floor_y"])
    controls = controls_from_pose(joints, style, fps)
    audio = render_audio(controls, style, fps, sample_rate, timbre)
    controls["hit_times"] = np.flatnonzero(controls["hit"] > 0) / fps
    controls["beat_times"] = pose["beat_times"]
    return Clip(frames=frames, audio=audio, controls=controls, joints=joints, style=style,
                seed=seed, timbre=timbre, fps=fps, sample_rate=sample_rate, size=size,
                tempo_bpm=pose["tempo_bpm"],
                meta={"figure_rgb": fg.tolist(), "background_rgb": bg.tolist(),
                      "floor_y": pose["floor_y"], "activity": pose["activity"]})


def _r(x, nd: int = 4) -> list:
    return np.round(np.asarray(x, np.float64), nd).tolist()


def clip_sidecar(clip: Clip) -> dict:
    """JSON-ready description of a clip (floats rounded: 4 decimals, joints 0.01 px)."""
    c = clip.controls
    return {
        "format_version": FORMAT_VERSION, "seed": int(clip.seed), "style": clip.style, "timbre": clip.timbre,
        "fps": clip.fps, "sample_rate": clip.sample_rate, "size": clip.size,
        "hop": clip.sample_rate // clip.fps, "tempo_bpm": round(clip.tempo_bpm, 4),
        "n_frames": int(clip.frames.shape[0]), "n_samples": int(clip.audio.shape[0]),
        "pitch_hz": _r(c["pitch_hz"], 3), "pitch_midi": [int(m) for m in c["pitch_midi"]],
        "brightness": _r(c["brightness"]), "loudness": _r(c["loudness"]),
        "hit_strength": _r(c["hit"]), "hit_times": _r(c["hit_times"]),
        "beat_times": _r(c["beat_times"]),
        "joint_names": list(JOINTS), "joints": _r(clip.joints, 2),
        "figure_rgb": clip.meta.get("figure_rgb"), "background_rgb": clip.meta.get("background_rgb"),
        "floor_y": clip.meta.get("floor_y"),
        "mapping": {"pitch": "r_hand height", "brightness": "l_hand height",
                    "loudness": "mean joint speed", "hit": "foot strikes floor"},
    }


def clip_seed(seed: int, index: int) -> int:
    """Per-clip seed derived from (data set seed, clip index): stable and well mixed."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def clip_timbre(seed: int, index: int) -> dict:
    """Clip `index`'s own timbre in a data set of `seed` with timbres: from a seed of its own, so its dance is the
    one the clip has without a timbre."""
    return draw_timbre(np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1])))


def write_dataset(out_dir, n_clips: int, seconds: float, seed: int, styles=STYLES,
                  progress: bool = True, fps: int = 25, size: int = 128,
                  sample_rate: int = 16000, force: bool = False, counts: dict | None = None,
                  timbres: bool = False) -> list[Path]:
    """Write n_clips to out_dir/<style>/<style>_<i:04d>.mp4 (+ .json); return mp4 paths. With `timbres`, each
    clip also has a timbre of its own (clip_timbre; the same dances).

    Styles are assigned round-robin; clip i's content depends only on (seed, i),
    so the data set is deterministic and resumable: an existing clip made with the
    same settings is kept. One made with other settings (another seed, length,
    size) raises FileExistsError before anything is written, unless `force`
    (then it is made again). counts, if given, receives {"written": n, "kept": n}.
    """
    from tqdm import tqdm

    from movenet.video import write_video  # lazy: keeps synth importable on its own

    out_dir = Path(out_dir)
    plan = []  # (index, style, mp4, write it?)
    for i in range(n_clips):
        style = styles[i % len(styles)]
        mp4 = out_dir / style / f"{style}_{i:04d}.mp4"
        timbre = clip_timbre(seed, i) if timbres else None
        made = _made_with(mp4, seed=clip_seed(seed, i), style=style, n_frames=int(round(seconds * fps)), fps=fps,
                          size=size, sample_rate=sample_rate, timbre=timbre)
        if made is False and not force:
            raise FileExistsError(f"{mp4}: a clip made with other settings (another --seed, --seconds or "
                                  f"--timbres) is there; write into another folder, or use --force to replace the "
                                  f"clips")
        plan.append((i, style, mp4, made is not True, timbre))
    for i, style, mp4, write, timbre in tqdm(plan, desc="synth clips", unit="clip", disable=not progress):
        if not write:
            continue
        mp4.parent.mkdir(parents=True, exist_ok=True)
        clip = generate_clip(seconds, clip_seed(seed, i), style, fps=fps, size=size,
                             sample_rate=sample_rate, timbre=timbre)
        write_video(mp4, clip.frames, fps, clip.audio, sample_rate)
        write_json(mp4.with_suffix(".json"), clip_sidecar(clip), indent=None)  # json last: it marks a complete clip
    if counts is not None:
        counts.update(written=sum(w for *_, w, _ in plan), kept=sum(not w for *_, w, _ in plan))
    return [mp4 for _, _, mp4, *_ in plan]


def _read_sidecar(mp4: Path) -> dict | None:
    import json

    try:
        return json.loads(mp4.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def _made_with(mp4: Path, **settings) -> bool | None:
    """Whether the clip at `mp4` was made with these settings: True, False, or None when there is no complete
    clip (no video, or no readable sidecar: it is made again)."""
    sidecar = _read_sidecar(mp4) if mp4.exists() else None
    if not isinstance(sidecar, dict):
        return None
    return all(sidecar.get(k) == v for k, v in settings.items())

