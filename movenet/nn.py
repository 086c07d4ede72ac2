"""Building blocks of the conditional WaveNet: the dilated causal convolution (a whole sequence, or one sample
with `step`), the gated residual block, per-frame conditioning, and the movement encoders (frames or keypoints).

Shapes are channels-last, `[B, T, C]`, at audio rate and at frame rate alike: every 1x1 convolution is then a
plain `F.linear` over the last axis (one large GEMM, the fastest layout on CPUs), and `step` works on `[B, C]`
rows of the same layout with the same weights.

A residual layer is computed in four places, each for its own job: `_GatedResidualLayer` (training: a whole
sequence, forward and backward by hand), `ResidualBlock.step` (generation one sample at a time, the reference),
`ResidualBlock.steady` (the pre-roll's fixed point) and the compiled loop of `movenet.fastgen`. Tests bind them:
step equals teacher forcing (tests/test_model.py) and the compiled loop equals step (tests/test_fastgen.py).

Sequence convolutions here are *valid* (no padding): the output is shorter than the input by the convolution's
history and starts at input position `history`. The model supplies real context (or its own pre-roll) instead of
zeros, so training, teacher forcing and step-by-step generation all see the same thing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedCausalConv(nn.Module):
    """out[t] = W · [x[t - (k-1)d], ..., x[t - d], x[t], e[t]] + b: a causal convolution with k taps, dilation d,
    and `extra` channels e read at the current position only (the source signal, in a residual layer).

    `weight` is [C_out, k * C_in + extra], taps oldest first, so one GEMM computes every tap.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, extra: int = 0):
        super().__init__()
        self.in_channels, self.kernel_size, self.dilation, self.extra = in_channels, kernel_size, dilation, extra
        self.history = (kernel_size - 1) * dilation  # inputs to remember between steps
        self.linear = nn.Linear(kernel_size * in_channels + extra, out_channels)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, C_in] (and extra [B, T, extra] at the same positions) -> [B, T - history, C_out]; output i is
        the convolution at input position i + history."""
        T = x.shape[1]
        taps = [x[:, j * self.dilation: T - self.history + j * self.dilation] for j in range(self.kernel_size)]
        if self.extra:
            taps.append(extra[:, self.history:].to(x.dtype))
        return self.linear(torch.cat(taps, dim=-1))

    def init_buffer(self, x0: torch.Tensor) -> torch.Tensor:
        """Step state holding the constant input x0 [B, C_in] as every remembered input: [B, history, C_in]."""
        return x0[:, None, :].expand(-1, self.history, -1).clone()

    def step(self, x_t: torch.Tensor, buffer: torch.Tensor, t: int, extra_t: torch.Tensor | None = None
             ) -> torch.Tensor:
        """One sample: x_t [B, C_in] (and extra_t [B, extra]) at time t -> [B, C_out]. Updates `buffer` in place
        (ring, slot t mod history)."""
        d, n = self.dilation, self.history
        taps = [buffer[:, (t - (self.kernel_size - 1 - j) * d) % n] for j in range(self.kernel_size - 1)] if n else []
        out = self.linear(torch.cat([*taps, x_t, *([extra_t.to(x_t.dtype)] if self.extra else [])], dim=-1))
        if n:
            buffer[:, t % n] = x_t
        return out

    def steady(self, x0: torch.Tensor) -> torch.Tensor:
        """The output for an input that has been x0 [B, C_in] forever, with no extra input: [B, C_out]."""
        return self.linear(torch.cat([x0.repeat(1, self.kernel_size), x0.new_zeros(x0.shape[0], self.extra)], -1))


def _frame_spans(n_samples: int, start: int, hop: int):
    """Split audio positions start .. start + n_samples - 1 by frame: (first row, rows, first frame, frames) spans,
    rows of whole frames grouped, so per-frame work is a few large tensor operations."""
    frame, phase = divmod(start, hop)
    n_head = min(n_samples, (hop - phase) % hop)  # rest of a frame that began before `start`
    n_whole = (n_samples - n_head) // hop
    n_tail = n_samples - n_head - n_whole * hop
    spans = []
    if n_head:
        spans.append((0, n_head, frame, 1))
        frame += 1
    if n_whole:
        spans.append((n_head, n_whole * hop, frame, n_whole))
        frame += n_whole
    if n_tail:
        spans.append((n_samples - n_tail, n_tail, frame, 1))
    return spans


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype F.linear would compute in here: autocast's (bf16 on CPU) when it is on."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype


class _GatedResidualLayer(torch.autograd.Function):
    """One residual layer, forward and backward written out (a training hot spot: it runs 20 times per step).

        h = W_d · [x[t - (k-1)d], ..., x[t]] + b_d + cond[frame of t]       (valid positions only)
        z = tanh(h_f) * sigmoid(h_g)
        x_out = x[t] + W_r z + b_r;   skip = W_s z + b_s   (skip for the last n_skip positions only)

    Written as one function so neither pass makes an up-sampled copy of `cond`, a zero-filled gradient per slice of
    x, or an autograd copy of a view: each gradient is written once, and the GEMMs see contiguous 2-D operands.
    """

    @staticmethod
    def forward(ctx, x, cond, source, w_d, b_d, w_r, b_r, w_s, b_s, start, hop, kernel_size, dilation, n_skip):
        dtype = _compute_dtype(x, w_d)
        params = [p.to(dtype) for p in (w_d, b_d, w_r, b_r, w_s, b_s)]
        w_d_, b_d_, w_r_, b_r_, w_s_, b_s_ = params
        x, cond = x.to(dtype), cond.to(dtype)
        B, T, C = x.shape
        history = (kernel_size - 1) * dilation
        n = T - history
        taps = [x[:, j * dilation: j * dilation + n] for j in range(kernel_size)]
        if source is not None:  # the source at the current position: extra inputs of the same GEMM
            taps.append(source[:, history: history + n].to(dtype))
        taps = torch.cat(taps, dim=-1)
        h = torch.addmm(b_d_, taps.view(B * n, -1), w_d_.t())  # [B*n, G]
        G = h.shape[1]
        add_per_frame_(h.view(B, n, G), cond, start + history, hop)
        spans = _frame_spans(n, start + history, hop)  # for the backward's per-frame sums
        a, s = torch.tanh(h[:, : G // 2]), torch.sigmoid(h[:, G // 2:])
        z = a * s  # [B*n, G/2]
        x_out = torch.addmm(b_r_, z, w_r_.t()).view(B, n, C)
        x_out += x[:, history:]
        z_last = z.view(B, n, -1)[:, n - n_skip:].reshape(B * n_skip, -1)
        skip = torch.addmm(b_s_, z_last, w_s_.t()).view(B, n_skip, -1)
        ctx.save_for_backward(taps, a, s, w_d_, w_r_, w_s_)
        ctx.meta = (spans, cond.shape, kernel_size, dilation, n_skip, [p.dtype for p in (cond, w_d, b_d, w_r, b_r, w_s, b_s)])
        return x_out, skip

    @staticmethod
    def backward(ctx, grad_x_out, grad_skip):
        taps, a, s, w_d, w_r, w_s = ctx.saved_tensors
        spans, cond_shape, kernel_size, dilation, n_skip, dtypes = ctx.meta
        B, n, C = grad_x_out.shape
        G2 = a.shape[1]
        history = (kernel_size - 1) * dilation
        go = grad_x_out.to(w_r.dtype).reshape(B * n, C)
        gs_out = grad_skip.to(w_s.dtype).reshape(B * n_skip, -1)
        z = a * s
        z_last = z.view(B, n, G2)[:, n - n_skip:].reshape(B * n_skip, G2)
        grad_w_r, grad_b_r = go.t() @ z, go.sum(0, dtype=torch.float32)
        grad_w_s, grad_b_s = gs_out.t() @ z_last, gs_out.sum(0, dtype=torch.float32)
        gz = go @ w_r  # [B*n, G/2]
        gz.view(B, n, G2)[:, n - n_skip:] += (gs_out @ w_s).view(B, n_skip, G2)
        gh = torch.empty(B * n, 2 * G2, dtype=gz.dtype, device=gz.device)
        torch.mul(gz * s, 1 - a * a, out=gh[:, :G2])  # d tanh = 1 - tanh^2
        torch.mul(gz * a, s * (1 - s), out=gh[:, G2:])  # d sigmoid = s (1 - s)
        grad_cond = torch.zeros(cond_shape, dtype=torch.float32, device=gh.device)
        gh3 = gh.view(B, n, 2 * G2)
        for row, n_rows, frame, n_frames in spans:
            grad_cond[:, frame: frame + n_frames] = gh3[:, row: row + n_rows].reshape(B, n_frames, -1, 2 * G2).sum(2)
        grad_w_d, grad_b_d = gh.t() @ taps.view(B * n, -1), gh.sum(0, dtype=torch.float32)
        grad_taps = (gh @ w_d[:, : kernel_size * C]).view(B, n, kernel_size, C)  # the source needs no gradient
        grad_x = grad_taps.new_zeros(B, n + history, C)
        grad_x[:, history:] = grad_x_out
        for j in range(kernel_size):
            grad_x[:, j * dilation: j * dilation + n] += grad_taps[:, :, j]
        grads = [g.to(dt) for g, dt in zip((grad_cond, grad_w_d, grad_b_d, grad_w_r, grad_b_r, grad_w_s, grad_b_s), dtypes)]
        return (grad_x, grads[0], None, *grads[1:], None, None, None, None, None)


def add_per_frame_(h: torch.Tensor, cond: torch.Tensor, start: int, hop: int) -> torch.Tensor:
    """h[:, i] += cond[:, (start + i) // hop] for every i, in place (no autograd: _GatedResidualLayer owns that).

    This is the up-sampler from frame rate to audio rate: each frame's value is held for its `hop` samples.
    h: [B, T, G] at audio rate, whose row 0 is audio position `start`; cond: [B, T_v, G] at frame rate.
    """
    B, T, G = h.shape
    for row, n_rows, frame, n_frames in _frame_spans(T, start, hop):
        h[:, row: row + n_rows].view(B, n_frames, -1, G).add_(cond[:, frame: frame + n_frames, None])
    return h


class ResidualBlock(nn.Module):
    """z = tanh(W_f * x + V_f y) ⊙ σ(W_g * x + V_g y); x + W_r z goes on, W_s z goes to the skip sum.

    `gate_channels` G is the dilated convolution's output: G/2 filter channels and G/2 gate channels, so z has
    G/2 channels. The conditioning term V y (video and style) is computed by the model for all layers at once,
    per frame, and passed in as `cond` [B, T_v, G]. With `source_channels`, the source signal at audio rate
    (movenet.controls) joins the dilated convolution's inputs at the current position: U s[t] in both halves.
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int, dilation: int,
                 source_channels: int = 0):
        super().__init__()
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even (filter and gate halves), got {gate_channels}")
        self.half = gate_channels // 2
        self.dilated = DilatedCausalConv(residual_channels, gate_channels, kernel_size, dilation, source_channels)
        self.residual = nn.Linear(self.half, residual_channels)
        self.skip = nn.Linear(self.half, skip_channels)

    def _gate(self, h: torch.Tensor) -> torch.Tensor:
        f, g = h.split(self.half, dim=-1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, start: int, hop: int, n_skip: int,
                source: torch.Tensor | None = None):
        """x: [B, T, C_res] from audio position `start`; cond: [B, T_v, G]; source [B, T, E] at x's positions ->
        (x [B, T - history, C_res], skip [B, n_skip, C_skip] for the last n_skip positions, the new start)."""
        conv = self.dilated
        x, skip = _GatedResidualLayer.apply(
            x, cond, source if conv.extra else None, conv.linear.weight, conv.linear.bias, self.residual.weight, self.residual.bias, self.skip.weight,
            self.skip.bias, start, hop, conv.kernel_size, conv.dilation, n_skip)
        return x, skip, start + conv.history

    def step(self, x_t: torch.Tensor, cond_t: torch.Tensor, buffer: torch.Tensor, t: int,
             source_t: torch.Tensor | None = None):
        """x_t: [B, C_res], cond_t: [B, G], source_t [B, E] -> (residual out [B, C_res], skip [B, C_skip])"""
        z = self._gate(self.dilated.step(x_t, buffer, t, source_t) + cond_t)
        return x_t + self.residual(z), self.skip(z)

    def steady(self, x0: torch.Tensor, cond0: torch.Tensor) -> torch.Tensor:
        """The residual output for an input held at x0 [B, C_res] under conditioning cond0 [B, G], no source."""
        return x0 + self.residual(self._gate(self.dilated.steady(x0) + cond0))


