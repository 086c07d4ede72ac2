"""The `movenet` command: synth, prepare, train, generate, evaluate, live, bench, demo. User mistakes end in one line,
never a traceback."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from movenet import __version__

SEED_MAX = 2**32 - 1  # Lightning's seed_everything takes a uint32


def fatal(message: str, code: int = 1):
    print(f"movenet: error: {message}", file=sys.stderr)
    sys.exit(code)


class Parser(argparse.ArgumentParser):
    """argparse, its errors in one line (the flag and what it needs), pointing at --help for the usage."""

    def error(self, message: str):
        print(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(kind: type = float, low: float | None = None, high: float | None = None, above: bool = False):
    """An argparse `type=`: a finite int or float, >= low (> low if `above`) and <= high; anything else is a
    one-line error naming the flag."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value < low or (above and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


SEED = number(int, 0, SEED_MAX)
TEMPERATURE = number(float, 0)
SPREAD = number(float, 0, 1)
SPREAD_HELP = ("how much of each draw's scatter about the expected sample to keep (movenet/sampling.py): 1 plays "
               "plain draws, lower is cleaner (less hiss), 0 can hold a note through a pause")
COUNT = number(int, 1)
SECONDS = number(float, 0, 24 * 3600, above=True)

# Ranges of the dataclass flags of `train` (ModelConfig, TrainConfig): a whole number is >= 1 and a real number
# > 0 unless named here.
_FIELD_RANGES = {"seed": (0, SEED_MAX, False), "num_workers": (0, None, False), "weight_decay": (0, None, False),
                 "grad_clip": (0, None, False), "max_minutes": (0, None, False),
                 "lr": (0, 10.0, True), "crop_seconds": (0, 3600, True), "layers_per_stack": (1, 30, False),
                 "kernel_size": (1, 16, False), "input_kernel": (1, 64, False), "video_kernel": (1, 64, False),
                 "control_weight": (0, None, False), "span_seconds": (0, 600, False), "control_steps": (0, None, False),
                 "harmonics": (1, 32, False), "latent": (0, 64, False), "latent_weight": (0, None, False),
                 "free_bits": (0, None, False), "reference_seconds": (0.1, 600, False)}


def cmd_synth(args) -> None:
    from movenet import synth
    from movenet.files import check_output_dir

    check_output_dir(args.out_dir)
    counts = {}
    paths = synth.write_dataset(args.out_dir, n_clips=args.clips, seconds=args.seconds, seed=args.seed,
                                progress=not args.quiet, force=args.force, counts=counts, timbres=args.timbres)
    written, kept = counts["written"], counts["kept"]
    print(f"wrote {written} clip{'s' * (written != 1)} to {args.out_dir}"
          + (f", kept {kept} already there ({len(paths)} in all)" if kept else ""))


def _data_config(args):
    from movenet.data import DataConfig

    return DataConfig(sample_rate=args.sample_rate, fps=args.fps, frame_size=args.size, gray=not args.rgb,
                      features=args.features, min_seconds=args.min_seconds, valid_fraction=args.valid_fraction,
                      seed=args.seed)


def cmd_prepare(args) -> None:
    from movenet.data import prepare
    from movenet.files import check_output_dir

    try:
        config = _data_config(args)
    except ValueError as err:
        fatal(str(err))
    check_output_dir(args.out_dir)
    report = prepare(args.src_dir, args.out_dir, config, workers=args.workers, progress=not args.quiet)
    print(report.summary())
    if not report.clips:
        fatal(f"nothing prepared from {args.src_dir}: no readable video with an audio track "
              f"of at least {config.min_seconds} s")
    print(f"prepared set: {args.out_dir}/manifest.json")


def cmd_demo(args) -> None:
    from movenet import demo
    from movenet.files import check_output_dir

    check_output_dir(args.out)
    model_path = args.model
    if args.train:
        model_path = demo.train_demo_model(args.out, args.minutes, latent=args.latent)
    demo.run_demo(args.out, args.clips, args.seconds, model_path, args.temperature, args.seed, args.spread)


