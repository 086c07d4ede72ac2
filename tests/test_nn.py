"""Building blocks: the dilated causal convolution against torch's own conv1d, its step, and the per-frame hold."""

import pytest
import torch
import torch.nn.functional as F

from movenet.nn import DilatedCausalConv, KeypointEncoder, ResidualBlock, TemporalConv, add_per_frame_


@pytest.mark.parametrize("kernel_size,dilation", [(1, 1), (2, 1), (2, 8), (3, 4)])
def test_dilated_conv_is_a_valid_causal_conv1d(kernel_size, dilation):
    torch.manual_seed(0)
    conv = DilatedCausalConv(5, 7, kernel_size, dilation)
    x = torch.randn(2, 40, 5)
    # the same weights as a Conv1d kernel [C_out, C_in, k]: taps are stored oldest first along the input axis
    weight = conv.linear.weight.reshape(7, kernel_size, 5).permute(0, 2, 1)
    expected = F.conv1d(x.transpose(1, 2), weight, conv.linear.bias, dilation=dilation).transpose(1, 2)
    out = conv(x)
    assert out.shape == (2, 40 - conv.history, 7)
    torch.testing.assert_close(out, expected)


def test_dilated_conv_step_continues_from_a_held_input():
    torch.manual_seed(0)
    conv = DilatedCausalConv(4, 6, 2, 4)
    x0 = torch.randn(3, 4)
    x = torch.randn(3, 25, 4)
    held = torch.cat([x0[:, None].expand(-1, conv.history, -1), x], dim=1)
    full = conv(held)  # outputs at the positions of x
    buffer = conv.init_buffer(x0)
    stepped = torch.stack([conv.step(x[:, t], buffer, t) for t in range(25)], dim=1)
    torch.testing.assert_close(stepped, full)
    torch.testing.assert_close(conv.steady(x0), conv(x0[:, None].expand(-1, conv.history + 1, -1))[:, 0])


@pytest.mark.parametrize("start,T", [(0, 64), (3, 64), (15, 1), (5, 9), (16, 50), (7, 16)])
def test_add_per_frame_holds_each_frame_for_hop_samples(start, T):
    hop = 16
    cond = torch.randn(2, 12, 3)
    h = torch.randn(2, T, 3)
    frame_of = (start + torch.arange(T)) // hop
    expected = h + cond[:, frame_of]
    torch.testing.assert_close(add_per_frame_(h.clone(), cond, start, hop), expected)


def test_conditioning_gradient_sums_each_frames_samples():
    block = ResidualBlock(2, 2, 2, 1, 1)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
    cond = torch.zeros(1, 5, 2, requires_grad=True)
    block.skip.weight.data[:, 0] = 2.0  # skip = 2 * tanh(h_f) * sigmoid(h_g) = 2 * tanh(cond) * 0.5 -> gradient 1
    _, skip, _ = block(torch.zeros(1, 13, 2), cond, 2, 4, 13)
    skip[..., 0].sum().backward()
    # positions 2..14 with hop 4: frame 0 gets 2 samples, frames 1-2 get 4, frame 3 gets 3, frame 4 none
    assert cond.grad[0, :, 0].tolist() == [2.0, 4.0, 4.0, 3.0, 0.0]


def test_temporal_conv_holds_the_first_frame_and_is_causal():
    torch.manual_seed(0)
    tc = TemporalConv(4, 3)
    x = torch.randn(1, 10, 4)
    out = tc(x)
    held = torch.cat([x[:, :1], x[:, :1], x], dim=1)
    torch.testing.assert_close(out, tc(held)[:, 2:])
    x2 = x.clone()
    x2[:, 6:] += 1.0
    torch.testing.assert_close(tc(x2)[:, :6], out[:, :6])
    assert not torch.allclose(tc(x2)[:, 6], out[:, 6])


def test_keypoint_encoder_ignores_coordinates_of_unseen_joints():
    torch.manual_seed(0)
    enc = KeypointEncoder(15, 8)
    kp = torch.rand(2, 5, 15, 3)
    kp[..., 2] = 1.0
    kp[:, :, 4, 2] = 0.0  # joint 4 unseen
    moved = kp.clone()
    moved[:, :, 4, :2] = torch.rand(2, 5, 2)
    torch.testing.assert_close(enc(moved), enc(kp))
    seen = kp.clone()
    seen[:, :, 4, 2] = 1.0
    assert not torch.allclose(enc(seen), enc(kp))


def reference_block(block: ResidualBlock, x, cond, start, hop, n_skip, source=None):
    """The residual layer written with plain differentiable ops (and an up-sampled copy of cond)."""
    h = block.dilated(x, source)
    frame_of = (start + block.dilated.history + torch.arange(h.shape[1])) // hop
    f, g = (h + cond[:, frame_of]).split(block.half, dim=-1)
    z = torch.tanh(f) * torch.sigmoid(g)
    return x[:, block.dilated.history:] + block.residual(z), block.skip(z[:, -n_skip:])


@pytest.mark.parametrize("start,kernel_size,source_channels", [(0, 2, 0), (5, 2, 0), (16, 3, 0), (5, 2, 3)])
def test_residual_block_forward_and_backward_match_plain_ops(start, kernel_size, source_channels):
    """The hand-written layer (conv + source + per-frame conditioning + gate + residual/skip) has plain ops' values
    and gradients."""
    torch.manual_seed(0)
    hop, n_skip = 16, 20
    block = ResidualBlock(4, 6, 5, kernel_size, 8, source_channels)
    x = torch.randn(2, 60, 4, requires_grad=True)
    cond = torch.randn(2, 6, 6, requires_grad=True)
    source = torch.randn(2, 60, source_channels) if source_channels else None
    leaves = (x, cond, *block.parameters())
    x_out, skip, new_start = block(x, cond, start, hop, n_skip, source)
    assert new_start == start + block.dilated.history and skip.shape == (2, n_skip, 5)
    w1, w2 = torch.randn_like(x_out), torch.randn_like(skip)
    ((x_out * w1).sum() + (skip * w2).sum()).backward()
    grads = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    ref_x, ref_skip = reference_block(block, x, cond, start, hop, n_skip, source)
    ((ref_x * w1).sum() + (ref_skip * w2).sum()).backward()
    torch.testing.assert_close(x_out, ref_x)
    torch.testing.assert_close(skip, ref_skip)
    for got, t in zip(grads, leaves):
        torch.testing.assert_close(got, t.grad)


def test_residual_block_under_bf16_autocast_is_close_to_fp32():
    torch.manual_seed(0)
    block = ResidualBlock(8, 16, 8, 2, 4)
    x, cond = torch.randn(2, 50, 8), torch.randn(2, 4, 16)
    fp32 = block(x, cond, 0, 16, 10)[1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = block(x, cond, 0, 16, 10)[1]
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)
