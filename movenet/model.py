"""The conditional WaveNet: mu-law codes and the dancer's movement in, next-sample logits out.

References: van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio" (gated activations with local
and global conditioning, sec. 2.3-2.5); Paine et al. 2016, "Fast WaveNet Generation Algorithm" (the per-layer
buffers behind `step`).

Alignment, stated once. The model predicts target sample t from the samples before it and from the movement up
to frame t // hop (the frame shown at time t / sample_rate, since frame k covers samples k*hop .. (k+1)*hop - 1).
Its input at position t is the previous sample, codes[t - 1]; the sample before a clip is `audio.SILENCE`, and
before its first frame the first frame is held. So the sound at any time depends only on earlier sound and on
frames already shown: the model can play live.

The sequence path (`logits`) is *valid*: its first receptive_field - 1 inputs are context, and it returns logits
for the rest. `teacher_forced` adds the pre-roll (silence, first frame held) so that a whole clip gets logits from
its first sample, and `init_state` starts `step` from exactly that pre-roll, so step == teacher_forced.

The style latent (`latent` > 0; Chorowski et al. 2019, a WaveNet autoencoder with a VAE bottleneck): a
`StyleEncoder` reads a stretch of a clip's soundtrack into the posterior of a small `z`, which joins every layer's
conditioning beside the movement, as the style label does in a model without it. The control head never sees `z`,
so the movement alone still decides note, loudness and hits; `z` decides how they sound. The KL term (with free
bits) keeps the posterior near the prior N(0, I), so a draw from the prior plays too. A model with a latent plays,
when given no `z`, its style's centroid (`style_centroids`, the mean posterior of that style's training clips).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import torch
import torch.nn.functional as F
from torch import nn

from movenet import controls, inputs
from movenet.audio import SILENCE
from movenet.inputs import FEATURES, InputConfig
from movenet.nn import (ControlHead, DilatedCausalConv, FrameEncoder, KeypointEncoder, ResidualBlock, StyleEncoder,
                        TemporalConv)

# Settings the data fixes (its InputConfig and its styles), not the user: `ModelConfig.for_inputs` sets them.
FROM_DATA = ("hop", "sample_rate", "frame_size", "frame_channels", "n_joints", "n_labels", "n_classes")


@dataclass
class ModelConfig:
    """The model. The defaults are the recipe of the shipped checkpoint, what a 2-core CPU trains in an hour to
    follow the dancer (README, *The shipped checkpoint*); on a GPU, wider layers (64 / 128 / 64) learn more."""

    n_classes: int = 256  # mu-law classes
    residual_channels: int = 32
    gate_channels: int = 64  # dilated conv output: half filter, half gate
    skip_channels: int = 32
    kernel_size: int = 2
    layers_per_stack: int = 10  # dilations 1, 2, ..., 2**(layers_per_stack - 1)
    n_stacks: int = 2
    input_kernel: int = 2  # the causal convolution after the code embedding
    # movement
    hop: int = 640  # audio samples per video frame: sample_rate / fps of the data
    features: str = "keypoints"  # "frames", "keypoints" or "both"; for_inputs: keypoints when the data has them
    frame_size: int = 64
    frame_channels: int = 1
    frame_width: int = 16  # frame CNN width
    n_joints: int = 15
    keypoint_width: int = 128  # keypoint MLP width
    video_channels: int = 32  # movement vector per frame
    video_kernel: int = 3  # causal temporal convolution over frames
    # style (global conditioning); 0 = none
    n_labels: int = 0
    # explicit controls (movenet.controls): a head predicts each frame's note, loudness and onset from the movement,
    # and the source they play (`harmonics` of the note, an onset pulse, the loudness; with `kick`, a kick drum's
    # body after each onset, at the hit's level, which the head then also predicts) enters every layer's gates
    controls: bool = True
    harmonics: int = 4
    kick: bool = True  # a drum body at each hit, at its level: the hits come out as kicks (README, ablation)
    # with kick: the kick is played as the source renders it, added to what the WaveNet plays, and the WaveNet
    # models the soundtrack without it (playing it, the WaveNet under-rendered it and buried it in its noise)
    direct_kick: bool = True
    motion: bool = True  # the movement encoders also see each frame's change from the one before
    latent: int = 0  # dimensions of the learned style latent z (0: none); the WaveNet hears z instead of the label
    sample_rate: int = 16000  # of the data: the source's frequencies are in Hz

    def __post_init__(self):
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")

    @classmethod
    def for_inputs(cls, data: InputConfig, n_labels: int = 0, **settings) -> "ModelConfig":
        """A model for data with these input settings and styles; `settings` the rest (features: what to listen
        to; by default the keypoints when the data has them, which the model follows best, else the frames).
        Raises InputMismatch if the data lacks those features."""
        unexpected = sorted(set(settings) & set(FROM_DATA))
        if unexpected:
            raise ValueError(f"{', '.join(unexpected)} come from the prepared data set, not from the model config")
        default = "keypoints" if inputs.uses_keypoints(data.features) else "frames"
        config = cls(**{**settings, "features": settings.get("features") or default, "hop": data.hop,
                        "sample_rate": data.sample_rate,
                        "frame_size": data.frame_size, "frame_channels": data.channels,
                        "n_joints": inputs.N_JOINTS, "n_labels": n_labels})
        InputConfig(data.sample_rate, data.fps, data.frame_size, data.gray, config.features).require(
            data, "the prepared set")
        return config

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from a checkpoint's plain dict; unknown keys are an error (a newer checkpoint format)."""
        # a checkpoint made before a setting existed has it off
        d = {"controls": False, "motion": False, "kick": False, "direct_kick": False, "latent": 0, **d}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model settings {unknown}: made by a newer movenet?")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def plays_kick(self) -> bool:
        """Whether the source's kick is added to the WaveNet's output (`direct_kick`, for a model with a kick)."""
        return self.direct_kick and self.kick and self.controls and self.harmonics > 0

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_stack)] * self.n_stacks

    @property
    def n_layers(self) -> int:
        return self.layers_per_stack * self.n_stacks

    @property
    def receptive_field(self) -> int:
        """Input samples that one output sees: itself, the input convolution's history, every dilated layer's."""
        return 1 + (self.input_kernel - 1) + sum((self.kernel_size - 1) * d for d in self.dilations)

    @property
    def context_frames(self) -> int:
        """Whole frames of audio context that cover receptive_field - 1 samples (the pre-roll, crop context)."""
        return -(-(self.receptive_field - 1) // self.hop)

    @property
    def source_channels(self) -> int:
        """Channels of the source signal the WaveNet hears beside its own past (0 without controls)."""
        return controls.n_channels(self.harmonics, self.kick) if self.controls else 0

    @property
    def uses_frames(self) -> bool:
        return inputs.uses_frames(self.features)

    @property
    def uses_keypoints(self) -> bool:
        return inputs.uses_keypoints(self.features)


@dataclass
class State:
    """Everything `step` carries from one sample to the next (batch-first tensors)."""

    t: int  # index of the next target sample
    input_buffer: torch.Tensor  # [B, input_kernel - 1, C_res]: embedded past codes (the source is not remembered)
    buffers: list[torch.Tensor] = field(default_factory=list)  # per dilated layer: [B, (k-1) * d, C_res]


class MoveNet(nn.Module):
    """Video-conditioned WaveNet. See the module docstring for the alignment of audio and frames."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.n_classes, c.residual_channels)  # = one-hot followed by a 1x1 convolution
        self.input_conv = DilatedCausalConv(c.residual_channels, c.residual_channels, c.input_kernel)
        self.blocks = nn.ModuleList(
            ResidualBlock(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d, c.source_channels)
            for d in c.dilations
        )
        self.frame_encoder = FrameEncoder(c.frame_channels, c.video_channels, c.frame_width, c.motion) \
            if c.uses_frames else None
        self.keypoint_encoder = KeypointEncoder(c.n_joints, c.video_channels, c.keypoint_width, c.motion) \
            if c.uses_keypoints else None
        self.temporal = TemporalConv(c.video_channels, c.video_kernel)
        # V_f, V_g of every layer in one projection at frame rate; holding it for `hop` samples is the up-sampler
        # (a projection commutes with holding), so conditioning costs nothing per sample.
        self.cond_proj = nn.Linear(c.video_channels, c.n_layers * c.gate_channels)
        self.label_embed = nn.Embedding(c.n_labels, c.n_layers * c.gate_channels) \
            if c.n_labels and not c.latent else None
        if c.latent:
            self.style_encoder = StyleEncoder(c.latent, c.sample_rate)
            self.latent_proj = nn.Linear(c.latent, c.n_layers * c.gate_channels)
            # set after training (train.set_style_centroids): what a style plays when no z is given
            self.register_buffer("style_centroids", torch.zeros(max(1, c.n_labels), c.latent))
        self.control_head = ControlHead(c.video_channels, c.n_labels, kick=c.kick) if c.controls else None
        self.head = nn.Sequential(
            nn.ReLU(), nn.Linear(c.skip_channels, c.skip_channels), nn.ReLU(), nn.Linear(c.skip_channels, c.n_classes)
        )

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def frame_lookback(self) -> int:
        """Frames before the current one that its conditioning depends on (a live loop keeps this many)."""
        return self.temporal.lookback + int(self.config.motion)

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode(self, frames: torch.Tensor | None = None, keypoints: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, detach: bool = False, latent: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The movement's per-frame conditioning of all layers [B, T_v, n_layers * G], and the control head's
        output [B, T_v, controls.head_width(kick)] (None without controls; `controls.from_head` reads it).

        frames: uint8 [B, T_v, H, W, C]; keypoints: float [B, T_v, J, 3]; labels: int64 [B] (style); latent: float
        [B, latent] (a model with a style latent; None: the labels' centroids).
        Causal in frames: row k depends on frames k - frame_lookback .. k only (frame 0 held before the start).
        detach: the conditioning's gradient stops at the movement features (only the head's losses train the
        encoders).
        """
        c = self.config
        parts = []
        if c.uses_frames:
            if frames is None:
                raise ValueError("this model listens to frames: pass frames")
            parts.append(self.frame_encoder(frames))
        if c.uses_keypoints:
            if keypoints is None:
                raise ValueError("this model listens to keypoints: pass keypoints")
            parts.append(self.keypoint_encoder(keypoints.float()))
        if c.n_labels and labels is None:
            raise ValueError("this model was trained with style labels: pass labels")
        features = self.temporal(sum(parts))
        cond = self.cond_proj(features.detach() if detach else features)
        if self.label_embed is not None:
            cond = cond + self.label_embed(labels)[:, None, :]
        if c.latent:
            latent = self.centroids(labels, len(cond)) if latent is None else latent
            cond = cond + self.latent_proj(latent.to(cond.dtype))[:, None, :]
        head = self.control_head(features, labels) if self.control_head is not None else None
        return cond, head

    def with_latent(self, latent: int) -> "MoveNet":
        """A copy of this model (one without a style latent) with a `latent`-dimensional one added, to fine-tune:
        every weight carried over, and the label embedding's mean as the latent projection's bias, with a zero
        weight. It starts by playing the average of its styles (what any z then plays), and training teaches z to
        say which sound; starting from a model that already follows the dancer, the decoder has learned what z
        cannot tell it, and z's only job is what is left: the sound."""
        c = self.config
        if c.latent or latent < 1:
            raise ValueError(f"with_latent adds a latent to a model without one (this one has {c.latent}); "
                             f"asked for {latent}")
        grown = MoveNet(ModelConfig.from_dict({**c.to_dict(), "latent": latent}))
        kept = {k: v for k, v in self.state_dict().items() if not k.startswith("label_embed.")}
        missing = grown.load_state_dict(kept, strict=False).missing_keys
        assert all(k.startswith(("style_encoder.", "latent_proj.", "style_centroids")) for k in missing), missing
        with torch.no_grad():
            grown.latent_proj.weight.zero_()
            grown.latent_proj.bias.copy_(self.label_embed.weight.mean(0) if self.label_embed is not None else 0.0)
        return grown

    def centroids(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The style latent each of a batch plays when given none: its style's centroid, [batch, latent]."""
        rows = labels if self.config.n_labels else torch.zeros(batch, dtype=torch.long)
        return self.style_centroids[rows]

    def encode_style(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior of the style latent of audio wav float [B, T] in [-1, 1]: (mean, log-variance) [B, latent]."""
        if not self.config.latent:
            raise ValueError("this model has no style latent")
        return self.style_encoder(wav)

    def condition(self, frames: torch.Tensor | None = None, keypoints: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
        """The per-frame conditioning of all layers, [B, T_v, n_layers * G] (see `encode`)."""
        return self.encode(frames, keypoints, labels)[0]

    def cond_at(self, cond: torch.Tensor, t: int) -> torch.Tensor:
        """The conditioning row for target sample t: [B, n_layers * G]."""
        return cond[:, t // self.config.hop]

    def _check_source(self, source: torch.Tensor | None, T: int) -> None:
        E = self.config.source_channels
        if E and (source is None or source.shape[1] != T or source.shape[2] != E):
            got = None if source is None else list(source.shape)
            raise ValueError(f"this model hears a source of {E} channels: pass source [B, {T}, {E}], got {got}")

    # -- training / teacher forcing -------------------------------------------------------------------------------

    def logits(self, codes: torch.Tensor, cond: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Valid pass: codes [B, T] int64 (input t = the sample before target t, target t in frame t // hop),
        cond [B, T_v, n_layers * G], source [B, T, E] (row t: the source at target t; with controls only)
        -> logits [B, T - receptive_field + 1, Q] for targets receptive_field - 1 .. T - 1.
        """
        B, T = codes.shape
        c = self.config
        G, hop = c.gate_channels, c.hop
        n_out = T - (c.receptive_field - 1)
        if n_out < 1:
            raise ValueError(f"{T} samples are fewer than the receptive field ({c.receptive_field})")
        if (T - 1) // hop >= cond.shape[1]:
            raise ValueError(f"{T} samples need {(T - 1) // hop + 1} frames of conditioning, got {cond.shape[1]}")
        self._check_source(source, T)
        x = self.input_conv(self.embed(codes))  # [B, T - (input_kernel - 1), C_res]
        start = self.input_conv.history  # audio position of x[:, 0]
        skips = 0
        for i, block in enumerate(self.blocks):
            x, skip, start = block(x, cond[:, :, i * G: (i + 1) * G], start, hop, n_out,
                                   None if source is None else source[:, start:])
            skips = skips + skip
        return self.head(skips)

    def forward(self, codes: torch.Tensor, frames: torch.Tensor | None = None, keypoints: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, source: torch.Tensor | None = None) -> torch.Tensor:
        """`logits` with the conditioning computed from the movement: see `logits` and `encode`."""
        return self.logits(codes, self.condition(frames, keypoints, labels), source)

    def loss(self, batch: dict, score_encoder: bool = False, free_bits: float = 0.0) -> dict[str, torch.Tensor]:
        """Mean losses of a training batch (ClipDataset items, stacked), nats: "audio" (cross-entropy per sample)
        and, with controls, the control head's "pitch" (cross-entropy over notes), "loudness" (squared error of the
        scaled dB) and "onset" (binary cross-entropy) per frame.

        batch["codes"]: [B, 1 + T]: codes[:, 0] is the sample before the crop's first frame, codes[:, 1:] the crop,
        whose samples i*hop .. (i+1)*hop - 1 lie in frame i; every target with a full receptive field of context is
        scored. "frames" / "keypoints" and "label" as `encode` takes them; "excitation" [B, T, E], the source of the
        true controls; "controls" [B, T_v, 3], those controls. The head learns from "span_frames" /
        "span_keypoints" with "span_controls" when the batch has them (a longer stretch of movement: more frames
        to learn notes from, at little cost), else from the crop's own. score_encoder: only the head's losses train
        the movement encoders (the audio's stop at the conditioning), so what they learned to read stays put.

        With a style latent, "reference_audio" [B, T_r] (a stretch of the crop's clip) gives z's posterior: z is
        drawn from it in training (its mean in eval mode), and the losses add "kl" (KL to the prior, nats per clip)
        and "kl_free" (the same with each dimension's KL at least `free_bits`: what training minimizes, so the
        latent is not pushed into disuse).
        """
        c = self.config
        head_losses_apply = self.control_head is not None and "controls" in batch
        movement = lambda prefix: (batch.get(prefix + "frames") if c.uses_frames else None,  # noqa: E731
                                   batch.get(prefix + "keypoints") if c.uses_keypoints else None,
                                   batch.get("label") if c.n_labels else None)
        kl = latent = None
        if c.latent:
            mean, log_var = self.encode_style(batch["reference_audio"])
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
            kl = (0.5 * (mean ** 2 + log_var.exp() - log_var - 1)).mean(0)  # per dimension, nats
        cond, head = self.encode(*movement(""), detach=score_encoder and head_losses_apply, latent=latent)
        codes = batch["codes"]
        logits = self.logits(codes[:, :-1], cond, batch.get("excitation"))
        audio_targets = codes[:, c.receptive_field:]
        losses = {"audio": F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), audio_targets.reshape(-1))}
        if head is not None:
            targets = batch["controls"]
            if "span_controls" in batch:
                head, targets = self.encode(*movement("span_"))[1], batch["span_controls"]
            losses.update(controls.head_losses(head.float(), targets))
        if kl is not None:
            losses["kl"], losses["kl_free"] = kl.sum(), kl.clamp(min=free_bits).sum()
        return losses

    def with_preroll(self, codes: torch.Tensor, cond: torch.Tensor, source: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A clip's targets codes [B, T], conditioning [B, T_v, ...] and source [B, T, E] as `logits` inputs from its
        very start: context_frames of pre-roll (silence, the first frame held, no source) before them, and each
        input the sample before its target. The last T outputs of `logits` on the result are the targets' logits."""
        B = codes.shape[0]
        n_pre = self.config.context_frames
        silence = codes.new_full((B, n_pre * self.config.hop + 1), SILENCE)
        held = cond[:, :1].expand(-1, n_pre, -1)
        if source is not None:
            source = torch.cat([source.new_zeros(B, n_pre * self.config.hop, source.shape[2]), source], dim=1)
        return torch.cat([silence, codes[:, :-1]], dim=1), torch.cat([held, cond], dim=1), source

    def teacher_forced(self, codes: torch.Tensor, cond: torch.Tensor, source: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Logits for every sample of a clip from its start: codes [B, T] (the clip's targets), cond [B, T_v, ...],
        source [B, T, E] -> logits [B, T, Q]; logits[:, t] predicts codes[:, t] from codes[:, :t] after the
        pre-roll."""
        return self.logits(*self.with_preroll(codes, cond, source))[:, -codes.shape[1]:]

    # -- incremental generation -----------------------------------------------------------------------------------

    @torch.no_grad()
    def init_state(self, cond0: torch.Tensor) -> State:
        """The state after the pre-roll: silence for ever, with no source, under the first frame's conditioning
        cond0 [B, n_layers * G].

        Every layer's input is then constant, so each buffer holds one vector; computing it takes one pass.
        """
        G = self.config.gate_channels
        B = cond0.shape[0]
        e = self.embed.weight[SILENCE].expand(B, -1).to(cond0.dtype)
        input_buffer = self.input_conv.init_buffer(e)
        x = self.input_conv.steady(e)
        buffers = []
        for i, block in enumerate(self.blocks):
            buffers.append(block.dilated.init_buffer(x))
            x = block.steady(x, cond0[:, i * G: (i + 1) * G])
        return State(t=0, input_buffer=input_buffer, buffers=buffers)

    @torch.no_grad()
    def step(self, prev_code: torch.Tensor, cond_t: torch.Tensor, state: State,
             source_t: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One sample, constant work: prev_code [B] int64 (the sample before target state.t; SILENCE at t = 0),
        cond_t [B, n_layers * G] (= cond_at(cond, state.t)), source_t [B, E] (the source at target state.t; with
        controls only) -> logits [B, Q] for target state.t.

        Updates the buffers in `state` and advances state.t.
        """
        G, t = self.config.gate_channels, state.t
        x = self.input_conv.step(self.embed(prev_code), state.input_buffer, t)
        if self.config.source_channels and source_t is None:
            raise ValueError("this model hears a source: pass source_t")
        skips = 0
        for i, block in enumerate(self.blocks):
            x, skip = block.step(x, cond_t[:, i * G: (i + 1) * G], state.buffers[i], t, source_t)
            skips = skips + skip
        state.t = t + 1
        return self.head(skips), state