def _dataclass_flags(parser, cls, skip=(), prefix=""):
    """One flag per dataclass field (CLI flags map 1:1 onto config fields); a flag not given is not in args."""
    import dataclasses

    group = parser.add_argument_group(f"{cls.__name__} (see movenet/{cls.__module__.split('.')[-1]}.py)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"default: {f.default}")
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            if kind is not str:
                low, high, above = _FIELD_RANGES.get(f.name, (1, None, False) if kind is int else (0, None, True))
                kind = number(kind, low, high, above)
            group.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(),
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
    from movenet.files import check_output
    from movenet.generate import OUTPUT_SUFFIXES, generate_file

    from movenet import style

    outputs = [check_output(o, args.force, inputs=(args.checkpoint, args.video, *(args.like or ())),
                            suffixes=OUTPUT_SUFFIXES) for o in args.output]
    if len({os.path.abspath(o) for o in outputs}) < len(outputs):
        fatal("the same output is given twice")
    loaded = checkpoint.load(args.checkpoint)
    try:  # before the work: a bad reference is said at once
        latent = style.requested(loaded.model, args.variation, args.like, args.mix)
    except style.StyleError as err:
        fatal(str(err))
    generate_file(loaded, args.video, outputs, args.temperature, args.seed, args.style, args.engine,
                  progress=not args.quiet, precision=args.precision, latent=latent, spread=args.spread)
    for out in outputs:
        print(f"wrote {out}")


def cmd_evaluate(args) -> None:
    from movenet import checkpoint
    from movenet.evaluate import evaluate, format_report
    from movenet.files import check_output, check_output_dir, write_json

    inputs = (args.checkpoint, args.data_dir)
    if args.json:  # checked before the work: it must not overwrite an input, nor anything without --force
        check_output(args.json, args.force, inputs=inputs, suffixes=(".json",))
    if args.plots:
        check_output_dir(args.plots, inputs=inputs)
    loaded = checkpoint.load(args.checkpoint)
    report = evaluate(loaded, args.data_dir, args.clips, args.temperature, args.seed, args.plots, args.engine,
                      progress=not args.quiet, precision=args.precision, spread=args.spread)
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

    if args.live:
        from movenet import demo
        from movenet.bench import live_benchmark

        print(json.dumps(live_benchmark(args.checkpoint or demo.SHIPPED, tuple(args.clients), args.seconds or 8.0),
                         indent=1))
        return
    config = checkpoint.load(args.checkpoint).model.config if args.checkpoint else None
    print(json.dumps(benchmark(config, seconds=args.seconds or 3.0, batch_sizes=tuple(args.batch), threads=args.threads,
                               long_seconds=args.long_seconds), indent=1))


def cmd_live(args) -> None:
    from movenet import checkpoint, demo, live
    from movenet.files import check_output

    if args.record:
        check_output(args.record, args.force, inputs=(args.checkpoint, args.video), suffixes=(".wav", ".mp4"))
    if args.video is not None and not args.video.is_file():
        fatal(f"{args.video}: no such file")
    model_path = args.checkpoint or demo.SHIPPED
    loaded = checkpoint.load(model_path)
    if loaded.model.config.uses_keypoints and args.video is None:
        from movenet.pose import import_mediapipe

        import_mediapipe()  # the camera's keypoints come from MediaPipe: say now if it is missing
    live.serve(loaded, args.host, args.port, args.video, args.record, model_name=Path(model_path).name,
               precision=args.precision)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default when it has one worth reading (not None, not an off switch)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _precision(value: str) -> str:
    """--precision, with bf16dot, amx and int8 refused at once on a CPU that cannot run them."""
    from movenet.int8 import host_has_vnni
    from movenet.kernels import host_has_amx, host_has_bf16_dot

    if value == "bf16dot" and not host_has_bf16_dot():
        raise argparse.ArgumentTypeError("bf16dot needs a CPU with AVX512-BF16 and this one has none: use bf16")
    if value == "int8" and not host_has_vnni():
        raise argparse.ArgumentTypeError("int8 needs a CPU with AVX512-VNNI (AMD Zen 4 or later, Intel Cascade Lake "
                                         "or later) and this one has none: use bf16")
    if value == "amx" and not host_has_amx():
        raise argparse.ArgumentTypeError("amx needs a CPU with AMX tiles (Intel Sapphire Rapids or later) and this one "
                                         "has none: use bf16")
    return value


PRECISIONS = ("auto", "fp32", "bf16", "bf16dot", "amx", "int8")  # fastgen's, named here: the parser loads no numba


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", type=_precision, choices=PRECISIONS, default="auto",
                   help="the compiled engine's weights: bf16 halves the bytes each sample reads (multiplied in fp32); "
                        "bf16dot (CPUs with AVX512-BF16) also multiplies in bfloat16 pairs with fp32 sums; amx (Intel "
                        "CPUs with AMX tiles) multiplies those pairs 16 streams at a time (fastest for 16 or more "
                        "streams, slow for one); int8 (CPUs with AVX512-VNNI) multiplies 8-bit weights and inputs, "
                        "scaled per column and per row, with integer sums (the fastest for batches where there are "
                        "no AMX tiles; its samples' pitch and loudness match fp32's); auto picks the fastest for "
                        "one stream on this CPU: fp32 on Intel CPUs whose L2 holds the fp32 weights twice over, int8 "
                        "on other CPUs with AVX512-VNNI (for a model whose gate channels are a multiple of 32), bf16 "
                        "elsewhere")


