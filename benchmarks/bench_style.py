"""What the style latent does: for held-out dancers, the same movement with different z against different seeds with
one z, the movement-following metrics beside a model without z, `--like` across styles (and, for dancers made with
`synth --timbres`, within a style), and the KL per clip. Prints JSON; --png writes one dancer played with three
latents side by side.

    python benchmarks/bench_style.py STYLE_MODEL HELDOUT_DIR [--reference movenet/assets/demo.pt] [--clips 6]
                                     [--draws 3] [--png docs/images/style.png]

STYLE_MODEL: a model.pt trained with --latent (e.g. movenet/assets/style.pt); HELDOUT_DIR: a prepared set of
synthetic dancers it never saw (`movenet synth heldout --clips 12 --seed 123 --timbres`, then `movenet prepare`).
Timbre is read two ways: metrics.timbre (mean MFCCs 1..13 over audible frames; Euclidean distances) and
metrics.harmonic_profile (each harmonic's share of the tone on the dancer's notes, dB; RMS distances), which a hiss
floor between the harmonics hardly moves.
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


def mfcc_timbre(wav, sr, fps, sidecar) -> np.ndarray:
    return metrics.timbre(wav, sr)


def harmonic_profile(wav, sr, fps, sidecar) -> np.ndarray:
    return metrics.harmonic_profile(wav, sr, np.asarray(sidecar["pitch_hz"]), fps, np.asarray(sidecar["loudness"]))


def euclidean(a, b) -> float:
    return float(np.linalg.norm(a - b))


# Two timbre descriptors: the mean MFCCs read the whole spectrum (a hiss floor between the harmonics included),
# the harmonic profile only the balance of the tone's harmonics on the dancer's notes (movenet.metrics).
DESCRIPTORS = {"mfcc": (mfcc_timbre, euclidean), "harmonics": (harmonic_profile, metrics.profile_distance)}


def mean_pairwise(vectors, distance) -> float:
    return float(np.nanmean([distance(a, b) for a, b in itertools.combinations(vectors, 2)]))


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
    sr, fps = loaded.inputs.sample_rate, loaded.inputs.fps
    clips, pool = load_clips(loaded, args.heldout_dir, log=lambda line: None)
    clips = [c for c in clips if c.codes is not None and c.sidecar is not None][: args.clips]
    pool = [c for c in pool if c.codes is not None and c.sidecar is not None]
    reference_movement = {c.name: c.movement for c in load_clips(reference, args.heldout_dir, log=lambda line: None)[1]}
    truth = {c.name: audio.mu_law_decode(c.codes) for c in pool}
    true_timbre = {c.name: {d: describe(truth[c.name], sr, fps, c.sidecar) for d, (describe, _) in DESCRIPTORS.items()}
                   for c in pool}
    per_clip_timbres = any(c.sidecar.get("timbre") for c in pool)  # `synth --timbres`: within a style too

    def following(wav, clip) -> dict:
        kp = np.asarray(clip.sidecar["joints"], np.float32)
        scores = metrics.clip_metrics(wav, sr, fps, keypoints=kp, sidecar=clip.sidecar,
                                      reference_wav=truth[clip.name])
        return {k: scores[k] for k in FOLLOWING}

    def spread(wavs, clip) -> dict:
        """Mean pairwise timbre distance between renditions of one dancer, per descriptor."""
        return {d: mean_pairwise([describe(w, sr, fps, clip.sidecar) for w in wavs], distance)
                for d, (describe, distance) in DESCRIPTORS.items()}

    def like_scores(clip, eligible) -> dict:
        """`--like` the first other held-out clip `eligible` picks: per descriptor, the result's distance to that
        clip's timbre and to the dancer's own."""
        other = next(c for c in pool if c.name != clip.name and eligible(c))
        liked = generate_audio(loaded, clip.movement, clip.label, progress=False,
                               latent=style.posterior(loaded.model, truth[other.name])[0])
        scores = {"reference": other.name}
        for d, (describe, distance) in DESCRIPTORS.items():
            got = describe(liked, sr, fps, clip.sidecar)
            scores[d] = {"to_reference": distance(got, true_timbre[other.name][d]),
                         "to_own": distance(got, true_timbre[clip.name][d])}
        return scores

    rows, figure = [], None
    for clip in clips:
        ref_label = reference.label_index(clip.sidecar.get("style"), unknown="first")
        without_z = generate_audio(reference, reference_movement[clip.name], ref_label, progress=False)
        centroid = generate_audio(loaded, clip.movement, clip.label, progress=False)
        draws = [generate_audio(loaded, clip.movement, clip.label, progress=False,
                                latent=style.prior_draw(loaded.model, k)) for k in range(args.draws)]
        seeds = [centroid] + [generate_audio(loaded, clip.movement, clip.label, seed=s, progress=False)
                              for s in range(1, args.draws)]
        mean, log_var = style.posterior(loaded.model, truth[clip.name])
        own_style = clip.sidecar.get("style")
        row = {
            "clip": clip.name, "kl_nats": style.kl_nats(mean, log_var),
            "timbre_distance_across_draws": spread(draws, clip),
            "timbre_distance_across_seeds": spread(seeds, clip),
            "without_z": following(without_z, clip), "centroid": following(centroid, clip),
            "draws": {k: float(np.mean([following(w, clip)[k] for w in draws])) for k in FOLLOWING},
            "like": like_scores(clip, lambda c: c.sidecar.get("style") != own_style),
        }
        if per_clip_timbres:
            row["like_same_style"] = like_scores(clip, lambda c: c.sidecar.get("style") == own_style)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if figure is None:
            figure = (clip, draws[:3])

    def mean_of(part, key):
        values = [r[part][key] for r in rows if r[part][key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    def closer(part, descriptor):
        """The fraction of dancers whose `--like` result lies closer to the reference's timbre than to their own."""
        scored = [r[part][descriptor] for r in rows if part in r]
        return round(float(np.mean([s["to_reference"] < s["to_own"] for s in scored])), 3) if scored else None

    timbre_distance = {}
    for d in DESCRIPTORS:
        draws_, seeds_ = (float(np.nanmean([r[f"timbre_distance_across_{k}"][d] for r in rows]))
                          for k in ("draws", "seeds"))
        timbre_distance[d] = {"across_draws": round(draws_, 3), "across_seeds": round(seeds_, 3),
                              "ratio": round(draws_ / max(seeds_, 1e-9), 2)}
    summary = {
        "model": str(args.model), "reference": str(args.reference), "clips": len(rows), "draws": args.draws,
        "kl_nats_per_clip": {"mean": round(float(np.mean([r["kl_nats"] for r in rows])), 3),
                             "min": round(float(np.min([r["kl_nats"] for r in rows])), 3)},
        "timbre_distance": timbre_distance,
        "following": {part: {k: mean_of(part, k) for k in FOLLOWING} for part in ("without_z", "centroid", "draws")},
        "like_closer_to_reference": {d: closer("like", d) for d in DESCRIPTORS},
        "like_same_style_closer_to_reference": {d: closer("like_same_style", d) for d in DESCRIPTORS},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.png and figure is not None:
        clip, wavs = figure
        plot.style_figure(args.png, [(f"--variation {k}", w) for k, w in enumerate(wavs)], sr, clip.sidecar,
                          title=f"{clip.name}: one dancer it never saw, three style latents")
        summary["png"] = str(args.png)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
