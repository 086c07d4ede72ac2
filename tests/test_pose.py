"""2D keypoints: the MediaPipe -> 15-joint mapping, sidecar joints, causal smoothing, MediaPipe on real frames."""

import subprocess
import sys

import numpy as np
import pytest

from movenet import pose, synth, video

J = synth.J


def _landmarks() -> np.ndarray:
    """33 distinct in-image landmarks (x, y, visibility)."""
    i = np.arange(33)
    return np.stack([0.1 + i / 50, 0.9 - i / 50, 0.5 + i / 100], -1)


def test_mapping_from_mediapipe_landmarks():
    lm = _landmarks()
    kp = pose.joints_from_landmarks(lm)
    assert kp.shape == (15, 3) and kp.dtype == np.float32
    singles = {"head": 0, "l_shoulder": 11, "r_shoulder": 12, "l_elbow": 13, "r_elbow": 14, "l_hand": 15,
               "r_hand": 16, "l_hip": 23, "r_hip": 24, "l_knee": 25, "r_knee": 26, "l_foot": 27, "r_foot": 28}
    for name, i in singles.items():
        np.testing.assert_allclose(kp[J[name]], lm[i], rtol=0, atol=1e-6, err_msg=name)
    # Midpoints take the mean position and the smaller visibility.
    np.testing.assert_allclose(kp[J["neck"], :2], (lm[11, :2] + lm[12, :2]) / 2, atol=1e-6)
    np.testing.assert_allclose(kp[J["pelvis"], :2], (lm[23, :2] + lm[24, :2]) / 2, atol=1e-6)
    assert kp[J["neck"], 2] == pytest.approx(lm[11, 2]) and kp[J["pelvis"], 2] == pytest.approx(lm[23, 2])


def test_mapping_hides_joints_outside_the_image():
    lm = _landmarks()
    lm[15, 0] = -0.05  # left wrist left of the image
    lm[28, 1] = 1.2  # right ankle below it
    lm[12, 2] = 0.0  # right shoulder unseen: the neck built from it is unseen too
    kp = pose.joints_from_landmarks(lm)
    for name in ("l_hand", "r_foot", "r_shoulder", "neck"):
        assert kp[J[name]].tolist() == [0.0, 0.0, 0.0], name
    assert (kp[J["l_shoulder"], 2] > 0) and (kp[..., :2] >= 0).all() and (kp[..., :2] <= 1).all()
    with pytest.raises(ValueError, match="33, 3"):
        pose.joints_from_landmarks(lm[:17])


def test_sidecar_keypoints_are_the_dancers_joints():
    clip = synth.generate_clip(2.0, seed=5, style="sine_major", fps=25, size=128)
    sidecar = synth.clip_sidecar(clip)
    kp = pose.keypoints_from_sidecar(sidecar, len(clip.joints), fps=25)
    assert kp.shape == (50, 15, 3) and kp.dtype == np.float32
    np.testing.assert_allclose(kp[..., :2], clip.joints / 128, atol=0.006 / 128)  # sidecar rounds to 0.01 px
    assert (kp[..., 2] == 1).all()
    # The figure is drawn there: each joint sits on a bright pixel of its own frame.
    rows, cols = np.rint(clip.joints[..., 1]).astype(int).clip(0, 127), np.rint(clip.joints[..., 0]).astype(int).clip(0, 127)
    on_figure = clip.frames[np.arange(50)[:, None], rows, cols].mean(-1)
    assert np.median(on_figure) > 100 > clip.frames[:, 0, 0].mean()


