"""What each part of the recipe buys: train the recipe with parts taken away, each for the same time budget, and
score the generated audio of held-out dancers. Prints one JSON line per variant, then a markdown table.

    python benchmarks/ablate.py TRAIN_DIR HELDOUT_DIR --minutes 15 [--clips 12] [--out runs/ablate]
                                [--variants plain source aligned head motion kick recipe frames]

TRAIN_DIR and HELDOUT_DIR are sets prepared with keypoints (or `--features both`), e.g. from `movenet synth
--seed 0` and `movenet synth --seed 123`. Every variant starts from the shipped recipe
(the defaults of ModelConfig and TrainConfig) and changes only what its row says; keep the machine otherwise idle, since the
budget is wall time. Evaluation: `movenet evaluate` on HELDOUT_DIR's clips at temperature 1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from movenet import checkpoint
from movenet.evaluate import evaluate
from movenet.train import TrainConfig, train

# name: (what it is, model settings, training settings), each on top of the one before it (the last two:
# on top of the recipe)
VARIANTS = {
    "plain": ("conditional WaveNet on keypoints, no controls", {"controls": False, "motion": False, "kick": False},
              {"control_steps": 0}),
    "source": ("+ control head and the source it plays (harmonics, onset pulse, loudness) at every layer",
               {"controls": True, "motion": False, "kick": False}, {"control_steps": 0, "align_phase": False}),
    "aligned": ("+ the source put in phase with the training audio", {"controls": True, "motion": False,
                                                                      "kick": False}, {"control_steps": 0,
                                                                                       "align_phase": True}),
    "head": ("+ the control head's own first stage (3,000 steps on movement alone)",
             {"controls": True, "motion": False, "kick": False}, {"align_phase": True}),
    "motion": ("+ motion inputs (each frame's change from the one before)", {"kick": False}, {}),
    "kick": ("+ a kick drum's body in the source after each onset, at the hit's level, played by the WaveNet",
             {"direct_kick": False}, {}),
    "recipe": ("+ that kick played as the source renders it, the WaveNet learning the rest: the shipped recipe", {},
               {}),
    "frames": ("the recipe, listening to frames instead of keypoints", {"features": "frames"}, {}),
}
HEADLINE = ("pitch_accuracy", "hit_f1", "loudness_following", "audible_fraction", "onset_f1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per variant (wall time)")
    parser.add_argument("--clips", type=int, default=12, help="held-out clips to generate for")
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"))
    parser.add_argument("--variants", nargs="+", default=["plain", "source", "aligned", "head", "motion", "kick",
                                                          "recipe"],
                        choices=list(VARIANTS))
    args = parser.parse_args()
    settings = {"model": {}, "train": {}}  # the recipe: ModelConfig's and TrainConfig's defaults
    rows = []
    for name in args.variants:
        what, model, training = VARIANTS[name]
        started = time.perf_counter()
        model_pt = train(args.train_dir, args.out / name, {**settings["model"], **model},
                         TrainConfig(**{**settings["train"], **training, "max_minutes": args.minutes,
                                        "max_steps": 10**7}), force=True, progress=False)
        trained = time.perf_counter() - started
        loaded = checkpoint.load(model_pt)
        report = evaluate(loaded, args.heldout_dir, args.clips, progress=False, log=lambda line: None)
        summary = report["generated"]["summary"]
        bits = report["likelihood_bits_per_sample"]
        row = {"variant": name, "what": what, "steps": loaded.step, "train_minutes": round(trained / 60, 1),
               "bits_right": round(bits["right"], 3), "conditioning_gain": round(bits["conditioning_gain"], 3),
               **{m: round(summary[m]["model"]["mean"], 3) for m in HEADLINE if m in summary},
               "truth": {m: round(summary[m]["ground truth"]["mean"], 3) for m in HEADLINE if m in summary}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| variant | steps | bits/sample | gain | {' | '.join(HEADLINE)} |")
    print("|" + " --- |" * (4 + len(HEADLINE)))
    for row in rows:
        print(f"| {row['what']} | {row['steps']} | {row['bits_right']} | {row['conditioning_gain']} | "
              + " | ".join(str(row.get(m, "")) for m in HEADLINE) + " |")
    truth = rows[-1]["truth"] if rows else {}
    print("| the true soundtrack | | | | " + " | ".join(str(truth.get(m, "")) for m in HEADLINE) + " |")


if __name__ == "__main__":
    main()
