"""Tests for movenet.synth: the synthetic dancer must be deterministic, causal,
and its music must actually follow its body (pitch, hits, loudness)."""

import json

import av
import numpy as np
import pytest

from movenet import synth
from movenet.synth import (
    JOINTS, STYLES, controls_from_pose, generate_clip, generate_pose, render_audio, write_dataset,
)

FPS, SR = 25, 16000
HOP = SR // FPS
J = {n: i for i, n in enumerate(JOINTS)}


@pytest.fixture(scope="module")
def clips():
    # 6 s so a freeze (dance 1.5-4 s, then 0.5-1.2 s still) is likely to be present
    return {st: generate_clip(6.0, 7, st) for st in STYLES}


def test_shapes_and_ranges(clips):
    for st, c in clips.items():
        T = 150
        assert c.frames.shape == (T, 128, 128, 3) and c.frames.dtype == np.uint8
        assert c.audio.shape == (T * HOP,) and c.audio.dtype == np.float32
        assert c.joints.shape == (T, len(JOINTS), 2) and c.joints.dtype == np.float32
        peak = np.abs(c.audio).max()
        assert 0.4 < peak < 0.9, (st, peak)
        assert np.isfinite(c.audio).all()


def test_determinism():
    a = generate_clip(2.0, 11, "square_minor")
    b = generate_clip(2.0, 11, "square_minor")
    c = generate_clip(2.0, 12, "square_minor")
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.audio, c.audio) and not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("style", STYLES)
def test_causality(style):
    pose = generate_pose(75, FPS, 128, np.random.default_rng(3))
    j1 = pose["joints"]
    k = 40
    j2 = j1.copy()
    j2[k + 1:] += np.random.default_rng(0).normal(0, 8, j2[k + 1:].shape).astype(np.float32)
    c1, c2 = controls_from_pose(j1, style, FPS), controls_from_pose(j2, style, FPS)
    for name in c1:
        assert np.array_equal(c1[name][: k + 1], c2[name][: k + 1]), name
        assert not np.array_equal(c1[name], c2[name]) or name in ("hit",), name
    a1, a2 = render_audio(c1, style, FPS, SR), render_audio(c2, style, FPS, SR)
    assert np.array_equal(a1[: (k + 1) * HOP], a2[: (k + 1) * HOP])
    assert not np.array_equal(a1, a2)


def _measured_pitch(audio, k, n, lo, hi):
    """FFT peak (Hann, zero-padded, parabolic interpolation) of frames k..k+n-1 in [lo, hi] Hz."""
    x = audio[k * HOP:(k + n) * HOP].astype(np.float64)
    nfft = 1 << 16
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1 / SR)
    band = np.flatnonzero((freqs >= lo) & (freqs <= hi))
    i = band[np.argmax(spec[band])]
    a, b, c = np.log(spec[i - 1:i + 2] + 1e-12)
    return freqs[i] + 0.5 * (a - c) / (a - 2 * b + c) * (freqs[1] - freqs[0])


@pytest.mark.parametrize("style", STYLES)
def test_pitch_follows_right_hand(clips, style):
    c = clips[style]
    ctl = c.controls
    hand = c.joints[:, J["r_shoulder"], 1] - c.joints[:, J["r_hand"], 1]  # up = positive
    assert np.corrcoef(hand, ctl["pitch_midi"])[0, 1] > 0.9
    assert np.ptp(ctl["pitch_midi"]) >= 7  # the dance sweeps a real melodic range
    notes = synth._scale_notes(style)
    lo, hi = 0.8 * 440 * 2 ** ((notes[0] - 69) / 12), 1.2 * 440 * 2 ** ((notes[-1] - 69) / 12)
    midi, loud = ctl["pitch_midi"], ctl["loudness"]
    ok = tested = 0
    for k in range(1, len(midi) - 3):
        # steady segment: same note for the previous frame and the 3 analysed frames, audible
        if np.ptp(midi[k - 1:k + 3]) == 0 and loud[k - 1:k + 3].min() > 0.3:
            f = _measured_pitch(c.audio, k, 3, lo, hi)
            tested += 1
            ok += abs(12 * np.log2(f / ctl["pitch_hz"][k])) < 1.0
    assert tested >= 20
    assert ok / tested > 0.85, (ok, tested)