def build_parser() -> argparse.ArgumentParser:
    from movenet.sampling import DEFAULT_SPREAD  # the parser loads the model's module (its flags) anyway

    fmt = _HelpFormatter
    parser = Parser(prog="movenet", description="Turn human movement into music.", formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"movenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("synth", help="write a synthetic data set: a stick-figure dancer that plays its own soundtrack",
                       formatter_class=fmt)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--clips", type=number(int, 1, 100_000), default=12, help="number of clips (spread over the styles)")
    p.add_argument("--seconds", type=number(float, 0, 3600, above=True), default=10.0, help="length of each clip")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--timbres", action="store_true",
                   help="give each clip a timbre of its own (a spectral tilt and a formant, the same dances): "
                        "sound that varies in what the movement does not tell, for a style latent (train --latent)")
    p.add_argument("--force", action="store_true", help="replace clips made with other settings (another --seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="decode a folder of videos into a prepared training set", formatter_class=fmt,
                       description="Walks SRC_DIR recursively; SRC/<label>/<clip> gives the style label and "
                                   "SRC/{train,valid}/<label>/<clip> keeps a given split. Resumable.")
    p.add_argument("src_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--sample-rate", type=number(int, 1, 192_000), default=16000, help="audio rate (Hz)")
    p.add_argument("--fps", type=number(int, 1, 1000), default=25,
                   help="video rate (frames per second); sample rate / fps must be whole")
    p.add_argument("--size", type=number(int, 1, 1024), default=64, help="frame width and height (pixels)")
    p.add_argument("--rgb", action="store_true", help="keep colour (default: grayscale)")
    p.add_argument("--features", choices=("frames", "keypoints", "both"), default="both",
                   help="what to store beside the audio: frames, 2D body keypoints (from a synthetic clip's "
                        "sidecar, else MediaPipe Pose: pip install 'movenet[pose]'), or both (a model then listens "
                        "to the keypoints unless trained with --features frames)")
    p.add_argument("--min-seconds", type=number(float, 0), default=1.0, help="skip clips shorter than this")
    p.add_argument("--valid-fraction", type=number(float, 0, 0.99), default=0.1,
                   help="share of files held out when no split is given")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the train/valid split")
    p.add_argument("--workers", type=number(int, 1, 256), default=max(1, min(4, os.cpu_count() or 1)),
                   help="parallel processes")
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
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (step, optimizer, schedule; see README)")
    p.add_argument("--force", action="store_true",
                   help="start over in a run directory that holds a run (movenet removes only the files it wrote)")
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
    p.add_argument("--temperature", type=TEMPERATURE, default=1.0, help="sampling temperature; 0 = most likely sample")
    p.add_argument("--spread", type=SPREAD, default=DEFAULT_SPREAD, help=SPREAD_HELP)
    p.add_argument("--seed", type=SEED, default=0, help="the same seed gives the same audio")
    p.add_argument("--style", help="style label (default: the model's first)")
    p.add_argument("--variation", type=SEED, action="append", metavar="N",
                   help="a model with a style latent: play the prior's draw number N (another character, the same "
                        "movement); twice, with --mix, between two")
    p.add_argument("--like", type=Path, action="append", metavar="REF",
                   help="a model with a style latent: sound like this recording (.wav, .mp4, ...); twice, with "
                        "--mix, between two")
    p.add_argument("--mix", type=number(float, 0, 1), metavar="T",
                   help="with two latents (--variation / --like): the fraction of the way from the first to the second")
    p.add_argument("--engine", choices=("fast", "torch"), default="fast",
                   help="fast = compiled generator; torch = the reference step loop (slow)")
    _add_precision(p)
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
    p.add_argument("--clips", type=COUNT, default=4, help="clips to generate audio for")
    p.add_argument("--json", type=Path, help="write every number here (a new .json file; --force to overwrite)")
    p.add_argument("--plots", type=Path, help="directory for one PNG per clip and a summary PNG")
    p.add_argument("--temperature", type=TEMPERATURE, default=1.0)
    p.add_argument("--spread", type=SPREAD, default=DEFAULT_SPREAD, help=SPREAD_HELP)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--engine", choices=("fast", "torch"), default="fast")
    _add_precision(p)
    p.add_argument("--force", action="store_true", help="overwrite the --json file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="generation speed (samples/s, real-time factor) and memory, or live clients, as JSON",
                       formatter_class=fmt,
                       description="The compiled generator for one stream and for batches, beside the PyTorch step "
                                   "loop, and the peak memory of a long video. Default model config unless a "
                                   "checkpoint is given.")
    p.add_argument("--checkpoint", type=Path, help="measure this model's config instead of the default")
    p.add_argument("--seconds", type=number(float, 0, 3600, above=True),
                   help="timing per batch size (default 3), or per number of live clients (default 8)")
    p.add_argument("--batch", type=number(int, 1, 4096), nargs="+", default=[1, 8, 32],
                   help="batch sizes (streams at once)")
    p.add_argument("--threads", type=number(int, 1, 1024), default=1, help="pinned CPU threads")
    p.add_argument("--long-seconds", type=number(float, 0, 24 * 3600), default=600.0,
                   help="audio for the memory run; 0 skips it")
    p.add_argument("--live", action="store_true",
                   help="instead: live clients one core serves in real time (MediaPipe and generation for each, the "
                        "shipped model unless --checkpoint), and their latency")
    p.add_argument("--clients", type=number(int, 1, 256), nargs="+", default=[1, 2, 4, 6, 8],
                   help="with --live: numbers of clients to try, in order (stops at the first not served)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("live", help="play it live: a web page where a camera's dancer hears the music as they move",
                       formatter_class=fmt,
                       description="Serves a page (no CDN, works offline) that sends the camera's frames over a "
                                   "WebSocket; the server runs pose and the streaming generator for every client "
                                   "together and sends back each frame's audio. Frames are never written to disk "
                                   "(unless --record names an .mp4).")
    p.add_argument("checkpoint", type=Path, nargs="?", help="model.pt (default: the shipped demo model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (another than this machine warns)")
    p.add_argument("--port", type=number(int, 0, 65535), default=8000, help="port (0: any free one)")
    p.add_argument("--video", type=Path, help="play this file as the camera, looping (for a machine without one)")
    p.add_argument("--record", type=Path,
                   help="keep each session: OUT.wav (its audio) or OUT.mp4 (its frames with their audio, and the "
                        "keypoints in OUT.json, from which `movenet generate` plays it again); later sessions "
                        "get -2, -3, ...")
    _add_precision(p)
    p.add_argument("--force", action="store_true", help="overwrite the --record file")
    p.add_argument("--quiet", action="store_true", help="no MediaPipe log lines")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("demo", help="the main job: soundtracks for held-out synthetic dancers from the shipped model",
                       formatter_class=fmt)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--clips", type=number(int, 1, 100), default=3, help="held-out dancers (one per style)")
    p.add_argument("--seconds", type=number(float, 0, 3600, above=True), default=6.0)
    p.add_argument("--model", type=Path, help="a model.pt instead of the shipped movenet/assets/demo.pt")
    p.add_argument("--train", action="store_true", help="train a model from scratch first (synth + prepare + train)")
    p.add_argument("--minutes", type=number(float, 0, 7 * 24 * 60, above=True), default=60.0,
                   help="training budget for --train")
    p.add_argument("--latent", type=number(int, 0, 64), default=0,
                   help="with --train: a style latent of this many dimensions (movenet/model.py; experimental)")
    p.add_argument("--temperature", type=TEMPERATURE, default=1.0)
    p.add_argument("--spread", type=SPREAD, default=DEFAULT_SPREAD, help=SPREAD_HELP)
    p.add_argument("--seed", type=SEED, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def _os_reason(err: OSError) -> str:
    """An OSError in one line: `PATH: reason` (WriteError and our own messages already read so)."""
    from movenet.files import WriteError

    if isinstance(err, WriteError) or err.strerror is None:
        return " ".join(str(err).split())
    return f"{err.filename}: {err.strerror}" if err.filename else err.strerror


def main(argv: list[str] | None = None) -> None:
    from movenet.checkpoint import CheckpointError
    from movenet.data import DataError
    from movenet.files import OutputError
    from movenet.inputs import InputMismatch
    from movenet.pose import MediaPipeMissing
    from movenet.video import MediaError

    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        os.environ["MOVENET_QUIET"] = "1"  # MediaPipe's native log lines too (movenet.pose), in every worker
    try:
        args.func(args)
    except MediaError as err:  # its message is the reason; the file is the command's input
        fatal(f"{getattr(args, 'video', None) or getattr(args, 'src_dir', '')}: {err}")
    except (DataError, CheckpointError, InputMismatch, MediaPipeMissing, OutputError) as err:
        fatal(str(err))
    except OSError as err:  # FileExistsError, PermissionError, a full disk or read-only filesystem (WriteError)
        fatal(_os_reason(err))
    except KeyboardInterrupt as err:
        fatal("interrupted" + (f"; {err}" if str(err) else ""), code=130)
