"""Shared pytest fixtures (fixtures only)."""

import itertools
from pathlib import Path

import numpy as np
import pytest

REAL_VIDEOS = Path(__file__).parents[1].parent / "shared/data/real-videos"


@pytest.fixture
def real_videos_dir() -> Path:
    """/work/shared/data/real-videos: OpenCV sample videos; skip if absent."""
    if not REAL_VIDEOS.is_dir():
        pytest.skip(f"real test videos not found at {REAL_VIDEOS}")
    return REAL_VIDEOS


@pytest.fixture(scope="session")
def walker_frames() -> np.ndarray:
    """vtest.avi frames 160-209 at its own 10 fps, RGB uint8 [50, 480, 640, 3]: a man walks in from the right
    edge, facing the camera. MediaPipe's detector finds him from frame 166 on, then tracks him (to frame 317)."""
    from movenet import video

    path = REAL_VIDEOS / "vtest.avi"
    if not path.exists():
        pytest.skip(f"real test video not found at {path}")
    frames = video.iter_frames(path, fps=10, size=(480, 640), gray=False)
    return np.stack(list(itertools.islice(frames, 160, 210)))


@pytest.fixture(scope="session")
def walker_video(walker_frames, tmp_path_factory) -> Path:
    """walker_frames as a 5 s MP4 at 10 fps with a noise soundtrack, so `prepare` accepts it."""
    from movenet import video

    path = tmp_path_factory.mktemp("walker") / "walker.mp4"
    noise = 0.1 * np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32)
    video.write_video(path, walker_frames, fps=10, audio=noise, sample_rate=16000)
    return path


@pytest.fixture
def readonly_dir(tmp_path, monkeypatch) -> Path:
    """A folder on a "read-only filesystem": creating a file anywhere below it fails with EROFS, the answer the
    kernel gives (simulated: tests cannot mount one)."""
    import errno
    import os

    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_open = os.open

    def erofs(path, flags, *args, **kwargs):
        if Path(path).is_relative_to(readonly) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", erofs)
    return readonly


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(folder): from now on, putting a finished file into `folder` fails with ENOSPC, as on a full disk
    (simulated at the rename that puts it in place, where every movenet writer ends)."""
    import errno
    import os

    real_replace = os.replace

    def fill(folder: Path) -> None:
        def full(src, dst, *args, **kwargs):
            if Path(dst).parent == folder:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", full)

    return fill


@pytest.fixture
def cli_run(capsys):
    """cli_run(*args): `movenet ARGS` in this process -> (exit code, stdout, stderr)."""
    from movenet import cli

    def run(*args) -> tuple[int, str, str]:
        try:
            cli.main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
