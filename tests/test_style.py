"""The style latent: the encoder's shapes and what it ignores, a trained latent model's centroids and KL, the prior's
draws (deterministic by number), `--like` on a WAV and an MP4, and that z changes the sound but not the score."""

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from movenet import audio, checkpoint, style, synth, video
from movenet.data import DataConfig, prepare
from movenet.model import ModelConfig, MoveNet
from movenet.movement import condition, read_movement
from movenet.nn import StyleEncoder
from movenet.train import TrainConfig, train
from tests.test_model import tiny_config

TINY = dict(layers_per_stack=4, n_stacks=1, residual_channels=16, gate_channels=32, skip_channels=16,
            video_channels=16, frame_width=8, latent=3)


@pytest.fixture(scope="module")
def dancers(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("style")
    synth.write_dataset(root / "synth", n_clips=6, seconds=2.0, seed=3, progress=False)
    prepare(root / "synth", root / "prepared", DataConfig(valid_fraction=0.34), workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def latent_model(dancers) -> Path:
    config = TrainConfig(crop_seconds=0.4, batch_size=2, num_workers=0, max_steps=8, val_crops=4, log_every=1,
                         control_steps=10, span_seconds=1.0, reference_seconds=1.0)
    return train(dancers / "prepared", dancers / "run", dict(TINY), config, progress=False)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def test_the_encoder_gives_one_posterior_per_stretch_whatever_its_length_and_level():
    torch.manual_seed(0)
    encoder = StyleEncoder(latent=5, sample_rate=16000).eval()
    t = np.arange(32000) / 16000
    tone = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 880 * t)
    for n in (600, 16000, 32000):
        mean, log_var = encoder(torch.tensor(tone[None, :n], dtype=torch.float32).repeat(2, 1))
        assert mean.shape == log_var.shape == (2, 5) and torch.isfinite(mean).all() and torch.isfinite(log_var).all()
    with torch.no_grad():
        loud = encoder(torch.tensor(tone[None] * 0.9, dtype=torch.float32))[0]
        quiet = encoder(torch.tensor(tone[None] * 0.05, dtype=torch.float32))[0]  # 25 dB down: the level is not style
        square = encoder(torch.tensor(np.sign(tone)[None] * 0.9, dtype=torch.float32))[0]
    assert torch.allclose(loud, quiet, atol=1e-3)
    assert (loud - square).abs().max() > 10 * (loud - quiet).abs().max()  # another timbre, another posterior


def test_an_old_checkpoint_config_has_no_latent_and_no_kick():
    old = {k: v for k, v in tiny_config().to_dict().items() if k not in ("latent", "kick")}
    config = ModelConfig.from_dict(old)
    assert config.latent == 0 and not config.kick
    assert config.source_channels == tiny_config(kick=True).source_channels - 1  # no kick channel in its source
    assert not hasattr(MoveNet(config), "style_encoder")


def test_a_latent_added_to_a_trained_model_starts_as_the_average_of_its_styles():
    """MoveNet.with_latent (fine-tuning a model into one with a style latent): every weight carried over, and
    whatever z is, the conditioning is the mean of what the model's three labels gave."""
    torch.manual_seed(0)
    base = MoveNet(tiny_config(features="keypoints")).eval()
    grown = base.with_latent(2).eval()
    assert grown.config.latent == 2 and grown.label_embed is None and base.config.latent == 0
    kept = grown.state_dict()
    for name, weight in base.state_dict().items():
        if not name.startswith("label_embed."):
            assert torch.equal(weight, kept[name]), name
    keypoints = torch.rand(1, 9, base.config.n_joints, 3)
    with torch.no_grad():
        by_label = [base.encode(keypoints=keypoints, labels=torch.tensor([k])) for k in range(3)]
        for z in (torch.zeros(1, 2), torch.tensor([[2.0, -1.5]])):
            cond, head = grown.encode(keypoints=keypoints, labels=torch.tensor([1]), latent=z)
            torch.testing.assert_close(cond, sum(c for c, _ in by_label) / 3, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(head, by_label[1][1])  # the head still hears the label, not z
    with pytest.raises(ValueError, match="without one"):
        grown.with_latent(2)


def test_training_sets_the_centroids_and_reports_the_kl_of_each_clip(latent_model):
    loaded = checkpoint.load(latent_model)
    assert loaded.model.config.latent == 3 and loaded.model.label_embed is None  # the WaveNet hears z, not the label
    centroids = loaded.model.style_centroids
    assert centroids.shape == (3, 3) and centroids.abs().sum() > 0
    kl = loaded.metrics["style"]["kl_nats_per_clip"]
    assert 0 < kl["min"] <= kl["mean"] <= kl["max"]


def test_z_changes_the_sound_not_the_score(latent_model, dancers):
    loaded = checkpoint.load(latent_model)
    clip = sorted((dancers / "synth").rglob("*.mp4"))[0]
    movement = read_movement(clip, loaded.inputs)
    a = condition(loaded.model, movement, 0, latent=style.prior_draw(loaded.model, 1))
    b = condition(loaded.model, movement, 0, latent=style.prior_draw(loaded.model, 2))
    centroid = condition(loaded.model, movement, 0)
    given = condition(loaded.model, movement, 0, latent=loaded.model.style_centroids[0].numpy())
    assert not np.allclose(a.rows, b.rows)
    np.testing.assert_array_equal(a.controls, b.controls)  # notes, loudness and hits come from the movement alone
    np.testing.assert_allclose(centroid.rows, given.rows, atol=1e-6)  # no z: the style's centroid
    with pytest.raises(Exception, match="3 numbers"):
        condition(loaded.model, movement, 0, latent=np.zeros(4, np.float32))


def test_the_priors_draws_are_deterministic_by_number(latent_model, dancers, tmp_path, cli_run):
    loaded = checkpoint.load(latent_model)
    np.testing.assert_array_equal(style.prior_draw(loaded.model, 7), style.prior_draw(loaded.model, 7))
    assert not np.allclose(style.prior_draw(loaded.model, 7), style.prior_draw(loaded.model, 8))
    clip = sorted((dancers / "synth").rglob("*.mp4"))[0]
    outs = {}
    for name, n in (("a", 7), ("b", 7), ("c", 8)):
        code, _, err = cli_run("generate", latent_model, clip, "-o", tmp_path / f"{name}.wav", "--variation", n,
                               "--quiet")
        assert code == 0, err
        outs[name] = read_wav(tmp_path / f"{name}.wav")
    np.testing.assert_array_equal(outs["a"], outs["b"])
    assert not np.array_equal(outs["a"], outs["c"])
    code, _, err = cli_run("generate", latent_model, clip, "-o", tmp_path / "mixed.wav", "--variation", 7,
                           "--variation", 8, "--mix", 0.25, "--quiet")
    assert code == 0, err
    np.testing.assert_allclose(style.mix(style.prior_draw(loaded.model, 7), style.prior_draw(loaded.model, 8), 0.25),
                               0.75 * style.prior_draw(loaded.model, 7) + 0.25 * style.prior_draw(loaded.model, 8),
                               rtol=1e-6)


def test_like_reads_a_reference_from_a_wav_or_an_mp4(latent_model, dancers, tmp_path, cli_run):
    loaded = checkpoint.load(latent_model)
    clips = sorted((dancers / "synth").rglob("*.mp4"))
    dancer, reference_mp4 = clips[0], clips[-1]
    sr = loaded.inputs.sample_rate
    reference_wav = tmp_path / "reference.wav"
    audio.write_wav(reference_wav, video.read_audio(reference_mp4, sr), sr)
    from_wav, from_mp4 = style.like(loaded.model, reference_wav), style.like(loaded.model, reference_mp4)
    assert from_wav.shape == (3,)
    np.testing.assert_allclose(from_wav, from_mp4, atol=2e-3)  # the MP4's AAC and the WAV's 16 bits agree
    for ref in (reference_wav, reference_mp4):
        out = tmp_path / f"like_{ref.suffix[1:]}.wav"
        code, _, err = cli_run("generate", latent_model, dancer, "-o", out, "--like", ref, "--quiet")
        assert code == 0, err
        assert len(read_wav(out)) == len(read_wav(reference_wav))  # both clips are 2 s


def test_bad_style_requests_get_one_line(latent_model, dancers, tmp_path, cli_run, real_videos_dir):
    from movenet import demo

    dancer = sorted((dancers / "synth").rglob("*.mp4"))[0]
    silent = tmp_path / "silent.wav"
    audio.write_wav(silent, np.zeros(16000, np.float32), 16000)
    out = tmp_path / "out.wav"
    cases = [
        (["--like", real_videos_dir / "vtest.avi"], "vtest.avi: no audio track"),  # a real video without sound
        (["--like", silent], "silent.wav: the audio is silent"),
        (["--like", tmp_path / "missing.wav"], "missing.wav"),
        (["--variation", 1, "--mix", 0.5], "--mix needs two latents"),
        (["--variation", 1, "--variation", 2, "--variation", 3], "3 latents"),
    ]
    for flags, message in cases:
        code, _, err = cli_run("generate", latent_model, dancer, "-o", out, *flags, "--quiet")
        assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (flags, err)
        assert message in err, (flags, err)
        assert not out.exists()
    # the reference is an input: never overwritten, not even with --force
    before = silent.read_bytes()
    code, _, err = cli_run("generate", latent_model, dancer, "-o", silent, "--like", silent, "--force", "--quiet")
    assert code != 0 and "input" in err and silent.read_bytes() == before
    code, _, err = cli_run("generate", demo.SHIPPED, dancer, "-o", out, "--variation", 1, "--quiet")
    assert code != 0 and "no style latent" in err and not out.exists()


def test_evaluate_reports_the_kl_of_each_clip(latent_model, dancers):
    from movenet.evaluate import evaluate, format_report

    report = evaluate(checkpoint.load(latent_model), dancers / "prepared", n_clips=1, progress=False,
                      log=lambda line: None)
    kl = report["style_latent"]
    assert len(kl["per_clip"]) >= 2 and all(r["kl_nats"] > 0 for r in kl["per_clip"])
    assert "style latent: KL to the prior" in format_report(report)


def test_the_demo_plays_a_latent_models_dancer_with_three_draws(latent_model, dancers, tmp_path):
    from movenet import demo

    clip = sorted((dancers / "synth").rglob("*.mp4"))[0]
    lines = demo.play_styles(latent_model, clip, tmp_path / "styles", 2.0)
    wavs = sorted((tmp_path / "styles").glob("*.wav"))
    assert len(wavs) == len(demo.STYLE_VARIATIONS) and (tmp_path / "styles" / f"{clip.stem}_styles.png").exists()
    assert len({w.read_bytes() for w in wavs}) == len(wavs) and "draws" in lines[0]


def test_the_demo_plays_its_first_dancer_with_the_shipped_style_model(tmp_path, cli_run):
    """`make demo` with the shipped model: the first dancer also played by movenet/assets/style.pt with three draws
    of its latent, three WAVs that differ and their picture."""
    code, out, err = cli_run("demo", "--clips", 1, "--seconds", 1, "--out", tmp_path / "demo")
    assert code == 0, err
    wavs = sorted((tmp_path / "demo" / "styles").glob("*_variation_*.wav"))
    assert len(wavs) == 3 and len(list((tmp_path / "demo" / "styles").glob("*_styles.png"))) == 1
    pcm = [read_wav(w) for w in wavs]
    assert all(p.size == 16000 for p in pcm) and not np.array_equal(pcm[0], pcm[1]) and "style.pt" in out
