"""The conditional WaveNet: causality end to end, the receptive field it reports, and step == teacher forcing."""

import copy

import pytest
import torch
from torch import nn

from movenet.audio import SILENCE
from movenet.model import ModelConfig, MoveNet


def tiny_config(**overrides) -> ModelConfig:
    base = dict(residual_channels=8, gate_channels=16, skip_channels=8, layers_per_stack=4, n_stacks=2, hop=16,
                sample_rate=400, frame_size=16, frame_channels=1, video_channels=8, frame_width=8, keypoint_width=16,
                n_labels=3, features="frames")
    return ModelConfig(**{**base, **overrides})


def audible(model: MoveNet) -> MoveNet:
    """An untrained model whose control head asks for sound (its loudness output raised to about -16 dBFS), so the
    silence gate (movenet.controls.SILENT_AMPLITUDE) leaves its samples to the WaveNet: generation tests then
    compare sound, not silence with silence."""
    from movenet.controls import N_PITCH_CLASSES

    if model.control_head is not None:
        with torch.no_grad():
            model.control_head.mlp[-1].bias[N_PITCH_CLASSES] += 0.8
    return model


def source(config: ModelConfig, n_samples: int, batch: int = 2, seed: int = 0) -> torch.Tensor | None:
    """A random source signal [B, n_samples, E] for a model with controls (None without)."""
    if not config.source_channels:
        return None
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(batch, n_samples, config.source_channels, generator=g) * 0.5


@pytest.fixture
def model() -> MoveNet:
    torch.manual_seed(0)
    return MoveNet(tiny_config()).eval()


def inputs(config: ModelConfig, n_samples: int, batch: int = 2, seed: int = 0):
    """Random codes [B, n_samples], the frames and keypoints covering them, and style labels."""
    g = torch.Generator().manual_seed(seed)
    n_frames = -(-n_samples // config.hop)
    codes = torch.randint(0, 256, (batch, n_samples), generator=g)
    frames = torch.randint(0, 256, (batch, n_frames, config.frame_size, config.frame_size, 1), generator=g,
                           dtype=torch.uint8)
    keypoints = torch.rand(batch, n_frames, config.n_joints, 3, generator=g)
    labels = torch.randint(0, config.n_labels, (batch,), generator=g)
    return codes, frames, keypoints, labels


class Fixed(nn.Module):
    """Stands in for the embedding so the test can differentiate with respect to it."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, codes):
        return self.value


def test_receptive_field_matches_the_published_formula():
    # WaveNet: kernel 2, dilations 1..512 repeated: 1 + 1023 per stack, plus the input convolution's 1.
    assert ModelConfig(layers_per_stack=10, n_stacks=1).receptive_field == 1024 + 1
    assert ModelConfig(layers_per_stack=10, n_stacks=2).receptive_field == 2 * 1023 + 2
    assert ModelConfig(layers_per_stack=10, n_stacks=3, kernel_size=3).receptive_field == 3 * 2046 + 2
    assert ModelConfig().context_frames == 4  # 2047 samples of context = 3.2 frames of 640


def test_causality_and_receptive_field_by_gradient(model):
    """Output j (input position j + rf - 1) has gradient from exactly the rf inputs ending at its own position."""
    rf = model.receptive_field
    T = rf + 40
    codes, frames, _, labels = inputs(model.config, T)
    embedded = model.embed(codes).detach().requires_grad_(True)
    src = source(model.config, T)
    cond = model.condition(frames, labels=labels)
    model.embed = Fixed(embedded)
    logits = model.logits(codes, cond, src)
    assert logits.shape == (2, T - rf + 1, 256)
    j = 20
    logits[0, j].sum().backward()
    seen = embedded.grad[0].abs().sum(dim=1) > 0  # [T]
    position = j + rf - 1
    assert not seen[position + 1:].any(), "future audio leaks into the past"
    assert seen[position - rf + 1] and seen[position], "the ends of the receptive field have no influence"
    assert not seen[: position - rf + 1].any(), "influence beyond the reported receptive field"
    assert seen.sum() == rf
    assert not embedded.grad[1].any(), "batch items leak into each other"


def test_future_audio_and_frames_do_not_change_earlier_outputs(model):
    hop, rf = model.config.hop, model.receptive_field
    T = 200
    codes, frames, _, labels = inputs(model.config, T)
    src = source(model.config, T)
    reference = model.teacher_forced(codes, model.condition(frames, labels=labels), src)  # [B, T, Q]
    t = 150  # logits[:, t] predicts codes[:, t] from codes[:, :t], the source up to t and frames up to t // hop
    frame = t // hop
    codes2, frames2, src2 = codes.clone(), frames.clone(), src.clone()
    codes2[:, t:] = torch.randint(0, 256, codes2[:, t:].shape)
    frames2[:, frame + 1:] = 255 - frames2[:, frame + 1:]
    src2[:, t + 1:] = -src2[:, t + 1:]
    changed = model.teacher_forced(codes2, model.condition(frames2, labels=labels), src2)
    torch.testing.assert_close(changed[:, : t + 1], reference[:, : t + 1], rtol=0, atol=0)
    # ...while the current frame, the source now and the oldest sample in the receptive field do matter, and one
    # older does not
    frames3, src3 = frames.clone(), src.clone()
    frames3[:, frame] = 255 - frames3[:, frame]
    src3[:, t] = -src3[:, t]
    assert not torch.allclose(model.teacher_forced(codes, model.condition(frames3, labels=labels), src)[:, t],
                              reference[:, t])
    assert not torch.allclose(model.teacher_forced(codes, model.condition(frames, labels=labels), src3)[:, t],
                              reference[:, t])
    # The oldest code in the receptive field matters and one older never does. Its only path runs through every
    # layer's oldest tap and the head's ReLU, which can zero it at a given t, so look at several t; and through 20
    # layers of random weights it moves a logit by ~1e-11, under float32's resolution (whether float32 shows it
    # depends on the CPU's rounding), so a float64 copy of the model looks.
    double = copy.deepcopy(model).double()
    cond64 = model.condition(frames, labels=labels).double()
    src64 = None if src is None else src.double()
    reference64 = double.teacher_forced(codes, cond64, src64)
    oldest_matters = []
    for t in range(140, 150):
        older, oldest = codes.clone(), codes.clone()
        older[:, t - rf - 1] = (older[:, t - rf - 1] + 128) % 256
        oldest[:, t - rf] = (oldest[:, t - rf] + 128) % 256
        torch.testing.assert_close(model.teacher_forced(older, model.condition(frames, labels=labels), src)[:, t],
                                   reference[:, t], rtol=0, atol=0)
        torch.testing.assert_close(double.teacher_forced(older, cond64, src64)[:, t], reference64[:, t], rtol=0,
                                   atol=0)
        oldest_matters.append(not torch.equal(double.teacher_forced(oldest, cond64, src64)[:, t], reference64[:, t]))
    assert any(oldest_matters), oldest_matters


def test_style_label_changes_the_output(model):
    codes, frames, _, labels = inputs(model.config, 64)
    src = source(model.config, 64)
    other = (labels + 1) % model.config.n_labels
    cond, cond_other = model.condition(frames, labels=labels), model.condition(frames, labels=other)
    assert not torch.allclose(model.teacher_forced(codes, cond, src), model.teacher_forced(codes, cond_other, src))
    with pytest.raises(ValueError, match="labels"):
        model.condition(frames)


@pytest.mark.parametrize("features,controls", [("frames", True), ("keypoints", True), ("both", True),
                                               ("frames", False)])
def test_step_with_teacher_forcing_equals_the_sequence_pass(features, controls):
    """Incremental generation from the pre-roll, over more than a receptive field, gives teacher_forced's logits."""
    torch.manual_seed(0)
    model = MoveNet(tiny_config(features=features, controls=controls)).eval()
    T = model.receptive_field * 2 + 37
    codes, frames, keypoints, labels = inputs(model.config, T, batch=3)
    src = source(model.config, T, batch=3)
    cond = model.condition(frames if model.config.uses_frames else None,
                           keypoints if model.config.uses_keypoints else None, labels)
    full = model.teacher_forced(codes, cond, src)  # [B, T, Q]
    state = model.init_state(model.cond_at(cond, 0))
    prev = torch.full((3,), SILENCE)
    stepped = []
    for t in range(T):
        logits, state = model.step(prev, model.cond_at(cond, t), state, None if src is None else src[:, t])
        stepped.append(logits)
        prev = codes[:, t]
    assert state.t == T
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, rtol=1e-5, atol=1e-5)


