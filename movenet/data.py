"""Prepared data sets: turn a folder of videos into aligned mu-law codes and movement features, and read crops.

Layout of a prepared set (OUT_DIR):

    manifest.json                      format version, DataConfig, one record per clip, skipped files
    clips/<label>/<stem>-<hash>.json   per-clip record, written last: its presence marks the clip done
    clips/<label>/<stem>-<hash>.audio.npy      uint8 [n_samples]            mu-law codes
    clips/<label>/<stem>-<hash>.frames.npy     uint8 [n_frames, H, W, C]    frames at `fps` (features frames, both)
    clips/<label>/<stem>-<hash>.keypoints.npy  float32 [n_frames, 15, 3]    (x, y, visibility) per joint of
                                               inputs.JOINTS, x, y in [0, 1] of the image (features keypoints, both)
    clips/<label>/<stem>-<hash>.controls.npy   float32 [n_frames, 3]        the soundtrack's controls per frame:
                                               f0 Hz (0: no pitch), loudness dBFS, onset (movenet.controls)

Every clip satisfies n_samples == n_frames * hop, and audio sample n belongs to frame n // hop (the latest frame
whose timestamp is <= n / sample_rate), so a crop starting on a frame boundary keeps audio and video aligned.
Keypoints row k belongs to the same frame k. n_frames is always the decoded video's frame count (trimmed to the
audio), whichever features are stored, so the same clip has the same length in every kind of set.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from movenet import audio, controls, pose, video
from movenet.files import WriteError, save_npy, write_json
from movenet.inputs import InputConfig
from movenet.movement import read_keypoints

# 2: DataConfig.features, keypoints.npy, frames.npy only when features include frames.
# 3: controls.npy, the training targets of the model's control head. Older sets are not read: prepare them again.
# 4: controls.npy's onsets hold each hit's level (in a 3 every hit is 1: read, but a kick trains at one level).
FORMAT_VERSION = 4
SUPPORTED_VERSIONS = (3, 4)
HIT_LEVELS_SINCE = 4
MEDIA_SUFFIXES = {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp", ".ts"}
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid"}
NO_LABEL = "none"


class DataError(Exception):
    """A prepared set that is missing, damaged, or made with other settings. The message is one line."""


@dataclass(frozen=True)
class DataConfig(InputConfig):
    """A prepared set's settings: the input settings its clips are stored with (`InputConfig`; features = what is
    stored beside the audio), and how files were chosen and split, which does not change the stored data."""

    min_seconds: float = 1.0  # shorter clips hold too little context to train on
    valid_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not self.min_seconds >= 0:
            raise ValueError(f"min seconds must be >= 0, got {self.min_seconds}")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid fraction must lie in [0, 1), got {self.valid_fraction}")

    def settings(self) -> dict:
        """The input settings, which a clip is stored with and a model must agree with."""
        return InputConfig.from_dict(asdict(self)).to_dict()


@dataclass
class Job:
    source: str  # absolute path of the video
    rel: str  # path relative to SRC_DIR, used for the id and the split
    label: str
    split: str


@dataclass
class PrepareReport:
    prepared: list[dict] = field(default_factory=list)  # clip records done in this run
    reused: list[dict] = field(default_factory=list)  # records found from an earlier run
    skipped: list[dict] = field(default_factory=list)  # {"source", "reason"}

    @property
    def clips(self) -> list[dict]:
        return sorted(self.prepared + self.reused, key=lambda r: r["id"])

    def summary(self) -> str:
        by_reason = Counter(s["reason"] for s in self.skipped)
        line = f"prepared {len(self.prepared)}, already prepared {len(self.reused)}, skipped {len(self.skipped)}"
        if by_reason:
            line += " (" + ", ".join(f"{n} {reason}" for reason, n in by_reason.most_common()) + ")"
        return line


# ----------------------------------------------------------------------------------------------------------------
# Finding videos, labels and splits


def media_files(src_dir: str | Path, problems: list | None = None) -> list[Path]:
    """The media files under SRC_DIR (by suffix), sorted; hidden files and folders are left out.

    Symlinked files and folders are followed, except a symlink that leads back to a folder it lies in (a loop,
    which would never end). Loops, broken symlinks with a media suffix and unreadable folders are appended to
    `problems` as {"source": path, "reason": one line}.
    """
    src_dir = Path(src_dir)
    found = []

    def problem(path: Path, reason: str) -> None:
        if problems is not None:
            problems.append({"source": str(path), "reason": reason})

    def walk(folder: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            problem(folder, f"cannot read folder ({err.strerror or type(err).__name__})")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            try:
                os.stat(path)  # follows symlinks: a loop or a broken link fails here
            except OSError as err:
                if err.errno == errno.ELOOP:
                    problem(path, "symlink loop (it leads back to itself); skipped")
                elif entry.is_symlink() and path.suffix.lower() in MEDIA_SUFFIXES:
                    problem(path, "broken symlink (its target does not exist)")
                elif not entry.is_symlink():
                    problem(path, f"cannot read ({err.strerror or type(err).__name__})")
                continue
            if entry.is_dir():
                real = os.path.realpath(path)
                if real in ancestors:
                    problem(path, "symlink loop (it leads back to a folder it lies in); not followed")
                    continue
                walk(path, ancestors | {real})
            elif os.path.isfile(path) and path.suffix.lower() in MEDIA_SUFFIXES:
                found.append(path)

    walk(src_dir, frozenset({os.path.realpath(src_dir)}))
    return sorted(found)


def find_videos(src_dir: str | Path, valid_fraction: float = 0.1, seed: int = 0,
                problems: list | None = None) -> list[Job]:
    """Walk SRC_DIR recursively (`media_files`) and give each media file a label and a split.

    `SRC/<label>/.../<clip>` takes the first folder as its label (Kinetics-style); `SRC/{train,valid}/<label>/...`
    keeps the given split. Other files get a seeded split, per label so every label reaches validation.
    problems: see media_files.
    """
    src_dir = Path(src_dir)
    jobs, unsplit = [], {}
    for path in media_files(src_dir, problems):
        parts = path.relative_to(src_dir).parts
        split = SPLIT_FOLDERS.get(parts[0].lower()) if len(parts) > 1 else None
        folders = parts[1:-1] if split else parts[:-1]
        label = folders[0] if folders else NO_LABEL
        job = Job(str(path.resolve()), path.relative_to(src_dir).as_posix(), label, split or "")
        jobs.append(job)
        if not split:
            unsplit.setdefault(label, []).append(job)
    for label, group in unsplit.items():
        group.sort(key=lambda j: j.rel)
        random.Random(f"{seed}/{label}").shuffle(group)
        n_valid = max(1, round(len(group) * valid_fraction)) if len(group) >= 2 and valid_fraction > 0 else 0
        for i, job in enumerate(group):
            job.split = "valid" if i < n_valid else "train"
    return jobs


def clip_id(job: Job) -> str:
    digest = hashlib.sha1(job.rel.encode()).hexdigest()[:8]
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in job.label)
    safe_stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(job.rel).stem)
    return f"{safe_label}/{safe_stem}-{digest}"


# ----------------------------------------------------------------------------------------------------------------
# Preparing


def prepare_clip(job: Job, out_dir: Path, config: DataConfig, progress: bool = False) -> dict:
    """Decode one video and store it; returns its record. Raises video.MediaError with a one-line reason.

    Frames are decoded whatever the features, since they fix n_frames; they are stored only if features include
    frames. progress: show a bar while MediaPipe works through a long video.
    """
    info = video.probe(job.source)
    if not info.has_video:
        raise video.MediaError("no video stream")
    if not info.has_audio:
        raise video.MediaError("no audio track (video only)")
    frames, wav = video.read_clip(
        job.source, sample_rate=config.sample_rate, fps=config.fps, size=(config.frame_size, config.frame_size), gray=config.gray
    )
    seconds = len(wav) / config.sample_rate
    if seconds < config.min_seconds:
        raise video.MediaError(f"too short ({seconds:.2f} s < {config.min_seconds} s)")
    codes = audio.mu_law_encode(audio.normalize_loudness(wav))
    # the controls of the audio the model learns to play: the mu-law coded soundtrack
    clip_controls = controls.analyze(audio.mu_law_decode(codes), config.sample_rate, config.fps, len(frames))
    keypoints = keypoint_info = None
    if config.uses_keypoints:
        keypoints, keypoint_info = read_keypoints(job.source, len(frames), config.fps, progress)
    cid = clip_id(job)
    base = out_dir / "clips" / cid
    base.parent.mkdir(parents=True, exist_ok=True)
    save_npy(base.with_name(base.name + ".audio.npy"), codes)
    save_npy(base.with_name(base.name + ".controls.npy"), clip_controls)
    if config.uses_frames:
        save_npy(base.with_name(base.name + ".frames.npy"), frames)
    if keypoints is not None:
        save_npy(base.with_name(base.name + ".keypoints.npy"), keypoints)
    record = {
        "id": cid,
        "source": job.source,
        "label": job.label,
        "split": job.split,
        "seconds": round(seconds, 4),
        "n_frames": int(frames.shape[0]),
        "n_samples": int(codes.shape[0]),
        "settings": config.settings(),
    }
    if keypoint_info is not None:
        record["keypoints"] = keypoint_info
    # Written last: a clip counts as prepared only once its record exists (a kill leaves no half clip behind).
    write_json(base.with_name(base.name + ".json"), record)
    return record


def _prepare_worker(job: Job, out_dir: str, config: DataConfig, progress: bool = False) -> tuple[str, dict | str]:
    try:
        return "ok", prepare_clip(job, Path(out_dir), config, progress)
    except (pose.MediaPipeMissing, WriteError):
        raise  # not this file's fault (a missing extra, a full disk): the whole run needs it
    except video.MediaError as err:
        return "skip", str(err)
    except MemoryError:
        return "skip", "out of memory"
    except Exception as err:  # noqa: BLE001 — a batch goes on past any one bad file, reported in one line
        return "skip", f"unexpected error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _exit_with_parent(parent_pid: int) -> None:
    """ProcessPoolExecutor initializer: end this worker when the process that started it dies (a kill -9 of
    `movenet prepare` must not leave workers writing on). Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG);
    everywhere: a thread that polls for the parent, once a second."""
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the poll below still ends it
    first_parent = os.getppid()

    def parent_gone() -> bool:
        if os.getppid() != first_parent:  # re-parented: the parent died
            return True
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False

    if parent_gone():  # it died before the signal was set up
        os._exit(1)

    def watch() -> None:
        while not parent_gone():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="movenet-parent-watch", daemon=True).start()


def _existing_record(job: Job, out_dir: Path, config: DataConfig) -> dict | None:
    base = out_dir / "clips" / clip_id(job)
    meta = base.with_name(base.name + ".json")
    if not meta.exists():
        return None
    try:
        record = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("settings") != config.settings():
        return None
    record.update(label=job.label, split=job.split)  # the split may be re-derived; the stored data is the same
    return record


def _build_compiled_analysis(config: DataConfig) -> None:
    """Analyse a second of sound here, before the workers start, so that this process alone compiles what the
    analysis runs through numba. librosa caches its compiled functions on disk (guvectorize(cache=True)); two
    workers building that cache at once on a fresh install can write files that do not belong together, after
    which every process that loads them crashes (numba issue #10128). Forked workers inherit the compiled code."""
    t = np.arange(config.sample_rate) / config.sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.3)  # notes that start: a pitch, loudness, onsets
    controls.analyze(tone.astype(np.float32), config.sample_rate, config.fps, config.fps)