def test_sidecar_resampling_picks_the_frames_iter_frames_picks(tmp_path):
    clip = synth.generate_clip(1.0, seed=2, style="square_minor", fps=25, size=64)
    path = tmp_path / "c.mp4"
    video.write_video(path, clip.frames, fps=25)
    sidecar = synth.clip_sidecar(clip)
    source = video.read_frames(path, fps=25, size=None)
    for fps in (10, 30, 50):
        frames = video.read_frames(path, fps=fps, size=None)
        kp = pose.keypoints_from_sidecar(sidecar, len(frames), fps=fps)
        # Which source frame each output frame holds, found from the decoded pixels themselves.
        held = [int(np.argmin(np.abs(source.astype(int) - f.astype(int)).sum(axis=(1, 2, 3)))) for f in frames]
        np.testing.assert_allclose(kp[..., :2], clip.joints[held] / 64, atol=0.006 / 64, err_msg=f"fps {fps}")
    # Past the end, the last pose is held.
    long = pose.keypoints_from_sidecar(sidecar, 30, fps=25)
    np.testing.assert_allclose(long[-5:, :, :2], np.broadcast_to(clip.joints[-1] / 64, (5, 15, 2)), atol=1e-4)


def test_read_sidecar_only_takes_the_dancers(tmp_path):
    clip = synth.generate_clip(0.2, seed=1, style="sine_major", size=64)
    (tmp_path / "a.json").write_text(__import__("json").dumps(synth.clip_sidecar(clip)))
    (tmp_path / "b.json").write_text('{"joint_names": ["nose"]}')
    (tmp_path / "c.json").write_text("not json")
    assert pose.read_sidecar(tmp_path / "a.mp4")["size"] == 64
    for name in ("b.mp4", "c.mp4", "d.mp4"):
        assert pose.read_sidecar(tmp_path / name) is None
    with pytest.raises(ValueError, match="joints"):
        pose.keypoints_from_sidecar({"joints": [[1, 2]], "size": 64, "fps": 25}, 3, 25)


def _random_track(rng, n_frames: int = 80) -> np.ndarray:
    xy = 0.5 + np.cumsum(rng.normal(0, 0.01, (n_frames, 15, 2)), 0) + rng.normal(0, 0.005, (n_frames, 15, 2))
    vis = rng.uniform(0.3, 1.0, (n_frames, 15))
    vis[20:30, :4] = 0  # some joints vanish for a while
    vis[50:55] = 0  # the whole person leaves
    kp = np.concatenate([xy, vis[..., None]], -1)
    kp[vis == 0] = 0
    return kp.astype(np.float32)


def test_smoothing_is_causal():
    rng = np.random.default_rng(0)
    kp = _random_track(rng)
    out = pose.smooth(kp, fps=25)
    for t in (1, 25, 45, 70):
        future = kp.copy()
        future[t:, :, :2] = rng.uniform(0, 1, future[t:, :, :2].shape)
        future[t:, ::3, 2] = 0
        changed = pose.smooth(future, fps=25)
        assert np.array_equal(changed[:t], out[:t]), t
        assert not np.array_equal(changed[t], out[t])  # the change does reach the output from t on


def test_smoothing_removes_jitter_and_resets_on_a_gap():
    rng = np.random.default_rng(1)
    kp = np.zeros((100, 15, 3), np.float32)
    kp[..., :2] = 0.5 + rng.normal(0, 0.005, (100, 15, 2))
    kp[..., 2] = 1
    kp[60:62] = 0  # gone for two frames, then back somewhere else
    kp[62:, :, :2] += 0.3
    out = pose.smooth(kp, fps=25)
    assert out[10:60, :, :2].std() < 0.5 * kp[10:60, :, :2].std()
    assert (out[60:62] == 0).all()  # unseen: zeros, visibility 0
    np.testing.assert_array_equal(out[62], kp[62])  # a reset starts from the new position, no lag from the old one
    np.testing.assert_array_equal(out[..., 2], kp[..., 2])


def test_bounded_size_keeps_the_aspect():
    assert pose.bounded_size(1920, 1080) == (360, 640)  # (height, width), as video.iter_frames takes it
    assert pose.bounded_size(768, 576) == (480, 640)
    assert pose.bounded_size(1080, 1920) == (640, 360)
    assert pose.bounded_size(320, 240) is None and pose.bounded_size(None, None) is None


