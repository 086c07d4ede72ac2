"""Pictures people would rather look at than read: loss curves, evaluation plots (a clip's audio against its
movement; metric bars per condition) and the demo's generated-vs-true soundtrack figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movenet.files import atomic_write
from movenet.metrics import HEADLINE  # numpy only at import time; librosa loads when a metric runs


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Save atomically (temp name, then rename) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _figure().close(fig)
    return path


_CONDITION_COLORS = {"model": "tab:blue", "ground truth": "tab:green", "chance": "0.55"}


def _spectrogram_panel(ax, wav: np.ndarray, sample_rate: int, seconds: float) -> None:
    """Log-magnitude spectrogram (dBFS, -100..0) of wav on [0, seconds] x [0, sample_rate / 2]."""
    import librosa

    n_fft, hop = 512, 128
    if len(wav) >= n_fft:
        mag = np.abs(librosa.stft(np.asarray(wav, np.float32), n_fft=n_fft, hop_length=hop))
        db = librosa.amplitude_to_db(mag / (n_fft / 4), ref=1.0, amin=1e-5, top_db=None)  # Hann: full-scale sine ~ 0 dB
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=0,
                  extent=(0, len(wav) / sample_rate, 0, sample_rate / 2))
    ax.set_xlim(0, seconds)
    ax.set_ylim(0, sample_rate / 2)
    ax.set_ylabel("Hz")


def evaluation_figure(path: str | Path, wav: np.ndarray, sample_rate: int, fps: float, speed: np.ndarray,
                      motion_beat_times, gt_wav: np.ndarray | None = None, title: str = "",
                      scores: dict | None = None, gt_scores: dict | None = None) -> Path:
    """One clip: generated audio on top, ground truth below, each over the same movement.

    Each panel is a spectrogram with the movement speed curve (cyan, right axis),
    the motion beats (cyan dashed lines) and the audio beats (white triangles at
    the top; librosa beat tracking, as in metrics.audio_beats) and onsets (white
    ticks at the bottom). Without ground truth the lower panel says so.

    Args:
        wav, gt_wav: float32 [n_samples] at sample_rate.
        speed: float [T_v] from metrics.motion_speed; motion_beat_times: seconds.
        scores, gt_scores: optional clip_metrics dicts; their main scores go in the panel titles.
    """
    from movenet import metrics  # librosa stays out of plot's import path until needed

    plt = _figure()
    speed = np.asarray(speed, np.float64)
    seconds = len(speed) / fps
    beats = np.asarray(motion_beat_times, np.float64)
    fig, axes = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    panels = (("generated", wav, scores), ("ground truth", gt_wav, gt_scores))
    for ax, (label, audio, sc) in zip(axes, panels):
        if audio is None:
            ax.set_facecolor("0.93")
            ax.text(0.5, 0.5, "no ground truth for this clip", transform=ax.transAxes,
                    ha="center", va="center", fontsize=12, color="0.3")
            ax.set_yticks([])
            ax.set_xlim(0, seconds)
            ax.set_title(label, fontsize=10, loc="left")
            continue
        audio = np.asarray(audio, np.float32)
        _spectrogram_panel(ax, audio, sample_rate, seconds)
        top = sample_rate / 2
        a_beats = metrics.audio_beats(audio, sample_rate)
        onsets = metrics.audio_onsets(audio, sample_rate)
        ax.plot(a_beats, np.full(len(a_beats), 0.96 * top), "v", color="white", ms=7, label="audio beats")
        ax.plot(onsets, np.full(len(onsets), 0.02 * top), "|", color="white", ms=10, mew=1.5, label="audio onsets")
        for k, t in enumerate(beats):
            ax.axvline(t, color="cyan", lw=1.0, ls="--", label="motion beats" if k == 0 else None)
        sp = ax.twinx()
        sp.plot(np.arange(len(speed)) / fps, speed, color="cyan", lw=1.5, label="movement speed")
        sp.set_ylim(0, max(float(speed.max()) if speed.size else 0.0, 1e-9) * 1.1)
        sp.set_ylabel("speed", color="cyan")
        text = label
        if sc:
            parts = [f"{name} {sc[key]:.2f}" for name, key in (
                ("pitch", "pitch_accuracy"), ("hit F1", "hit_f1"), ("loudness r", "loudness_following"),
                ("onset F1", "onset_f1"), ("tone/hiss dB", "harmonic_to_noise_db"), ("BAS", "bas"), ("BHS", "bhs"), ("BCS", "bcs"),
                ("BAS true beats", "bas_true_beats")) if sc.get(key) is not None]
            text += "   " + "  ".join(parts)
        ax.set_title(text, fontsize=10, loc="left")
        handles = ax.get_legend_handles_labels()[0] + sp.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    axes[-1].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# The headline metrics first (metrics.HEADLINE), then the rhythm scores kept for published tables.
SUMMARY_METRICS = HEADLINE + ("bas_true_beats", "bas", "bhs", "bcs")
SUMMARY_COLUMNS = 6  # panels per row
_METRIC_LABELS = {
    "bas": "BAS (motion beats)", "bhs": "BHS (motion beats)", "bcs": "BCS (ideal: 1)",
    "bas_music_to_motion": "BAS music->motion", "bas_true_beats": "BAS (true beats)",
    "bhs_true_beats": "BHS (true beats)", "pitch_accuracy": "pitch accuracy", "hit_f1": "hit F1",
    "loudness_following": "loudness following (r)", "audible_agreement": "audible agreement",
    "onset_f1": "onset F1 (true onsets)", "audible_fraction": "audible fraction",
    "audible_fraction_error": "audible fraction error\n(lower is better)", "onset_f1_motion": "onset F1 (motion beats)",
    "harmonic_to_noise_db": "tone over hiss (dB)",
}


def evaluation_summary_figure(rows: list[dict], path: str | Path, metrics: tuple[str, ...] = SUMMARY_METRICS,
                              title: str = "") -> Path:
    """Bar chart per metric: mean over clips for each condition, with standard error.

    Args:
        rows: one dict per (clip, condition): {"condition": "model" | "ground truth" |
            "chance" | ..., **clip_metrics(...)}; aggregated by metrics.summarize
            (None values skipped; a metric no row has is left out).
        metrics: keys to plot, in order, SUMMARY_COLUMNS panels to a row. BCS gets a
            dotted line at its ideal, 1.
    """
    from movenet.metrics import summarize

    plt = _figure()
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    table = {m: per for m, per in summarize(rows, metrics).items() if per}
    n_panels = max(len(table), 1)
    n_cols = min(n_panels, SUMMARY_COLUMNS)
    n_rows = -(-n_panels // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 1, 3.6 * n_rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n_panels:]:
        ax.axis("off")
    if not table:
        axes[0].text(0.5, 0.5, "no metrics to show", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].axis("off")
    for ax, (m, per) in zip(axes, table.items()):
        for k, cond in enumerate(conditions):
            if cond not in per:
                continue
            mean, sem, n = per[cond]["mean"], per[cond]["sem"], per[cond]["n"]
            ax.bar(k, mean, yerr=sem, capsize=3, color=_CONDITION_COLORS.get(cond, f"C{k + 3}"))
            ax.text(k, mean + sem, f"{mean:.2f}\nn={n}", ha="center", va="bottom", fontsize=7)
        if m == "bcs":
            ax.axhline(1.0, color="0.3", ls=":", lw=1)
        ax.set_xticks(range(len(conditions)))
        ax.set_xticklabels(conditions, rotation=30, ha="right", fontsize=8)
        ax.set_title(_METRIC_LABELS.get(m, m), fontsize=10)
        ax.margins(y=0.25)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def loss_curves(metrics_csvs: list[Path], path: str | Path) -> Path:
    """Training (per step, and a running mean) and validation loss in bits per sample from Lightning's CSV logs
    (one per start or resume of a run, in order)."""
    import csv

    plt = _figure()
    train, val = [], []
    for metrics_csv in metrics_csvs:
        with open(metrics_csv, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("step")]
        for row in rows:
            if row.get("train/bits"):
                train.append((int(row["step"]), float(row["train/bits"])))
            if row.get("val/bits"):
                val.append((int(row["step"]), float(row["val/bits"])))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        steps, bits = np.array(train).T
        ax.plot(steps, bits, color="tab:blue", alpha=0.3, lw=0.8, label="train (per logged step)")
        k = max(1, len(bits) // 25)
        smooth = np.convolve(bits, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.8, label=f"train (mean of {k})")
    if val:
        steps, bits = np.array(val).T
        ax.plot(steps, bits, "o-", color="tab:orange", lw=1.8, label="validation")
    ax.axhline(8.0, color="0.6", ls=":", lw=1)
    ax.text(0.01, 8.0, " 8 bits = uniform over 256 codes", va="bottom", fontsize=8, color="0.4",
            transform=ax.get_yaxis_transform())
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (bits per sample)")
    ax.set_title("training curve")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _sidecar_curves(sidecar: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A synthetic dancer's true controls per frame: times (s), pitch (Hz), loudness, and the clip's length (s)."""
    pitch = np.asarray(sidecar["pitch_hz"], dtype=np.float64)
    fps = float(sidecar["fps"])
    return np.arange(len(pitch)) / fps, pitch, np.asarray(sidecar["loudness"], dtype=np.float64), len(pitch) / fps


