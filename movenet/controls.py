"""Explicit controls: what the body tells the instrument to play, frame by frame, and the sound source they drive.

Per video frame there are three controls, the instrument's readable score:

    pitch     a note, MIDI MIDI_LO .. MIDI_HI, or none (no pitched sound)
    loudness  RMS of the frame's audio in dBFS (floored at LOUDNESS_FLOOR_DB)
    onset     a percussive hit starts in this frame: 0 for none, else the hit's level, the peak amplitude of the
              kick drum that fits it best (`hit_levels`; 1 is full scale, and sets prepared before levels were
              measured hold 1)

`analyze` reads them off a soundtrack when a data set is prepared (the training targets: YIN pitch, de Cheveigné
& Kawahara 2002; frame RMS; percussive onsets and their kicks' levels); the model predicts them from the movement
alone.

`Excitation` turns controls into an audio-rate source signal for the WaveNet, as the neural source-filter models do
(Wang et al. 2019; DDSP, Engel et al. 2020): the first harmonics of the note as sine/cosine pairs scaled by the
loudness, a decaying pulse after each onset, the loudness itself, and (with `kick`) a drum's body after each onset:
a sine whose pitch falls from KICK_START_HZ to KICK_END_HZ as it decays, started on the onset frame's first sample
at the hit's level, so the WaveNet can pass a hit through instead of making a low thump out of its own noise, and
need not guess how hard the foot landed (without the level it plays each kick at a level of its own choosing,
nearly uncorrelated with the strike's). The WaveNet then shapes a sound that already has the right pitch and level
instead of finding them in its own noise. The source is causal (the
samples of frame k depend on the controls of frames <= k: one-pole glides into each frame's values, a phase that
accumulates) and carries its state across calls, so a video rendered a chunk or a frame at a time gets the same
source.

Training renders the source from the true controls with the pitch snapped to its note, as generation renders it
from predicted notes, so the WaveNet sees the same kind of source in both, and `align_phase` shifts it into phase
with the crop's audio. `write_midi` writes a score as a MIDI file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movenet.audio import SILENCE, mu_law_decode, mu_law_encode

MIDI_LO, MIDI_HI = 36, 96  # C2 .. C7
N_NOTES = MIDI_HI - MIDI_LO + 1
N_PITCH_CLASSES = N_NOTES + 1  # class 0: no pitched sound; class c: MIDI_LO + c - 1
LOUDNESS_FLOOR_DB = -80.0  # as metrics.frame_loudness_db: mu-law silence decodes to -81 dBFS
SILENT_DB = -60.0  # below this a frame plays nothing: its source is zero
# A controls array has 3 columns: f0 (Hz, 0 = none), loudness (dBFS), onset (0 = none, else the hit's level).
SILENT = np.array([0.0, LOUDNESS_FLOOR_DB, 0.0], np.float32)  # the controls of silence (before a clip)
_NO_KICK = 2**40  # a kick age (samples) long past

# YIN
YIN_WINDOW = 200  # integration window; with the longest lag the analysis spans 468 samples, inside one frame
F0_MIN, F0_MAX = 60.0, 2100.0
YIN_THRESHOLD = 0.15  # first dip of the cumulative mean normalized difference below this is the period
APERIODIC = 0.3  # above this at the chosen lag, the frame has no clear pitch
PITCHED_DB = -45.0  # and quieter frames are not pitched either

# the head: an onset falls on about one frame in twelve; weighting them up keeps the head from never calling one
ONSET_POS_WEIGHT = 4.0

# the source
AMP_GLIDE_SECONDS = 0.01
PITCH_GLIDE_SECONDS = 0.005
ONSET_DECAY_SECONDS = 0.04
KICK_START_HZ, KICK_END_HZ = 150.0, 50.0  # a kick drum's pitch drop ...
KICK_SWEEP_SECONDS, KICK_DECAY_SECONDS = 0.03, 0.05  # ... and how fast it falls and fades
KICK_SECONDS = 6 * KICK_DECAY_SECONDS  # later it is silent (under -50 dB)
# a hit's level: the kick is fitted over its loud part, at the best start within a frame of the onset's frame
LEVEL_FIT_SECONDS = 0.15
LEVEL_FLOOR_DB = -40.0  # a hit fitted quieter (a clap, a step on carpet) still counts as one, at this level


def head_width(kick: bool = False) -> int:
    """The control head's outputs per frame: note logits, loudness, onset logit, and with a kick the hit's level."""
    return N_PITCH_CLASSES + 2 + bool(kick)


def n_channels(harmonics: int, kick: bool = False) -> int:
    """Source channels: a sine and a cosine per harmonic, the onset pulse, the loudness, the kick."""
    return 2 * harmonics + 2 + bool(kick) if harmonics else 0


# The silence gate: where the source's loudness channel (its glide of `amplitude`) is below a sine's amplitude at
# SILENT_DB, the controls say nothing sounds, and the engines play silence there instead of the code drawn. The
# training audio is quieter than -60 dBFS in such frames, so the WaveNet should play silence there anyway, but it
# reads its own past: without the gate a draw can keep a tone going through a dancer's freeze.
SILENT_AMPLITUDE = float(np.sqrt(2.0) * 10.0 ** (SILENT_DB / 20.0))


def loudness_channel(model_config) -> int:
    """The index of the loudness channel in a model's source (`Excitation`), or -1 for a model without one."""
    c = model_config
    return 2 * c.harmonics + 1 if c.controls and c.harmonics else -1


