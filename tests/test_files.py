"""Every file movenet writes: the user's umask, no temporary file left by a failure, one-line write errors, and
destinations checked before the work (issue 13, items 3 and 5)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from movenet import audio, files, video
from movenet.files import OutputError, WriteError, atomic_write, check_output, check_output_dir


def leftovers(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.name.startswith(files.TEMP_PREFIX) or p.suffix == ".tmp"]


@pytest.fixture
def umask():
    """Set the process umask for the test; restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    wav = tmp_path / "a.wav"
    audio.write_wav(wav, np.zeros(1600, np.float32))
    mp4 = tmp_path / "a.mp4"
    video.write_video(mp4, np.zeros((3, 16, 16, 3), np.uint8), fps=25)
    files.write_json(tmp_path / "a.json", {"x": 1})
    files.save_npy(tmp_path / "a.npy", np.zeros(3))
    for path in (wav, mp4, tmp_path / "a.json", tmp_path / "a.npy"):
        assert mode(path) == expected, (path.name, oct(mode(path)))


def test_overwriting_an_existing_file_gives_the_umask_mode_not_0600(tmp_path, umask):
    umask(0o022)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"old")
    os.chmod(wav, 0o644)
    audio.write_wav(wav, np.zeros(1600, np.float32))
    assert mode(wav) == 0o644


def _cli(*args, umask=0o022, cwd=None):
    return subprocess.run([sys.executable, "-m", "movenet", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, preexec_fn=lambda: os.umask(umask))


def test_cli_outputs_follow_the_umask_also_with_force(tmp_path):
    """`movenet synth` and `movenet generate` (with the shipped model), then generate --force over the outputs."""
    from movenet.demo import SHIPPED

    result = _cli("synth", tmp_path / "synth", "--clips", 1, "--seconds", 1.2, "--quiet")
    assert result.returncode == 0, result.stderr
    clip = next((tmp_path / "synth").rglob("*.mp4"))
    assert mode(clip) == 0o644 and mode(clip.with_suffix(".json")) == 0o644
    outs = [tmp_path / "out.wav", tmp_path / "out.mp4"]
    for attempt in range(2):  # the second time over existing 0644 files, with --force
        result = _cli("generate", SHIPPED, clip, "-o", outs[0], "-o", outs[1], "--quiet", *(["--force"] * attempt))
        assert result.returncode == 0, result.stderr
        assert [mode(p) for p in outs] == [0o644, 0o644]
    assert not leftovers(tmp_path)


def test_a_failing_writer_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("the writer failed")
    assert not target.exists() and not list(tmp_path.iterdir())

    # a real writer failing half-way: the video is encoded, then the audio fails
    def broken(*args):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(video._AudioFeed, "add", broken)
    with pytest.raises(RuntimeError, match="encoder failed"):
        video.write_video(target, np.zeros((4, 16, 16, 3), np.uint8), fps=25, audio=np.zeros(2560, np.float32))
    assert not list(tmp_path.iterdir())


def test_a_full_disk_is_one_line_naming_the_target_and_leaves_nothing(tmp_path, full_disk):
    full_disk(tmp_path)
    for write in (lambda p: audio.write_wav(p, np.zeros(100, np.float32)), lambda p: files.write_json(p, {}),
                  lambda p: files.save_npy(p, np.zeros(3))):
        target = tmp_path / "out.bin"
        with pytest.raises(WriteError) as err:
            write(target)
        assert str(err.value) == f"{target}: cannot write (No space left on device)"
        assert err.value.errno == errno.ENOSPC
        assert not list(tmp_path.iterdir())


def test_a_temporary_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f"{files.TEMP_PREFIX}out.{dead.pid}.abc123.wav"
        busy = tmp_path / f"{files.TEMP_PREFIX}out.{alive.pid}.def456.wav"
        other = tmp_path / f"{files.TEMP_PREFIX}other.{dead.pid}.abc123.wav"
        for path in (stale, busy, other):
            path.write_bytes(b"half")
        audio.write_wav(tmp_path / "out.wav", np.zeros(100, np.float32))
        assert not stale.exists()  # its writer is gone
        assert busy.exists()  # its writer may still be at work
        assert other.exists()  # another target's: not this write's business
    finally:
        alive.kill()
        alive.wait()


def test_check_output(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"model")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    (tmp_path / "old.json").write_text("{}")
    inputs = (tmp_path / "in.pt", tmp_path / "data")
    cases = {tmp_path / "in.pt": "this command's input",  # never, not even with --force
             tmp_path / "data" / "manifest.json": "part of this command's input",
             tmp_path / "data": "is a directory",
             tmp_path / "old.json": "exists (use --force"}
    for path, reason in cases.items():
        with pytest.raises(OutputError, match=reason.replace("(", r"\(")):
            check_output(path, False, inputs, suffixes=(".json",) if path.suffix == ".json" else None)
    for path in (tmp_path / "in.pt", tmp_path / "data"):  # --force does not make an input or a folder writable
        with pytest.raises(OutputError):
            check_output(path, True, inputs)
    assert check_output(tmp_path / "old.json", True, inputs) == tmp_path / "old.json"
    assert check_output(tmp_path / "new" / "deeper" / "r.json", False, inputs)  # made later
    with pytest.raises(OutputError, match=r"must end in \.json"):
        check_output(tmp_path / "r.txt", True, inputs, suffixes=(".json",))
    with pytest.raises(WriteError, match="not a directory"):
        check_output(tmp_path / "in.pt" / "r.json", False)
    with pytest.raises(OutputError, match="not a directory"):
        check_output_dir(tmp_path / "in.pt")
    assert not leftovers(tmp_path)


def test_an_unwritable_destination_is_found_before_the_work(tmp_path, readonly_dir):
    """A read-only filesystem (EROFS when creating a file there), simulated: the same answer the kernel gives."""
    readonly = readonly_dir
    with pytest.raises(WriteError) as err:
        check_output(readonly / "out.wav")
    assert str(err.value) == f"{readonly}: cannot write there (Read-only file system)"
    with pytest.raises(WriteError, match="Read-only file system"):
        check_output_dir(readonly / "plots")  # to be made inside a read-only folder
    with pytest.raises(WriteError, match=f"{readonly / 'out.wav'}: cannot write"):
        audio.write_wav(readonly / "out.wav", np.zeros(10, np.float32))