def soundtrack_figure(path: str | Path, generated: np.ndarray, truth: np.ndarray, sample_rate: int, sidecar: dict,
                      title: str = "", scores: dict | None = None, score: np.ndarray | None = None) -> Path:
    """Generated audio beside the dancer's own soundtrack: each spectrogram (0-4 kHz, where the melody lives) with
    the controls the body played overlaid: the pitch the right hand set, the loudness its motion set, and the
    foot strikes. If the model follows the dance, the generated harmonics sit on the pitch line. `score`: the
    controls [T_v, 3] the model read off the movement (movenet.controls), drawn on the generated panel: its notes
    as dots, its kicks as ticks at the bottom."""
    plt = _figure()
    t, pitch, loud, seconds = _sidecar_curves(sidecar)
    fig, axes = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    panels = (("generated by movenet", generated, scores), ("the dancer's own soundtrack (ground truth)", truth, None))
    for ax, (name, wav, panel_scores) in zip(axes, panels):
        _spectrogram_panel(ax, wav, sample_rate, seconds)
        ax.set_ylim(0, min(4000, sample_rate / 2))
        audible = np.where(loud > 0.1, pitch, np.nan)  # no pitch line where the body is still (silent)
        ax.plot(t, audible, color="cyan", lw=1.2, alpha=0.9, label="pitch played by the right hand")
        twin = ax.twinx()
        twin.plot(t, loud, color="lime", lw=1.0, alpha=0.8, label="loudness from motion")
        twin.set_ylim(0, 4)
        twin.set_yticks([])
        for hit in sidecar.get("hit_times", []):
            ax.axvline(hit, color="white", lw=0.8, ls="--", alpha=0.7)
        if score is not None and panel_scores is not None:
            ts = np.arange(len(score)) / float(sidecar["fps"])
            notes = np.where((score[:, 0] > 0) & (score[:, 1] > -60), score[:, 0], np.nan)
            ax.plot(ts, notes, ".", color="magenta", ms=3, label="note the model read off the body")
            kicks = ts[score[:, 2] > 0]
            ax.plot(kicks, np.full(len(kicks), 60.0), "^", color="magenta", ms=5, label="kick it read")
        label = name
        if panel_scores:
            label += "  (" + ", ".join(f"{k} {v:.2f}" for k, v in panel_scores.items() if v is not None) + ")"
        ax.set_title(label, fontsize=10)
        lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(lines, [h.get_label() for h in lines] + [], loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds (dashed: foot strikes)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def style_figure(path: str | Path, panels: list[tuple[str, np.ndarray]], sample_rate: int, sidecar: dict,
                 title: str = "") -> Path:
    """One dancer's soundtracks side by side, one spectrogram (0-4 kHz) each: panels (name, wav), e.g. the same
    movement played with three style latents. The pitch the right hand set is drawn on each, and the foot strikes:
    if the movement still leads, every panel's notes and hits sit on the same lines while their timbre differs."""
    plt = _figure()
    t, pitch, loud, seconds = _sidecar_curves(sidecar)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, (name, wav) in zip(axes[0], panels):
        _spectrogram_panel(ax, wav, sample_rate, seconds)
        ax.set_ylim(0, min(4000, sample_rate / 2))
        ax.plot(t, np.where(loud > 0.1, pitch, np.nan), color="cyan", lw=1.0, alpha=0.8,
                label="pitch played by the right hand")
        for hit in sidecar.get("hit_times", []):
            ax.axvline(hit, color="white", lw=0.6, ls="--", alpha=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("seconds (dashed: foot strikes)")
    axes[0][0].legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