def test_missing_movement_input_is_a_clear_error():
    model = MoveNet(tiny_config(features="keypoints"))
    _, frames, _, labels = inputs(model.config, 64)
    with pytest.raises(ValueError, match="keypoints"):
        model.condition(frames, labels=labels)
    with pytest.raises(ValueError, match="features"):
        tiny_config(features="skeleton")


def test_loss_scores_the_crop_after_its_context(model):
    """loss() on a crop is the cross-entropy of logits() against the targets with full context."""
    rf, hop = model.receptive_field, model.config.hop
    n = 3 * hop
    codes, frames, _, labels = inputs(model.config, 1 + rf + n)
    frames = frames[:, : -(-(rf + n) // hop)]
    src = source(model.config, rf + n)
    loss = model.loss({"codes": codes, "frames": frames, "label": labels, "excitation": src,
                       "controls": torch.zeros(2, frames.shape[1], 3)})["audio"]
    logits = model.logits(codes[:, :-1], model.condition(frames, labels=labels), src)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), codes[:, rf:].reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert logits.shape[1] == n + 1
    assert 4.0 < loss.item() < 7.0  # an untrained model is near uniform: ln 256 = 5.55


def test_default_config_shapes_and_size():
    model = MoveNet(ModelConfig(n_labels=3))
    rf = model.receptive_field
    codes = torch.randint(0, 256, (2, rf + 99))
    keypoints = torch.rand(2, -(-(rf + 99) // 640), 15, 3)
    src = source(model.config, rf + 99)
    labels = torch.tensor([0, 2])
    assert model(codes, keypoints=keypoints, labels=labels, source=src).shape == (2, 100, 256)
    with pytest.raises(ValueError, match="source"):
        model(codes, keypoints=keypoints, labels=labels)
    with pytest.raises(ValueError, match="frames of conditioning"):
        model(torch.randint(0, 256, (2, keypoints.shape[1] * 640 + 1)), keypoints=keypoints, labels=labels)
    with pytest.raises(ValueError, match="receptive field"):
        model(codes[:, : rf - 1], keypoints=keypoints, labels=labels, source=src[:, : rf - 1])
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 2_000_000  # a few MB: small enough to ship


def test_config_round_trips_through_a_plain_dict():
    config = tiny_config(features="both")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({**config.to_dict(), "attention": True})
