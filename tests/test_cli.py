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
    for command in ("synth", "prepare", "demo"):
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
