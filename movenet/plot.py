"""Pictures people would rather look at than read: a clip's contact sheet (frames above, waveform and spectrogram)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Save atomically (temp name, then rename) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    _figure().close(fig)
    return path


def contact_sheet(frames: np.ndarray, wav: np.ndarray, sample_rate: int, fps: int, path: str | Path,
                  title: str = "", n_thumbs: int = 8) -> Path:
    """A row of evenly spaced frames over the clip's waveform and spectrogram, on one time axis.

    Args:
        frames: uint8 [T_v, H, W, C] (C = 1 or 3)
        wav: float32 [n_samples] in [-1, 1]
    """
    plt = _figure()
    n_frames = len(frames)
    picks = np.linspace(0, n_frames - 1, min(n_thumbs, n_frames)).round().astype(int)
    fig = plt.figure(figsize=(12, 6.5))
    grid = fig.add_gridspec(3, len(picks), height_ratios=[1.2, 1, 1.4], hspace=0.35)
    for col, k in enumerate(picks):
        ax = fig.add_subplot(grid[0, col])
        img = frames[k]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{k / fps:.2f} s", fontsize=8)
        ax.axis("off")
    t = np.arange(len(wav)) / sample_rate
    ax_wave = fig.add_subplot(grid[1, :])
    ax_wave.plot(t, wav, lw=0.4, color="tab:blue")
    ax_wave.set_xlim(0, max(t[-1] if len(t) else 0, 1e-3))
    ax_wave.set_ylim(-1, 1)
    ax_wave.set_ylabel("waveform")
    for k in picks:
        ax_wave.axvline(k / fps, color="0.6", lw=0.6, ls=":")
    ax_spec = fig.add_subplot(grid[2, :], sharex=ax_wave)
    if len(wav) >= 512:
        ax_spec.specgram(wav, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
    ax_spec.set_ylabel("Hz")
    ax_spec.set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
