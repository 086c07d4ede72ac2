"""What the sampling policy buys: one model's generated audio on held-out dancers at each spread and temperature,
scored by the headline metrics (tone over hiss first). Prints one JSON line per setting, then a markdown table.

    python benchmarks/sampling_policy.py MODEL HELDOUT_DIR [--spreads 1 0.5 0.3 0] [--temperatures 1] [--clips 12]

HELDOUT_DIR is a prepared set (its validation split), e.g. `movenet synth heldout --clips 12 --seed 123` prepared
with `--valid-fraction 0.99`. Clip k is generated with seed k, as `movenet evaluate` does, so a row here and an
evaluate run at the same settings score the same audio; the likelihoods, which no setting changes, are left out.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from movenet import audio, checkpoint, metrics
from movenet.evaluate import load_clips
from movenet.generate import generate_audio

SHOWN = ("harmonic_to_noise_db", "pitch_accuracy", "hit_f1", "loudness_following", "audible_fraction", "onset_f1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("heldout")
    p.add_argument("--spreads", type=float, nargs="+", default=[1.0, 0.5, 0.3, 0.0])
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0])
    p.add_argument("--clips", type=int, default=12)
    args = p.parse_args()
    loaded = checkpoint.load(args.model)
    clips, _ = load_clips(loaded, args.heldout, log=lambda *a: None)
    clips = [c for c in clips if c.sidecar is not None and c.codes is not None][: args.clips]
    sr, fps = loaded.inputs.sample_rate, loaded.inputs.fps
    rows = []
    for temperature in args.temperatures:
        for spread in args.spreads:
            scores = []
            for k, clip in enumerate(clips):
                wav = generate_audio(loaded, clip.movement, clip.label, temperature, k, progress=False, spread=spread)
                scores.append(metrics.clip_metrics(wav, sr, fps, keypoints=np.asarray(clip.sidecar["joints"], np.float32),
                                                   sidecar=clip.sidecar, reference_wav=audio.mu_law_decode(clip.codes)))
            row = {"temperature": temperature, "spread": spread, "clips": len(clips),
                   **{m: round(float(np.mean([s[m] for s in scores if s.get(m) is not None])), 3) for m in SHOWN}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| temperature | spread | {' | '.join(SHOWN)} |")
    print("|" + " --- |" * (2 + len(SHOWN)))
    for row in rows:
        print(f"| {row['temperature']} | {row['spread']} | " + " | ".join(str(row[m]) for m in SHOWN) + " |")


if __name__ == "__main__":
    main()
