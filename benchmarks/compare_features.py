"""Frames vs keypoints vs both as the movement representation: the same training budget for each, then the
conditioning gain on the synthetic validation set, printed as JSON.

    python benchmarks/compare_features.py DATA_DIR --steps 300 [--out runs/features]

DATA_DIR is a set prepared with `--features both` (synthetic clips take their keypoints from the sidecar). Each
run uses the shipped recipe (the defaults of ModelConfig and TrainConfig) with only `features` changed, and
trains for --steps optimizer steps (a budget that a busy machine does not bend, unlike minutes). The gain is the
teacher-forced bits per sample with another clip's movement minus with the clip's own: how much the model listens
to the dance.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from movenet import checkpoint
from movenet.evaluate import likelihood, load_clips
from movenet.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--steps", type=int, default=300, help="training budget per representation")
    parser.add_argument("--out", type=Path, default=Path("runs/features"))
    parser.add_argument("--features", nargs="+", default=["frames", "keypoints", "both"])
    args = parser.parse_args()
    settings = {"model": {}, "train": {}}  # the recipe: ModelConfig's and TrainConfig's defaults
    results = {}
    for features in args.features:
        started = time.perf_counter()
        model_pt = train(args.data_dir, args.out / features, {**settings["model"], "features": features},
                         TrainConfig(**{**settings["train"], "max_steps": args.steps}),
                         force=True, progress=False)
        loaded = checkpoint.load(model_pt)
        clips, pool = load_clips(loaded, args.data_dir)
        bits = likelihood(loaded.model, clips, pool, loaded.inputs.sample_rate)
        results[features] = {"steps": loaded.step, "train_minutes": round((time.perf_counter() - started) / 60, 1),
                             **{k: round(v, 4) for k, v in bits.items() if k != "per_clip"},
                             "validation_clips": len(bits["per_clip"])}
        print(json.dumps({features: results[features]}), flush=True)
    print(json.dumps({"benchmark": "features", "data_dir": str(args.data_dir), "steps_each": args.steps,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