def test_hits_coincide_with_foot_strikes(clips):
    for st, c in clips.items():
        ctl = c.controls
        hits, beats = ctl["hit_times"], ctl["beat_times"]
        assert len(hits) >= 3
        # a step lands on a beat; the strike is seen within a frame of it (the landing tolerance can catch the
        # foot a fraction of a pixel above the floor, one frame before the beat)
        gap = hits[:, None] - beats[None, :]
        assert (np.abs(gap) < 1 / FPS + 1e-6).any(1).all(), st
        feet = c.joints[:, [J["l_foot"], J["r_foot"]], 1]
        floor = feet.max()
        for t in np.rint(hits * FPS).astype(int):
            # on the floor within the detector's tolerance (1% of a leg, ~0.4 px), coming down from above it
            landed = (np.abs(feet[t] - floor) < 0.5) & (feet[t - 1] < floor - 0.3)
            assert landed.any(), (st, t)
        # the percussive part of the audio lives right after the hits and nowhere else
        quiet = dict(ctl, hit=np.zeros_like(ctl["hit"]))
        diff = c.audio - render_audio(quiet, st, FPS, SR)
        near = np.zeros(len(diff), bool)
        for t in np.rint(hits * FPS).astype(int):
            near[t * HOP:t * HOP + int(0.2 * SR)] = True
        assert np.abs(diff[~near]).max() < 1e-3  # soft knee may couple a tiny bit
        assert np.sqrt(np.mean(diff[near] ** 2)) > 0.02


def test_loudness_follows_motion(clips):
    # a perfectly still figure is silent
    pose = generate_pose(50, FPS, 128, np.random.default_rng(1))["joints"]
    still = np.repeat(pose[:1], 50, axis=0)
    assert np.abs(render_audio(controls_from_pose(still, "sine_major"), "sine_major")).max() < 1e-6
    # in a dance with freezes, frame RMS tracks motion energy
    c = clips["sine_major"]
    speed = np.zeros(len(c.joints))
    speed[1:] = np.linalg.norm(np.diff(c.joints, axis=0), axis=-1).mean(-1)
    ctl = c.controls
    tone = render_audio(dict(ctl, hit=np.zeros_like(ctl["hit"])), "sine_major", FPS, SR)
    rms = np.sqrt((tone.reshape(-1, HOP) ** 2).mean(1))
    assert np.corrcoef(speed, rms)[0, 1] > 0.8
    assert np.corrcoef(speed, ctl["loudness"])[0, 1] > 0.8
    frozen = np.flatnonzero(speed == 0)
    frozen = frozen[frozen > 2]
    assert len(frozen) > 5, "clip fixture should contain a freeze"
    assert rms[frozen[3:]].max() < 0.01 and rms.max() > 0.3


def test_joints_in_frame_and_drawn(clips):
    for c in clips.values():
        assert (c.joints >= 0).all() and (c.joints <= 127).all()
        fg = np.array(c.meta["figure_rgb"])
        bg = np.array(c.meta["background_rgb"])
        for t in (0, 50, 149):
            xy = np.rint(c.joints[t]).astype(int)
            px = c.frames[t, xy[:, 1], xy[:, 0]].astype(int)
            assert (np.abs(px - fg).max(1) <= 40).mean() >= 0.9
        # the figure covers a sensible fraction of the frame; the rest is background
        is_bg = (np.abs(c.frames[0].astype(int) - bg).max(-1) <= 2).mean()
        assert 0.7 < is_bg < 0.98


