"""What the style latent does: for held-out dancers, the same movement with different z against different seeds with
one z, the movement-following metrics beside a model without z, `--like` across styles, and the KL per clip. Prints
JSON; --png writes one dancer played with three latents side by side.

    python benchmarks/bench_style.py STYLE_MODEL HELDOUT_DIR [--reference movenet/assets/demo.pt] [--clips 6]
                                     [--draws 3] [--png docs/images/style.png]

STYLE_MODEL: a model.pt trained with --latent (e.g. movenet/assets/style.pt); HELDOUT_DIR: a prepared set of
synthetic dancers it never saw (`movenet synth heldout --clips 12 --seed 123`, then `movenet prepare`). Timbre is
metrics.timbre (mean MFCCs 1..13 over audible frames); distances are Euclidean between those vectors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from movenet import audio, checkpoint, demo, metrics, plot, style
from movenet.evaluate import load_clips
from movenet.generate import generate_audio

FOLLOWING = ("pitch_accuracy", "hit_f1", "loudness_following")


def mean_pairwise(vectors) -> float:
    return float(np.mean([np.linalg.norm(a - b) for a, b in itertools.combinations(vectors, 2)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("--reference", type=Path, default=demo.SHIPPED, help="the model without z to compare with")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--draws", type=int, default=3, help="prior draws (and seeds) per dancer")
    parser.add_argument("--png", type=Path, help="one dancer with three latents side by side")
    args = parser.parse_args()
    started = time.perf_counter()
    loaded, reference = checkpoint.load(args.model), checkpoint.load(args.reference)
    style.check_latent_model(loaded.model)
    sr = loaded.inputs.sample_rate
    clips, pool = load_clips(loaded, args.heldout_dir, log=lambda line: None)
    clips = [c for c in clips if c.codes is not None and c.sidecar is not None][: args.clips]
    pool = [c for c in pool if c.codes is not None]
    reference_movement = {c.name: c.movement for c in load_clips(reference, args.heldout_dir, log=lambda line: None)[1]}
    truth = {c.name: audio.mu_law_decode(c.codes) for c in pool}
    timbre = {name: metrics.timbre(wav, sr) for name, wav in truth.items()}

    def following(wav, clip) -> dict:
        kp = np.asarray(clip.sidecar["joints"], np.float32)
        scores = metrics.clip_metrics(wav, sr, loaded.inputs.fps, keypoints=kp, sidecar=clip.sidecar,
                                      reference_wav=truth[clip.name])
        return {k: scores[k] for k in FOLLOWING}

    rows, figure = [], None
    for clip in clips:
        ref_label = reference.label_index(clip.sidecar.get("style"), unknown="first")
        without_z = generate_audio(reference, reference_movement[clip.name], ref_label, progress=False)
        centroid = generate_audio(loaded, clip.movement, clip.label, progress=False)
        draws = [generate_audio(loaded, clip.movement, clip.label, progress=False,
                                latent=style.prior_draw(loaded.model, k)) for k in range(args.draws)]
        seeds = [centroid] + [generate_audio(loaded, clip.movement, clip.label, seed=s, progress=False)
                              for s in range(1, args.draws)]
        other = next(c for c in pool if c.sidecar and c.sidecar.get("style") != clip.sidecar.get("style"))
        liked = generate_audio(loaded, clip.movement, clip.label, progress=False,
                               latent=style.posterior(loaded.model, truth[other.name])[0])
        mean, log_var = style.posterior(loaded.model, truth[clip.name])
        t_liked = metrics.timbre(liked, sr)
        row = {
            "clip": clip.name, "kl_nats": style.kl_nats(mean, log_var),
            "timbre_distance_across_draws": mean_pairwise([metrics.timbre(w, sr) for w in draws]),
            "timbre_distance_across_seeds": mean_pairwise([metrics.timbre(w, sr) for w in seeds]),
            "without_z": following(without_z, clip), "centroid": following(centroid, clip),
            "draws": {k: float(np.mean([following(w, clip)[k] for w in draws])) for k in FOLLOWING},
            "like": {"reference": other.name,
                     "distance_to_reference": float(np.linalg.norm(t_liked - timbre[other.name])),
                     "distance_to_own": float(np.linalg.norm(t_liked - timbre[clip.name]))},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if figure is None:
            figure = (clip, draws[:3])

    def mean_of(part, key):
        values = [r[part][key] for r in rows if r[part][key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    summary = {
        "model": str(args.model), "reference": str(args.reference), "clips": len(rows), "draws": args.draws,
        "kl_nats_per_clip": {"mean": round(float(np.mean([r["kl_nats"] for r in rows])), 3),
                             "min": round(float(np.min([r["kl_nats"] for r in rows])), 3)},
        "timbre_distance": {
            "across_draws": round(float(np.mean([r["timbre_distance_across_draws"] for r in rows])), 3),
            "across_seeds": round(float(np.mean([r["timbre_distance_across_seeds"] for r in rows])), 3)},
        "following": {part: {k: mean_of(part, k) for k in FOLLOWING} for part in ("without_z", "centroid", "draws")},
        "like_closer_to_reference": round(float(np.mean([r["like"]["distance_to_reference"]
                                                          < r["like"]["distance_to_own"] for r in rows])), 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    summary["timbre_distance"]["ratio"] = round(summary["timbre_distance"]["across_draws"]
                                                / max(summary["timbre_distance"]["across_seeds"], 1e-9), 2)
    if args.png and figure is not None:
        clip, wavs = figure
        plot.style_figure(args.png, [(f"--variation {k}", w) for k, w in enumerate(wavs)], sr, clip.sidecar,
                          title=f"{clip.name}: one dancer it never saw, three style latents")
        summary["png"] = str(args.png)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
