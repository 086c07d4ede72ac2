"""Evaluation metrics: does a soundtrack follow the movement it was made for?

Pure functions on numpy arrays (librosa for onsets, beats and pitch; no torch,
no model). Times are in seconds throughout, so video-rate and audio-rate
events compare directly.

Headline (HEADLINE: read these first; each charges for sound where none belongs,
so noise and silence score below the true soundtrack):
    pitch_accuracy, hit_f1                (ground truth, below)
    frame_loudness_db -> loudness_following   per-frame dB vs the true audio's, else
                                          the sidecar's loudness, else motion speed (Pearson)
    audible_fraction, audible_agreement   frames above AUDIBLE_DB = -40 dBFS, and agreement
                                          with the reference's audible frames
    onset_f1                              audio onsets vs the true audio's onsets, +-50 ms
                                          (onset_f1_motion: vs motion beats, without true audio)
Rhythm (any video; kept for comparison with published tables: BCS is unbounded,
BCS and BHS reward broadband noise, and none of BCS, BHS, BAS has precision):
    motion_speed -> motion_beats          local minima of movement speed
    audio_onsets, audio_beats             librosa onset detection / beat tracking
    beats_coverage_score, beats_hit_score BCS / BHS (onsets vs motion beats)
    beat_align_score                      BAS (audio beats vs motion beats)
Ground truth (synthetic clips, whose JSON sidecar holds the true controls):
    BHS, BAS against the true beat times  (the synthetic dancer does not pause on its beat)
    pitch_accuracy                        pYIN pitch vs the true per-frame pitch
    harmonic_to_noise_db                  energy on the true note's harmonics over the energy
                                          between them (how clean the tone is: hiss lowers it)
    percussive_onsets -> hit_f1           detected kicks vs the true foot strikes
clip_metrics runs all of them on one clip's audio (with the true soundtrack as
reference_wav when known) and returns a JSON-able dict. docs/evaluation.md has
the definitions, thresholds and measured chance levels.

Conventions: a metric whose reference set is empty (no motion beats, no
audible reference frame, no true hit) is undefined and comes back as NaN from
the functions here and as None from clip_metrics. An empty estimate against a
non-empty reference scores 0 (silence scores 0, never NaN).

References:
    RhythmicNet: K. Su, X. Liu, E. Shlizerman, "How Does it Sound? Generation of
        Rhythmic Soundtracks for Human Movement Videos", NeurIPS 2021 (BCS, BHS;
        visual beats from movement).
    D2M-GAN: Y. Zhu et al., "Quantized GAN for Complex Music Generation from Dance
        Videos", ECCV 2022; code github.com/L-YeZhu/D2M-GAN and the scoring script
        github.com/L-YeZhu/Beats_Scores (beats_scores.py).
    CDCD: Y. Zhu et al., "Discrete Contrastive Diffusion for Cross-Modal Music and
        Image Generation", ICLR 2023; github.com/L-YeZhu/CDCD (same scoring code;
        issue #3: "beats" are librosa.onset.onset_detect onsets).
    AIST++ / FACT: R. Li et al., "AI Choreographer", ICCV 2021; Beat Align Score in
        github.com/google-research/mint tools/calculate_beat_scores.py.
    Bailando: L. Siyao et al., CVPR 2022; github.com/lisiyao21/Bailando
        utils/metrics_new.py (calc_db, BA).
    pYIN: M. Mauch, S. Dixon, ICASSP 2014 (librosa.pyin).
    mir_eval: C. Raffel et al., ISMIR 2014 (onset F-measure with a +-50 ms window and
        one-to-one matching; raw pitch accuracy with a 50-cent tolerance).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Audio analysis grid: 10 ms hops and 32 ms windows (160 / 512 samples at 16 kHz).
# Short windows keep onset times within one hop of the true onset; librosa's
# 2048-sample default smears a click over 128 ms at 16 kHz.
ANALYSIS_HOP_SECONDS = 0.01
ANALYSIS_WINDOW_SECONDS = 0.032
SILENCE_DB = -60.0  # frames quieter than this (RMS, dBFS) cannot hold an onset or a beat

# Motion beats (see motion_beats for the rule).
SMOOTH_SECONDS = 0.08      # Gaussian sigma on the speed curve; Bailando: 5 frames at 60 fps
MIN_BEAT_INTERVAL = 0.2    # seconds between motion beats (300 per minute at most)
REL_PROMINENCE = 0.1       # a minimum must be this deep, as a share of the clip's speed range
# Absolute depth floors per speed unit (see motion_speed): keep jitter of a still body out.
MIN_PROMINENCE = {"keypoints": 0.02, "frames": 0.002}
FRAME_NOISE_LEVEL = 6.0    # grey levels: smaller differences between two frames are sensor / codec noise

# Rhythm metric windows.
BEAT_TOLERANCE = 0.07  # BHS window, seconds (mir_eval.beat.f_measure's +-70 ms)
BAS_SIGMA = 0.05       # BAS Gaussian sigma, seconds (3 frames at 60 fps in AIST++ / Bailando)

# Ground-truth metrics.
HIT_TOLERANCE = 0.05          # mir_eval.onset.f_measure window
HIT_BAND_HZ = (20.0, 180.0)   # kick drum band; every synth style's tone starts at 220 Hz
PITCH_TOLERANCE_CENTS = 50.0  # mir_eval raw pitch accuracy: the nearest note must be right
PITCH_FMIN, PITCH_FMAX = 65.41, 2093.0  # C2..C7, pYIN search range
MIN_LOUDNESS = 0.1            # synth loudness above which the true tone is audible

# Headline metrics: loudness per video frame, audibility, onsets (docs/evaluation.md).
LOUDNESS_FLOOR_DB = -80.0       # dBFS floor of frame loudness; mu-law silence (code 128) decodes to -81 dBFS
LOUDNESS_SMOOTH_SECONDS = 0.04  # Gaussian sigma on both curves before correlating: one frame at 25 fps
AUDIBLE_DB = -40.0              # a frame is audible above this RMS (dBFS); synth freezes: -81, dancing: > -35
ONSET_TOLERANCE = 0.05          # onset F1 window, mir_eval.onset.f_measure's +-50 ms

# The metrics to read first, in display order; each one penalizes noise and silence
# (see docs/evaluation.md, "Headline metrics"). A row has only those its inputs define.
HEADLINE = ("pitch_accuracy", "hit_f1", "loudness_following", "audible_agreement", "onset_f1",
            "audible_fraction", "audible_fraction_error", "harmonic_to_noise_db", "onset_f1_motion")


def _analysis_grid(sample_rate: int) -> tuple[int, int]:
    """(hop_length, n_fft) in samples for the 10 ms / 32 ms analysis grid."""
    hop = max(1, int(round(ANALYSIS_HOP_SECONDS * sample_rate)))
    n_fft = 2 ** int(round(math.log2(ANALYSIS_WINDOW_SECONDS * sample_rate)))
    return hop, n_fft


def _frame_hop(sr: int, fps: float) -> int:
    """Audio samples per video frame; sr / fps must be whole so frame k is samples [k hop, (k+1) hop)."""
    hop = sr / fps
    if abs(hop - round(hop)) > 1e-9:
        raise ValueError(f"sample rate {sr} is not a whole multiple of fps {fps}")
    return int(round(hop))


def _as_times(x) -> np.ndarray:
    return np.sort(np.asarray(x, dtype=np.float64).reshape(-1))


# ----------------------------------------------------------------------------- motion


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs (flat at the ends); all-NaN -> zeros."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


def _smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma_frames, mode="nearest")


def motion_speed(keypoints=None, frames=None, *, fps: float, smooth_seconds: float = SMOOTH_SECONDS,
                 min_visibility: float = 0.5, noise_level: float = FRAME_NOISE_LEVEL) -> np.ndarray:
    """Per-frame movement speed, float64 [T_v], from keypoints if given, else frames.

    Both use central differences (frame t compares frames t-1 and t+1; one-sided
    at the ends), so a speed minimum at index t sits at time t / fps, not half a
    frame off. The curve is then smoothed with a Gaussian of sigma smooth_seconds
    (Bailando smooths with sigma = 5 frames at 60 fps, 0.083 s); 0 disables it.

    Args:
        keypoints: [T_v, J, 2] pixel coordinates, or [T_v, J, 3] with a visibility /
            confidence last. Speed = mean displacement of the joints visible
            (> min_visibility) in both neighbouring frames, divided by the body size
            (median bounding-box diagonal of the visible joints), times fps:
            body sizes per second, so camera distance and resolution drop out.
            Frames with no usable joint are interpolated from their neighbours.
        frames: uint8 [T_v, H, W, C] or [T_v, H, W]. Speed = mean absolute pixel
            change per frame as a share of full scale (255), times fps; a pixel
            whose two compared frames differ by at most noise_level grey levels
            counts as unchanged, so a still camera's sensor / codec noise
            (+-3 levels per frame) reads as no movement.
        fps: video frame rate.

    Returns:
        float64 [T_v] (empty for T_v = 0; zeros for T_v = 1), finite.
    """
    if keypoints is not None:
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
            raise ValueError(f"keypoints must be [T, J, 2] or [T, J, 3], got {kp.shape}")
        xy = kp[..., :2]
        vis = kp[..., 2] > min_visibility if kp.shape[-1] == 3 else np.ones(kp.shape[:2], bool)
        vis &= np.isfinite(xy).all(-1)
        T = len(xy)
        if T < 2:
            return np.zeros(T)
        prev = np.r_[0, np.arange(T - 1)]  # t-1, clamped
        nxt = np.r_[np.arange(1, T), T - 1]  # t+1, clamped
        step = (nxt - prev).astype(np.float64)[:, None]  # 2 inside, 1 at the ends
        disp = np.linalg.norm(np.nan_to_num(xy[nxt] - xy[prev]), axis=-1) / step  # [T, J] px / frame
        ok = vis[nxt] & vis[prev]
        n_ok = ok.sum(1)
        speed = np.where(n_ok > 0, (disp * ok).sum(1) / np.maximum(n_ok, 1), np.nan)
        lo = np.where(vis[..., None], xy, np.inf).min(1)
        hi = np.where(vis[..., None], xy, -np.inf).max(1)
        diag = np.linalg.norm(hi - lo, axis=-1)
        diag = diag[np.isfinite(diag) & (diag > 0)]
        body = float(np.median(diag)) if diag.size else 1.0
        speed = _fill_gaps(speed) / body * fps
    elif frames is not None:
        f = np.asarray(frames)
        if f.ndim == 3:
            f = f[..., None]
        if f.ndim != 4:
            raise ValueError(f"frames must be [T, H, W, C] or [T, H, W], got {f.shape}")
        T = len(f)
        if T < 2:
            return np.zeros(T)
        speed = np.empty(T)
        for t in range(T):  # one frame at a time: memory stays at one frame's size
            a, b = max(t - 1, 0), min(t + 1, T - 1)
            change = np.abs(f[b].astype(np.float32) - f[a].astype(np.float32))
            change[change <= noise_level] = 0.0
            speed[t] = change.mean() / (b - a) / 255.0 * fps
    else:
        raise ValueError("motion_speed needs keypoints or frames")
    return _smooth(speed, smooth_seconds * fps)


def motion_beats(speed, fps: float, *, min_interval: float = MIN_BEAT_INTERVAL,
                 rel_prominence: float = REL_PROMINENCE, min_prominence: float = 0.0) -> np.ndarray:
    """Motion beats: times (s) of local minima of the speed curve, float64 [B].

    The body pauses on a beat, so speed minima mark it (AIST++ "kinematic beats",
    Bailando calc_db, RhythmicNet "visual beats"). Rule, on the curve as given
    (motion_speed has already smoothed it):
      1. candidates: strict local minima, i.e. peaks of -speed
         (scipy.signal.find_peaks; a flat run counts once, at its middle;
         the first and last frame never count);
      2. spacing: of minima closer than min_interval, the one with the lowest
         speed stays (find_peaks' distance, applied before the depth test);
      3. depth: topographic prominence >= max(rel_prominence * (max - min of the
         curve), min_prominence), so jitter and a still body give no beats
         (a constant curve has no minima at all).
    AIST++ uses argrelextrema with order=10 at 60 fps (a minimum over +-0.17 s);
    Bailando uses order=1 after smoothing; neither has a depth test.

    Args:
        speed: float [T_v] from motion_speed.
        fps: frame rate of speed.
        min_prominence: absolute depth floor in the units of speed; clip_metrics
            passes MIN_PROMINENCE[source].

    Returns:
        float64 [B] beat times t / fps, ascending.
    """
    from scipy.signal import find_peaks

    s = np.asarray(speed, dtype=np.float64).reshape(-1)
    if not np.isfinite(s).all():
        raise ValueError("speed contains NaN or inf")
    if s.size < 3:
        return np.zeros(0)
    depth = max(rel_prominence * float(s.max() - s.min()), min_prominence)
    if depth <= 0:
        depth = np.finfo(np.float64).tiny  # still a strict minimum, never a flat line
    distance = max(1, int(math.ceil(min_interval * fps - 1e-9)))
    idx, _ = find_peaks(-s, prominence=depth, distance=distance)
    return idx.astype(np.float64) / fps


# ----------------------------------------------------------------------------- audio events


def _onset_envelope(wav: np.ndarray, sample_rate: int, S=None) -> np.ndarray:
    """librosa onset strength on the analysis grid, zeroed where the audio is silent."""
    import librosa

    hop, n_fft = _analysis_grid(sample_rate)
    # n_fft must reach onset_strength too: it shifts the envelope by n_fft // (2 hop)
    # frames to undo the centred STFT, and a mismatch makes every onset late.
    env = librosa.onset.onset_strength(y=wav if S is None else None, S=S, sr=sample_rate,
                                       hop_length=hop, n_fft=n_fft)
    rms = librosa.feature.rms(y=wav, frame_length=n_fft, hop_length=hop)[0]
    n = min(len(env), len(rms))
    loud = np.zeros(len(env), bool)
    loud[:n] = 20 * np.log10(np.maximum(rms[:n], 1e-12)) > SILENCE_DB
    return np.where(loud, env, 0.0)


def _mono(wav) -> np.ndarray:
    y = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.isfinite(y).all():
        raise ValueError("waveform contains NaN or inf")
    return y


def _gated_envelope(wav, sr: int):
    """(onset envelope on the analysis grid, its hop in samples), or (None, hop) for empty or silent audio."""
    y = _mono(wav)
    hop, _ = _analysis_grid(sr)
    if y.size == 0:
        return None, hop
    env = _onset_envelope(y, sr)
    return (env if env.any() else None), hop


def audio_onsets(wav, sr: int) -> np.ndarray:
    """Onset times (s), float64 [N]: librosa.onset.onset_detect with default peak picking
    on a 10 ms / 32 ms spectral-flux envelope; silent frames (< SILENCE_DB) hold none."""
    import librosa

    env, hop = _gated_envelope(wav, sr)
    if env is None:
        return np.zeros(0)
    return np.asarray(librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop,
                                                 units="time"), dtype=np.float64)


def audio_beats(wav, sr: int) -> np.ndarray:
    """Beat times (s), float64 [B]: librosa.beat.beat_track (Ellis 2007 dynamic
    programming; one global tempo) on the same gated onset envelope; silence -> none."""
    import librosa

    env, hop = _gated_envelope(wav, sr)
    if env is None:
        return np.zeros(0)
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sr, hop_length=hop, units="time")
    return np.asarray(beats, dtype=np.float64).reshape(-1)


def percussive_onsets(wav, sr: int, band_hz: tuple[float, float] = HIT_BAND_HZ) -> np.ndarray:
    """Kick-drum onset times (s), float64 [N], for the synthetic foot-strike hits.

    HPSS keeps the percussive part (librosa.effects.percussive), a mel power
    spectrogram restricted to band_hz (the synth's kick sweeps 150 -> 50 Hz and no
    style's tone goes below 220 Hz) gives the onset strength, then onset_detect.
    Power, not dB: in dB, leakage of the tone into the band would make onsets too.
    """
    import librosa

    y = _mono(wav)
    if y.size == 0:
        return np.zeros(0)
    env = percussive_envelope(y, sr, band_hz)
    if not env.any():
        return np.zeros(0)
    return np.asarray(librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=_analysis_grid(sr)[0],
                                                 units="time"), dtype=np.float64)


def percussive_envelope(wav, sr: int, band_hz: tuple[float, float] = HIT_BAND_HZ) -> np.ndarray:
    """The onset strength `percussive_onsets` picks its kicks from, on the 10 ms analysis grid (zero where silent)."""
    import librosa

    y = _mono(wav)
    hop, n_fft = _analysis_grid(sr)
    perc = librosa.effects.percussive(y, margin=1.0)
    S = librosa.feature.melspectrogram(y=perc, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=8,
                                       fmin=band_hz[0], fmax=band_hz[1], power=2.0)
    return _onset_envelope(y, sr, S=S)


# ----------------------------------------------------------------------------- rhythm scores


def match_events(reference, estimate, tolerance: float) -> list[tuple[int, int]]:
    """One-to-one matching of event times within +-tolerance (inclusive).

    Greedy in time order: each reference event, earliest first, takes the
    earliest unmatched estimate inside its window. With equal windows this gives
    a maximum matching, the count mir_eval.util.match_events gets with
    Hopcroft-Karp. Returns (reference index, estimate index) pairs into the
    inputs as given (they need not be sorted).
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    est = np.asarray(estimate, dtype=np.float64).reshape(-1)
    r_order, e_order = np.argsort(ref, kind="stable"), np.argsort(est, kind="stable")
    tol = tolerance + 1e-9  # 0.05 - 0.0 must match a 0.05 window despite float error
    pairs, j = [], 0
    for i in r_order:
        while j < len(e_order) and est[e_order[j]] < ref[i] - tol:
            j += 1  # too early for this and every later reference event
        if j < len(e_order) and est[e_order[j]] <= ref[i] + tol:
            pairs.append((int(i), int(e_order[j])))
            j += 1
    return pairs


def beats_coverage_score(music_beats, reference_beats) -> float:
    """BCS = (number of beats in the generated music) / (number of reference beats).

    RhythmicNet / D2M-GAN / CDCD definition; there the reference is the original
    soundtrack's beats (CDCD issue #4), here it is the motion beats. Not capped:
    above 1 means more musical beats than movement beats; closer to 1 is better.
    NaN without reference beats.
    """
    n_ref = np.asarray(reference_beats).size
    return float(np.asarray(music_beats).size / n_ref) if n_ref else math.nan


def beats_hit_score(music_beats, reference_beats, tolerance: float = BEAT_TOLERANCE) -> float:
    """BHS = (number of aligned beats) / (number of reference beats), in [0, 1].

    A musical beat is aligned when it lies within +-tolerance of a reference beat;
    matching is one-to-one (match_events), so each reference beat is hit at most once.
    The published code (L-YeZhu/Beats_Scores) instead marks 1-second bins and counts
    bins holding both; binned_beat_scores reproduces that. NaN without reference beats.
    """
    n_ref = np.asarray(reference_beats).size
    if not n_ref:
        return math.nan
    return len(match_events(reference_beats, music_beats, tolerance)) / n_ref


def binned_beat_scores(music_beats, reference_beats, seconds: float,
                       bin_seconds: float = 1.0) -> tuple[float, float]:
    """(BCS, BHS) exactly as the D2M-GAN / CDCD scoring code computes them.

    Each event list becomes a binary vector with one slot per bin_seconds
    (slot = trunc(time / bin_seconds), ceil(seconds / bin_seconds) slots); then
    BCS = (slots with a music beat) / (slots with a reference beat) and
    BHS = (slots with both) / (slots with a reference beat). Use it to compare with
    published numbers; the windowed scores above are the ones to trust, because a
    1 s slot can hold several beats and credits any beat in the same second.
    """
    n = int(math.ceil(seconds / bin_seconds - 1e-9))

    def slots(times):
        k = np.trunc(_as_times(times) / bin_seconds).astype(np.int64)
        v = np.zeros(n, bool)
        v[k[(k >= 0) & (k < n)]] = True
        return v

    music, ref = slots(music_beats), slots(reference_beats)
    total = int(ref.sum())
    if not total:
        return math.nan, math.nan
    return float(music.sum() / total), float((music & ref).sum() / total)


def beat_align_score(music_beats, motion_beats, sigma: float = BAS_SIGMA) -> float:
    """Beat Align Score: mean over motion beats m of exp(-min_b (m - b)^2 / (2 sigma^2)).

    b runs over the music beats. This is the AIST++ direction (mint
    tools/calculate_beat_scores.py, alignment_score: a loop over motion beats,
    sigma = 3 frames at 60 fps = 0.05 s): every movement beat should have a
    musical beat near it, which is what a soundtrack for a dance must do.
    Bailando's code (utils/metrics_new.py, BA) loops over the music beats instead,
    with sigma^2 = 9 frames^2 at 60 fps (sigma = 0.05 s too); swap the arguments
    to get it. Range [0, 1]; 0 without music beats, NaN without motion beats.
    """
    motion, music = _as_times(motion_beats), _as_times(music_beats)
    if motion.size == 0:
        return math.nan
    if music.size == 0:
        return 0.0
    d = np.abs(motion[:, None] - music[None, :]).min(axis=1)
    return float(np.mean(np.exp(-(d ** 2) / (2.0 * sigma ** 2))))


# ----------------------------------------------------------------------------- ground truth


def _sounding_frames(true_pitch_hz_per_frame, loudness, min_loudness: float) -> tuple[np.ndarray, np.ndarray]:
    """The true pitch per video frame, float64 [T_v], and where the true tone sounds: pitch > 0 and, when loudness
    [T_v] is given, loudness > min_loudness."""
    true = np.asarray(true_pitch_hz_per_frame, dtype=np.float64).reshape(-1)
    ref = true > 0
    if loudness is not None:
        loud = np.asarray(loudness, dtype=np.float64).reshape(-1)
        if loud.shape != true.shape:
            raise ValueError(f"loudness has {loud.size} frames, pitch has {true.size}")
        ref &= loud > min_loudness
    return true, ref


def pitch_accuracy(wav, sr: int, true_pitch_hz_per_frame, fps: float, loudness=None, *,
                   min_loudness: float = MIN_LOUDNESS,
                   tolerance_cents: float = PITCH_TOLERANCE_CENTS) -> float:
    """Share of audible reference frames whose pYIN pitch is within tolerance of the truth.

    librosa.pyin runs with hop = one video frame on the audio shifted by half a
    frame, so pYIN frame k is centred on the middle of video frame k (the synth
    holds frame k's pitch over samples [k hop, (k+1) hop)).
    Reference frames: true pitch > 0 and, when loudness is given, loudness >
    min_loudness (the tone is audible). On a reference frame, an unvoiced pYIN
    decision, missing audio, or a pitch off by more than tolerance_cents is a
    miss; frames the reference calls silent are not scored. The default 50 cents
    (mir_eval raw pitch accuracy) asks for the right note: a window of one whole
    semitone would pass the wrong neighbouring note of a scale (E for F).
    Octave errors are misses.

    Args:
        wav: float [n_samples] audio at sr.
        true_pitch_hz_per_frame: float [T_v] true pitch per video frame, Hz.
        fps: video frame rate; sr / fps must be a whole number.
        loudness: optional float [T_v] true loudness in [0, 1].

    Returns:
        accuracy in [0, 1]; NaN when no frame is a reference frame.
    """
    import librosa

    true, ref = _sounding_frames(true_pitch_hz_per_frame, loudness, min_loudness)
    if not ref.any():
        return math.nan
    hop = _frame_hop(sr, fps)
    y = _mono(wav)[hop // 2:]
    est = np.full(true.size, np.nan)
    if y.size:
        frame_length = 2 ** int(math.ceil(math.log2(0.064 * sr)))  # 64 ms: 4 periods of C2
        f0, voiced, _ = librosa.pyin(y, fmin=PITCH_FMIN, fmax=PITCH_FMAX, sr=sr,
                                     frame_length=frame_length, hop_length=hop, center=True)
        n_audio = 1 + (y.size - 1) // hop  # frames whose centre lies inside the audio
        n = min(true.size, f0.size, n_audio)
        est[:n] = np.where(voiced[:n], f0[:n], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        cents = np.abs(1200.0 * np.log2(est / np.where(ref, true, 1.0)))
    hit = np.isfinite(cents) & (cents <= tolerance_cents)
    return float(hit[ref].mean())


# Tone clarity: a 64 ms Blackman-Harris window (sidelobes ~92 dB down, main lobe +-4 bins = +-62 Hz at 16 kHz)
# keeps a clean tone's own leakage far below any hiss; the band starts above the kick (HIT_BAND_HZ).
CLARITY_WINDOW_SECONDS = 0.064
CLARITY_HOP_SECONDS = 0.02
CLARITY_LOBE_BINS = 4.5              # half-width of a harmonic's band, in FFT bins (the window's main lobe)
CLARITY_FLOOR = 1e-20                # added to both energies: silence reads 0 dB (0 / 0), never +-inf


def harmonic_to_noise_db(wav, sr: int, true_pitch_hz_per_frame, fps: float, loudness=None, *,
                         min_loudness: float = MIN_LOUDNESS,
                         tolerance_cents: float = PITCH_TOLERANCE_CENTS) -> float:
    """How clean the tone is: energy on the true note's harmonics over the energy between them, dB.

    Each 64 ms window (20 ms hops) that lies inside one held note of the
    reference (every video frame it spans has the same true pitch > 0 and, when
    loudness is given, loudness > min_loudness) is scored on its spectrum from
    HIT_BAND_HZ[1] (above the kick) to Nyquist: bands of +-max(CLARITY_LOBE_BINS
    bins, tolerance_cents) around each multiple of the true pitch hold the tone,
    everything else is noise. The clip's score is the median over those windows,
    so a strike's broadband click or a stray window does not decide it. A clean
    synthetic tone reads 30-45 dB after mu-law coding, white noise below 0, silence
    0 (both energies floored), sampling hiss in between.

    Args:
        wav: float [n_samples] audio at sr; missing audio at the end is silence.
        true_pitch_hz_per_frame: float [T_v] true pitch per video frame, Hz.
        fps: video frame rate; sr / fps must be a whole number.
        loudness: optional float [T_v] true loudness in [0, 1].

    Returns:
        median dB; NaN when no window lies inside a held, audible note.
    """
    held = _held_note_spectra(wav, sr, true_pitch_hz_per_frame, fps, loudness, min_loudness)
    if held is None:
        return math.nan
    spectra, freqs, f0 = held
    band = freqs >= HIT_BAND_HZ[1]
    harmonic = np.rint(freqs[None, :] / f0[:, None])  # the nearest multiple of the pitch
    width = np.maximum(CLARITY_LOBE_BINS * sr / (2 * (freqs.size - 1)),
                       harmonic * f0[:, None] * (2.0 ** (tolerance_cents / 1200.0) - 1.0))
    on = (harmonic >= 1) & (np.abs(freqs[None, :] - harmonic * f0[:, None]) <= width) & band[None, :]
    off = band[None, :] & ~on
    tone = (spectra * on).sum(axis=1) + CLARITY_FLOOR
    noise = (spectra * off).sum(axis=1) + CLARITY_FLOOR
    return float(np.median(10.0 * np.log10(tone / noise)))


PROFILE_HARMONICS = 8  # the sidecar's styles play up to 8 harmonics that matter; a formant moves their balance


def harmonic_profile(wav, sr: int, true_pitch_hz_per_frame, fps: float, loudness=None, *,
                     min_loudness: float = MIN_LOUDNESS,
                     tolerance_cents: float = PITCH_TOLERANCE_CENTS) -> np.ndarray:
    """A tone's timbre as the balance of its harmonics, float64 [PROFILE_HARMONICS]: harmonic k's share of the
    energy of the first PROFILE_HARMONICS, in dB, the median over the windows of held, audible notes (those of
    `harmonic_to_noise_db`); NaN for a harmonic above Nyquist in every window, all NaN without a held note.

    What `timbre` (mean MFCCs) reads from the whole spectrum, this reads from the harmonics alone, so a hiss
    floor between them, which moves the MFCCs as much as another instrument does, hardly enters: two sounds
    compare by their tone's colour (`profile_distance`). Level, pitch and timing leave it unchanged."""
    profile = np.full(PROFILE_HARMONICS, np.nan)
    held = _held_note_spectra(wav, sr, true_pitch_hz_per_frame, fps, loudness, min_loudness)
    if held is None:
        return profile
    spectra, freqs, f0 = held
    k = np.arange(1, PROFILE_HARMONICS + 1, dtype=np.float64)
    centre = f0[:, None] * k[None, :]  # [windows, harmonics]
    width = np.maximum(CLARITY_LOBE_BINS * sr / (2 * (freqs.size - 1)),
                       centre * (2.0 ** (tolerance_cents / 1200.0) - 1.0))
    on = np.abs(freqs[None, None, :] - centre[:, :, None]) <= width[:, :, None]  # [windows, harmonics, bins]
    energy = np.einsum("wkf,wf->wk", on, spectra)
    energy[centre + width >= sr / 2] = np.nan  # a harmonic the rate cannot hold
    share = energy / (np.nansum(energy, axis=1, keepdims=True) + CLARITY_FLOOR)
    db = 10.0 * np.log10(share + 1e-6)  # -60 dB: a harmonic that is not there
    playable = np.isfinite(db).any(axis=0)
    profile[playable] = np.nanmedian(db[:, playable], axis=0)
    return profile


def profile_distance(a, b) -> float:
    """Distance between two harmonic profiles, dB: the root-mean-square difference over the harmonics both hold
    (NaN when they share none)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[both] - b[both]) ** 2))) if both.any() else math.nan


def _held_note_spectra(wav, sr: int, true_pitch_hz_per_frame, fps: float, loudness, min_loudness: float):
    """The power spectra of the 64 ms Blackman-Harris windows (20 ms hops) that lie inside one held, audible note
    of the reference: (spectra [windows, bins], bin frequencies [bins], each window's true pitch [windows]), or
    None when no window does."""
    true, ref = _sounding_frames(true_pitch_hz_per_frame, loudness, min_loudness)
    hop = _frame_hop(sr, fps)
    n_fft = 2 ** int(round(math.log2(CLARITY_WINDOW_SECONDS * sr)))
    step = max(1, int(round(CLARITY_HOP_SECONDS * sr)))
    n = true.size * hop
    y = _mono(wav).astype(np.float64)[:n]
    y = np.pad(y, (0, n - y.size))
    starts = np.arange(0, n - n_fft + 1, step)
    first, last = starts // hop, (starts + n_fft - 1) // hop
    span = np.arange(n_fft // hop + 2)
    covered = np.minimum(first[:, None] + span[None, :], last[:, None])  # every video frame a window spans
    held = ref[covered].all(axis=1) & (true[covered] == true[first][:, None]).all(axis=1)
    if not held.any():
        return None
    from scipy.signal import get_window

    window = get_window("blackmanharris", n_fft)
    starts, f0 = starts[held], true[first[held]]
    spectra = np.abs(np.fft.rfft(y[starts[:, None] + np.arange(n_fft)] * window, axis=1)) ** 2
    return spectra, np.fft.rfftfreq(n_fft, 1.0 / sr), f0


class PRF(NamedTuple):
    precision: float
    recall: float
    f1: float


def event_prf(estimate_times, reference_times, tolerance: float) -> PRF:
    """Precision, recall and F1 of estimated event times against reference times.

    One-to-one matching within +-tolerance (match_events), as mir_eval.onset.f_measure.
    No reference events: recall and F1 are NaN (precision 0 if anything was
    estimated, else NaN). No estimates against reference events: 0, 0, 0.
    """
    pred, true = _as_times(estimate_times), _as_times(reference_times)
    matched = len(match_events(true, pred, tolerance))
    precision = matched / pred.size if pred.size else (0.0 if true.size else math.nan)
    if not true.size:
        return PRF(precision, math.nan, math.nan)
    recall = matched / true.size
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return PRF(float(precision), float(recall), float(f1))


def hit_f1(pred_onset_times, true_hit_times, tolerance: float = HIT_TOLERANCE) -> PRF:
    """Detected hits against the true hit times: event_prf with mir_eval's +-50 ms window."""
    return event_prf(pred_onset_times, true_hit_times, tolerance)


# ----------------------------------------------------------------------------- headline


def frame_loudness_db(wav, sr: int, fps: float, n_frames: int | None = None,
                      floor_db: float = LOUDNESS_FLOOR_DB) -> np.ndarray:
    """Loudness per video frame, float64 [T_v]: RMS in dBFS over the frame's own hop.

    Frame k is samples [k hop, (k+1) hop), hop = sr / fps: the span the synth and
    the model play for video frame k, so curves of two audios, the sidecar's and
    the video's line up frame for frame. Audio missing at the end counts as
    silence. The floor makes digital silence, mu-law silence (-81 dBFS) and a
    missing tail read the same, and keeps -inf out of correlations.

    Args:
        n_frames: frames wanted; default every whole hop in wav.
    """
    y = _mono(wav).astype(np.float64)
    hop = _frame_hop(sr, fps)
    if n_frames is None:
        n_frames = y.size // hop
    y = np.pad(y[: n_frames * hop], (0, max(0, n_frames * hop - y.size)))
    power = (y.reshape(n_frames, hop) ** 2).mean(axis=1) if n_frames else np.zeros(0)
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), floor_db)


def gain_db(gain, floor_db: float = LOUDNESS_FLOOR_DB) -> np.ndarray:
    """A linear amplitude gain (the sidecar's loudness in [0, 1]) in dB, floored like frame_loudness_db."""
    g = np.asarray(gain, dtype=np.float64).reshape(-1)
    return np.maximum(20.0 * np.log10(np.maximum(g, 1e-30)), floor_db)


def _is_constant(x: np.ndarray) -> bool:
    """Flat up to float rounding (a smoothed constant is not exactly constant)."""
    return x.size == 0 or float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.abs(x).max()))


def correlation(x, reference) -> float:
    """Pearson correlation of x with reference (same length), in [-1, 1].

    A constant x against a varying reference scores 0, never NaN: silence follows
    nothing. NaN only when the reference is constant (or has fewer than 2 points):
    then no curve can follow it and the score is undefined.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if x.shape != r.shape:
        raise ValueError(f"curves differ in length: {x.size} and {r.size}")
    if not (np.isfinite(x).all() and np.isfinite(r).all()):
        raise ValueError("curve contains NaN or inf")
    if r.size < 2 or _is_constant(r):
        return math.nan
    if _is_constant(x):
        return 0.0
    xc, rc = x - x.mean(), r - r.mean()
    return float(np.clip(xc @ rc / math.sqrt((xc @ xc) * (rc @ rc)), -1.0, 1.0))


def loudness_following(loudness_db, reference, fps: float,
                       smooth_seconds: float = LOUDNESS_SMOOTH_SECONDS) -> float:
    """Does the audio get loud where the reference does? Pearson correlation per video frame.

    Both curves are smoothed with a Gaussian of sigma smooth_seconds first, so a
    one-frame wobble of a sampled waveform does not count against it. Constant
    curves as in correlation: silence scores 0; a constant reference gives NaN.

    Args:
        loudness_db: float [T_v] from frame_loudness_db.
        reference: float [T_v]: the true audio's frame_loudness_db, the sidecar's
            gain_db(loudness), or the motion speed curve. Correlation ignores
            offset and scale, so the reference's units do not matter.
    """
    x = np.asarray(loudness_db, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if x.shape != r.shape:
        raise ValueError(f"curves differ in length: {x.size} and {r.size}")
    sigma = smooth_seconds * fps
    return correlation(_smooth(x, sigma), _smooth(r, sigma))  # a smoothed constant stays constant to rounding


def audible_fraction(loudness_db, threshold_db: float = AUDIBLE_DB) -> float:
    """Share of frames louder than threshold_db (dBFS); NaN for no frame.

    An absolute threshold, so the values of two audios at the same level compare
    directly (the model is trained on peak-normalized audio, as the truth is).
    """
    db = np.asarray(loudness_db, dtype=np.float64).reshape(-1)
    return float((db > threshold_db).mean()) if db.size else math.nan


def audible_agreement(loudness_db, reference_audible, threshold_db: float = AUDIBLE_DB) -> float:
    """Share of frames where the audio is audible (> threshold_db) exactly when the reference is.

    reference_audible: bool [T_v]. NaN for no frame.
    """
    audible = np.asarray(loudness_db, dtype=np.float64).reshape(-1) > threshold_db
    ref = np.asarray(reference_audible, dtype=bool).reshape(-1)
    if audible.shape != ref.shape:
        raise ValueError(f"curves differ in length: {audible.size} and {ref.size}")
    return float((audible == ref).mean()) if ref.size else math.nan


def onset_f1(pred_onset_times, reference_times, tolerance: float = ONSET_TOLERANCE) -> PRF:
    """Audio onsets against reference events (the true soundtrack's onsets, or motion
    beats): event_prf with mir_eval's +-50 ms onset window. Precision is what BCS/BHS
    lack: an onset that matches nothing costs, so noise's onsets everywhere score low."""
    return event_prf(pred_onset_times, reference_times, tolerance)


# ----------------------------------------------------------------------------- timbre

TIMBRE_MFCCS = 13  # coefficients 1..13: the spectral envelope's shape (coefficient 0, the level, left out)


def timbre(wav, sr: int) -> np.ndarray:
    """A sound's character as a vector, float64 [TIMBRE_MFCCS]: the mean MFCCs 1..13 over its audible frames
    (above AUDIBLE_DB), so neither level nor when things happen enters; zeros for a silent sound. Distances between
    these vectors compare timbres (the style latent's measurements, benchmarks/bench_style.py)."""
    import librosa

    y = _mono(wav)
    hop, n_fft = _analysis_grid(sr)
    if y.size < n_fft:
        return np.zeros(TIMBRE_MFCCS)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=TIMBRE_MFCCS + 1, n_fft=n_fft, hop_length=hop, n_mels=40)
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0]
    audible = 20 * np.log10(np.maximum(rms, 1e-10)) > AUDIBLE_DB
    if not audible.any():
        return np.zeros(TIMBRE_MFCCS)
    return mfcc[1:, audible[: mfcc.shape[1]]].mean(axis=1).astype(np.float64)