def gate_silence(codes: np.ndarray, source: np.ndarray | None, channel: int) -> np.ndarray:
    """codes [B] with the silence gate applied, source [B, E] at their sample (see SILENT_AMPLITUDE)."""
    if channel < 0:
        return codes
    return np.where(source[:, channel] < SILENT_AMPLITUDE, SILENCE, codes)


def kick_wave(age) -> np.ndarray:
    """The kick `age` seconds after its onset (float64 seconds; negative or past KICK_SECONDS: 0). The
    phase is the closed-form integral of the falling pitch, so any sample is rendered from its age alone."""
    t = np.asarray(age, dtype=np.float64)
    drop = (KICK_START_HZ - KICK_END_HZ) * KICK_SWEEP_SECONDS * (1.0 - np.exp(-t / KICK_SWEEP_SECONDS))
    wave = np.sin(2 * np.pi * (KICK_END_HZ * t + drop)) * np.exp(-t / KICK_DECAY_SECONDS)
    return np.where((t >= 0) & (t < KICK_SECONDS), wave, 0.0)


# -- notes ------------------------------------------------------------------------------------------------------------


def pitch_class(f0_hz) -> np.ndarray:
    """int64 class of each f0 (Hz; <= 0: none): the nearest note, clipped to the range; 0 where there is none."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        midi = np.rint(69 + 12 * np.log2(f0 / 440.0))
    cls = np.clip(midi, MIDI_LO, MIDI_HI) - MIDI_LO + 1
    return np.where(f0 > 0, cls, 0).astype(np.int64)


def class_hz(cls) -> np.ndarray:
    """The note of each class in Hz, float64; 0 for class 0."""
    cls = np.asarray(cls)
    hz = 440.0 * 2.0 ** ((MIDI_LO + cls - 1 - 69) / 12)
    return np.where(cls > 0, hz, 0.0)


def snap_to_notes(controls: np.ndarray) -> np.ndarray:
    """Controls [..., 3] with f0 replaced by its note's frequency (what generation plays)."""
    out = np.array(controls, dtype=np.float32, copy=True)
    out[..., 0] = class_hz(pitch_class(out[..., 0]))
    return out


# -- analysis of a soundtrack ------------------------------------------------------------------------------------------