def prepare(
    src_dir: str | Path,
    out_dir: str | Path,
    config: DataConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    log=print,
) -> PrepareReport:
    """Prepare every video under SRC_DIR into OUT_DIR (resumable, parallel over files).

    Bad files are reported as `path: reason` through `log` and skipped. Raises DataError if OUT_DIR holds a set
    made with other settings, and pose.MediaPipeMissing if keypoints are asked for on a video without a synthetic
    sidecar while mediapipe is not installed (checked before any work).
    """
    from tqdm import tqdm

    config = config or DataConfig()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise DataError(f"{src_dir}: not a directory")
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        old = load_manifest(out_dir)
        if old["format_version"] != FORMAT_VERSION:  # its clips would be reused as they are: a set of two formats
            raise DataError(f"{out_dir}: holds a set prepared by an older movenet (format {old['format_version']}, "
                            f"this one writes {FORMAT_VERSION}); prepare into another OUT_DIR")
        if {k: old["data"].get(k) for k in config.settings()} != config.settings():
            raise DataError(f"{out_dir}: already holds a set prepared with other settings ({_diff(old['data'], config)}); use another OUT_DIR")
    made_out_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)

    report = PrepareReport()
    todo = []
    for job in find_videos(src_dir, config.valid_fraction, config.seed, problems=report.skipped):
        record = _existing_record(job, out_dir, config)
        (report.reused.append(record) if record else todo.append(job))
    for problem in report.skipped:  # found while walking SRC_DIR: symlink loops, broken links
        log(f"{problem['source']}: {problem['reason']}")
    if config.uses_keypoints and any(pose.read_sidecar(job.source) is None for job in todo):
        try:
            pose.import_mediapipe()  # fail now, in one line, rather than once per file
        except pose.MediaPipeMissing as err:
            raise pose.MediaPipeMissing(f"{err} (or prepare frames alone: --features frames)") from None

    bar = tqdm(total=len(todo), unit="clip", desc="prepare", disable=not progress or not todo, dynamic_ncols=True)
    seconds_done = 0.0

    def handle(job: Job, status: str, result) -> None:
        nonlocal seconds_done
        if status == "ok":
            report.prepared.append(result)
            seconds_done += result["seconds"]
            bar.set_postfix_str(f"{seconds_done:.0f} s of video")
        else:
            report.skipped.append({"source": job.source, "reason": result})
            bar.write(f"{job.source}: {result}") if progress else log(f"{job.source}: {result}")
        bar.update(1)

    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            handle(job, *_prepare_worker(job, str(out_dir), config, progress))
    else:
        _build_compiled_analysis(config)
        with ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_prepare_worker, job, str(out_dir), config): job for job in todo}
            try:
                for future in as_completed(futures):
                    handle(futures[future], *future.result())
            except BrokenProcessPool:  # a worker died: killed, out of memory, or a decoder crashed on a file
                pool.shutdown(wait=True, cancel_futures=True)
                lost = sorted(Path(job.source).name for f, job in futures.items()
                              if not f.cancelled() and f.done() and f.exception() is not None)
                raise DataError(f"a worker process died (killed, out of memory, or a decoder crash) while preparing "
                                f"one of: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}; the clips prepared "
                                f"so far are kept: run again with --workers 1 to find the file") from None
            except BaseException:  # a full disk, Ctrl-C: the files not started yet are not started
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    bar.close()

    if not report.clips and not manifest_path.exists():  # nothing prepared: no empty set is left behind
        if made_out_dir:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        return report
    write_json(
        manifest_path,
        {
            "format_version": FORMAT_VERSION,
            "data": asdict(config),
            "labels": sorted({r["label"] for r in report.clips}),
            "clips": report.clips,
            "skipped": report.skipped,
        },
    )
    return report


