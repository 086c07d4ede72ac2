"""The `movenet` command end to end, as a user runs it: help, synth, prepare, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import av


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "movenet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_lists_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("synth", "prepare", "train", "generate", "evaluate", "demo"):
        assert command in result.stdout
    assert "--workers" in run("prepare", "--help").stdout


def test_synth_then_prepare(tmp_path):
    synth_dir, prepared = tmp_path / "synth", tmp_path / "prepared"
    result = run("synth", synth_dir, "--clips", 3, "--seconds", 1.5, "--seed", 5, "--quiet")
    assert result.returncode == 0, result.stderr
    mp4s = sorted(synth_dir.rglob("*.mp4"))
    assert len(mp4s) == 3 and len({p.parent.name for p in mp4s}) == 3  # one style folder each
    for mp4 in mp4s:
        assert mp4.with_suffix(".json").exists()
        with av.open(str(mp4)) as container:
            assert container.streams.video and container.streams.audio
    result = run("prepare", synth_dir, prepared, "--workers", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "prepared 3" in result.stdout
    assert len(json.loads((prepared / "manifest.json").read_text())["clips"]) == 3


def test_prepare_with_nothing_usable_fails_in_one_line(tmp_path, real_videos_dir):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.mp4").write_text("not a video")
    (src / "walkers.avi").symlink_to(real_videos_dir / "vtest.avi")
    result = run("prepare", src, tmp_path / "out", "--quiet")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nothing prepared" in result.stderr
    assert f"{src / 'notes.mp4'}: " in result.stdout + result.stderr
    assert "no audio" in result.stdout + result.stderr


def test_prepare_missing_source_is_one_line(tmp_path):
    result = run("prepare", tmp_path / "nope", tmp_path / "out")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "not a directory" in result.stderr


def test_prepare_bad_rates_are_refused(tmp_path):
    (tmp_path / "src").mkdir()
    result = run("prepare", tmp_path / "src", tmp_path / "out", "--fps", 30, "--sample-rate", 16000)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_prepare_keypoints_from_synthetic_sidecars(tmp_path):
    synth_dir, prepared = tmp_path / "synth", tmp_path / "prepared"
    assert run("synth", synth_dir, "--clips", 2, "--seconds", 1.2, "--quiet").returncode == 0
    result = run("prepare", synth_dir, prepared, "--features", "keypoints", "--workers", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["data"]["features"] == "keypoints"
    assert len(list(prepared.rglob("*.keypoints.npy"))) == 2 and not list(prepared.rglob("*.frames.npy"))
    assert {c["keypoints"]["source"] for c in manifest["clips"]} == {"sidecar"}
    assert "--features" in run("prepare", "--help").stdout


def _streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        return {s.type: float(s.duration * s.time_base) if s.duration else float(container.duration / 1e6)
                for s in container.streams}


def test_end_to_end_synth_prepare_train_generate(tmp_path, real_videos_dir):
    """What a user does first: make data, train a few steps, give a video a soundtrack; and the same model on
    real videos that have no audio at all."""
    tiny = ["--layers-per-stack", 3, "--n-stacks", 1, "--residual-channels", 8, "--gate-channels", 16,
            "--skip-channels", 8, "--video-channels", 8, "--frame-width", 8]
    assert run("synth", tmp_path / "synth", "--clips", 3, "--seconds", 2, "--quiet").returncode == 0
    assert run("prepare", tmp_path / "synth", tmp_path / "prepared", "--quiet").returncode == 0
    result = run("train", tmp_path / "prepared", "--out", tmp_path / "run", "--max-steps", 3, "--batch-size", 2,
                 "--crop-seconds", 0.4, "--num-workers", 0, "--control-steps", 20, "--quiet", *tiny)
    assert result.returncode == 0, result.stderr[-2000:]
    model = tmp_path / "run" / "model.pt"
    clip = sorted((tmp_path / "synth").rglob("*.mp4"))[0]
    result = run("generate", model, clip, "-o", tmp_path / "out.mp4", "-o", tmp_path / "out.wav", "--seed", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    streams = _streams(tmp_path / "out.mp4")
    assert set(streams) == {"video", "audio"} and abs(streams["audio"] - 2.0) < 0.1
    with av.open(str(tmp_path / "out.mp4")) as container:  # the video stream is copied, not re-encoded
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 50
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert sum(1 for _ in container.decode(audio=0)) > 0
    # the same seed gives the same audio
    assert run("generate", model, clip, "-o", tmp_path / "again.wav", "--seed", 1).returncode == 0
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "out.wav").read_bytes()
    # real videos without an audio track, from other encoders (cinepak, damaged mpeg4)
    for name in ("tree.avi", "Megamind_bugy.avi"):
        out = tmp_path / f"{name}.mp4"
        result = run("generate", model, real_videos_dir / name, "-o", out)
        assert result.returncode == 0, result.stderr[-2000:]
        streams = _streams(out)
        assert set(streams) == {"video", "audio"} and streams["audio"] > 3.0
    # the demo pipeline with this model: one held-out dancer, its MP4, WAV and picture
    result = run("demo", "--model", model, "--clips", 1, "--seconds", 2, "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = sorted(p.suffix for p in (tmp_path / "demo").glob("*.*"))
    assert outputs == [".mid", ".mp4", ".png", ".wav"] and "pitch on the hand's note" in result.stdout
    # user mistakes: one line each, no traceback
    for args, expected in (((model, tmp_path / "missing.mp4", "-o", tmp_path / "x.mp4"), "missing.mp4"),
                           ((tmp_path / "nope.pt", clip, "-o", tmp_path / "x.mp4"), "nope.pt"),
                           ((model, clip, "-o", tmp_path / "out.wav"), "--force"),
                           ((model, clip, "-o", tmp_path / "x.ogg"), ".wav or .mp4 or .mid"),
                           ((clip, clip, "-o", tmp_path / "x.wav"), "not a movenet checkpoint")):
        result = run("generate", *args)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
