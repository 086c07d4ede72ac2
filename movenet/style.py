"""The style latent at generation: where a model with `latent` > 0 (model.py) gets its z.

    the style's centroid      (nothing asked)          what that style's training clips sound like on average
    a draw from the prior     --variation N            z ~ N(0, I), seeded by N: the same N, the same character
    a reference recording     --like REF.wav|.mp4      the posterior mean of REF's soundtrack: its timbre and
                                                       texture, with this video's movement
    between two of these      --like A --like B --mix T, or --variation M --variation N --mix T

The movement still decides note, loudness and hits (the control head never sees z); z decides how they sound.
`centroids` sets the per-style centroids after training; `clip_kl` reports how much a clip's z carries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from movenet import video

MIN_REFERENCE_SECONDS = 0.25
MAX_REFERENCE_SECONDS = 30.0  # a longer reference is read from its start: the encoder averages over time anyway


class StyleError(Exception):
    """A style request that cannot be met; the message is one line naming the file or flag and the reason."""


def check_latent_model(model) -> None:
    if not model.config.latent:
        raise StyleError("this model has no style latent (train one with --latent 4): --variation and --like need it")


@torch.no_grad()
def posterior(model, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posterior of the style latent of one soundtrack wav float32 [T] at the model's rate: (mean, log-variance),
    float32 [latent] each."""
    check_latent_model(model)
    wav = np.asarray(wav, np.float32)[: round(MAX_REFERENCE_SECONDS * model.config.sample_rate)]
    mean, log_var = model.encode_style(torch.from_numpy(np.ascontiguousarray(wav))[None])
    return mean[0].numpy(), log_var[0].numpy()


def kl_nats(mean: np.ndarray, log_var: np.ndarray) -> float:
    """KL(q(z | audio) || N(0, I)) in nats."""
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    return float(0.5 * np.sum(mean ** 2 + np.exp(log_var) - log_var - 1.0))


def prior_draw(model, variation: int) -> np.ndarray:
    """z ~ N(0, I) seeded by `variation` (a whole number >= 0), float32 [latent]: the same number, the same z."""
    check_latent_model(model)
    return np.random.default_rng([variation, 0x5717E]).standard_normal(model.config.latent).astype(np.float32)


def like(model, path: str | Path) -> np.ndarray:
    """The latent of a reference recording (any file with an audio track: WAV, MP4, ...): its posterior mean,
    float32 [latent]. Raises StyleError (one line naming the file) for one without usable audio."""
    check_latent_model(model)
    sr = model.config.sample_rate
    try:
        wav = video.read_audio(path, sr)
    except video.MediaError as err:
        raise StyleError(f"{path}: {err}") from None
    except FileNotFoundError:
        raise StyleError(f"{path}: no such file") from None
    if len(wav) < MIN_REFERENCE_SECONDS * sr:
        raise StyleError(f"{path}: {len(wav) / sr:.2f} s of audio; a reference needs at least "
                         f"{MIN_REFERENCE_SECONDS:g} s")
    if not np.any(np.abs(wav) > 1e-4):
        raise StyleError(f"{path}: the audio is silent")
    return posterior(model, wav)[0]


def mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The latent a fraction t of the way from a to b (straight line)."""
    return ((1.0 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)).astype(np.float32)


def requested(model, variations=(), likes=(), mix_t: float | None = None) -> np.ndarray | None:
    """The z a user asked for with --variation / --like (None: nothing asked; the style's centroid plays). One
    source gives its z; two are mixed by mix_t (default halfway). Raises StyleError."""
    sources = [("variation", v) for v in variations or ()] + [("like", p) for p in likes or ()]
    if len(sources) > 2:
        raise StyleError(f"{len(sources)} latents asked for; give one, or two with --mix")
    if mix_t is not None and len(sources) != 2:
        raise StyleError("--mix needs two latents: --variation N or --like FILE, twice")
    zs = [prior_draw(model, v) if kind == "variation" else like(model, v) for kind, v in sources]
    if len(zs) < 2:
        return zs[0] if zs else None
    return mix(zs[0], zs[1], 0.5 if mix_t is None else mix_t)


@torch.no_grad()
def centroids(model, clips) -> tuple[np.ndarray, list[float]]:
    """The style centroids [max(1, n_labels), latent] (each style's mean posterior over its clips; a style with no
    clip keeps the prior's mean, 0) and each clip's KL, from clips: (label id or None, soundtrack wav) pairs."""
    check_latent_model(model)
    c = model.config
    sums, counts = np.zeros((max(1, c.n_labels), c.latent)), np.zeros(max(1, c.n_labels))
    kls = []
    for label, wav in clips:
        mean, log_var = posterior(model, wav)
        row = int(label) if c.n_labels and label is not None else 0
        sums[row] += mean
        counts[row] += 1
        kls.append(kl_nats(mean, log_var))
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), kls
