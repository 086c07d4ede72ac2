"""The conditional WaveNet: mu-law codes and video frames in, next-sample logits out.

References: van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio" (gated activations with local
and global conditioning, sec. 2.3-2.5); Paine et al. 2016, "Fast WaveNet Generation Algorithm" (the per-layer
buffers behind `step`).

The one-step shift, stated once: logits[..., t] predicts codes[t + 1], from codes[<= t] and from the video frame
that covers sample t + 1, frame (t + 1) // hop, whose timestamp ((t + 1) // hop) / fps is <= (t + 1) / sample_rate.
So the sound at any time depends only on earlier sound and on frames already shown: the model can play live.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from movenet.nn import CausalConv1d, FrameEncoder, ResidualBlock


@dataclass
class ModelConfig:
    n_classes: int = 256  # mu-law classes
    residual_channels: int = 64
    gate_channels: int = 128  # dilated conv output: half filter, half gate
    skip_channels: int = 64
    kernel_size: int = 2
    layers_per_stack: int = 10  # dilations 1, 2, ..., 2**(layers_per_stack - 1)
    n_stacks: int = 2
    input_kernel: int = 2  # the causal convolution after the code embedding
    # video
    hop: int = 640  # audio samples per video frame: sample_rate / fps of the data
    frame_size: int = 64
    frame_channels: int = 1
    video_channels: int = 64
    video_kernel: int = 3  # causal temporal convolution over frames
    video_width: int = 32  # frame CNN width
    # style (global conditioning); 0 = none
    n_labels: int = 0

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_stack)] * self.n_stacks

    @property
    def n_layers(self) -> int:
        return self.layers_per_stack * self.n_stacks

    @property
    def receptive_field(self) -> int:
        """Codes that one output sees: itself, the input convolution's history, and every dilated layer's."""
        return 1 + (self.input_kernel - 1) + sum((self.kernel_size - 1) * d for d in self.dilations)


@dataclass
class State:
    """Everything `step` carries from one sample to the next (batch-first tensors)."""

    t: int  # index of the next input sample
    input_buffer: torch.Tensor  # [B, C_res, input_kernel - 1]
    buffers: list[torch.Tensor] = field(default_factory=list)  # per dilated layer: [B, C_res, (k-1) * d]


class MoveNet(nn.Module):
    """Video-conditioned WaveNet.

    forward(codes [B, T] int64, frames [B, T_v, H, W, C] uint8, labels [B] | None) -> logits [B, Q, T]
    with T < T_v * hop (sample t needs frame (t + 1) // hop).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.n_classes, c.residual_channels)  # = one-hot followed by a 1x1 convolution
        self.input_conv = CausalConv1d(c.residual_channels, c.residual_channels, c.input_kernel)
        self.blocks = nn.ModuleList(
            ResidualBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d) for d in c.dilations
        )
        self.video = FrameEncoder(c.frame_channels, c.video_channels, c.video_kernel, c.video_width)
        # V_f, V_g of every layer in one 1x1 convolution at frame rate; up-sampling is then a repeat (exact,
        # since a 1x1 convolution commutes with repeating) and costs nothing per sample.
        self.cond_proj = nn.Conv1d(c.video_channels, c.n_layers * c.gate_channels, 1)
        self.label_embed = nn.Embedding(c.n_labels, c.n_layers * c.gate_channels) if c.n_labels else None
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(c.skip_channels, c.skip_channels, 1), nn.ReLU(), nn.Conv1d(c.skip_channels, c.n_classes, 1)
        )

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    # -- conditioning ---------------------------------------------------------------------------------------------

    def condition(self, frames: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame conditioning of all layers: frames [B, T_v, H, W, C] uint8 -> [B, n_layers * G, T_v].

        Causal in frames: column k depends on frames k - video_kernel + 1 .. k only.
        """
        cond = self.cond_proj(self.video(frames))
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("this model was trained with style labels: pass labels")
            cond = cond + self.label_embed(labels)[:, :, None]
        return cond

    def cond_at(self, cond: torch.Tensor, t: int) -> torch.Tensor:
        """The conditioning column used by input sample t (which predicts sample t + 1): [B, n_layers * G]."""
        return cond[:, :, (t + 1) // self.config.hop]

    # -- training / teacher forcing -------------------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, frames: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_cond(codes, self.condition(frames, labels))

    def forward_cond(self, codes: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """codes [B, T] int64, cond [B, n_layers * G, T_v] -> logits [B, Q, T]"""
        B, T = codes.shape
        G, hop = self.config.gate_channels, self.config.hop
        if T // hop >= cond.shape[2]:
            raise ValueError(f"{T} samples need {T // hop + 1} frames of conditioning, got {cond.shape[2]}")
        frame_of = torch.div(torch.arange(1, T + 1, device=codes.device), hop, rounding_mode="floor")  # [T]
        x = self.input_conv(self.embed(codes).transpose(1, 2))  # [B, C_res, T]
        skips = 0
        for i, block in enumerate(self.blocks):
            x, skip = block(x, cond[:, i * G: (i + 1) * G].index_select(2, frame_of))
            skips = skips + skip
        return self.head(skips)

    def loss(self, codes: torch.Tensor, frames: torch.Tensor, labels: torch.Tensor | None = None,
             n_scored: int | None = None) -> torch.Tensor:
        """Mean cross-entropy (nats) of predicting codes[:, 1:] from codes[:, :-1].

        n_scored: score only the last n predictions (the ones with a full receptive field of real context).
        """
        logits = self(codes[:, :-1], frames, labels)
        targets = codes[:, 1:]
        if n_scored is not None:
            logits, targets = logits[:, :, -n_scored:], targets[:, -n_scored:]
        return F.cross_entropy(logits, targets)

    # -- incremental generation -----------------------------------------------------------------------------------

    def init_state(self, batch_size: int, device=None) -> State:
        """Silence in every buffer: the same as the zero left padding of `forward`."""
        dtype = self.embed.weight.dtype
        device = device or self.embed.weight.device
        return State(
            t=0,
            input_buffer=self.input_conv.init_buffer(batch_size, device, dtype),
            buffers=[block.dilated.init_buffer(batch_size, device, dtype) for block in self.blocks],
        )

    @torch.no_grad()
    def step(self, code_t: torch.Tensor, cond_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One sample, constant work: code_t [B] int64, cond_t [B, n_layers * G] (see `cond_at`) -> logits [B, Q].

        Updates the buffers in `state` and advances state.t. Feeding codes[t] with cond_at(cond, t) for t = 0, 1, ...
        gives forward's logits[..., t] (teacher forcing).
        """
        G, t = self.config.gate_channels, state.t
        x = self.input_conv.step(self.embed(code_t), state.input_buffer, t)
        skips = 0
        for i, block in enumerate(self.blocks):
            x, skip = block.step(x, cond_t[:, i * G: (i + 1) * G], state.buffers[i], t)
            skips = skips + skip
        logits = self.head(skips[:, :, None])[:, :, 0]
        state.t = t + 1
        return logits, state


def model_config_from_dict(d: dict) -> ModelConfig:
    return ModelConfig(**d)


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