# ----------------------------------------------------------------------------- one clip


def _json_float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def clip_metrics(wav, sr: int, fps: float, frames=None, keypoints=None, sidecar: dict | None = None,
                 reference_wav=None) -> dict:
    """Every metric for one clip's audio against its video (and ground truth if known).

    Motion beats come from keypoints when given, else from frames (pass the
    sidecar's "joints" as keypoints to use the synthetic pose). Audio events after
    the video's end are ignored. Rhythm metrics are always computed; pitch and hit
    metrics only with a synthetic sidecar dict (pitch_hz, loudness, hit_times,
    beat_times, fps). The headline metrics (HEADLINE) use the best reference at
    hand: the true soundtrack (reference_wav), else the sidecar, else the motion.

    Args:
        wav: float [n_samples] mono audio at sr (generated, ground truth or chance).
        frames: uint8 [T_v, H, W, C] video frames; keypoints: [T_v, J, 2 or 3].
        reference_wav: float [n_samples] the clip's true soundtrack at sr, if known.
            Passing wav itself scores it perfectly on loudness_following,
            audible_agreement and onset_f1: the upper bound.

    Returns:
        dict of plain Python types. Undefined metrics are None.
            seconds, fps, motion_source ("keypoints" or "frames"),
            n_motion_beats, n_audio_onsets, n_audio_beats,
            bcs, bhs (audio onsets vs motion beats, +-BEAT_TOLERANCE),
            bas (audio beats vs motion beats, AIST++ direction),
            bas_music_to_motion (Bailando direction),
            loudness_following, loudness_reference ("audio", "sidecar" or "motion"),
            audible_fraction;
            with reference_wav or a sidecar's loudness: audible_agreement,
            audible_fraction_error (|audible_fraction - the reference's|);
            with reference_wav: onset_precision, onset_recall, onset_f1,
            n_reference_onsets; without it: onset_precision_motion,
            onset_recall_motion, onset_f1_motion (onsets vs motion beats);
            and with a sidecar: bhs_true_beats, bas_true_beats (the same scores
            against the sidecar's beat_times), pitch_accuracy, harmonic_to_noise_db, hit_precision,
            hit_recall, hit_f1, n_true_hits, n_detected_hits.
    """
    if keypoints is not None:
        source = "keypoints"
        speed = motion_speed(keypoints=keypoints, fps=fps)
    elif frames is not None:
        source = "frames"
        speed = motion_speed(frames=frames, fps=fps)
    else:
        raise ValueError("clip_metrics needs frames or keypoints")
    n_frames = len(speed)
    seconds = n_frames / fps
    y = _mono(wav)[: int(round(seconds * sr))]

    def in_clip(times):
        return times[times < seconds]

    m_beats = motion_beats(speed, fps, min_prominence=MIN_PROMINENCE[source])
    onsets = in_clip(audio_onsets(y, sr))
    a_beats = in_clip(audio_beats(y, sr))
    out = {
        "seconds": float(seconds), "fps": float(fps), "motion_source": source,
        "n_motion_beats": int(m_beats.size), "n_audio_onsets": int(onsets.size),
        "n_audio_beats": int(a_beats.size),
        "bcs": _json_float(beats_coverage_score(onsets, m_beats)),
        "bhs": _json_float(beats_hit_score(onsets, m_beats)),
        "bas": _json_float(beat_align_score(a_beats, m_beats)),
        "bas_music_to_motion": _json_float(beat_align_score(m_beats, a_beats)),
    }
    if sidecar is not None and "fps" in sidecar and float(sidecar["fps"]) != float(fps):
        raise ValueError(f"sidecar fps {sidecar['fps']} != fps {fps}")
    side_loud = None if sidecar is None or sidecar.get("loudness") is None else \
        np.asarray(sidecar["loudness"], dtype=np.float64)[:n_frames]

    # Headline: loudness, audibility and onsets against the best reference at hand.
    loud_db = frame_loudness_db(y, sr, fps, n_frames)
    ref_audible = None
    if reference_wav is not None:
        ref_y = _mono(reference_wav)[: int(round(seconds * sr))]
        ref_db = frame_loudness_db(ref_y, sr, fps, n_frames)
        loud_ref, loud_source, ref_audible = ref_db, "audio", ref_db > AUDIBLE_DB
    elif side_loud is not None and side_loud.size == n_frames:
        loud_ref, loud_source, ref_audible = gain_db(side_loud), "sidecar", side_loud > MIN_LOUDNESS
    else:
        loud_ref, loud_source = speed, "motion"
    fraction = audible_fraction(loud_db)
    out.update({
        "loudness_following": _json_float(loudness_following(loud_db, loud_ref, fps)),
        "loudness_reference": loud_source,
        "audible_fraction": _json_float(fraction),
    })
    if ref_audible is not None:
        out.update({
            "audible_agreement": _json_float(audible_agreement(loud_db, ref_audible)),
            "audible_fraction_error": _json_float(abs(fraction - float(ref_audible.mean()))),
        })
    if reference_wav is not None:
        ref_onsets = in_clip(audio_onsets(ref_y, sr))
        prf = onset_f1(onsets, ref_onsets)
        out.update({"onset_precision": _json_float(prf.precision), "onset_recall": _json_float(prf.recall),
                    "onset_f1": _json_float(prf.f1), "n_reference_onsets": int(ref_onsets.size)})
    else:
        prf = onset_f1(onsets, m_beats)
        out.update({"onset_precision_motion": _json_float(prf.precision),
                    "onset_recall_motion": _json_float(prf.recall), "onset_f1_motion": _json_float(prf.f1)})

    if sidecar is not None:
        pitch = np.asarray(sidecar["pitch_hz"], dtype=np.float64)[:n_frames]
        true_hits = in_clip(_as_times(sidecar["hit_times"]))
        hits = in_clip(percussive_onsets(y, sr))
        prf = hit_f1(hits, true_hits)
        true_beats = in_clip(_as_times(sidecar.get("beat_times", [])))
        out.update({
            # The synthetic dancer steps on its beat but does not pause on it, so its
            # speed minima drift off the beat; the true beat times are the reference
            # that tells its own soundtrack from another clip's.
            "bhs_true_beats": _json_float(beats_hit_score(onsets, true_beats)),
            "bas_true_beats": _json_float(beat_align_score(a_beats, true_beats)),
            "pitch_accuracy": _json_float(pitch_accuracy(y, sr, pitch, fps, side_loud)),
            "harmonic_to_noise_db": _json_float(harmonic_to_noise_db(y, sr, pitch, fps, side_loud)),
            "hit_precision": _json_float(prf.precision), "hit_recall": _json_float(prf.recall),
            "hit_f1": _json_float(prf.f1),
            "n_true_hits": int(true_hits.size), "n_detected_hits": int(hits.size),
        })
    return out


def summarize(rows: list[dict], metrics: tuple[str, ...] | None = None) -> dict:
    """Mean, standard error and count of each metric per condition, skipping None.

    Args:
        rows: one dict per (clip, condition): {"condition": str, **clip_metrics(...)}.
        metrics: keys to summarize; default: every numeric key of the rows except
            counts (n_*), seconds and fps.

    Returns:
        {metric: {condition: {"mean": float, "sem": float, "n": int}}}; conditions in
        order of first appearance; a metric with no value under a condition has no
        entry for it. sem is std (ddof=1) / sqrt(n), 0 for n = 1.
    """
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    if metrics is None:
        keys = dict.fromkeys(k for r in rows for k, v in r.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool))
        metrics = tuple(k for k in keys if not k.startswith("n_") and k not in ("seconds", "fps"))
    out = {}
    for m in metrics:
        per = {}
        for cond in conditions:
            vals = np.array([r[m] for r in rows if r["condition"] == cond and r.get(m) is not None], np.float64)
            if vals.size:
                sem = float(vals.std(ddof=1) / math.sqrt(vals.size)) if vals.size > 1 else 0.0
                per[cond] = {"mean": float(vals.mean()), "sem": sem, "n": int(vals.size)}
        out[m] = per
    return out
