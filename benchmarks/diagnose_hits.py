"""Where a model's hits are lost: for held-out synthetic dancers, each true foot strike is found in the generated
audio, or missed by the control head (no onset predicted within the tolerance), or missed in the rendering (the head
said onset, the audio's kick detector found none); each detected kick is matched, or a false kick at one of the
head's false onsets, or a false kick from nowhere. Also the detector's view: its onset envelope
(`metrics.percussive_envelope`: power flux in the kick band) at each strike, relative to the clip's largest, for the
generated audio and for the truth: the detector picks peaks on the envelope scaled to the clip's largest event, so a
few kicks much louder than the rest make the others hard to find, however audible they are. Prints JSON; --png
draws the kick band of one dancer, generated above its truth.

    python benchmarks/diagnose_hits.py MODEL HELDOUT_DIR [--clips 12] [--png hits.png] [--png-clip 8]

HELDOUT_DIR: a prepared set of synthetic dancers (`movenet synth heldout --clips 12 --seed 123`, then `movenet
prepare heldout heldout_prepared --features keypoints --valid-fraction 0.99`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from movenet import audio, checkpoint, metrics
from movenet.evaluate import load_clips
from movenet.generate import generate_audio
from movenet.movement import condition


def strike_levels(env: np.ndarray, strikes: np.ndarray, grid_hz: float) -> np.ndarray:
    """The envelope's peak within the tolerance after each strike, over the clip's largest (0..1)."""
    if not env.any():
        return np.zeros(len(strikes))
    width = int(round(metrics.HIT_TOLERANCE * grid_hz)) + 1
    at = [env[int(t * grid_hz): int(t * grid_hz) + width].max(initial=0.0) for t in strikes]
    return np.asarray(at) / env.max()


def diagnose(loaded, clip, seed: int, temperature: float, precision: str) -> dict:
    sr, fps = loaded.inputs.sample_rate, loaded.inputs.fps
    seconds = clip.movement.n_frames / fps
    strikes = np.asarray(clip.sidecar["hit_times"], np.float64)
    strikes = strikes[strikes < seconds]
    predicted = condition(loaded.model, clip.movement, clip.label, 0, clip.movement.n_frames).controls
    onsets = (np.flatnonzero(predicted[:, 2] > 0) + 0.5) / fps  # mid-frame, as the kick starts on its frame
    wav = generate_audio(loaded, clip.movement, clip.label, temperature, seed, "fast", False, precision)
    found = metrics.percussive_onsets(wav, sr)
    found = found[found < seconds]
    matched = dict(metrics.match_events(strikes, found, metrics.HIT_TOLERANCE))
    heard = dict(metrics.match_events(strikes, onsets, metrics.HIT_TOLERANCE))
    used = set(matched.values())
    near_onset = [bool(np.any(np.abs(onsets - t) <= metrics.HIT_TOLERANCE)) for t in found]
    grid_hz = 1.0 / metrics.ANALYSIS_HOP_SECONDS
    truth = audio.mu_law_decode(clip.codes)[: len(wav)]

    def levels(y):
        return strike_levels(metrics.percussive_envelope(y, sr), strikes, grid_hz).round(3).tolist()

    return {
        "clip": clip.name, "strikes": int(len(strikes)),
        "hit_f1": metrics.hit_f1(found, strikes).f1, "head_f1": metrics.hit_f1(onsets, strikes).f1,
        "found": len(matched),
        "missed_by_head": sum(i not in matched and i not in heard for i in range(len(strikes))),
        "missed_in_rendering": sum(i not in matched and i in heard for i in range(len(strikes))),
        "false_at_head_onsets": sum(j not in used and near_onset[j] for j in range(len(found))),
        "false_from_nowhere": sum(j not in used and not near_onset[j] for j in range(len(found))),
        "strike_level_generated": levels(wav), "strike_level_truth": levels(truth),
        "_wav": wav, "_truth": truth, "_strikes": strikes,
    }


def kick_band_figure(path: Path, row: dict, sr: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    fig, axes = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True, constrained_layout=True)
    for ax, key, title in ((axes[0], "_wav", "generated"), (axes[1], "_truth", "its own soundtrack")):
        f, t, S = signal.spectrogram(row[key], sr, nperseg=2048, noverlap=2048 - 160)
        keep = f <= 500
        ax.pcolormesh(t, f[keep], 10 * np.log10(S[keep] + 1e-12), vmin=-110, vmax=-30, shading="auto")
        for strike in row["_strikes"]:
            ax.axvline(strike, color="white", ls=":", lw=0.6)
        ax.set_ylabel("Hz")
        ax.set_title(f"{row['clip']}: {title} (dotted: the foot strikes)", fontsize=9)
    axes[1].set_xlabel("seconds")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "bf16dot"))
    parser.add_argument("--png", type=Path, help="the kick band of one dancer, generated above its truth")
    parser.add_argument("--png-clip", type=int, default=0, help="which dancer the PNG shows (index)")
    args = parser.parse_args()

    loaded = checkpoint.load(args.model)
    clips, _ = load_clips(loaded, args.heldout_dir, log=lambda *a: None)
    clips = [c for c in clips if c.sidecar is not None and c.codes is not None][: args.clips]
    if not clips:
        raise SystemExit(f"{args.heldout_dir}: no synthetic dancer with its soundtrack to diagnose")
    rows = [diagnose(loaded, clip, k, args.temperature, args.precision) for k, clip in enumerate(clips)]
    if args.png:
        kick_band_figure(args.png, rows[min(args.png_clip, len(rows) - 1)], loaded.inputs.sample_rate)
    counts = ("strikes", "found", "missed_by_head", "missed_in_rendering", "false_at_head_onsets",
              "false_from_nowhere")
    gen = np.concatenate([r["strike_level_generated"] for r in rows])
    tru = np.concatenate([r["strike_level_truth"] for r in rows])
    summary = {
        "model": str(args.model), "clips": len(rows), "temperature": args.temperature,
        "hit_f1": float(np.mean([r["hit_f1"] for r in rows])), "head_f1": float(np.mean([r["head_f1"] for r in rows])),
        **{k: int(sum(r[k] for r in rows)) for k in counts},
        # the detector's peak picking works on the envelope scaled to the clip's largest event: a few kicks
        # louder than the rest push the others toward its threshold
        "strike_level_quartiles": {"generated": np.quantile(gen, [0.25, 0.5, 0.75]).round(3).tolist(),
                                   "truth": np.quantile(tru, [0.25, 0.5, 0.75]).round(3).tolist()},
        "per_clip": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