class TemporalConv(nn.Module):
    """A causal convolution across frames whose history before frame 0 is frame 0 held (as the video would be)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = DilatedCausalConv(channels, channels, kernel_size)
        self.lookback = kernel_size - 1  # earlier frames that a frame's features depend on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T_v, C] -> [B, T_v, C]"""
        held = x[:, :1].expand(-1, self.lookback, -1)
        return F.relu(self.conv(torch.cat([held, x], dim=1)))


def previous_frame(x: torch.Tensor) -> torch.Tensor:
    """x [B, T_v, ...] shifted one frame later, frame 0 held: row k is frame k - 1 (causal)."""
    return torch.cat([x[:, :1], x[:, :-1]], dim=1)


class FrameEncoder(nn.Module):
    """Frames -> one movement vector per frame.

    A small CNN embeds each frame (spatial layout kept on an 8x8 grid, and two channels that say where each pixel
    is, since *where* a hand is matters). With `motion` it also sees the difference from the previous frame: what
    moved, and how much, is what loudness and hits follow. Then `lookback` is 1 frame.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, motion: bool = True):
        super().__init__()
        self.lookback = int(motion)
        channels = in_channels * (2 if motion else 1) + 2
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, width // 2, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(8),
            nn.Flatten(),
            nn.Linear(width * 64, out_channels), nn.ReLU(),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 [B, T_v, H, W, C] -> float [B, T_v, C_out]"""
        B, T_v, H, W, C = frames.shape
        x = frames.float() / 127.5 - 1.0
        if self.lookback:
            x = torch.cat([x, x - previous_frame(x)], dim=-1)
        x = x.reshape(B * T_v, H, W, -1).permute(0, 3, 1, 2)  # [B*T_v, C', H, W]
        ys = torch.linspace(-1, 1, H, dtype=x.dtype, device=x.device)[:, None].expand(H, W)
        xs = torch.linspace(-1, 1, W, dtype=x.dtype, device=x.device)[None, :].expand(H, W)
        x = torch.cat([x, torch.stack([ys, xs]).expand(B * T_v, -1, -1, -1)], dim=1)
        return self.cnn(x).reshape(B, T_v, -1)


