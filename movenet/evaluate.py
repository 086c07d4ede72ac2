"""Does the music follow the dance? `movenet evaluate CHECKPOINT DATA_DIR`.

DATA_DIR is a prepared set (its validation split is used) or any folder of videos. Reported:

- likelihood: teacher-forced NLL in bits per sample with the clip's own video, with another clip's video, and with
  a blank video (black frames / no keypoints); the conditioning gain is wrong - right. Needs the true audio, so
  clips without an audio track have no likelihood rows.
- rhythm and ground truth (`movenet.metrics.clip_metrics`) on audio generated for N clips, beside two reference
  rows: the true audio (upper bound) and another clip's true audio (chance). Without audio the reference rows say
  "no ground truth".
- plots: one PNG per generated clip and a summary PNG; everything in one JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from movenet import audio, controls, metrics, pose, video
from movenet.checkpoint import Loaded
from movenet.data import (HIT_LEVELS_SINCE, DataError, data_config_from_manifest, find_videos, load_manifest,
                          open_clip)
from movenet.generate import generate_audio
from movenet.sampling import DEFAULT_SPREAD
from movenet.model import MoveNet
from movenet.controls import Excitation, SourceState, align_phase
from movenet.movement import Conditioning, Movement, condition, read_movement

NO_GROUND_TRUTH = "no ground truth"


@dataclass
class EvalClip:
    name: str
    source: str
    movement: Movement
    codes: np.ndarray | None  # uint8 [n_frames * hop], the true audio; None for a video without audio
    label: int | None
    sidecar: dict | None  # the synthetic dancer's ground truth
    controls: np.ndarray | None = None  # float32 [n_frames, 3], the soundtrack's, where a prepared set stores them


@torch.no_grad()
def teacher_forced_bits(model: MoveNet, codes: np.ndarray, cond: Conditioning, chunk_frames: int = 100) -> float:
    """Mean NLL in bits per sample of a whole clip's codes [T] under its conditioning (`movement.condition`:
    rows, and the controls whose source the model hears), from its first sample.

    The source is rendered from those controls as in generation, then put in phase with the audio being scored
    (controls.align_phase), as in training: where a generated soundtrack is in phase with its source by
    construction, a recording has a phase of its own, and the phase says nothing of the movement (with another
    clip's notes it aligns nothing). Computed `chunk_frames` at a time with a full receptive field of context, so
    memory stays flat in T; the result equals model.teacher_forced over the whole clip.
    """
    c = model.config
    hop, n_ctx = c.hop, c.context_frames
    targets = torch.from_numpy(codes.astype(np.int64))[None]
    excitation = Excitation.of(c)
    source = None
    if excitation is not None:
        rendered = excitation.render(cond.controls[None], SourceState.silent(1))[0, : targets.shape[1]]
        source = torch.from_numpy(align_phase(rendered, audio.mu_law_decode(codes), hop, c.harmonics))[None]
    # input t + n_ctx * hop predicts target t
    inputs, held, source = model.with_preroll(targets, torch.from_numpy(cond.rows)[None], source)
    total, n = 0.0, 0
    for start in range(0, targets.shape[1], chunk_frames * hop):
        stop = min(start + chunk_frames * hop, targets.shape[1])
        # window of inputs from `start` (a frame boundary) with n_ctx frames of context before it
        window = slice(start, stop + n_ctx * hop)
        logits = model.logits(inputs[:, window], held[:, start // hop:],
                              None if source is None else source[:, window])[:, -(stop - start):]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets[0, start:stop],
                                 reduction="sum").item()
        n += stop - start
    return total / n / math.log(2)


def scored_codes(config, codes: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """The codes [T] of a soundtrack as a model's WaveNet learnt them: as they are, or for a `direct_kick` model
    without the kick its source renders from the soundtrack's own onsets and levels (`truth`, its controls
    [n_frames, 3] where known: a prepared set stores them; else found as `prepare` finds them), so that every
    movement is scored on the same audio."""
    if not config.plays_kick:
        return codes
    n_frames = len(codes) // config.hop
    if truth is None:
        truth = controls.analyze(audio.mu_law_decode(codes), config.sample_rate, config.sample_rate // config.hop,
                                 n_frames)
    source = Excitation.of(config).render(controls.snap_to_notes(truth)[None], SourceState.silent(1))[0]
    kick = np.zeros(len(codes), np.float32)
    kick[: len(source)] = controls.kick_of(source)[: len(codes)]
    return controls.without_kick(codes, kick)


def load_clips(loaded: Loaded, data_dir: str | Path, log=print) -> tuple[list[EvalClip], list[EvalClip]]:
    """(clips to evaluate, clips whose video and audio serve as "another clip's").

    A prepared set: its validation split (all clips if it has none); the others are the same clips, plus a few
    training clips when the split holds fewer than two. A folder: every video in it (read with the checkpoint's
    settings; unreadable files are reported in one line and skipped), which are also the others.
    """
    data_dir = Path(data_dir)
    config = loaded.model.config
    clips = []
    if (data_dir / "manifest.json").exists():
        manifest = load_manifest(data_dir)
        loaded.inputs.require(data_config_from_manifest(manifest), str(data_dir))
        records = [r for r in manifest["clips"] if r["split"] == "valid"] or manifest["clips"]
        extra = [r for r in manifest["clips"] if r not in records][: max(0, 3 - len(records))]
        for record in records + extra:
            arrays = open_clip(data_dir, record, mmap=False)
            movement = Movement(arrays.get("frames") if config.uses_frames else None,
                                arrays.get("keypoints") if config.uses_keypoints else None)
            source = Path(record["source"])
            # before HIT_LEVELS_SINCE every stored hit has level 1: those are found again, with their levels
            stored = arrays["controls"] if manifest["format_version"] >= HIT_LEVELS_SINCE else None
            clips.append(EvalClip(record["id"], str(source), movement, arrays["codes"],
                                  loaded.label_index(record["label"], unknown="first"), pose.dancer_truth(source),
                                  stored))
        return clips[: len(records)], clips
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory or a prepared set")
    for job in find_videos(data_dir, valid_fraction=0):
        try:
            movement = read_movement(job.source, loaded.inputs)
        except video.MediaError as err:
            log(f"{job.source}: {err}")
            continue
        codes = None
        if video.probe(job.source).has_audio:
            try:
                wav = video.read_audio(job.source, loaded.inputs.sample_rate)
                codes = audio.mu_law_encode(audio.normalize_loudness(wav))
            except video.MediaError as err:
                log(f"{job.source}: audio unusable ({err}); evaluating without ground truth")
        if codes is not None:  # both streams cover the same span, as in a prepared set
            n = min(movement.n_frames, len(codes) // config.hop)
            movement, codes = movement.fit(n), codes[: n * config.hop]
        clips.append(EvalClip(job.rel, job.source, movement, codes, loaded.label_index(job.label, unknown="first"),
                              pose.dancer_truth(job.source)))
    return clips, clips


def likelihood(model: MoveNet, clips: list[EvalClip], pool: list[EvalClip], sample_rate: int,
               progress: bool = False) -> dict | str:
    """Teacher-forced bits per sample of each clip with audio: with its own movement ("right"), another clip's
    ("wrong") and a blank one; means weighted by duration, and the gains wrong - right and blank - right."""
    from tqdm import tqdm

    rows = []
    for clip in tqdm([c for c in clips if c.codes is not None], desc="likelihood", unit="clip",
                     disable=not progress):
        other = _other(clip, pool)
        n_frames = clip.movement.n_frames
        row = {"clip": clip.name, "seconds": len(clip.codes) / sample_rate}
        codes = scored_codes(model.config, clip.codes, clip.controls)
        row["right"] = teacher_forced_bits(model, codes, condition(model, clip.movement, clip.label))
        if other is not None:
            row["wrong"] = teacher_forced_bits(model, codes, condition(model, other.movement.fit(n_frames), clip.label))
        row["blank"] = teacher_forced_bits(model, codes, condition(model, clip.movement.blank(), clip.label))
        rows.append(row)
    if not rows:
        return NO_GROUND_TRUTH
    weights = np.array([r["seconds"] for r in rows])
    mean = {k: float(np.average([r[k] for r in rows], weights=weights)) for k in ("right", "wrong", "blank")
            if all(k in r for r in rows)}
    return {**mean, "conditioning_gain": mean.get("wrong", math.nan) - mean["right"],
            "blank_gain": mean["blank"] - mean["right"], "per_clip": rows}


def evaluate(loaded: Loaded, data_dir: str | Path, n_clips: int = 4, temperature: float = 1.0, seed: int = 0,
             plots_dir: str | Path | None = None, engine: str = "fast", progress: bool = True, log=print,
             precision: str = "auto", spread: float = DEFAULT_SPREAD) -> dict:
    """Everything in the module docstring, as a JSON-able dict."""
    from movenet import plot

    model = loaded.model
    sr, fps = loaded.inputs.sample_rate, loaded.inputs.fps
    clips, pool = load_clips(loaded, data_dir, log)
    if not clips:
        raise DataError(f"{data_dir}: no clip to evaluate")
    report = {"checkpoint_step": loaded.step, "data_dir": str(data_dir), "n_clips": len(clips),
              "temperature": temperature, "spread": spread, "seed": seed, "precision": precision,
              "likelihood_bits_per_sample": likelihood(model, clips, pool, sr, progress)}
    if model.config.latent:
        report["style_latent"] = style_kl(model, clips)

    # Rhythm and ground truth on generated audio, with the reference rows.
    metric_rows = []
    per_clip = []
    chosen = clips[:n_clips]
    for k, clip in enumerate(chosen):
        wav = generate_audio(loaded, clip.movement, clip.label, temperature, seed + k, engine, progress, precision,
                             spread=spread)
        kp = np.asarray(clip.sidecar["joints"], np.float32) if clip.sidecar else clip.movement.keypoints
        frames = clip.movement.frames
        if kp is None and frames is None:
            frames = video.read_frames(clip.source, fps=fps)
        truth = None if clip.codes is None else audio.mu_law_decode(clip.codes)
        scores = metrics.clip_metrics(wav, sr, fps, frames=frames, keypoints=kp, sidecar=clip.sidecar,
                                      reference_wav=truth)
        metric_rows.append({"condition": "model", "clip": clip.name, **scores})
        entry = {"clip": clip.name, "model": scores}
        if truth is not None:
            gt = metrics.clip_metrics(truth, sr, fps, frames=frames, keypoints=kp, sidecar=clip.sidecar,
                                      reference_wav=truth)  # perfect on the reference metrics: the upper bound
            metric_rows.append({"condition": "ground truth", "clip": clip.name, **gt})
            entry["ground_truth"] = gt
        else:
            entry["ground_truth"] = NO_GROUND_TRUTH
        other = _other(clip, [c for c in pool if c.codes is not None])
        if other is not None:
            chance_wav = audio.mu_law_decode(_fit_codes(other.codes, len(wav)))
            chance = metrics.clip_metrics(chance_wav, sr, fps, frames=frames, keypoints=kp,
                                          sidecar=clip.sidecar, reference_wav=truth)
            metric_rows.append({"condition": "chance", "clip": clip.name, **chance})
            entry["chance"] = chance
        else:
            entry["chance"] = NO_GROUND_TRUTH
        if plots_dir is not None:
            speed = metrics.motion_speed(kp, None if kp is not None else frames, fps=fps)
            beats = metrics.motion_beats(speed, fps)
            entry["plot"] = str(plot.evaluation_figure(
                Path(plots_dir) / f"{clip.name.replace('/', '_')}.png", wav, sr, fps, speed, beats, gt_wav=truth,
                title=clip.name, scores=scores, gt_scores=entry["ground_truth"] if truth is not None else None))
        per_clip.append(entry)
    report["generated"] = {"summary": metrics.summarize(metric_rows), "per_clip": per_clip}
    if plots_dir is not None and metric_rows:
        report["summary_plot"] = str(plot.evaluation_summary_figure(metric_rows, Path(plots_dir) / "summary.png",
                                                                    title=f"{Path(data_dir).name}: model vs references"))
    return report


def _other(clip: EvalClip, pool: list[EvalClip]) -> EvalClip | None:
    """The clip after `clip` in the pool (cyclically), never `clip` itself."""
    if clip not in pool:
        return pool[0] if pool else None
    others = pool[pool.index(clip) + 1:] + pool[: pool.index(clip)]
    return others[0] if others else None


def _fit_codes(codes: np.ndarray, n: int) -> np.ndarray:
    """Another clip's audio cut to n samples, or padded with silence."""
    if len(codes) >= n:
        return codes[:n]
    return np.concatenate([codes, np.full(n - len(codes), audio.SILENCE, np.uint8)])


