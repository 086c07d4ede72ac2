"""The main job (`make demo`): give held-out synthetic dancers a soundtrack with the model shipped in the
repository, and show how well it follows them.

    synth (held-out seed) -> generate (compiled engine) -> demo_out/<clip>.mp4, .wav, .png

`movenet demo --train` first trains a model from scratch within a time budget, the way the shipped one was made:

    movenet synth data/dancers --clips 96 --seconds 10 --seed 0
    movenet prepare data/dancers data/prepared --features keypoints
    movenet train data/prepared --out runs/demo --config movenet/assets/demo_config.json --max-minutes 35
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from movenet import checkpoint, metrics, plot, pose, synth, video
from movenet.generate import generate_file

ASSETS = Path(__file__).parent / "assets"
SHIPPED = ASSETS / "demo.pt"
DEMO_CONFIG = ASSETS / "demo_config.json"  # the model and training settings of the shipped checkpoint
HELD_OUT_SEED = 1234  # training data uses seed 0: these dancers were never seen


def train_demo_model(out: Path, minutes: float, clips: int = 96, seconds: float = 10.0) -> Path:
    """Synthesize, prepare and train with the shipped model's settings for `minutes`; returns model.pt."""
    from movenet.data import DataConfig, prepare
    from movenet.train import TrainConfig, train

    settings = json.loads(DEMO_CONFIG.read_text())
    data_dir, prepared_dir, run_dir = out / "train_dancers", out / "train_prepared", out / "run"
    print(f"training: synthesizing {clips} dancer clips of {seconds:g} s into {data_dir}")
    synth.write_dataset(data_dir, n_clips=clips, seconds=seconds, seed=0)
    print(f"training: preparing them into {prepared_dir}")
    features = settings["model"].get("features", "frames")  # keypoints of synthetic clips come from their sidecars
    print("   " + prepare(data_dir, prepared_dir, DataConfig(features=features), workers=2).summary())
    train_settings = {**settings["train"], "max_minutes": minutes}
    # A OneCycle schedule must fit the budget: size it from the measured step rate of the shipped run.
    steps_per_minute = settings.get("measured_steps_per_minute_here", 60)
    train_settings["max_steps"] = max(50, int(minutes * steps_per_minute))
    print(f"training for up to {minutes:g} min ({train_settings['max_steps']} steps) into {run_dir}")
    return train(prepared_dir, run_dir, dict(settings["model"]), TrainConfig(**train_settings), force=True)


def run_demo(out: str | Path = "demo_out", n_clips: int = 3, seconds: float = 6.0, model_path: Path | None = None,
             temperature: float = 1.0, seed: int = 0) -> list[Path]:
    """Generate soundtracks for held-out dancers and write MP4, WAV and PNG per clip; returns the MP4s."""
    out = Path(out)
    model_path = Path(model_path or SHIPPED)
    loaded = checkpoint.load(model_path)
    dancers = out / "dancers"
    print(f"model: {model_path} (step {loaded.step}, validation {loaded.metrics.get('val_bits') or 0:.2f} bits/sample)")
    print(f"1/2 synthesizing {n_clips} held-out dancers of {seconds:g} s into {dancers}")
    sources = synth.write_dataset(dancers, n_clips=n_clips, seconds=seconds, seed=HELD_OUT_SEED)
    print("2/2 generating their soundtracks")
    sr = loaded.inputs.sample_rate
    written, lines = [], []
    for k, source in enumerate(sources):
        name = source.stem
        sidecar = pose.read_sidecar(source)
        style = sidecar["style"] if loaded.labels else None
        started = time.perf_counter()
        wav = generate_file(loaded, source, [out / f"{name}.wav", out / f"{name}.mp4"], temperature, seed + k,
                            style=style)
        elapsed = time.perf_counter() - started
        truth = video.read_audio(source, sr)[: len(wav)]
        fps = loaded.inputs.fps
        scores = {"pitch accuracy": metrics.pitch_accuracy(wav, sr, sidecar["pitch_hz"], fps, sidecar["loudness"]),
                  "hit F1": metrics.hit_f1(metrics.percussive_onsets(wav, sr), np.asarray(sidecar["hit_times"])).f1}
        truth_pitch = metrics.pitch_accuracy(truth, sr, sidecar["pitch_hz"], fps, sidecar["loudness"])
        plot.soundtrack_figure(out / f"{name}.png", wav, truth, sr, sidecar, title=f"{name}: movenet's soundtrack "
                               f"for a dancer it never saw", scores=scores)
        written.append(out / f"{name}.mp4")
        lines.append(f"   {name}: {len(wav) / sr:.1f} s of audio in {elapsed:.1f} s; pitch on the hand's note in "
                     f"{scores['pitch accuracy']:.0%} of audible frames (the dancer's own soundtrack: {truth_pitch:.0%})")
    print("\n".join(lines))
    print(f"done: {out}/ holds, per clip, the video with its generated soundtrack (.mp4), the audio (.wav) and a "
          f"picture of it beside the ground truth (.png), e.g.\n   {written[0]}\n   {written[0].with_suffix('.png')}")
    return written