def yin(wav: np.ndarray, sample_rate: int, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """YIN pitch of the span that ends at each of `ends` (sample index, exclusive): (f0 Hz float64 [T],
    aperiodicity [T] in [0, 1+]: the cumulative mean normalized difference at the chosen lag, small for a clear
    period). Vectorized over frames with FFTs."""
    x = np.asarray(wav, dtype=np.float64)
    n = YIN_WINDOW
    max_lag = int(np.ceil(sample_rate / F0_MIN)) + 1
    min_lag = max(2, int(np.floor(sample_rate / F0_MAX)))
    size = n + max_lag
    starts = np.asarray(ends, dtype=np.int64) - size
    padded = np.pad(x, (size, size))
    idx = starts[:, None] + size + np.arange(size)[None, :]
    frames = padded[idx]  # [T, n + max_lag]
    fft_n = 1 << int(np.ceil(np.log2(2 * size)))
    spec = np.fft.rfft(frames, fft_n)
    head = np.fft.rfft(frames[:, :n], fft_n)
    r = np.fft.irfft(np.conj(head) * spec, fft_n)[:, :max_lag]  # r[tau] = sum_j x_j x_{j+tau}, j < n
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    energy = sq[:, n + np.arange(max_lag)] - sq[:, np.arange(max_lag)]  # sum_{j=tau}^{tau+n-1} x_j^2
    d = np.maximum(energy[:, :1] + energy - 2 * r, 0.0)
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(cum > 0, d[:, 1:] * np.arange(1, max_lag) / cum, 1.0)
    lags = np.arange(max_lag)
    valid = (lags >= min_lag) & (lags < max_lag - 1)
    below = (cmnd < YIN_THRESHOLD) & valid
    first = np.where(below.any(1), below.argmax(1), np.where(valid, cmnd, np.inf).argmin(1))
    # from the first dip, walk down to its local minimum
    rising = np.zeros_like(below)
    rising[:, :-1] = cmnd[:, 1:] >= cmnd[:, :-1]
    rising &= lags[None, :] >= first[:, None]
    rising[:, -2] = True
    tau = rising.argmax(1)
    rows = np.arange(len(frames))
    a, b, c = d[rows, tau - 1], d[rows, tau], d[rows, np.minimum(tau + 1, max_lag - 1)]  # YIN step 5: on d
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(a - 2 * b + c) > 1e-12, 0.5 * (a - c) / (a - 2 * b + c), 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    f0 = sample_rate / (tau + shift)
    return f0, cmnd[rows, tau]


def analyze(wav: np.ndarray, sample_rate: int, fps: int, n_frames: int) -> np.ndarray:
    """The controls of a soundtrack, float32 [n_frames, 3]: f0 in Hz (0 where no clear pitch), loudness in dBFS,
    onset (1 in the frame where a percussive hit starts). Frame k is samples k * hop .. (k + 1) * hop - 1."""
    from movenet import metrics

    hop = sample_rate // fps
    y = np.asarray(wav, dtype=np.float32)[: n_frames * hop]
    loudness = metrics.frame_loudness_db(y, sample_rate, fps, n_frames, floor_db=LOUDNESS_FLOOR_DB)
    # the end of each frame: a note glides in at the frame's start, and holds by its end
    f0, aperiodicity = yin(y, sample_rate, (np.arange(n_frames) + 1) * hop)
    pitched = (aperiodicity < APERIODIC) & (loudness > PITCHED_DB) & (f0 >= F0_MIN) & (f0 <= F0_MAX)
    onset = np.zeros(n_frames, np.float32)
    if y.size and loudness.max() > SILENT_DB:
        frames = np.unique((metrics.percussive_onsets(y, sample_rate) * fps).astype(np.int64))
        frames = frames[frames < n_frames]
        onset[frames] = hit_levels(y, sample_rate, frames * hop, hop)
    return np.stack([np.where(pitched, f0, 0.0), loudness, onset], axis=1).astype(np.float32)


def hit_levels(wav: np.ndarray, sample_rate: int, starts: np.ndarray, search: int) -> np.ndarray:
    """The level of the hit near each of `starts` (sample indices): the largest least-squares amplitude of the kick
    (`kick_wave`, its first LEVEL_FIT_SECONDS) started within `search` samples of it, clipped to
    [10 ** (LEVEL_FLOOR_DB / 20), 1]. float32 [len(starts)]. A note above the kick's sweep (over KICK_START_HZ, as
    all the synthetic dancers' notes are) fits it poorly and adds little; a bass note inside the sweep adds to the
    level found."""
    x = np.asarray(wav, dtype=np.float64)
    template = kick_wave(np.arange(int(LEVEL_FIT_SECONDS * sample_rate)) / sample_rate)
    n = len(template)
    padded = np.pad(x, (search, search + n))
    levels = np.empty(len(starts))
    for i, start in enumerate(np.asarray(starts, dtype=np.int64)):
        segment = padded[start: start + 2 * search + n]  # starts start - search .. start + search
        levels[i] = np.correlate(segment, template, "valid").max() / template.dot(template)
    return np.clip(levels, 10.0 ** (LEVEL_FLOOR_DB / 20), 1.0).astype(np.float32)


# -- the source --------------------------------------------------------------------------------------------------------


def amplitude(loudness_db) -> np.ndarray:
    """Peak amplitude of a sine with this RMS (dBFS), 0 below SILENT_DB, at most 1."""
    db = np.asarray(loudness_db, dtype=np.float64)
    return np.where(db > SILENT_DB, np.minimum(np.sqrt(2.0) * 10.0 ** (db / 20.0), 1.0), 0.0)


@dataclass
class SourceState:
    """What the source carries from one frame to the next, per stream (float64 [B] each)."""

    phase: np.ndarray  # of the fundamental, radians mod 2 pi
    log2_f0: np.ndarray  # the glide's current pitch
    pitched_amp: np.ndarray  # the glide's current amplitude of the harmonics
    amp: np.ndarray  # the glide's current loudness amplitude
    pulse: np.ndarray  # the onset pulse's current value
    kick_age: np.ndarray  # samples since the last onset (large: none)
    kick_level: np.ndarray  # that onset's level

    @classmethod
    def silent(cls, batch: int) -> "SourceState":
        """Before a clip: silence (the model's pre-roll)."""
        return cls.holding(np.repeat(SILENT[None], batch, axis=0))

    @classmethod
    def holding(cls, controls: np.ndarray) -> "SourceState":
        """As if controls [B, 3] had been held for a long time (phase 0): a crop that starts inside a clip."""
        c = np.asarray(controls, dtype=np.float64)
        amp, pitched = amplitude(c[:, 1]), c[:, 0] > 0
        return cls(np.zeros(len(c)), np.where(pitched, np.log2(np.maximum(c[:, 0], 1.0)), np.log2(440.0)),
                   np.where(pitched, amp, 0.0), amp, np.zeros(len(c)), np.full(len(c), _NO_KICK), np.zeros(len(c)))


class Excitation:
    """Renders the source of controls frame by frame: `render(controls [B, T_v, 3], state)` -> float32
    [B, T_v * hop, n_channels(harmonics, kick)], advancing `state` (a SourceState) in place."""

    @classmethod
    def of(cls, model_config) -> "Excitation | None":
        """The source a model (a ModelConfig) hears, or None for a model without controls."""
        c = model_config
        return cls(c.harmonics, c.hop, c.sample_rate, c.kick) if c.controls else None

    def __init__(self, harmonics: int, hop: int, sample_rate: int, kick: bool = False):
        self.harmonics, self.hop, self.sample_rate, self.kick = harmonics, hop, sample_rate, bool(kick)
        self.channels = n_channels(harmonics, kick)
        steps = np.arange(1, hop + 1)
        self.amp_decay = np.exp(-steps / (AMP_GLIDE_SECONDS * sample_rate))  # [hop]: weight of the old value
        self.pitch_decay = np.exp(-steps / (PITCH_GLIDE_SECONDS * sample_rate))
        self.pulse_decay = np.exp(-steps / (ONSET_DECAY_SECONDS * sample_rate))

    def render(self, controls: np.ndarray, state: SourceState) -> np.ndarray:
        controls = np.asarray(controls, dtype=np.float64)
        B, T_v, _ = controls.shape
        hop, H = self.hop, self.harmonics
        out = np.empty((B, T_v * hop, self.channels), np.float32)
        k = np.arange(1, H + 1)
        for f in range(T_v):
            f0, loud, onset = controls[:, f, 0], controls[:, f, 1], controls[:, f, 2]
            amp = amplitude(loud)
            pitched = f0 > 0
            target_amp_h = np.where(pitched, amp, 0.0)
            # a note after silence starts on its pitch; a change of note glides
            target_log2 = np.where(pitched, np.log2(np.maximum(f0, 1.0)), state.log2_f0)
            start_log2 = np.where(pitched & (state.pitched_amp < 1e-4), target_log2, state.log2_f0)
            log2_f = target_log2[:, None] + (start_log2 - target_log2)[:, None] * self.pitch_decay
            amp_h = target_amp_h[:, None] + (state.pitched_amp - target_amp_h)[:, None] * self.amp_decay
            amp_all = amp[:, None] + (state.amp - amp)[:, None] * self.amp_decay
            pulse = np.where(onset > 0, 1.0, state.pulse)[:, None] * self.pulse_decay
            phase = state.phase[:, None] + 2 * np.pi * np.cumsum(2.0 ** log2_f, axis=1) / self.sample_rate
            rows = slice(f * hop, (f + 1) * hop)
            if H:
                harmonic = k[None, None, :] * phase[:, :, None]  # [B, hop, H]
                audible = (k[None, None, :] * 2.0 ** log2_f[:, :, None] < 0.45 * self.sample_rate)
                gain = amp_h[:, :, None] * audible
                out[:, rows, 0:H] = gain * np.sin(harmonic)
                out[:, rows, H:2 * H] = gain * np.cos(harmonic)
                out[:, rows, 2 * H] = pulse
                out[:, rows, 2 * H + 1] = amp_all
            if self.kick and H:
                hit = onset > 0
                age = np.where(hit, 0, state.kick_age)  # an onset starts its kick on the frame's first sample
                state.kick_level = np.where(hit, onset, state.kick_level)
                out[:, rows, 2 * H + 2] = state.kick_level[:, None] * kick_wave((age[:, None] + np.arange(hop))
                                                                                / self.sample_rate)
                state.kick_age = np.minimum(age + hop, _NO_KICK)
            state.phase = np.mod(phase[:, -1], 2 * np.pi)
            state.log2_f0, state.pitched_amp, state.amp, state.pulse = log2_f[:, -1], amp_h[:, -1], amp_all[:, -1], \
                pulse[:, -1]
        return out


def align_phase(source: np.ndarray, wav: np.ndarray, hop: int, harmonics: int) -> np.ndarray:
    """The source [T, E] of a training crop with its harmonics shifted into phase with the crop's audio wav [T].

    A rendered source starts its note at an arbitrary phase; the audio has its own. For training, each frame's
    offset between them is measured (the audio projected on the fundamental's sine and cosine), unwrapped,
    interpolated between frame centres, and the harmonics are rendered again at the shifted phase: the audio is
    then close to a fixed function of the source, which the WaveNet learns in a few hundred steps instead of
    learning to find the phase from its own past. Generation needs no audio: the model makes sound in phase with
    whatever source it hears. Loudness, pulse, and each harmonic's gain are kept.
    """
    if not harmonics:
        return source
    T, H = len(source), harmonics
    n_frames = T // hop
    sin1, cos1 = source[:, 0].astype(np.float64), source[:, H].astype(np.float64)
    gain1 = np.hypot(sin1, cos1)
    phase = np.arctan2(sin1, cos1)  # of the fundamental, where it sounds
    y = np.asarray(wav, dtype=np.float64)[: n_frames * hop].reshape(n_frames, hop)
    unit_sin = np.where(gain1 > 0, sin1 / np.maximum(gain1, 1e-12), 0.0)[: n_frames * hop].reshape(n_frames, hop)
    unit_cos = np.where(gain1 > 0, cos1 / np.maximum(gain1, 1e-12), 0.0)[: n_frames * hop].reshape(n_frames, hop)
    p, q = (y * unit_sin).sum(1), (y * unit_cos).sum(1)  # audio ~ a sin(phase + offset) = a (sin cos(o) + cos sin(o))
    sounding = np.hypot(p, q) > 1e-6
    if not sounding.any():
        return source
    offsets = np.unwrap(np.arctan2(q, p)[sounding])
    centres = (np.flatnonzero(sounding) + 0.5) * hop
    offset = np.interp(np.arange(T), centres, offsets)
    out = source.copy()
    for k in range(1, H + 1):
        gain = np.hypot(source[:, k - 1], source[:, H + k - 1])
        out[:, k - 1] = gain * np.sin(k * (phase + offset))
        out[:, H + k - 1] = gain * np.cos(k * (phase + offset))
    return out


def kick_of(source: np.ndarray) -> np.ndarray:
    """The kick channel of a source [..., n, E] (its last, for a model with `kick`): float32 [..., n]."""
    return source[..., -1]


def without_kick(codes: np.ndarray, kick: np.ndarray) -> np.ndarray:
    """Codes uint8 [n] of a soundtrack with a kick [n] taken out: what the WaveNet of a `direct_kick` model learns
    (the soundtrack minus the kick its source renders from the soundtrack's own onsets and levels)."""
    return mu_law_encode(np.clip(mu_law_decode(codes) - kick, -1.0, 1.0))


def soundtrack(codes: np.ndarray, source: np.ndarray | None, direct_kick: bool) -> np.ndarray:
    """What generated codes [..., n] play, float32 in [-1, 1]: decoded, and for a `direct_kick` model with the
    source's kick (source [..., n, E]) added."""
    wav = mu_law_decode(codes)
    if direct_kick:
        wav = np.clip(wav + kick_of(source), -1.0, 1.0).astype(np.float32)
    return wav


# -- the model's control head -----------------------------------------------------------------------------------------
# Its output per frame (`head_width`): N_PITCH_CLASSES note logits, the loudness scaled as `_scaled_loudness`, an
# onset logit, and for a model with a kick the hit's level in dB from LEVEL_FLOOR_DB to full scale as 0 .. 1.


def _scaled_loudness(loudness_db):
    """dBFS from the floor to 0 as 0 .. 1 (what the head regresses)."""
    return (loudness_db - LOUDNESS_FLOOR_DB) / -LOUDNESS_FLOOR_DB


def head_losses(head, targets) -> dict:
    """The control head's losses (torch, nats, means over frames): head [B, T_v, head_width(...)], targets the
    true controls [B, T_v, 3] (f0 Hz, loudness dBFS, onset). A head with a level column adds "level": the squared
    error of the scaled level over the true onsets."""
    import torch
    import torch.nn.functional as F

    notes = torch.from_numpy(pitch_class(targets[..., 0].detach().cpu().numpy())).to(head.device)
    hit = targets[..., 2] > 0  # the column holds the hit's level
    loudness = _scaled_loudness(targets[..., 1].clamp(min=LOUDNESS_FLOOR_DB, max=0.0))
    losses = {
        "pitch": F.cross_entropy(head[..., :N_PITCH_CLASSES].reshape(-1, N_PITCH_CLASSES), notes.reshape(-1)),
        "loudness": F.mse_loss(head[..., N_PITCH_CLASSES], loudness.to(head.dtype)),
        "onset": F.binary_cross_entropy_with_logits(head[..., N_PITCH_CLASSES + 1], hit.to(head.dtype),
                                                    pos_weight=head.new_tensor(ONSET_POS_WEIGHT)),
    }
    if head.shape[-1] > N_PITCH_CLASSES + 2:
        level = torch.log10(targets[..., 2].clamp(min=1e-12)) * 20
        scaled = ((level - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB).clamp(0.0, 1.0).to(head.dtype)
        error = (head[..., N_PITCH_CLASSES + 2] - scaled) ** 2
        losses["level"] = (error * hit).sum() / hit.sum().clamp(min=1)
    return losses


def from_head(head: np.ndarray) -> np.ndarray:
    """What the head asks to play, float32 [..., 3] controls: the most likely note (its frequency; 0 for none), the
    loudness in dBFS, an onset where its probability exceeds one half, at the level the head predicts (a head
    without a level column: 1)."""
    head = np.asarray(head, dtype=np.float32)
    note = head[..., :N_PITCH_CLASSES].argmax(-1)
    loudness = LOUDNESS_FLOOR_DB + np.clip(head[..., N_PITCH_CLASSES], 0.0, 1.0) * -LOUDNESS_FLOOR_DB
    level = 1.0
    if head.shape[-1] > N_PITCH_CLASSES + 2:
        level = 10.0 ** ((LEVEL_FLOOR_DB + np.clip(head[..., N_PITCH_CLASSES + 2], 0.0, 1.0) * -LEVEL_FLOOR_DB) / 20)
    onset = (head[..., N_PITCH_CLASSES + 1] > 0) * level
    return np.stack([class_hz(note), loudness, onset], axis=-1).astype(np.float32)


# -- the score as MIDI ------------------------------------------------------------------------------------------------

DRUM_CHANNEL, KICK = 9, 36  # General MIDI: channel 10, bass drum 1


def _var_len(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def midi_bytes(played: np.ndarray, fps: int) -> bytes:
    """A Standard MIDI File (format 0) of controls [T_v, 3]: each run of frames on one note is a note (velocity from
    its loudness), each onset a kick on the drum channel (velocity from its level, on the same dB
    scale). One tick is a millisecond (60 bpm, 1000 per beat)."""
    played = np.asarray(played, dtype=np.float64)
    notes = pitch_class(played[:, 0]) * (played[:, 1] > SILENT_DB)
    ms = lambda frame: int(round(frame * 1000 / fps))  # noqa: E731
    velocity = lambda db: int(np.clip(round(127 * (db - SILENT_DB) / -SILENT_DB), 1, 127))  # noqa: E731
    events = []  # (time in ms, order, bytes): note-offs before note-ons at the same time
    start = None
    for k in range(len(notes) + 1):
        note = notes[k] if k < len(notes) else 0
        if start is not None and (note != notes[start] or k == len(notes)):
            events.append((ms(k), 0, bytes([0x80, MIDI_LO + notes[start] - 1, 0])))
            start = None
        if note and start is None:
            events.append((ms(k), 1, bytes([0x90, MIDI_LO + note - 1, velocity(played[k, 1])])))
            start = k
    for k in np.flatnonzero(played[:, 2] > 0):
        level_db = 20 * np.log10(played[k, 2])
        events.append((ms(k), 1, bytes([0x90 | DRUM_CHANNEL, KICK, velocity(level_db)])))
        events.append((ms(k + 1), 0, bytes([0x80 | DRUM_CHANNEL, KICK, 0])))
    track, now = bytearray(_var_len(0) + b"\xff\x51\x03" + (1_000_000).to_bytes(3, "big")), 0  # tempo: 1 s a beat
    for time, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track += _var_len(time - now) + message
        now = time
    track += _var_len(0) + b"\xff\x2f\x00"  # end of track
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + \
        (1000).to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def write_midi(path, played: np.ndarray, fps: int) -> None:
    """The score of controls [T_v, 3] as a MIDI file, atomically (see midi_bytes)."""
    from movenet.files import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_bytes(midi_bytes(played, fps))
