"""The `movenet` command: synth, prepare, train, generate, evaluate, bench, demo. User mistakes end in one line,
never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from movenet import __version__


def fatal(message: str, code: int = 1):
    print(f"movenet: error: {message}", file=sys.stderr)
    sys.exit(code)


def cmd_synth(args) -> None:
    from movenet import synth

    paths = synth.write_dataset(args.out_dir, n_clips=args.clips, seconds=args.seconds, seed=args.seed,
                                progress=not args.quiet)
    print(f"wrote {len(paths)} clips to {args.out_dir}")


def _data_config(args):
    from movenet.data import DataConfig

    return DataConfig(sample_rate=args.sample_rate, fps=args.fps, frame_size=args.size, gray=not args.rgb,
                      features=args.features, min_seconds=args.min_seconds, valid_fraction=args.valid_fraction,
                      seed=args.seed)


def cmd_prepare(args) -> None:
    from movenet.data import prepare

    try:
        config = _data_config(args)
    except ValueError as err:
        fatal(str(err))
    report = prepare(args.src_dir, args.out_dir, config, workers=args.workers, progress=not args.quiet)
    print(report.summary())
    if not report.clips:
        fatal(f"nothing prepared from {args.src_dir}: no readable video with an audio track "
              f"of at least {config.min_seconds} s")
    print(f"prepared set: {args.out_dir}/manifest.json")


def cmd_demo(args) -> None:
    from movenet import demo

    model_path = args.model
    if args.train:
        model_path = demo.train_demo_model(args.out, args.minutes)
    demo.run_demo(args.out, args.clips, args.seconds, model_path, args.temperature, args.seed)


def _dataclass_flags(parser, cls, skip=(), prefix=""):
    """One flag per dataclass field (CLI flags map 1:1 onto config fields), default None = "not given"."""
    import dataclasses

    group = parser.add_argument_group(f"{cls.__name__} (see movenet/{cls.__module__.split('.')[-1]}.py)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"default: {f.default}")
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                               help=f"default: {f.default}")


def _given(args, cls, skip=()) -> dict:
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def cmd_train(args) -> None:
    import json

    from movenet.model import FROM_DATA, ModelConfig
    from movenet.train import TrainConfig, train

    model_overrides, train_overrides = {}, {}
    if args.config:
        try:
            loaded = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as err:
            fatal(f"{args.config}: cannot read the config ({err})")
        model_overrides, train_overrides = dict(loaded.get("model", {})), dict(loaded.get("train", {}))
    model_overrides.update(_given(args, ModelConfig, FROM_DATA))
    train_overrides.update(_given(args, TrainConfig))
    try:
        config = TrainConfig(**train_overrides)
        exported = train(args.data_dir, args.out, model_overrides, config, resume=args.resume, force=args.force,
                         progress=not args.quiet)
    except (TypeError, ValueError) as err:
        fatal(str(err).splitlines()[0])
    print(f"model: {exported}")
    if (args.out / "loss.png").exists():
        print(f"loss curve: {args.out / 'loss.png'}")


def cmd_generate(args) -> None:
    from movenet import checkpoint
    from movenet.generate import OUTPUT_SUFFIXES, generate_file

    outputs = [Path(o) for o in args.output]
    for out in outputs:
        if out.suffix.lower() not in OUTPUT_SUFFIXES:
            fatal(f"{out}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")
        if out.exists() and not args.force:
            fatal(f"{out}: exists (use --force to overwrite)")
    loaded = checkpoint.load(args.checkpoint)
    generate_file(loaded, args.video, outputs, args.temperature, args.seed, args.style, args.engine,
                  progress=not args.quiet)
    for out in outputs:
        print(f"wrote {out}")


def cmd_evaluate(args) -> None:
    from movenet import checkpoint
    from movenet.evaluate import evaluate, format_report
    from movenet.files import write_json

    loaded = checkpoint.load(args.checkpoint)
    report = evaluate(loaded, args.data_dir, args.clips, args.temperature, args.seed, args.plots, args.engine,
                      progress=not args.quiet)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.plots:
        print(f"plots in {args.plots}/ (summary: {report.get('summary_plot')})")


def cmd_bench(args) -> None:
    import json

    from movenet import checkpoint
    from movenet.bench import benchmark

    config = checkpoint.load(args.checkpoint).model.config if args.checkpoint else None
    print(json.dumps(benchmark(config, seconds=args.seconds, batch_sizes=tuple(args.batch), threads=args.threads,
                               long_seconds=args.long_seconds), indent=1))


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="movenet", description="Turn human movement into music.", formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"movenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("synth", help="write a synthetic data set: a stick-figure dancer that plays its own soundtrack",
                       formatter_class=fmt)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--clips", type=int, default=12, help="number of clips (spread over the styles)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="decode a folder of videos into a prepared training set", formatter_class=fmt,
                       description="Walks SRC_DIR recursively; SRC/<label>/<clip> gives the style label and "
                                   "SRC/{train,valid}/<label>/<clip> keeps a given split. Resumable.")
    p.add_argument("src_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--sample-rate", type=int, default=16000, help="audio rate (Hz)")
    p.add_argument("--fps", type=int, default=25, help="video rate (frames per second); sample rate / fps must be whole")
    p.add_argument("--size", type=int, default=64, help="frame width and height (pixels)")
    p.add_argument("--rgb", action="store_true", help="keep colour (default: grayscale)")
    p.add_argument("--features", choices=("frames", "keypoints", "both"), default="frames",
                   help="what to store beside the audio: frames, 2D body keypoints (from a synthetic clip's "
                        "sidecar, else MediaPipe Pose: pip install 'movenet[pose]'), or both")
    p.add_argument("--min-seconds", type=float, default=1.0, help="skip clips shorter than this")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of files held out when no split is given")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="parallel processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    from movenet.model import FROM_DATA, ModelConfig
    from movenet.train import TrainConfig

    p = sub.add_parser("train", help="train the conditional WaveNet on a prepared data set", formatter_class=fmt,
                       description="Lightning's Trainer: mixed precision, DDP (--devices N, or torchrun), gradient "
                                   "clipping, last/best checkpoints, --resume, TensorBoard and CSV logs, loss.png. "
                                   "Settings: defaults < --config FILE (JSON with 'model' and 'train' sections) < flags.")
    p.add_argument("data_dir", type=Path, help="a prepared set (movenet prepare)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--config", type=Path, help="JSON file: {\"model\": {...}, \"train\": {...}}")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--force", action="store_true", help="start over in a run directory that holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _dataclass_flags(p, ModelConfig, skip=FROM_DATA)
    _dataclass_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="give a video a soundtrack (MP4 with it, or WAV)", formatter_class=fmt)
    p.add_argument("checkpoint", type=Path, help="model.pt from movenet train")
    p.add_argument("video", type=Path)
    p.add_argument("-o", "--output", action="append", required=True,
                   help="OUT.mp4 (the video with the soundtrack, video stream copied where MP4 allows), OUT.wav, "
                        "or OUT.mid (the score the model read off the movement: notes and kicks); repeat for several")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = most likely sample")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same audio")
    p.add_argument("--style", help="style label (default: the model's first)")
    p.add_argument("--engine", choices=("fast", "torch"), default="fast",
                   help="fast = compiled generator; torch = the reference step loop (slow)")
    p.add_argument("--force", action="store_true", help="overwrite outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("evaluate", help="measure whether the music follows the dance", formatter_class=fmt,
                       description="Teacher-forced likelihood with the right / another clip's / a blank video, "
                                   "and rhythm, pitch and hit metrics of generated audio beside the true audio and "
                                   "another clip's audio. DATA_DIR: a prepared set (its validation split) or a "
                                   "folder of videos. Definitions: docs/evaluation.md.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--clips", type=int, default=4, help="clips to generate audio for")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--plots", type=Path, help="directory for one PNG per clip and a summary PNG")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=("fast", "torch"), default="fast")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="generation speed (samples/s, real-time factor) and memory, as JSON",
                       formatter_class=fmt,
                       description="The compiled generator for one stream and for batches, beside the PyTorch step "
                                   "loop, and the peak memory of a long video. Default model config unless a "
                                   "checkpoint is given.")
    p.add_argument("--checkpoint", type=Path, help="measure this model's config instead of the default")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per batch size")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (streams at once)")
    p.add_argument("--threads", type=int, default=1, help="pinned CPU threads")
    p.add_argument("--long-seconds", type=float, default=600.0, help="audio for the memory run; 0 skips it")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job: soundtracks for held-out synthetic dancers from the shipped model",
                       formatter_class=fmt)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--clips", type=int, default=3, help="held-out dancers (one per style)")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--model", type=Path, help="a model.pt instead of the shipped movenet/assets/demo.pt")
    p.add_argument("--train", action="store_true", help="train a model from scratch first (synth + prepare + train)")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget for --train")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    from movenet.checkpoint import CheckpointError
    from movenet.data import DataError
    from movenet.inputs import InputMismatch
    from movenet.pose import MediaPipeMissing
    from movenet.video import MediaError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MediaError as err:  # its message is the reason; the file is the command's input
        fatal(f"{getattr(args, 'video', None) or getattr(args, 'src_dir', '')}: {err}")
    except (DataError, CheckpointError, InputMismatch, MediaPipeMissing, FileExistsError, FileNotFoundError,
            NotADirectoryError, PermissionError) as err:
        fatal(str(err))
    except KeyboardInterrupt:
        fatal("interrupted", code=130)