def style_kl(model: MoveNet, clips: list[EvalClip]) -> dict | str:
    """How much a latent model's z carries: the KL to the prior of each clip's posterior (from its true audio),
    nats per clip; near 0 would mean the latent is unused."""
    from movenet import style

    rows = []
    for clip in clips:
        if clip.codes is not None:
            rows.append({"clip": clip.name, "kl_nats": style.kl_nats(*style.posterior(model, audio.mu_law_decode(
                clip.codes)))})
    if not rows:
        return NO_GROUND_TRUTH
    kls = [r["kl_nats"] for r in rows]
    return {"kl_nats_per_clip": {"mean": float(np.mean(kls)), "min": float(np.min(kls)), "max": float(np.max(kls))},
            "per_clip": rows}


def format_report(report: dict) -> str:
    """The report as the lines `movenet evaluate` prints: likelihood, then a table of metric x condition."""
    lines = []
    likelihood = report["likelihood_bits_per_sample"]
    if isinstance(likelihood, dict):
        lines.append(f"likelihood (bits/sample, teacher forced, {len(likelihood['per_clip'])} clips): "
                     f"right video {likelihood['right']:.3f}, another clip's video "
                     f"{likelihood.get('wrong', float('nan')):.3f}, blank video {likelihood['blank']:.3f}; "
                     f"conditioning gain {likelihood['conditioning_gain']:.3f}")
    else:
        lines.append(f"likelihood: {likelihood} (no audio track)")
    kl = report.get("style_latent")
    if isinstance(kl, dict):
        k = kl["kl_nats_per_clip"]
        lines.append(f"style latent: KL to the prior {k['mean']:.2f} nats per clip (min {k['min']:.2f}, "
                     f"max {k['max']:.2f}, {len(kl['per_clip'])} clips)")
    summary = report["generated"]["summary"]
    # Headline metrics first; the published rhythm scores after them, for comparison only (they reward noise).
    names = [m for m in (*metrics.HEADLINE, "bas_true_beats", "bas", "bhs", "bcs") if m in summary]
    conditions = ("model", "ground truth", "chance")
    lines.append(f"{'metric':<24}" + "".join(f"{c:>16}" for c in conditions))
    for name in names:
        cells = []
        for c in conditions:
            cell = summary[name].get(c)
            cells.append(f"{cell['mean']:>10.3f} ±{cell['sem']:.2f}" if cell and cell["n"] else NO_GROUND_TRUTH)
        lines.append(f"{name:<24}" + "".join(f"{x:>16}" for x in cells))
    return "\n".join(lines)