def test_missing_mediapipe_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
    with pytest.raises(pose.MediaPipeMissing) as err:
        pose.PoseTracker()
    message = str(err.value)
    assert "\n" not in message and "pip install 'movenet[pose]'" in message
    with pytest.raises(pose.MediaPipeMissing):
        pose.extract_keypoints(tmp_path / "nothing-needed-yet.mp4")  # checked before the video is opened


def test_missing_mediapipe_in_the_cli_is_one_line(tmp_path, walker_video):
    code = ("import sys; sys.modules['mediapipe'] = None; from movenet.cli import main; "
            f"main(['prepare', {str(walker_video.parent)!r}, {str(tmp_path / 'out')!r}, '--features', 'keypoints', "
            "'--quiet'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert "pip install 'movenet[pose]'" in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# MediaPipe on real frames


@pytest.fixture(scope="module")
def mediapipe():
    return pytest.importorskip("mediapipe")


def test_mediapipe_tracks_the_walker(mediapipe, walker_frames):
    with pose.PoseTracker(fps=10) as tracker:
        kp = np.stack([tracker(f) for f in walker_frames])
    assert kp.shape == (50, 15, 3) and kp.dtype == np.float32
    found = pose.detected(kp)
    assert found.sum() >= 35, found.sum()  # 44 seen here: found in the 7th frame, then tracked
    seen = kp[..., 2] > 0
    assert (kp[..., :2] >= 0).all() and (kp[..., :2] <= 1).all() and (kp[..., 2] <= 1).all()
    assert (kp[~seen][:, :2] == 0).all()
    # An upright man: head above neck above pelvis above feet (y grows downward), and a body of sensible size.
    k = kp[found]
    y = {name: k[:, J[name], 1] for name in ("head", "neck", "pelvis", "l_foot", "r_foot")}
    assert (np.median(y["head"]) < np.median(y["neck"]) < np.median(y["pelvis"])
            < min(np.median(y["l_foot"]), np.median(y["r_foot"])))
    height = np.median(np.maximum(y["l_foot"], y["r_foot"]) - y["head"])
    assert 0.05 < height < 0.5
    # He faces the camera, so his left shoulder is on the image's right.
    assert np.median(k[:, J["l_shoulder"], 0] - k[:, J["r_shoulder"], 0]) > 0


def test_no_pose_on_blank_and_noise_frames(mediapipe):
    rng = np.random.default_rng(0)
    frames = [np.zeros((240, 320, 3), np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
              np.zeros((240, 320, 3), np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)]
    with pose.PoseTracker(fps=25) as tracker:
        kp = np.stack([tracker(f) for f in frames])
    assert kp.shape == (4, 15, 3) and not kp.any()
    with pose.PoseTracker() as tracker, pytest.raises(ValueError, match="RGB"):
        tracker(np.zeros((240, 320), np.uint8))


def test_extract_keypoints_one_row_per_frame(mediapipe, walker_video):
    kp = pose.extract_keypoints(walker_video, fps=25, progress=False)
    assert kp.shape == (len(video.read_frames(walker_video, fps=25)), 15, 3) == (125, 15, 3)
    assert pose.detected(kp).mean() > 0.7
    # At 25 fps each 10 fps source frame is held 2-3 times and its detection reused: output frames 25-27 all hold
    # source frame 10 (t = 1.0 s). Smoothing only nudges the detections.
    raw = pose.extract_keypoints(walker_video, fps=25, smoothing=False, progress=False, max_frames=30)
    assert raw.shape == (30, 15, 3) and pose.detected(raw[25:28]).all()
    assert np.array_equal(raw[25], raw[26]) and np.array_equal(raw[26], raw[27]) and not np.array_equal(raw[27], raw[28])
    seen = raw[..., 2] > 0
    np.testing.assert_array_equal(kp[:30, :, 2], raw[..., 2])
    assert 0 < np.abs(kp[:30, :, :2] - raw[..., :2])[seen].max() < 0.05
