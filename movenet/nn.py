"""Building blocks of the conditional WaveNet: causal convolutions (with a one-sample `step`), the gated residual
block, and the video encoder (per-frame CNN + causal temporal convolution).

Shapes are channels-first at audio rate, `[B, C, T]`, in training and in `step` alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Conv1d):
    """A Conv1d whose output at t sees inputs at t, t - d, ..., t - (k-1)d only (left padding).

    `step` computes the same output one sample at a time from a ring buffer of the last (k-1)*d inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.history = (kernel_size - 1) * dilation  # inputs to remember between steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, T]"""
        return super().forward(F.pad(x, (self.history, 0)))

    def init_buffer(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        """The step state: [B, C_in, (k-1)*d] zeros, the same as the left padding of `forward`."""
        return torch.zeros(batch_size, self.in_channels, self.history, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, buffer: torch.Tensor, t: int) -> torch.Tensor:
        """One sample: x_t [B, C_in] at time t -> [B, C_out]. Updates `buffer` in place (slot t mod history).

        Tap j of the kernel multiplies the input at t - (k-1-j)*d, which lives in slot (t - (k-1-j)*d) mod history.
        """
        k, d = self.kernel_size[0], self.dilation[0]
        out = F.linear(x_t, self.weight[:, :, k - 1], self.bias)
        for j in range(k - 1):
            lag = (k - 1 - j) * d
            out = out + F.linear(buffer[:, :, (t - lag) % self.history], self.weight[:, :, j])
        if self.history:
            buffer[:, :, t % self.history] = x_t
        return out


class ResidualBlock(nn.Module):
    """z = tanh(W_f * x + V_f y) ⊙ σ(W_g * x + V_g y); x + W_r z goes on, W_s z goes to the skip sum.

    `gate_channels` G is the dilated convolution's output: G/2 filter channels and G/2 gate channels, so z has
    G/2 channels. The conditioning term V y (video and style) is computed by the model for all layers at once
    and passed in as `cond` [B, G, T].
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even (filter and gate halves), got {gate_channels}")
        self.half = gate_channels // 2
        self.dilated = CausalConv1d(residual_channels, gate_channels, kernel_size, dilation)
        self.residual = nn.Conv1d(self.half, residual_channels, 1)
        self.skip = nn.Conv1d(self.half, skip_channels, 1)

    def _gate(self, h: torch.Tensor) -> torch.Tensor:
        f, g = h.split(self.half, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, C_res, T], cond: [B, G, T] -> (residual out [B, C_res, T], skip [B, C_skip, T])"""
        z = self._gate(self.dilated(x) + cond)
        return x + self.residual(z), self.skip(z)

    def step(self, x_t: torch.Tensor, cond_t: torch.Tensor, buffer: torch.Tensor, t: int):
        """x_t: [B, C_res], cond_t: [B, G] -> (residual out [B, C_res], skip [B, C_skip])"""
        z = self._gate(self.dilated.step(x_t, buffer, t) + cond_t)
        return x_t + F.linear(z, self.residual.weight[:, :, 0], self.residual.bias), F.linear(
            z, self.skip.weight[:, :, 0], self.skip.bias
        )


class FrameEncoder(nn.Module):
    """Frames -> one movement vector per frame, causal in time.

    A small CNN embeds each frame on its own (spatial layout kept by a 4x4 pooled grid, since *where* a hand is
    matters), then a causal temporal convolution mixes each frame with the `temporal_kernel - 1` before it.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int = 3, width: int = 32):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(width * 16, out_channels), nn.ReLU(),
        )
        self.temporal = CausalConv1d(out_channels, out_channels, temporal_kernel)
        self.lookback = temporal_kernel - 1  # frames before the current one that its features depend on

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 [B, T_v, H, W, C] -> float [B, C_out, T_v]"""
        B, T_v, H, W, C = frames.shape
        x = frames.reshape(B * T_v, H, W, C).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B*T_v, C, H, W]
        per_frame = self.cnn(x).reshape(B, T_v, -1).transpose(1, 2)  # [B, C_out, T_v]
        return F.relu(self.temporal(per_frame))