class KeypointEncoder(nn.Module):
    """2D keypoints -> one movement vector per frame, by a per-frame MLP.

    Input per joint: x, y (normalized image coordinates) and visibility. A joint that is not seen (visibility 0)
    enters as (0, 0, 0) whatever its coordinates say, so the network learns "missing" from the mask alone.
    Coordinates are taken relative to the visible joints' mean too, so the same pose anywhere in the picture
    looks alike, while the absolute position still comes in. With `motion`, each joint's displacement since the
    previous frame comes in too (zero unless the joint is seen in both), and `lookback` is 1 frame.
    """

    VELOCITY_SCALE = 10.0  # a frame's displacement is a few hundredths of the image: bring it near unit size

    def __init__(self, n_joints: int, out_channels: int, width: int = 128, motion: bool = True):
        super().__init__()
        self.lookback = int(motion)
        self.mlp = nn.Sequential(
            nn.Linear(n_joints * (7 if motion else 5), width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, out_channels), nn.ReLU(),
        )

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        """keypoints: float [B, T_v, J, 3] (x, y, visibility) -> float [B, T_v, C_out]"""
        B, T_v, J, _ = keypoints.shape
        vis = keypoints[..., 2:3].clamp(0, 1)
        seen = (vis > 0).float()
        xy = (keypoints[..., :2] - 0.5) * 2 * seen  # [-1, 1], zero where unseen
        center = xy.sum(2, keepdim=True) / seen.sum(2, keepdim=True).clamp(min=1)
        rel = (xy - center) * seen
        parts = [xy, rel, vis]
        if self.lookback:
            both = seen * previous_frame(seen)
            parts.append((xy - previous_frame(xy)) * both * self.VELOCITY_SCALE)
        return self.mlp(torch.cat(parts, dim=-1).reshape(B, T_v, -1))