def test_write_dataset(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    paths = write_dataset(out, n_clips=4, seconds=2.0, seed=5, progress=False)
    assert len(paths) == 4
    for i, p in enumerate(paths):
        st = STYLES[i % len(STYLES)]
        assert p == out / st / f"{st}_{i:04d}.mp4" and p.exists()
        meta = json.loads(p.with_suffix(".json").read_text())
        assert meta["style"] == st and meta["n_frames"] == 50
        assert np.array(meta["joints"]).shape == (50, len(JOINTS), 2)
        assert meta["joint_names"] == list(JOINTS)
        assert len(meta["pitch_hz"]) == len(meta["loudness"]) == 50
        with av.open(str(p)) as f:
            assert len(f.streams.video) == 1 and len(f.streams.audio) == 1
            n_video = sum(1 for _ in f.decode(video=0))
        with av.open(str(p)) as f:
            n_audio = sum(fr.samples for fr in f.decode(audio=0))
            rate = f.streams.audio[0].rate
        assert n_video == 50
        assert abs(n_audio / rate - 2.0) < 0.1
    assert not list(out.rglob("*.tmp"))
    # deterministic: same seed elsewhere -> same sidecar
    again = write_dataset(tmp_path / "ds2", n_clips=1, seconds=2.0, seed=5, progress=False)
    assert again[0].with_suffix(".json").read_text() == paths[0].with_suffix(".json").read_text()
    # resumable: existing clips are skipped entirely
    monkeypatch.setattr(synth, "generate_clip", lambda *a, **k: pytest.fail("regenerated"))
    assert write_dataset(out, n_clips=4, seconds=2.0, seed=5, progress=False) == paths


def test_a_clips_own_timbre_changes_its_sound_not_its_dance_or_notes():
    """--timbres: the same dance in another timbre plays the same notes, as cleanly, at a level under the ceiling,
    with a spectral envelope (mean MFCCs) moved a tenth of the way to another style's or more."""
    from movenet import metrics

    plain = generate_clip(6.0, 7, "square_minor")
    timbres = [synth.draw_timbre(np.random.default_rng(s)) for s in (1, 2)]
    shaped = [generate_clip(6.0, 7, "square_minor", timbre=t) for t in timbres]
    other_style = generate_clip(6.0, 7, "sine_major")
    side = synth.clip_sidecar(plain)
    pitch, loud = np.asarray(side["pitch_hz"]), np.asarray(side["loudness"])
    envelope = {name: metrics.timbre(c.audio, SR) for name, c in
                (("plain", plain), ("a", shaped[0]), ("b", shaped[1]), ("other style", other_style))}
    for clip, timbre in zip(shaped, timbres):
        assert np.array_equal(clip.frames, plain.frames) and np.array_equal(clip.joints, plain.joints)
        assert synth.clip_sidecar(clip)["pitch_hz"] == side["pitch_hz"] and clip.timbre == timbre
        assert 0.3 < np.abs(clip.audio).max() < synth.CEILING
        assert metrics.pitch_accuracy(clip.audio, SR, pitch, FPS, loud) > 0.8
        assert metrics.harmonic_to_noise_db(clip.audio, SR, pitch, FPS, loud) > 50
    scale = np.linalg.norm(envelope["other style"] - envelope["plain"])
    for a, b in (("plain", "a"), ("plain", "b"), ("a", "b")):
        assert np.linalg.norm(envelope[a] - envelope[b]) > 0.1 * scale, (a, b)
    assert generate_clip(6.0, 7, "square_minor", timbre=None).audio.tobytes() == plain.audio.tobytes()


def test_write_dataset_with_timbres_keeps_the_dances_and_records_each_timbre(tmp_path, monkeypatch):
    plain = write_dataset(tmp_path / "plain", n_clips=3, seconds=1.0, seed=5, progress=False)
    shaped = write_dataset(tmp_path / "shaped", n_clips=3, seconds=1.0, seed=5, progress=False, timbres=True)
    seen = []
    for p, s in zip(plain, shaped):
        a, b = json.loads(p.with_suffix(".json").read_text()), json.loads(s.with_suffix(".json").read_text())
        assert a["timbre"] is None and b["timbre"] == synth.clip_timbre(5, len(seen))
        assert a["joints"] == b["joints"] and a["pitch_hz"] == b["pitch_hz"]
        seen.append(tuple(b["timbre"].values()))
    assert len(set(seen)) == 3
    with pytest.raises(FileExistsError, match="--timbres"):  # the other settings' folder is not mixed into
        write_dataset(tmp_path / "plain", n_clips=3, seconds=1.0, seed=5, progress=False, timbres=True)
    monkeypatch.setattr(synth, "generate_clip", lambda *a, **k: pytest.fail("regenerated"))
    assert write_dataset(tmp_path / "shaped", n_clips=3, seconds=1.0, seed=5, progress=False, timbres=True) == shaped