def _diff(old: dict, config: DataConfig) -> str:
    new = asdict(config)
    return ", ".join(f"{k}: {old.get(k)} there, {new[k]} asked" for k in new if old.get(k) != new[k]) or "unknown"


def load_manifest(prepared_dir: str | Path) -> dict:
    """Read and check a prepared set's manifest. Raises DataError with a one-line reason."""
    path = Path(prepared_dir) / "manifest.json"
    if not path.exists():
        raise DataError(f"{prepared_dir}: not a prepared data set (no manifest.json; run `movenet prepare` first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: damaged manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: damaged manifest (not a JSON object)")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise DataError(f"{path}: format version {version} is not supported (this movenet reads "
                        f"{SUPPORTED_VERSIONS}); prepare the videos again into a new directory")
    for record in manifest.get("clips", []):
        if not isinstance(record, dict) or not safe_clip_id(record.get("id")):
            cid = record.get("id") if isinstance(record, dict) else record
            raise DataError(f"{path}: refused: clip id {cid!r} would read files outside {prepared_dir}/clips")
    return manifest


def safe_clip_id(cid) -> bool:
    """A clip id names files inside the set's clips/ folder: relative, no `..`, no backslash, no empty part."""
    if not isinstance(cid, str) or not cid or "\\" in cid or "\0" in cid:
        return False
    parts = cid.split("/")
    return not cid.startswith("/") and ":" not in parts[0] and all(part not in ("", ".", "..") for part in parts)