class ControlHead(nn.Module):
    """Movement features -> each frame's controls (movenet.controls): note logits [N_PITCH_CLASSES], loudness (dB
    scaled to about 0..1), onset logit, and with `kick` the hit's level (movenet.controls.head_width). The style
    joins the features first: a style may map the same gesture to another note (its own scale)."""

    def __init__(self, channels: int, n_labels: int = 0, width: int = 128, kick: bool = False):
        from movenet.controls import head_width

        super().__init__()
        self.label_embed = nn.Embedding(n_labels, channels) if n_labels else None
        self.mlp = nn.Sequential(nn.Linear(channels, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, head_width(kick)))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, T_v, C], labels int64 [B] -> [B, T_v, head_width(kick)]"""
        if self.label_embed is not None:
            features = features + self.label_embed(labels)[:, None, :]
        return self.mlp(features)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 40.0) -> torch.Tensor:
    """Triangular filters on the mel scale (HTK), [n_mels, n_fft // 2 + 1], each summing to one."""
    def mel(hz):
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(torch.linspace(mel(torch.tensor(f_min)), mel(torch.tensor(sample_rate / 2.0)), n_mels + 2,
                              dtype=torch.float64))
    bins = torch.linspace(0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up, down = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    filters = torch.clamp(torch.minimum(up, down), min=0.0)
    return (filters / filters.sum(1, keepdim=True).clamp(min=1e-12)).float()


class StyleEncoder(nn.Module):
    """Audio -> the posterior of a style latent, mean and log-variance [B, latent] each.

    The log-mel spectrum of each frame with its level taken out (the level follows the movement, not the
    instrument), two convolutions, then the mean over the frames that sound: what stays constant across a stretch
    of the soundtrack (its timbre, its texture) survives, when things happen does not."""

    N_FFT, HOP, N_MELS = 512, 256, 40
    AUDIBLE_DB = 40.0  # frames this far below the loudest one are left out of the mean
    RANGE_DB = 80.0  # bands this far below their frame's loudest read as this, whatever the level

    def __init__(self, latent: int, sample_rate: int, width: int = 64):
        super().__init__()
        self.register_buffer("mel", mel_filterbank(sample_rate, self.N_FFT, self.N_MELS), persistent=False)
        self.register_buffer("window", torch.hann_window(self.N_FFT), persistent=False)
        self.convs = nn.Sequential(nn.Conv1d(self.N_MELS, width, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(width, width, 3, padding=2, dilation=2), nn.ReLU())
        self.out = nn.Linear(width, 2 * latent)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wav float [B, T] (T >= N_FFT) -> (mean, log-variance), float32 [B, latent] each."""
        spec = torch.stft(wav.float(), self.N_FFT, self.HOP, window=self.window, return_complex=True).abs() ** 2
        db = 10 * torch.log10(self.mel @ spec + 1e-10)  # [B, N_MELS, frames]
        level = db.amax(1, keepdim=True)  # each frame's loudest band
        sounding = (level > level.amax(2, keepdim=True) - self.AUDIBLE_DB).float()  # [B, 1, frames]
        h = self.convs((db - level).clamp(min=-self.RANGE_DB) / 20.0)  # the shape of each frame's spectrum
        pooled = (h * sounding).sum(2) / sounding.sum(2).clamp(min=1.0)
        mean, log_var = self.out(pooled).chunk(2, dim=-1)
        return mean, log_var.clamp(-10.0, 5.0)
