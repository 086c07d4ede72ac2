"""Shared pytest fixtures (fixtures only)."""

from pathlib import Path

import pytest


@pytest.fixture
def real_videos_dir() -> Path:
    """/work/shared/data/real-videos: OpenCV sample videos; skip if absent."""
    d = Path(__file__).parents[1].parent / "shared/data/real-videos"
    if not d.is_dir():
        pytest.skip(f"real test videos not found at {d}")
    return d
