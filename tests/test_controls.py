"""Controls: pitch, loudness and onsets read off a soundtrack, the head's reading of them, and the source they
play (causal, the same whether rendered at once, by chunk or by frame)."""

import numpy as np
import pytest
import torch

from movenet import controls, synth

SR, FPS, HOP = 16000, 25, 640


def tone(hz, seconds=1.0, amp=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("hz", [65.41, 110.0, 261.63, 440.0, 987.77, 1975.5])
def test_yin_finds_the_pitch_of_a_tone(hz):
    wav = tone(hz) + 0.3 * tone(2 * hz) + 0.2 * tone(3 * hz)  # harmonics, as the synth's styles have
    f0, aperiodicity = controls.yin(wav, SR, np.arange(2, 24) * HOP)
    cents = 1200 * np.log2(f0 / hz)
    assert np.abs(cents).max() < 10 and (aperiodicity < 0.1).all()


def test_analyze_reads_notes_loudness_and_onsets_of_a_synthetic_dancer():
    clip = synth.generate_clip(8.0, seed=5, style="square_minor")
    played = controls.analyze(clip.audio, SR, FPS, len(clip.frames))
    assert played.shape == (len(clip.frames), 3) and played.dtype == np.float32
    audible = clip.controls["loudness"] > 0.1
    notes = controls.pitch_class(played[:, 0])
    assert (notes == controls.pitch_class(clip.controls["pitch_hz"]))[audible].mean() > 0.9
    quiet = clip.controls["loudness"] < 1e-3
    still = quiet & np.roll(quiet, 1) & np.roll(quiet, 2)  # a freeze, past the tone's release...
    still &= np.convolve(clip.controls["hit"] > 0, np.ones(6), "full")[: len(quiet)] == 0  # ...and a kick's
    assert still.sum() >= 3 and (played[still, 1] < -50).all()
    hits, onsets = np.flatnonzero(clip.controls["hit"]), np.flatnonzero(played[:, 2])
    assert len(hits) and all(np.abs(onsets - h).min() <= 1 for h in hits)
    assert len(onsets) <= len(hits) + 1
    # each onset's level follows how hard the foot landed: the synth plays a strike of strength s with a kick of
    # peak HIT_GAIN * 0.75 * s (its drum part), and a strike at 0.3 sounds 10 dB under one at 1
    strength = np.array([clip.controls["hit"][h] for h in hits])
    level = np.array([played[onsets[np.abs(onsets - h).argmin()], 2] for h in hits])
    assert strength.std() > 0.1 and np.corrcoef(level, strength)[0, 1] > 0.95
    np.testing.assert_allclose(level / strength, synth.HIT_GAIN * 0.75, rtol=0.1)


def test_a_soundtrack_without_the_kick_its_controls_play_keeps_its_notes_and_loses_its_hits():
    """What a direct_kick model's WaveNet learns, and how its output gets the kick back."""
    from scipy import signal

    from movenet import audio

    clip = synth.generate_clip(8.0, seed=5, style="square_minor")
    codes = audio.mu_law_encode(clip.audio)
    played = controls.analyze(audio.mu_law_decode(codes), SR, FPS, len(clip.frames))
    source = controls.Excitation(2, HOP, SR, kick=True).render(controls.snap_to_notes(played)[None],
                                                                controls.SourceState.silent(1))[0]
    without = controls.without_kick(codes, controls.kick_of(source))
    heard = controls.analyze(audio.mu_law_decode(without), SR, FPS, len(clip.frames))
    pitched = played[:, 0] > 0
    assert pitched.sum() > 50
    assert (controls.pitch_class(heard[:, 0]) == controls.pitch_class(played[:, 0]))[pitched].mean() > 0.95
    band = signal.butter(4, [40, 150], "bandpass", fs=SR, output="sos")  # the kick's (no note goes below 220 Hz)
    energy = lambda c: float(np.sqrt(np.mean(signal.sosfilt(band, audio.mu_law_decode(c)) ** 2)))
    assert energy(without) < 0.35 * energy(codes)  # the click on each strike stays: the kick does not
    again = controls.soundtrack(without, source, direct_kick=True)
    step = np.abs(np.diff(audio.mu_law_decode(np.arange(256)))).max()
    assert np.abs(again - audio.mu_law_decode(codes)).max() <= step
    np.testing.assert_array_equal(controls.soundtrack(without, source, direct_kick=False), audio.mu_law_decode(without))


def test_a_hits_level_is_the_kick_that_fits_it():
    t = np.arange(2 * SR) / SR
    kick = 0.2 * controls.kick_wave(t - 1.0)  # a kick at 0.2 of full scale, one second in
    # found from a start up to a frame off, as an onset detector's frame may be
    np.testing.assert_allclose(controls.hit_levels(kick, SR, np.array([SR - 300, SR, SR + 500]), HOP), 0.2, rtol=1e-3)
    high_note = 0.3 * np.sin(2 * np.pi * 440 * t)
    assert controls.hit_levels(kick + high_note, SR, np.array([SR]), HOP)[0] == pytest.approx(0.2, rel=0.05)
    floor = 10 ** (controls.LEVEL_FLOOR_DB / 20)
    assert controls.hit_levels(high_note, SR, np.array([SR]), HOP)[0] < 0.02  # a note alone is no kick
    np.testing.assert_allclose(controls.hit_levels(np.zeros(2 * SR), SR, np.array([0, SR]), HOP), floor)


def test_noise_and_silence_have_no_note():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.3
    assert (controls.analyze(noise, SR, FPS, 25)[:, 0] == 0).mean() > 0.9
    silent = controls.analyze(np.zeros(SR, np.float32), SR, FPS, 25)
    np.testing.assert_array_equal(silent, np.repeat(controls.SILENT[None], 25, axis=0))


def test_notes_round_trip():
    cls = np.arange(controls.N_PITCH_CLASSES)
    np.testing.assert_array_equal(controls.pitch_class(controls.class_hz(cls)), cls)
    assert controls.pitch_class(445.0) == controls.pitch_class(440.0) == 69 - controls.MIDI_LO + 1
    assert controls.pitch_class(0.0) == 0


def test_the_source_plays_the_note_at_the_loudness():
    ex = controls.Excitation(harmonics=3, hop=HOP, sample_rate=SR)
    row = np.array([440.0, -12.0, 0.0], np.float32)
    src = ex.render(np.repeat(row[None, None], 10, axis=1), controls.SourceState.silent(1))[0]
    assert src.shape == (10 * HOP, controls.n_channels(3))
    fundamental = src[5 * HOP:, 0]  # after the glide in
    crossings = np.flatnonzero(np.diff(np.signbit(fundamental)))
    assert len(crossings) / 2 / (len(fundamental) / SR) == pytest.approx(440, rel=0.01)
    assert np.abs(fundamental).max() == pytest.approx(controls.amplitude(-12.0), rel=0.01)
    assert src[0, -1] < 0.1 < src[-1, -1]  # the loudness glides in from the silence before
    silent = ex.render(np.repeat(controls.SILENT[None, None], 3, axis=1), controls.SourceState.silent(1))
    assert not silent.any()


def test_the_source_is_causal_and_the_same_by_chunk_and_by_frame():
    rng = np.random.default_rng(1)
    n = 12
    played = np.stack([controls.class_hz(rng.integers(0, 20, (2, n))), rng.uniform(-70, 0, (2, n)),
                       rng.random((2, n)) < 0.2], axis=-1).astype(np.float32)
    ex = controls.Excitation(harmonics=2, hop=HOP, sample_rate=SR)
    whole = ex.render(played, controls.SourceState.silent(2))
    state = controls.SourceState.silent(2)
    by_frame = np.concatenate([ex.render(played[:, k: k + 1], state) for k in range(n)], axis=1)
    np.testing.assert_allclose(by_frame, whole, atol=1e-5)
    changed = played.copy()
    changed[:, 7:] = played[:, 7:][:, ::-1]
    later = ex.render(changed, controls.SourceState.silent(2))
    np.testing.assert_array_equal(later[:, : 7 * HOP], whole[:, : 7 * HOP])  # frames 0..6 do not hear frame 7
    assert not np.allclose(later[:, 7 * HOP:], whole[:, 7 * HOP:])


def test_the_kick_starts_on_its_onset_frame_falls_in_pitch_and_carries_across_frames():
    ex = controls.Excitation(harmonics=2, hop=HOP, sample_rate=SR, kick=True)
    n = 20
    played = np.repeat(np.array([[440.0, -20.0, 0.0]], np.float32)[None], n, axis=1)
    played[0, 3, 2], played[0, 12, 2] = 0.25, 1.0  # two hits, the second four times as strong
    src = ex.render(played, controls.SourceState.silent(1))[0]
    assert src.shape[1] == controls.n_channels(2, kick=True) == controls.n_channels(2) + 1
    kick = src[:, -1]
    assert not kick[: 3 * HOP].any()  # nothing before the first onset
    np.testing.assert_allclose(kick[3 * HOP: 12 * HOP], 0.25 * controls.kick_wave(np.arange(9 * HOP) / SR),
                               atol=1e-6)  # at its hit's level
    np.testing.assert_allclose(kick[12 * HOP:], controls.kick_wave(np.arange(8 * HOP) / SR), atol=1e-6)  # restarted
    pulse = src[:, 2 * 2]
    assert pulse[3 * HOP] == pytest.approx(pulse[12 * HOP])  # the pulse marks the time alone: the same for both
    wave = controls.kick_wave(np.arange(int(controls.KICK_SECONDS * SR)) / SR)
    crossings = np.flatnonzero(np.diff(np.signbit(wave)))
    first, late = np.diff(crossings[:3]).mean(), np.diff(crossings[-3:]).mean()  # half periods, in samples
    assert SR / (2 * first) > 120 and SR / (2 * late) == pytest.approx(controls.KICK_END_HZ, rel=0.1)
    assert abs(wave[-HOP:]).max() < 0.01 and controls.kick_wave(controls.KICK_SECONDS) == 0
    state = controls.SourceState.silent(1)
    by_frame = np.concatenate([ex.render(played[:, k: k + 1], state) for k in range(n)], axis=1)[0]
    np.testing.assert_allclose(by_frame, src, atol=1e-5)
    without = controls.Excitation(harmonics=2, hop=HOP, sample_rate=SR).render(played, controls.SourceState.silent(1))
    np.testing.assert_array_equal(without[0], src[:, :-1])  # the kick is one more channel; the others are as before


def test_head_losses_and_reading():
    B, T = 2, 5
    targets = torch.tensor([[[261.63, -20.0, 1.0]] * T] * B)
    head = torch.zeros(B, T, controls.N_PITCH_CLASSES + 2)
    note = int(controls.pitch_class(261.63))
    head[..., note] = 10.0  # confident in the right note
    head[..., controls.N_PITCH_CLASSES] = (-20.0 - controls.LOUDNESS_FLOOR_DB) / -controls.LOUDNESS_FLOOR_DB
    head[..., controls.N_PITCH_CLASSES + 1] = 5.0
    losses = controls.head_losses(head, targets)
    assert losses["pitch"] < 0.01 and losses["loudness"] < 1e-6 and losses["onset"] < 0.05
    read = controls.from_head(head.numpy())
    np.testing.assert_allclose(read[0, 0], [261.63, -20.0, 1.0], rtol=1e-3)
    wrong = controls.head_losses(torch.zeros_like(head), targets)
    assert wrong["pitch"] > 3 and wrong["onset"] > 0.5
    assert "level" not in losses and controls.head_width() == head.shape[-1]


def test_a_kick_models_head_reads_the_hits_level():
    T = 4
    targets = torch.tensor([[[261.63, -20.0, 0.1], [261.63, -20.0, 0.0], [261.63, -20.0, 1.0], [0.0, -80.0, 0.0]]])
    head = torch.zeros(1, T, controls.head_width(kick=True))
    assert head.shape[-1] == controls.head_width() + 1
    head[..., controls.N_PITCH_CLASSES + 1] = torch.tensor([6.0, -6.0, 6.0, -6.0])  # onsets where the hits are
    # levels 0.1 (-20 dB) and 1 (0 dB), on the head's scale; the frames without a hit are not scored
    head[..., controls.N_PITCH_CLASSES + 2] = torch.tensor([0.5, 0.9, 1.0, 0.1])
    losses = controls.head_losses(head, targets)
    assert losses["level"] < 1e-6
    assert losses["onset"] < 0.01  # a hit at level 0.1 is an onset all the same: its target is 1
    np.testing.assert_allclose(controls.from_head(head.numpy())[0, :, 2], [0.1, 0.0, 1.0, 0.0], rtol=1e-5)
    head[0, 0, controls.N_PITCH_CLASSES + 2] = 1.0
    assert controls.head_losses(head, targets)["level"] == pytest.approx(0.5 ** 2 / 2)


def test_the_score_is_a_midi_file_of_the_notes_and_kicks(tmp_path):
    mido = pytest.importorskip("mido")
    c4, d4 = controls.class_hz(controls.pitch_class([261.63, 293.66]))
    played = np.array([[c4, -20, 0]] * 5 + [[d4, -6, 1]] + [[d4, -6, 0]] * 4 + [controls.SILENT] * 3
                      + [[c4, -30, 0.1]] * 1 + [[c4, -30, 0]], np.float32)
    path = tmp_path / "score.mid"
    controls.write_midi(path, played, fps=25)
    midi = mido.MidiFile(path)
    seconds, events = 0.0, []
    for message in midi:  # iterating a MidiFile gives times in seconds
        seconds += message.time
        if message.type in ("note_on", "note_off"):
            events.append((round(seconds, 3), message.type, message.channel, message.note, message.velocity))
    notes = [e for e in events if e[2] == 0]
    assert notes == [(0.0, "note_on", 0, 60, notes[0][4]), (0.2, "note_off", 0, 60, 0),
                     (0.2, "note_on", 0, 62, notes[2][4]), (0.4, "note_off", 0, 62, 0),
                     (0.52, "note_on", 0, 60, notes[4][4]), (0.6, "note_off", 0, 60, 0)]
    assert notes[2][4] > notes[0][4] > notes[4][4] > 0  # louder frames, higher velocity
    kicks = [e for e in events if e[2] == controls.DRUM_CHANNEL]
    # a hit at full scale is the loudest kick; one at a tenth of it (-20 dB) on the notes' dB scale
    assert kicks == [(0.2, "note_on", 9, 36, 127), (0.24, "note_off", 9, 36, 0),
                     (0.52, "note_on", 9, 36, round(127 * 40 / 60)), (0.56, "note_off", 9, 36, 0)]


def test_aligning_the_phase_puts_the_source_in_phase_with_the_audio():
    clip = synth.generate_clip(4.0, seed=3, style="sine_major")
    played = controls.snap_to_notes(controls.analyze(clip.audio, SR, FPS, len(clip.frames)))
    ex = controls.Excitation(harmonics=3, hop=HOP, sample_rate=SR)
    source = ex.render(played[None, 10:40], controls.SourceState.holding(played[9:10]))[0]
    wav = clip.audio[10 * HOP: 40 * HOP]
    aligned = controls.align_phase(source, wav, HOP, 3)
    assert np.corrcoef(aligned[:, 0], wav)[0, 1] > 0.9 > np.corrcoef(source[:, 0], wav)[0, 1] + 0.3
    gains = lambda s: np.hypot(s[:, :3], s[:, 3:6])  # noqa: E731
    np.testing.assert_allclose(gains(aligned), gains(source), atol=1e-5)  # only the phase moves
    np.testing.assert_array_equal(aligned[:, 6:], source[:, 6:])
