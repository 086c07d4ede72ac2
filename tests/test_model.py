"""The conditional WaveNet: causality end to end, the receptive field it reports, and step == forward."""

import pytest
import torch

from movenet.model import ModelConfig, MoveNet


def tiny_config(**overrides) -> ModelConfig:
    base = dict(residual_channels=8, gate_channels=16, skip_channels=8, layers_per_stack=4, n_stacks=2, hop=16,
                frame_size=16, frame_channels=1, video_channels=8, video_width=8, n_labels=3)
    return ModelConfig(**{**base, **overrides})


@pytest.fixture
def model() -> MoveNet:
    torch.manual_seed(0)
    return MoveNet(tiny_config()).eval()


def inputs(config: ModelConfig, n_samples: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n_frames = n_samples // config.hop + 1
    codes = torch.randint(0, 256, (batch, n_samples), generator=g)
    frames = torch.randint(0, 256, (batch, n_frames, config.frame_size, config.frame_size, 1), generator=g,
                           dtype=torch.uint8)
    labels = torch.randint(0, config.n_labels, (batch,), generator=g)
    return codes, frames, labels


def test_receptive_field_matches_the_published_formula():
    # WaveNet: kernel 2, dilations 1..512 repeated: 1 + 1023 per stack, plus the input convolution's 1.
    assert ModelConfig(layers_per_stack=10, n_stacks=1).receptive_field == 1024 + 1
    assert ModelConfig(layers_per_stack=10, n_stacks=2).receptive_field == 2 * 1023 + 2
    assert ModelConfig(layers_per_stack=10, n_stacks=3, kernel_size=3).receptive_field == 3 * 2046 + 2


def test_audio_causality_and_receptive_field_by_gradient(model):
    """Output t has gradient from codes (t - rf, t] only: none from the future, some from the oldest in range."""
    config = model.config
    T, t = 120, 100
    codes, frames, labels = inputs(config, T)
    embedded = model.embed(codes).detach().requires_grad_(True)
    cond = model.condition(frames, labels)
    # Run forward_cond's body on an embedding we can differentiate.
    x = model.input_conv(embedded.transpose(1, 2))
    G = config.gate_channels
    frame_of = torch.arange(1, T + 1) // config.hop
    skips = 0
    for i, block in enumerate(model.blocks):
        x, s = block(x, cond[:, i * G: (i + 1) * G].index_select(2, frame_of))
        skips = skips + s
    logits = model.head(skips)
    logits[0, :, t].sum().backward()
    seen = embedded.grad[0].abs().sum(dim=1) > 0  # [T]
    assert not seen[t + 1:].any(), "future audio leaks into the past"
    assert seen[t - model.receptive_field + 1], "oldest sample of the receptive field has no influence"
    assert not seen[: t - model.receptive_field + 1].any(), "influence beyond the reported receptive field"
    assert seen.sum() == model.receptive_field
    assert not embedded.grad[1].any(), "batch items leak into each other"


def test_future_audio_and_frames_do_not_change_earlier_outputs(model):
    config = model.config
    T = 200
    codes, frames, labels = inputs(config, T)
    reference = model(codes, frames, labels)
    t = 150  # output t predicts sample t + 1 from frame (t + 1) // hop
    last_frame_seen = (t + 1) // config.hop
    codes2, frames2 = codes.clone(), frames.clone()
    codes2[:, t + 1:] = torch.randint(0, 256, codes2[:, t + 1:].shape)
    frames2[:, last_frame_seen + 1:] = 255 - frames2[:, last_frame_seen + 1:]
    changed = model(codes2, frames2, labels)
    torch.testing.assert_close(changed[:, :, : t + 1], reference[:, :, : t + 1], rtol=0, atol=0)
    # ...while the current frame does matter (the model is conditioned at all).
    frames3 = frames.clone()
    frames3[:, last_frame_seen] = 255 - frames3[:, last_frame_seen]
    assert not torch.allclose(model(codes, frames3, labels)[:, :, t], reference[:, :, t])


def test_style_label_changes_the_output(model):
    codes, frames, labels = inputs(model.config, 64)
    other = (labels + 1) % model.config.n_labels
    assert not torch.allclose(model(codes, frames, labels), model(codes, frames, other))
    with pytest.raises(ValueError, match="labels"):
        model(codes, frames)


def test_step_with_teacher_forcing_equals_forward(model):
    """Incremental generation over more than a receptive field gives the full forward pass's logits."""
    config = model.config
    T = model.receptive_field * 2 + 37
    codes, frames, labels = inputs(config, T, batch=3)
    full = model(codes, frames, labels)  # [B, Q, T]
    cond = model.condition(frames, labels)
    state = model.init_state(batch_size=3)
    stepped = []
    for t in range(T):
        logits, state = model.step(codes[:, t], model.cond_at(cond, t), state)
        stepped.append(logits)
    stepped = torch.stack(stepped, dim=2)
    assert state.t == T
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-5)


def test_default_config_shapes_and_size():
    model = MoveNet(ModelConfig(n_labels=3))
    codes = torch.randint(0, 256, (2, 1279))
    frames = torch.zeros(2, 2, 64, 64, 1, dtype=torch.uint8)
    assert model(codes, frames, torch.tensor([0, 2])).shape == (2, 256, 1279)
    with pytest.raises(ValueError, match="frames of conditioning"):
        model(torch.randint(0, 256, (2, 1280)), frames, torch.tensor([0, 2]))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 2_000_000  # a few MB: small enough to ship