def clip_base(prepared_dir: str | Path, record: dict) -> Path:
    """prepared_dir/clips/<id>, the stem of a clip's files; DataError for an id that would lead elsewhere."""
    if not safe_clip_id(record.get("id")):
        raise DataError(f"{prepared_dir}: refused: clip id {record.get('id')!r} would read files outside "
                        f"{prepared_dir}/clips")
    return Path(prepared_dir) / "clips" / record["id"]


def data_config_from_manifest(manifest: dict) -> DataConfig:
    known = {f.name for f in fields(DataConfig)}
    return DataConfig(**{k: v for k, v in manifest["data"].items() if k in known})


def open_clip(prepared_dir: str | Path, record: dict, mmap: bool = True) -> dict:
    """The stored arrays of one prepared clip, found by its manifest record.

    Returns a dict with
        codes      uint8 [n_samples]               mu-law codes
        frames     uint8 [n_frames, H, W, C]       if the set's features include frames
        keypoints  float32 [n_frames, 15, 3]       if they include keypoints (see the module docstring)
        controls   float32 [n_frames, 3]           f0, loudness, onset (its level) of the soundtrack (movenet.controls)
    memory-mapped read-only when mmap (cheap; open per DataLoader worker), else loaded into memory.
    Raises DataError if a file the clip's settings promise is missing, or its length disagrees with the record.
    """
    base = clip_base(prepared_dir, record)
    config = InputConfig(**record["settings"])
    wanted = {"codes": "audio", "controls": "controls", **({"frames": "frames"} if config.uses_frames else {}),
              **({"keypoints": "keypoints"} if config.uses_keypoints else {})}
    arrays = {}
    for key, kind in wanted.items():
        path = base.with_name(f"{base.name}.{kind}.npy")
        try:
            arrays[key] = np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: missing or damaged ({type(err).__name__}); prepare the set again") from None
        expected = record["n_samples"] if key == "codes" else record["n_frames"]
        if len(arrays[key]) != expected:
            raise DataError(f"{path}: {len(arrays[key])} rows, the record says {expected}; prepare the set again")
    return arrays


