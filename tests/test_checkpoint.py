"""model.pt: round trip, weights-only loading, clear one-line errors, and the checkpoints shipped for the demo."""

import dataclasses

import pytest
import torch

from movenet import checkpoint
from movenet.data import DataConfig
from movenet.demo import SHIPPED, SHIPPED_STYLE
from movenet.inputs import InputConfig
from movenet.model import ModelConfig, MoveNet
from tests.test_model import tiny_config

DATA = {"sample_rate": 16000, "fps": 25, "frame_size": 16, "gray": True, "features": "frames"}


def test_round_trip_is_weights_only_and_plain(tmp_path):
    torch.manual_seed(0)
    model = MoveNet(tiny_config())
    path = checkpoint.save(tmp_path / "model.pt", model, DataConfig(**DATA, valid_fraction=0.2), ["a", "b", "c"],
                           step=7, metrics={"val_bits": torch.tensor(3.5)})
    payload = torch.load(path, weights_only=True)
    assert payload["metrics"] == {"val_bits": 3.5} and payload["data_config"] == DATA
    loaded = checkpoint.load(path)
    assert loaded.model.config == model.config and loaded.step == 7 and not loaded.model.training
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.inputs == InputConfig(**DATA)
    assert loaded.label_index("b") == 1 and loaded.label_index(None) == 0
    with pytest.raises(checkpoint.CheckpointError, match="unknown style"):
        loaded.label_index("tango")
    assert loaded.label_index("tango", unknown="first") == 0  # a data folder's label the model never saw
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    torch.manual_seed(0)
    good = checkpoint.save(tmp_path / "good.pt", MoveNet(tiny_config()), InputConfig(**DATA), [])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    payload = torch.load(good, weights_only=True)
    torch.save({**payload, "format_version": 99}, tmp_path / "future.pt")
    torch.save({"state_dict": payload["model"], "global_step": 3}, tmp_path / "lightning.ckpt")
    torch.save({**payload, "model_config": {**payload["model_config"], "attention": True}}, tmp_path / "newer.pt")
    cases = {"missing.pt": "no such checkpoint", "text.pt": "not a movenet checkpoint",
             "truncated.pt": "not a movenet checkpoint", "future.pt": "version 99",
             "lightning.ckpt": "not a movenet model.pt", "newer.pt": "damaged checkpoint"}
    for name, reason in cases.items():
        with pytest.raises(checkpoint.CheckpointError, match=reason) as err:
            checkpoint.load(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_the_shipped_demo_checkpoint():
    assert SHIPPED.stat().st_size < 8_000_000  # a few MB, in the repository
    loaded = checkpoint.load(SHIPPED)
    config = loaded.model.config
    assert (config.residual_channels, config.gate_channels, config.n_layers) == (32, 64, 20)
    # keypoints: the body's joints (synthetic sidecars here, MediaPipe Pose on real videos) and three styles
    assert config.features == "keypoints" and config.n_labels == 3 and loaded.labels == sorted(loaded.labels)
    assert (loaded.inputs.sample_rate, loaded.inputs.fps, loaded.inputs.features) == (16000, 25, "keypoints")
    assert loaded.metrics["val_bits"] < 4.0  # trained: far below the 8 bits of a uniform guess
    assert config.controls and config.motion and loaded.metrics["controls"]["note_accuracy"] > 0.8  # reads the score
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_the_shipped_style_checkpoint_is_the_demo_model_with_a_latent_that_tells_the_styles_apart():
    assert SHIPPED_STYLE.stat().st_size < 8_000_000
    styled, base = checkpoint.load(SHIPPED_STYLE), checkpoint.load(SHIPPED)
    assert styled.model.config == dataclasses.replace(base.model.config, latent=4) and styled.labels == base.labels
    assert styled.metrics["style"]["kl_nats_per_clip"]["min"] > 0.1  # every clip's z tells something: no collapse
    centroids = styled.model.style_centroids
    gaps = torch.cdist(centroids, centroids)
    assert gaps.max() > 0.5  # at least one style's clips sit apart from another's, in a prior of unit spread
