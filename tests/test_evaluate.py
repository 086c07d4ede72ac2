"""`movenet evaluate`: the likelihood it reports is the model's, and it runs on prepared sets and on real videos
without audio, where the reference rows say so."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from movenet import audio, checkpoint, synth
from movenet.controls import Excitation, SourceState, align_phase
from movenet.movement import Movement, condition
from movenet.data import DataConfig, prepare
from movenet.evaluate import NO_GROUND_TRUTH, evaluate, teacher_forced_bits
from movenet.train import TrainConfig, train

TINY = dict(layers_per_stack=3, n_stacks=1, residual_channels=8, gate_channels=16, skip_channels=8,
            video_channels=8, frame_width=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    synth.write_dataset(root / "synth", n_clips=4, seconds=2.0, seed=11, progress=False)
    prepare(root / "synth", root / "prepared", DataConfig(valid_fraction=0.5), workers=1, progress=False)
    model_pt = train(root / "prepared", root / "run", dict(TINY),
                     TrainConfig(crop_seconds=0.4, batch_size=2, num_workers=0, max_steps=2, val_crops=2,
                                 control_steps=5),
                     progress=False)
    return checkpoint.load(model_pt), root


def test_teacher_forced_bits_is_the_models_cross_entropy_in_bits(trained):
    loaded, _ = trained
    model = loaded.model
    g = torch.Generator().manual_seed(0)
    n_frames = 7
    codes = torch.randint(0, 256, (n_frames * 640,), generator=g)
    frames = torch.randint(0, 256, (1, n_frames, 64, 64, 1), generator=g, dtype=torch.uint8)
    part = condition(model, Movement(frames[0].numpy()), 1)
    # the source of the predicted controls, put in phase with the audio scored (as training does)
    source = Excitation.of(model.config).render(part.controls[None], SourceState.silent(1))[0]
    source = align_phase(source, audio.mu_law_decode(codes.numpy()), 640, model.config.harmonics)
    with torch.no_grad():
        logits = model.teacher_forced(codes[None], torch.from_numpy(part.rows)[None], torch.from_numpy(source)[None])
        expected = F.cross_entropy(logits[0], codes).item() / math.log(2)
    # chunked (3 frames at a time) equals the whole clip at once
    bits = teacher_forced_bits(model, codes.numpy().astype(np.uint8), part, chunk_frames=3)
    assert bits == pytest.approx(expected, rel=1e-5)


def test_evaluate_a_prepared_set_and_a_folder_of_real_videos(trained, tmp_path, real_videos_dir):
    loaded, root = trained
    report = evaluate(loaded, root / "prepared", n_clips=1, engine="fast", plots_dir=tmp_path / "plots",
                      progress=False)
    likelihood = report["likelihood_bits_per_sample"]
    assert {"right", "wrong", "blank", "conditioning_gain"} <= set(likelihood)
    assert likelihood["conditioning_gain"] == pytest.approx(likelihood["wrong"] - likelihood["right"])
    assert 4 < likelihood["right"] < 9 and len(likelihood["per_clip"]) == 1  # the validation split
    clip = report["generated"]["per_clip"][0]
    assert set(clip) >= {"model", "ground_truth", "chance", "plot"}
    assert clip["ground_truth"]["pitch_accuracy"] > 0.6  # the dancer's own soundtrack follows the dancer
    assert Path(clip["plot"]).stat().st_size > 10_000 and (tmp_path / "plots" / "summary.png").exists()
    json.dumps(report)  # plain types only

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(real_videos_dir / "tree.avi", videos)
    (videos / "broken.mp4").write_bytes(b"not a video")
    lines = []
    report = evaluate(loaded, videos, n_clips=2, engine="fast", progress=False, log=lines.append)
    assert report["likelihood_bits_per_sample"] == NO_GROUND_TRUTH
    assert report["n_clips"] == 1 and len(lines) == 1 and "broken.mp4" in lines[0]
    clip = report["generated"]["per_clip"][0]
    assert clip["ground_truth"] == NO_GROUND_TRUTH and clip["chance"] == NO_GROUND_TRUTH
    assert clip["model"]["motion_source"] == "frames" and clip["model"]["seconds"] > 4


def test_a_prepared_sets_stored_controls_are_what_scoring_would_find(trained):
    """evaluate reads a prepared clip's controls instead of analysing its soundtrack again: they are the same,
    and so is the audio a direct-kick model is scored on."""
    import dataclasses

    from movenet import controls
    from movenet.evaluate import load_clips, scored_codes

    loaded, root = trained
    clips, _ = load_clips(loaded, root / "prepared", log=lambda line: None)
    config = dataclasses.replace(loaded.model.config, controls=True, kick=True, direct_kick=True)
    assert clips and config.plays_kick
    for clip in clips:
        n_frames = len(clip.codes) // config.hop
        found = controls.analyze(audio.mu_law_decode(clip.codes), config.sample_rate, config.sample_rate // config.hop,
                                 n_frames)
        np.testing.assert_array_equal(clip.controls, found)
        scored = scored_codes(config, clip.codes, clip.controls)
        np.testing.assert_array_equal(scored, scored_codes(config, clip.codes))
        assert (found[:, 2] > 0).any() and not np.array_equal(scored, clip.codes)  # a kick was taken out
