"""The main job (`make demo`): give held-out synthetic dancers a soundtrack with the model shipped in the
repository, and show how well it follows them.

    synth (held-out seed) -> generate (compiled engine) -> demo_out/<clip>.mp4, .wav, .png

The first dancer is also played with three draws of a style latent (demo_out/styles/): by the shipped style model
(movenet/assets/style.pt), or by the model itself when it has a latent (`--train --latent 4`, or `--model` one).

`movenet demo --train` first trains a model from scratch within a time budget, the way the shipped one was made
(the model and training settings are the defaults of ModelConfig and TrainConfig):

    movenet synth data/dancers --clips 96 --seconds 10 --seed 0
    movenet prepare data/dancers data/prepared --features keypoints
    movenet train data/prepared --out runs/demo --max-minutes 60 --max-steps 10000000
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from movenet import checkpoint, metrics, plot, pose, synth, video
from movenet.generate import generate_audio, write_outputs
from movenet.movement import condition, read_movement
from movenet.sampling import DEFAULT_SPREAD

ASSETS = Path(__file__).parent / "assets"
SHIPPED = ASSETS / "demo.pt"
SHIPPED_STYLE = ASSETS / "style.pt"  # the shipped model fine-tuned with a style latent (README, The style latent)
STYLE_VARIATIONS = (0, 1, 2)
HELD_OUT_SEED = 1234  # training data uses seed 0: these dancers were never seen


def train_demo_model(out: Path, minutes: float, clips: int = 96, seconds: float = 10.0, latent: int = 0) -> Path:
    """Synthesize, prepare and train with the shipped model's recipe (the defaults; with `latent`, a style latent of
    that many dimensions, on dancers whose clips each have a timbre of their own for it to carry) for `minutes`;
    returns model.pt."""
    from movenet.data import DataConfig, prepare
    from movenet.train import TrainConfig, train

    data_dir, prepared_dir, run_dir = out / "train_dancers", out / "train_prepared", out / "run"
    print(f"training: synthesizing {clips} dancer clips of {seconds:g} s into {data_dir}")
    synth.write_dataset(data_dir, n_clips=clips, seconds=seconds, seed=0, timbres=bool(latent))
    print(f"training: preparing them into {prepared_dir}")
    # keypoints of synthetic clips come from their sidecars
    print("   " + prepare(data_dir, prepared_dir, DataConfig(features="keypoints"), workers=2).summary())
    # The OneCycle schedule follows the time budget (trainer.MoveNetModule.progress): no step count to guess.
    print(f"training for {minutes:g} min into {run_dir}")
    return train(prepared_dir, run_dir, {"latent": latent} if latent else {},
                 TrainConfig(max_minutes=minutes, max_steps=10**7), force=True)


def run_demo(out: str | Path = "demo_out", n_clips: int = 3, seconds: float = 6.0, model_path: Path | None = None,
             temperature: float = 1.0, seed: int = 0, spread: float = DEFAULT_SPREAD) -> list[Path]:
    """Generate soundtracks for held-out dancers and write MP4, WAV, MIDI (the score the model read off the body)
    and PNG per clip; returns the MP4s."""
    out = Path(out)
    model_path = Path(model_path or SHIPPED)
    loaded = checkpoint.load(model_path)
    dancers = out / "dancers"
    print(f"model: {model_path} (step {loaded.step}, validation {loaded.metrics.get('val_bits') or 0:.2f} bits/sample)")
    print(f"1/2 synthesizing {n_clips} held-out dancers of {seconds:g} s into {dancers}")
    sources = synth.write_dataset(dancers, n_clips=n_clips, seconds=seconds, seed=HELD_OUT_SEED)
    print("2/2 generating their soundtracks")
    sr, fps = loaded.inputs.sample_rate, loaded.inputs.fps
    written, lines = [], []
    for k, source in enumerate(sources):
        name = source.stem
        sidecar = pose.read_sidecar(source)
        label = loaded.label_index(sidecar["style"] if loaded.labels else None)
        started = time.perf_counter()
        movement = read_movement(source, loaded.inputs)
        wav = generate_audio(loaded, movement, label, temperature, seed + k, spread=spread)
        elapsed = time.perf_counter() - started
        score = condition(loaded.model, movement, label).controls
        outputs = [out / f"{name}.wav", out / f"{name}.mp4"] + ([out / f"{name}.mid"] if score is not None else [])
        write_outputs(loaded, source, wav, outputs, score)
        truth = video.read_audio(source, sr)[: len(wav)]
        joints = np.asarray(sidecar["joints"], np.float32)
        got = metrics.clip_metrics(wav, sr, fps, keypoints=joints, sidecar=sidecar, reference_wav=truth)
        own = metrics.clip_metrics(truth, sr, fps, keypoints=joints, sidecar=sidecar)
        scores = {"pitch accuracy": got["pitch_accuracy"], "hit F1": got["hit_f1"],
                  "loudness following": got["loudness_following"]}
        clarity = f"{got['harmonic_to_noise_db']:.0f} dB" if got["harmonic_to_noise_db"] is not None else "-"
        plot.soundtrack_figure(out / f"{name}.png", wav, truth, sr, sidecar, title=f"{name}: movenet's soundtrack "
                               f"for a dancer it never saw", scores=scores, score=score)
        written.append(out / f"{name}.mp4")
        lines.append(f"   {name}: {len(wav) / sr:.1f} s of audio in {elapsed:.1f} s; pitch on the hand's note in "
                     f"{got['pitch_accuracy']:.0%} of audible frames (its own soundtrack: "
                     f"{own['pitch_accuracy']:.0%}), "
                     f"hit F1 {got['hit_f1']:.2f} ({own['hit_f1']:.2f}), loudness following "
                     f"{got['loudness_following']:.2f}, tone over hiss {clarity}")
    print("\n".join(lines))
    style_model = model_path if loaded.model.config.latent else SHIPPED_STYLE if model_path == SHIPPED else None
    if style_model is not None and sources:
        print("\n".join(play_styles(style_model, sources[0], out / "styles", seconds, temperature, seed, spread)))
    print(f"done: {out}/ holds, per clip, the video with its generated soundtrack (.mp4), the audio (.wav), the score "
          f"(.mid) and a picture of it beside the ground truth (.png), e.g.\n   {written[0]}\n   "
          f"{written[0].with_suffix('.png')}")
    return written


def play_styles(model_path: Path, source: Path, out: Path, seconds: float, temperature: float = 1.0,
                seed: int = 0, spread: float = DEFAULT_SPREAD) -> list[str]:
    """One dancer played by a style model with draws STYLE_VARIATIONS of its latent (`--variation N`): a WAV each and
    a PNG of them side by side in `out`; returns the lines to print."""
    from movenet import style

    loaded = checkpoint.load(model_path)
    sidecar = pose.read_sidecar(source)
    label = loaded.label_index(sidecar["style"] if loaded.labels else None, unknown="first")
    movement = read_movement(source, loaded.inputs)
    sr = loaded.inputs.sample_rate
    panels = []
    for k in STYLE_VARIATIONS:
        wav = generate_audio(loaded, movement, label, temperature, seed, progress=False,
                             latent=style.prior_draw(loaded.model, k), spread=spread)
        write_outputs(loaded, source, wav, [out / f"{source.stem}_variation_{k}.wav"])
        panels.append((f"--variation {k}", wav))
    png = plot.style_figure(out / f"{source.stem}_styles.png", panels, sr, sidecar,
                            title=f"{source.stem}: the same dancer, three draws of the style latent ({seconds:g} s)")
    return [f"   styles: {source.stem} played with {len(panels)} draws of {model_path.name}'s style latent: "
            f"{out}/{source.stem}_variation_*.wav, {png}"]