# ----------------------------------------------------------------------------------------------------------------
# Reading crops


class ClipDataset:
    """Random aligned crops from a prepared set, as a map-style PyTorch dataset.

    Each item is a dict:
        codes      int64 [1 + n_frames * hop]   codes[0] is the sample before the crop (SILENCE at a clip's start),
                                                codes[1:] the crop's samples
        frames     uint8 [n_frames, H, W, C]    if the set stores frames; frame i covers codes[1 + i*hop: 1 + (i+1)*hop]
        keypoints  float32 [n_frames, J, 3]     if the set stores keypoints, aligned the same way
        controls   float32 [n_frames, 3]        the soundtrack's controls (movenet.controls), aligned the same way
        excitation float32 [n_frames * hop, E]  with `harmonics` (and `kick`): the source those controls play, notes
                                                snapped (controls.Excitation), row i for target codes[1 + i]; with
                                                `align_phase`, in phase with the crop's audio. With `direct_kick`,
                                                the codes are of the soundtrack without the source's kick
        label      int64 []                     index into `labels`
        span_frames, span_keypoints, span_controls    with `span_frames` > 0: a longer stretch of the same clip
                                                (span_frames of them), for the control head
        reference_audio float32 [reference_samples]  with `reference_samples` > 0: a stretch of the same clip's
                                                soundtrack from a random start, for a style latent's encoder
    with n_frames = context_frames + crop_frames: the model's context, then the part it is scored on.

    A crop never crosses clips. It may begin up to context_frames before its clip, so the start of every clip is
    trained the way generation starts: the samples before the clip are silence, its controls silent, and its first
    frame is held. A clip
    shorter than a crop is padded the same way. Files are memory-mapped, so reading is cheap. An epoch has
    sum(n_samples) // (crop_frames * hop) items; clips are drawn in proportion to their length.
    """

    def __init__(self, prepared_dir: str | Path, split: str | None = "train", crop_frames: int = 25,
                 context_frames: int = 0, seed: int = 0, labels: list[str] | None = None, harmonics: int = 0,
                 span_frames: int = 0, align_phase: bool = True, kick: bool = False, reference_samples: int = 0,
                 direct_kick: bool = False):
        self.root = Path(prepared_dir)
        self.manifest = load_manifest(self.root)
        self.config = data_config_from_manifest(self.manifest)
        self.hop = self.config.hop
        self.clips = [c for c in self.manifest["clips"] if split is None or c["split"] == split]
        if not self.clips:
            raise DataError(f"{self.root}: no clips in split {split!r}")
        self.labels = list(labels or self.manifest["labels"])
        self.crop_frames, self.context_frames = crop_frames, context_frames
        self.n_frames = context_frames + crop_frames
        self.seed, self.epoch = seed, 0
        lengths = np.array([c["n_samples"] for c in self.clips], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.n_items = max(1, int(lengths.sum()) // (crop_frames * self.hop))
        self._arrays: dict[int, dict] = {}
        self.excitation = controls.Excitation(harmonics, self.hop, self.config.sample_rate, kick) if harmonics \
            else None
        self.span_frames, self.align_phase, self.reference_samples = span_frames, align_phase, reference_samples
        if direct_kick and not (self.excitation is not None and kick):
            raise ValueError("direct_kick takes the source's kick out of the codes: it needs harmonics and kick")
        self.direct_kick = direct_kick
        self.kick_frames = -(-round(controls.KICK_SECONDS * self.config.sample_rate) // self.hop)

    def __len__(self) -> int:
        return self.n_items

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops next epoch (validation keeps epoch 0, so its crops stay fixed)."""
        self.epoch = epoch

    def _open(self, i: int) -> dict:
        if i not in self._arrays:  # opened lazily so each DataLoader worker maps its own files
            self._arrays[i] = open_clip(self.root, self.clips[i])
        return self._arrays[i]

    def crop(self, clip_index: int, start_frame: int) -> dict:
        """The crop of clip `clip_index` whose first frame is `start_frame` (negative: it begins before the clip)."""
        import torch

        arrays = self._open(clip_index)
        hop, n = self.hop, self.n_frames
        end_frame = start_frame + n
        first = start_frame * hop - 1  # the sample before the crop
        codes = np.asarray(arrays["codes"][max(0, first): end_frame * hop])
        if first < 0:
            codes = np.concatenate([np.full(-first, audio.SILENCE, np.uint8), codes])
        item = {"codes": torch.from_numpy(codes.astype(np.int64))}
        for key in ("frames", "keypoints"):
            if key in arrays:
                rows = np.array(arrays[key][max(0, start_frame): end_frame])  # a copy: memory maps are read-only
                if start_frame < 0:  # before the clip, its first frame is held
                    rows = np.concatenate([np.repeat(rows[:1], -start_frame, axis=0), rows])
                item[key] = torch.from_numpy(rows)
        rows = np.array(arrays["controls"][max(0, start_frame): end_frame])
        if start_frame < 0:  # before the clip: silence
            rows = np.concatenate([np.repeat(controls.SILENT[None], -start_frame, axis=0), rows])
        item["controls"] = torch.from_numpy(rows)
        if self.excitation is not None:
            before = controls.SILENT if start_frame <= 0 else arrays["controls"][start_frame - 1]
            state = controls.SourceState.holding(controls.snap_to_notes(before)[None])
            before_crop = arrays["controls"][max(0, start_frame - self.kick_frames): max(0, start_frame), 2]
            onsets = np.flatnonzero(np.asarray(before_crop) > 0)
            if len(onsets):  # a kick started before the crop still sounds in it
                state.kick_age[:] = (len(before_crop) - onsets[-1]) * hop
                state.kick_level[:] = before_crop[onsets[-1]]
            # the kick at the sample before the crop (codes[0]), before `render` moves the state on
            kick_before = state.kick_level * controls.kick_wave((state.kick_age - 1) / self.config.sample_rate)
            source = self.excitation.render(controls.snap_to_notes(rows)[None], state)[0]
            if self.direct_kick:
                codes = controls.without_kick(codes, np.concatenate([kick_before, controls.kick_of(source)]))
                item["codes"] = torch.from_numpy(codes.astype(np.int64))
            if self.align_phase:  # in phase with the crop's audio (controls.align_phase)
                source = controls.align_phase(source, audio.mu_law_decode(codes[1:]), hop, self.excitation.harmonics)
            item["excitation"] = torch.from_numpy(source)
        assert len(codes) == 1 + n * hop and all(len(item[k]) == n for k in item if k not in ("codes", "excitation"))
        item["label"] = self.label(clip_index)
        return item

    def label(self, clip_index: int):
        """The clip's style id, a 0-d tensor (a label the set does not list counts as the first)."""
        import torch

        label = self.clips[clip_index]["label"]
        return torch.tensor(self.labels.index(label) if label in self.labels else 0)

    def __getitem__(self, index: int) -> dict:
        clip_index, start_frame = self.draw(index)
        item = self.crop(clip_index, start_frame)
        if self.span_frames:
            item.update(self.span(clip_index, index))
        if self.reference_samples:
            item["reference_audio"] = self.reference(clip_index, index)
        return item

    def soundtrack(self, clip_index: int, max_samples: int | None = None) -> np.ndarray:
        """The clip's audio from its start (at most max_samples), float32 in [-1, 1]."""
        return audio.mu_law_decode(np.asarray(self._open(clip_index)["codes"][:max_samples])).astype(np.float32)

    def reference(self, clip_index: int, index: int):
        """reference_samples of the clip's soundtrack (float32 in [-1, 1]) from a random start, seeded like `draw`;
        a shorter clip is padded with silence."""
        import torch

        codes = self._open(clip_index)["codes"]
        n = self.reference_samples
        start = int(np.random.default_rng((self.seed, self.epoch, index, 2)).integers(0, max(len(codes) - n, 0) + 1))
        part = np.asarray(codes[start: start + n])
        if len(part) < n:
            part = np.concatenate([np.full(n - len(part), audio.SILENCE, np.uint8), part])
        return torch.from_numpy(audio.mu_law_decode(part).astype(np.float32))

    def spans(self, indices) -> dict:
        """A batch of spans alone (the control head's training), item `index` from the clip `draw(index)` picks:
        span_frames / span_keypoints / span_controls stacked, and label."""
        import torch

        items = []
        for index in indices:
            clip_index = self.draw(index)[0]
            items.append({**self.span(clip_index, index), "label": self.label(clip_index)})
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def span(self, clip_index: int, index: int) -> dict:
        """span_frames frames of the clip's movement and controls, from a random start (seeded like `draw`); a
        shorter clip is padded before its start as a crop is (first frame held, silent)."""
        import torch

        arrays = self._open(clip_index)
        n, length = self.span_frames, self.clips[clip_index]["n_frames"]
        start = int(np.random.default_rng((self.seed, self.epoch, index, 1)).integers(0, max(length - n, 0) + 1))
        start = min(start, length - n)  # negative for a short clip
        out = {}
        for key, fill in (("frames", None), ("keypoints", None), ("controls", controls.SILENT)):
            if key in arrays:
                rows = np.array(arrays[key][max(0, start): start + n])
                if start < 0:
                    pad = np.repeat((rows[:1] if fill is None else fill[None]), -start, axis=0)
                    rows = np.concatenate([pad, rows])
                out["span_" + key] = torch.from_numpy(rows)
        return out

    def draw(self, index: int) -> tuple[int, int]:
        """(clip index, start frame) of item `index`: seeded by (seed, epoch, index), so it is deterministic and
        independent of which worker reads it."""
        rng = np.random.default_rng((self.seed, self.epoch, index))
        clip_index = int(rng.choice(len(self.clips), p=self.weights))
        last_start = self.clips[clip_index]["n_frames"] - self.n_frames
        if last_start < -self.context_frames:  # shorter than a crop: the whole clip, at the end
            start_frame = last_start
        else:
            start_frame = int(rng.integers(-self.context_frames, last_start + 1))
        return clip_index, start_frame
