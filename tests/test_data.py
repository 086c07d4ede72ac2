"""Prepared data sets: labels and splits, prepare (resumable, bad files skipped), and aligned crops."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from movenet import audio, controls, pose, synth
from movenet.data import (FORMAT_VERSION, ClipDataset, DataConfig, DataError, data_config_from_manifest, find_videos,
                          load_manifest, open_clip, prepare)
from movenet.inputs import InputConfig, InputMismatch


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write_dataset(out, n_clips=6, seconds=2.0, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def prepared_dir(synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(synth_dir, out, DataConfig(), workers=2, progress=False)
    assert len(report.prepared) == 6 and not report.skipped, report.summary()
    return out


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_videos_labels_splits_and_ignores_other_files(tmp_path):
    for label in ("salsa", "tango"):
        for i in range(10):
            _touch(tmp_path / label / f"c{i}.mp4")
    _touch(tmp_path / "salsa" / "c0.json")  # sidecars are not videos
    _touch(tmp_path / "train" / "waltz" / "a.mkv")
    _touch(tmp_path / "valid" / "waltz" / "b.webm")
    _touch(tmp_path / "loose.avi")
    jobs = {j.rel: j for j in find_videos(tmp_path, valid_fraction=0.2, seed=3)}
    assert len(jobs) == 23
    assert (jobs["train/waltz/a.mkv"].label, jobs["train/waltz/a.mkv"].split) == ("waltz", "train")
    assert (jobs["valid/waltz/b.webm"].label, jobs["valid/waltz/b.webm"].split) == ("waltz", "valid")
    assert jobs["loose.avi"].label == "none"
    for label in ("salsa", "tango"):
        splits = [j.split for j in jobs.values() if j.label == label]
        assert splits.count("valid") == 2  # 20% of 10, per label
    again = {j.rel: j.split for j in find_videos(tmp_path, valid_fraction=0.2, seed=3)}
    assert again == {rel: j.split for rel, j in jobs.items()}
    other_seed = {j.rel: j.split for j in find_videos(tmp_path, valid_fraction=0.2, seed=4)}
    assert other_seed != again


def test_prepare_stores_aligned_compact_clips(prepared_dir):
    manifest = load_manifest(prepared_dir)
    config = DataConfig()
    assert manifest["format_version"] == FORMAT_VERSION == 4 and manifest["data"]["features"] == "frames"
    assert manifest["data"]["sample_rate"] == 16000 and manifest["data"]["fps"] == 25
    assert set(manifest["labels"]) == set(synth.STYLES)
    assert {c["split"] for c in manifest["clips"]} == {"train", "valid"}
    for record in manifest["clips"]:
        base = prepared_dir / "clips" / record["id"]
        codes = np.load(base.with_name(base.name + ".audio.npy"))
        frames = np.load(base.with_name(base.name + ".frames.npy"))
        assert codes.dtype == np.uint8 and frames.dtype == np.uint8
        assert frames.shape[1:] == (64, 64, 1)
        assert len(codes) == len(frames) * config.hop == record["n_samples"]
        assert abs(record["seconds"] - 2.0) < 0.1
        wav = audio.mu_law_decode(codes)
        assert 0.5 < np.abs(wav).max() <= 1.0  # normalized, not silent
        assert frames.std() > 1  # the figure is there
        assert "keypoints" not in record
        # the soundtrack's controls: the notes the right hand played, and an onset at every foot strike
        played = np.load(base.with_name(base.name + ".controls.npy"))
        assert played.shape == (len(frames), 3) and played.dtype == np.float32
        sidecar = pose.read_sidecar(record["source"])
        audible = np.asarray(sidecar["loudness"])[: len(frames)] > 0.1
        notes = controls.pitch_class(played[:, 0])
        assert (notes == controls.pitch_class(sidecar["pitch_hz"][: len(frames)]))[audible].mean() > 0.9
        assert (notes[~audible & (played[:, 1] < -60)] == 0).all()  # silence has no note
        onsets = np.flatnonzero(played[:, 2])
        for hit in np.rint(np.asarray(sidecar["hit_times"]) * 25):
            assert np.abs(onsets - hit).min() <= 1
    assert not list(prepared_dir.rglob(".movenet-*")) and not list(prepared_dir.rglob("*.keypoints.npy"))


def test_prepare_is_resumable(synth_dir, tmp_path):
    out = tmp_path / "prep"
    first = prepare(synth_dir, out, DataConfig(), workers=1, progress=False)
    assert len(first.prepared) == 6
    again = prepare(synth_dir, out, DataConfig(), workers=1, progress=False)
    assert len(again.prepared) == 0 and len(again.reused) == 6
    # A kill mid-clip leaves arrays (or temp files) but no record: that clip alone is redone.
    victim = sorted(out.rglob("*.json"))[0]
    victim.unlink()
    (out / "clips" / "leftover.audio.npy.tmp").write_bytes(b"half")
    third = prepare(synth_dir, out, DataConfig(), workers=1, progress=False)
    assert len(third.prepared) == 1 and len(third.reused) == 5
    assert len(load_manifest(out)["clips"]) == 6


def test_prepare_refuses_a_set_with_other_settings(synth_dir, prepared_dir):
    with pytest.raises(DataError, match="other settings"):
        prepare(synth_dir, prepared_dir, DataConfig(frame_size=32), progress=False)


def test_the_compatibility_check_names_the_mismatch(prepared_dir):
    data = data_config_from_manifest(load_manifest(prepared_dir))  # frames, 64 px, gray
    InputConfig(features="frames").require(data, "set")
    with pytest.raises(InputMismatch, match="set: fps=25 .the model needs 32"):
        InputConfig(fps=32).require(data, "set")
    with pytest.raises(InputMismatch, match="frame_size=64 .the model needs 32"):
        InputConfig(frame_size=32).require(data, "set")
    with pytest.raises(InputMismatch, match="prepare with --features keypoints"):
        InputConfig(features="keypoints").require(data, "set")


def test_prepare_skips_bad_and_video_only_files(synth_dir, real_videos_dir, tmp_path):
    src = tmp_path / "src"
    good = sorted(synth_dir.rglob("*.mp4"))[0]
    shutil.copy(good, _touch(src / "ok" / "good.mp4"))
    _touch(src / "bad" / "empty.mp4")
    _touch(src / "bad" / "random.mkv", np.random.default_rng(0).bytes(50_000))
    _touch(src / "bad" / "text.mp4", b"this is not a video\n" * 100)
    _touch(src / "bad" / "truncated.mp4", good.read_bytes()[: good.stat().st_size // 3])
    (src / "real").mkdir()
    for name in ("vtest.avi", "Megamind.avi", "Megamind_bugy.avi", "tree.avi"):
        shutil.copy(real_videos_dir / name, src / "real" / name)
    lines = []
    report = prepare(src, tmp_path / "out", DataConfig(), workers=2, progress=False, log=lines.append)
    prepared = {Path(r["source"]).name for r in report.clips}
    skipped = {Path(s["source"]).name: s["reason"] for s in report.skipped}
    # Megamind.avi's audio survives its damaged first packet.
    assert prepared == {"good.mp4", "Megamind.avi"}
    megamind = next(r for r in report.clips if r["source"].endswith("Megamind.avi"))
    assert 10.5 < megamind["seconds"] < 11.5
    for name in ("vtest.avi", "Megamind_bugy.avi", "tree.avi"):
        assert "no audio" in skipped[name]
    assert set(skipped) == {"vtest.avi", "Megamind_bugy.avi", "tree.avi", "empty.mp4", "random.mkv", "text.mp4",
                            "truncated.mp4"}
    for line in lines:
        assert "\n" not in line and ": " in line and "Traceback" not in line
    assert len(lines) == len(report.skipped)
    assert "skipped" in report.summary() and "no audio track" in report.summary()


def test_dataset_crops_are_aligned_slices_of_one_clip(prepared_dir):
    ds = ClipDataset(prepared_dir, split="train", crop_frames=6, context_frames=2, seed=1, harmonics=2)
    hop = ds.hop
    assert len(ds) > 0
    stored = {i: open_clip(prepared_dir, record, mmap=False) for i, record in enumerate(ds.clips)}
    for index in range(20):
        item = ds[index]
        codes, frames = item["codes"].numpy(), item["frames"].numpy()
        assert codes.shape == (1 + 8 * hop,) and item["codes"].dtype == torch.int64
        assert frames.shape == (8, 64, 64, 1) and "keypoints" not in item
        # One contiguous, frame-aligned slice of exactly one clip (possibly starting before it), frames matching
        # audio, codes[0] the sample before the slice.
        matches = []
        for i, arrays in stored.items():
            c, f = arrays["codes"], arrays["frames"]
            for start in range(-2, len(f) - 8 + 1):
                held = np.concatenate([np.repeat(f[:1], max(0, -start), axis=0), f[max(0, start): start + 8]])
                before = np.full(max(0, -start * hop), audio.SILENCE, np.uint8)
                audio_span = np.concatenate([before, c[max(0, start * hop): (start + 8) * hop]])
                previous = c[start * hop - 1] if start > 0 else audio.SILENCE
                if np.array_equal(audio_span, codes[1:]) and codes[0] == previous and np.array_equal(held, frames):
                    matches.append((i, start))
        assert len(matches) >= 1
        i, start = matches[0]
        assert ds.labels[int(item["label"])] == ds.clips[i]["label"]
        # the controls of the same frames (silent before the clip), and the source they play, frame by frame
        played = stored[i]["controls"]
        expected = np.concatenate([np.repeat(controls.SILENT[None], max(0, -start), axis=0),
                                   played[max(0, start): start + 8]])
        np.testing.assert_array_equal(item["controls"].numpy(), expected)
        source = item["excitation"].numpy()
        assert source.shape == (8 * hop, controls.n_channels(2)) and source.dtype == np.float32
        loudness = source[:, -1].reshape(8, hop)[:, -1]  # the loudness channel at each frame's end
        np.testing.assert_allclose(loudness, controls.amplitude(expected[:, 1]), atol=0.02)


def test_dataset_is_deterministic_per_epoch_and_pads_short_clips(prepared_dir):
    ds = ClipDataset(prepared_dir, split="train", crop_frames=4, context_frames=1, seed=7)
    a, b = ds[3], ds[3]
    assert torch.equal(a["codes"], b["codes"])
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i]["codes"], ClipDataset(prepared_dir, crop_frames=4, context_frames=1,
                                                          seed=7)[i]["codes"]) for i in range(5))
    # Crops may begin up to context_frames before a clip: over many draws some do, none earlier.
    starts = [ds.draw(i)[1] for i in range(300)]
    assert min(starts) == -1 and max(starts) == 50 - 5 and sum(s < 0 for s in starts) < 30
    # A crop longer than a 2 s clip: silence and the first frame held on the left, the whole clip on the right.
    long = ClipDataset(prepared_dir, split="train", crop_frames=60, context_frames=4)
    item = long[0]
    codes, frames = item["codes"].numpy(), item["frames"].numpy()
    assert len(codes) == 1 + 64 * long.hop and len(frames) == 64
    assert {c["n_frames"] for c in long.clips} == {50}  # every synthetic clip is 2 s
    assert (codes[: 14 * long.hop + 1] == audio.SILENCE).all()
    assert all(np.array_equal(frames[k], frames[14]) for k in range(14))  # its first frame, held
    assert codes[-1000:].std() > 0  # real audio at the end


def test_a_crop_just_after_a_kick_hears_its_tail(prepared_dir):
    ds = ClipDataset(prepared_dir, split="train", crop_frames=6, harmonics=2, kick=True, align_phase=False)
    for clip_index in range(len(ds.clips)):
        onsets = np.flatnonzero(np.asarray(ds._open(clip_index)["controls"][:, 2]) > 0)
        onsets = onsets[(onsets > 0) & (onsets + 2 + ds.n_frames <= ds.clips[clip_index]["n_frames"])]
        if len(onsets):
            break
    start = int(onsets[0]) + 2  # two frames after the onset: its kick still sounds
    crop = ds.crop(clip_index, start)["excitation"].numpy()
    rows = controls.snap_to_notes(np.asarray(ds._open(clip_index)["controls"][: start + ds.n_frames]))
    from_start = controls.Excitation(2, ds.hop, ds.config.sample_rate, kick=True).render(
        rows[None], controls.SourceState.silent(1))[0][start * ds.hop:]
    assert np.abs(crop[:, -1]).max() > 0.02
    # the same kick, at the same level, as rendered from the start
    np.testing.assert_allclose(crop[:, -1], from_start[:, -1], atol=1e-5)


def test_a_direct_kick_crop_holds_the_soundtrack_without_its_kick(prepared_dir):
    """The WaveNet of a direct_kick model learns the soundtrack minus the kick its source plays (from the sample
    before the crop on); the kick-band energy around the strikes falls away, the rest stays."""
    from scipy import signal

    plain = ClipDataset(prepared_dir, split="train", crop_frames=20, harmonics=2, kick=True, align_phase=False)
    direct = ClipDataset(prepared_dir, split="train", crop_frames=20, harmonics=2, kick=True, align_phase=False,
                         direct_kick=True)
    band = signal.butter(4, [40, 150], "bandpass", fs=plain.config.sample_rate, output="sos")
    checked = 0
    for clip_index in range(len(plain.clips)):
        onsets = np.flatnonzero(np.asarray(plain._open(clip_index)["controls"][:, 2]) > 0)
        onsets = onsets[(onsets > 2) & (onsets + 18 <= plain.clips[clip_index]["n_frames"])]
        if not len(onsets):
            continue
        start = int(onsets[0]) - 2  # a strike inside the crop, and an earlier kick's tail maybe before it
        a, b = plain.crop(clip_index, start), direct.crop(clip_index, start)
        kick = b["excitation"].numpy()[:, -1]
        whole, without = audio.mu_law_decode(a["codes"].numpy()), audio.mu_law_decode(b["codes"].numpy())
        step = np.abs(np.diff(audio.mu_law_decode(np.arange(256)))).max()  # the coarsest mu-law step
        assert np.abs(without[1:] + kick - whole[1:]).max() <= step  # what was taken out is the kick
        assert np.abs(kick).max() > 0.02
        energy = lambda y: float(np.sqrt(np.mean(signal.sosfilt(band, y) ** 2)))
        assert energy(without) < 0.5 * energy(whole)
        checked += 1
    assert checked
    with pytest.raises(ValueError, match="direct_kick"):
        ClipDataset(prepared_dir, split="train", harmonics=2, kick=False, direct_kick=True)


def test_dataset_works_with_dataloader_workers(prepared_dir):
    ds = ClipDataset(prepared_dir, split="train", crop_frames=5, context_frames=1, harmonics=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True)
    batch = next(iter(loader))
    assert batch["codes"].shape == (4, 1 + 6 * ds.hop)
    assert batch["frames"].shape == (4, 6, 64, 64, 1)
    assert batch["controls"].shape == (4, 6, 3) and batch["excitation"].shape == (4, 6 * ds.hop, 8)
    assert batch["label"].shape == (4,)


def test_missing_or_future_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a prepared data set"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99, "data": {}, "clips": []}))
    with pytest.raises(DataError, match="version 99 is not supported"):
        load_manifest(tmp_path)


def test_a_set_from_before_hit_levels_is_read_but_not_added_to(prepared_dir, synth_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(prepared_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 3}))
    assert len(ClipDataset(old, split=None, kick=True, harmonics=2)) > 0  # still trains
    with pytest.raises(DataError, match="older movenet .format 3, this one writes 4.; prepare into another OUT_DIR"):
        prepare(synth_dir, old, DataConfig(), progress=False)  # its clips would be reused with their old onsets


# ----------------------------------------------------------------------------------------------------------------
# Keypoints


@pytest.fixture(scope="session")
def synth3_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth3")
    synth.write_dataset(out, n_clips=3, seconds=2.0, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def keypoint_sets(synth3_dir, tmp_path_factory) -> dict:
    """The 3-clip synthetic set prepared with --features both and keypoints: {features: prepared dir}."""
    sets = {}
    for features in ("both", "keypoints"):
        out = tmp_path_factory.mktemp(features)
        report = prepare(synth3_dir, out, DataConfig(features=features), workers=1, progress=False)
        assert len(report.prepared) == 3 and not report.skipped, report.summary()
        sets[features] = out
    return sets


def _brightness_at_joints(frames: np.ndarray, keypoints: np.ndarray, shift: int) -> float:
    """Mean pixel value of frames[t + shift] under the joints of keypoints[t]."""
    T, H, W = frames.shape[:3]
    t = np.arange(max(0, -shift), min(T, T - shift))
    rows = np.clip((keypoints[t, :, 1] * H).astype(int), 0, H - 1)
    cols = np.clip((keypoints[t, :, 0] * W).astype(int), 0, W - 1)
    return float(frames[t[:, None] + shift, rows, cols, 0].mean())


def test_prepare_both_stores_keypoints_aligned_with_frames(keypoint_sets):
    root = keypoint_sets["both"]
    manifest = load_manifest(root)
    assert manifest["format_version"] == FORMAT_VERSION == 4 and manifest["data"]["features"] == "both"
    for record in manifest["clips"]:
        arrays = open_clip(root, record)
        assert set(arrays) == {"codes", "controls", "frames", "keypoints"}
        codes, frames, kp = arrays["codes"], arrays["frames"], arrays["keypoints"]
        assert kp.dtype == np.float32 and kp.shape == (record["n_frames"], 15, 3) and len(frames) == len(kp)
        assert len(codes) == len(kp) * DataConfig().hop
        assert record["keypoints"] == {"source": "sidecar", "detected": 1.0}
        truth = pose.keypoints_from_sidecar(pose.read_sidecar(record["source"]), record["n_frames"], fps=25)
        np.testing.assert_array_equal(kp, truth)
        # Row k is frame k: the joints land on the figure in their own frame, better than in any neighbour's.
        scores = {shift: _brightness_at_joints(frames, kp, shift) for shift in range(-3, 4)}
        assert max(scores, key=scores.get) == 0, scores
        assert scores[0] > 3 * frames.mean()
    assert not list(root.rglob(".movenet-*"))


def test_prepare_keypoints_only_stores_no_frames(keypoint_sets):
    root, both = keypoint_sets["keypoints"], keypoint_sets["both"]
    manifest = load_manifest(root)
    assert manifest["data"]["features"] == "keypoints"
    assert not list(root.rglob("*.frames.npy")) and len(list(root.rglob("*.keypoints.npy"))) == 3
    by_id = {r["id"]: r for r in load_manifest(both)["clips"]}
    for record in manifest["clips"]:
        arrays = open_clip(root, record, mmap=False)
        assert set(arrays) == {"codes", "controls", "keypoints"} and isinstance(arrays["keypoints"], np.ndarray)
        # The same clip has the same length and keypoints whichever features were asked for.
        assert record["n_frames"] == by_id[record["id"]]["n_frames"]
        np.testing.assert_array_equal(arrays["keypoints"], open_clip(both, by_id[record["id"]])["keypoints"])


def test_prepare_refuses_other_features(synth3_dir, keypoint_sets):
    with pytest.raises(DataError, match="features: both there, frames asked"):
        prepare(synth3_dir, keypoint_sets["both"], DataConfig(features="frames"), progress=False)
    with pytest.raises(ValueError, match="features must be one of"):
        DataConfig(features="skeleton")


def test_open_clip_names_a_missing_or_short_array(keypoint_sets, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(keypoint_sets["both"], root)
    first, second, third = load_manifest(root)["clips"]
    (root / "clips" / f"{first['id']}.keypoints.npy").unlink()
    with pytest.raises(DataError, match="keypoints.npy: missing"):
        open_clip(root, first)
    np.save(root / "clips" / f"{second['id']}.frames.npy", np.zeros((3, 64, 64, 1), np.uint8))
    with pytest.raises(DataError, match="frames.npy: 3 rows, the record says 50"):
        open_clip(root, second)
    assert set(open_clip(root, third)) == {"codes", "controls", "frames", "keypoints"}


def test_prepare_synthetic_keypoints_need_no_mediapipe(synth3_dir, walker_video, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if the pose extra were not installed
    report = prepare(synth3_dir, tmp_path / "synth", DataConfig(features="keypoints"), progress=False)
    assert len(report.prepared) == 3
    src = tmp_path / "mixed"
    shutil.copytree(synth3_dir, src / "dance")
    shutil.copy(walker_video, _touch(src / "street" / "walker.mp4"))
    with pytest.raises(pose.MediaPipeMissing, match="pip install 'movenet.pose.'"):
        prepare(src, tmp_path / "mixed_out", DataConfig(features="keypoints"), progress=False)
    assert not list((tmp_path / "mixed_out").rglob("*.npy"))  # refused before any work


def test_prepare_keypoints_from_mediapipe_on_a_real_video(synth3_dir, walker_video, tmp_path):
    pytest.importorskip("mediapipe")
    src = tmp_path / "src"
    shutil.copy(walker_video, _touch(src / "street" / "walker.mp4"))
    dancer = sorted(synth3_dir.rglob("*.mp4"))[0]
    for suffix in (".mp4", ".json"):
        shutil.copy(dancer.with_suffix(suffix), _touch(src / "dance" / f"d{suffix}"))
    report = prepare(src, tmp_path / "out", DataConfig(features="both"), workers=1, progress=False)
    assert len(report.prepared) == 2 and not report.skipped, report.summary()
    records = {Path(r["source"]).name: r for r in report.clips}
    walker, dance = records["walker.mp4"], records["d.mp4"]
    assert walker["keypoints"]["source"] == "mediapipe" and walker["keypoints"]["detected"] > 0.7
    assert walker["keypoints"]["extractor"]["model_complexity"] == 1
    assert dance["keypoints"] == {"source": "sidecar", "detected": 1.0}
    arrays = open_clip(tmp_path / "out", walker)
    assert walker["n_frames"] == 125 == len(arrays["frames"]) == len(arrays["keypoints"])
    assert pose.detected(arrays["keypoints"]).mean() == pytest.approx(walker["keypoints"]["detected"], abs=1e-3)


_CACHE_WRITERS = r"""
import os, sys
from pathlib import Path
from numba.core import caching

log = Path(sys.argv[3])
original = caching.IndexDataCacheFile.save

def save(self, key, data):  # note which process writes each numba cache file (workers too: they are forked)
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {Path(self._index_path).name}\n")
    return original(self, key, data)

caching.IndexDataCacheFile.save = save
from movenet.data import DataConfig, prepare
report = prepare(sys.argv[1], sys.argv[2], DataConfig(), workers=2, progress=False)
assert len(report.prepared) == 6, report.summary()
print(os.getpid())
"""


def test_prepare_workers_never_write_the_numba_cache(synth_dir, tmp_path):
    # Two processes compiling librosa's guvectorize functions at once can leave cache files that crash every
    # later process (numba issue #10128): the parent must build them before its workers start.
    import subprocess

    log = tmp_path / "writers.txt"
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # empty: all compiled anew
    result = subprocess.run([sys.executable, "-c", _CACHE_WRITERS, str(synth_dir), str(tmp_path / "out"), str(log)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    parent = result.stdout.split()[-1]
    writers = [line.split() for line in log.read_text().splitlines()]
    assert any("peak_pick" in name for _, name in writers), writers  # librosa's cache was built in this run
    assert all(pid == parent for pid, _ in writers), [w for w in writers if w[0] != parent]
