"""The `movenet` command: subcommands synth, prepare, demo. User mistakes end in one line, never a traceback."""

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
        config.hop  # noqa: B018 — validates sample_rate / fps
    except ValueError as err:
        fatal(str(err))
    report = prepare(args.src_dir, args.out_dir, config, workers=args.workers, progress=not args.quiet)
    print(report.summary())
    if not report.clips:
        fatal(f"nothing prepared from {args.src_dir}: no readable video with an audio track "
              f"of at least {config.min_seconds} s")
    print(f"prepared set: {args.out_dir}/manifest.json")


def cmd_demo(args) -> None:
    import numpy as np

    from movenet import audio, synth
    from movenet.data import DataConfig, load_manifest, prepare
    from movenet.plot import contact_sheet

    out = Path(args.out)
    clips_dir, prepared_dir = out / "dancers", out / "prepared"
    print(f"1/3 synthesizing {args.clips} dancer clips of {args.seconds} s into {clips_dir}")
    synth.write_dataset(clips_dir, n_clips=args.clips, seconds=args.seconds, seed=args.seed)
    print(f"2/3 preparing them into {prepared_dir}")
    config = DataConfig()
    report = prepare(clips_dir, prepared_dir, config, workers=args.workers)
    print("   " + report.summary())
    print("3/3 drawing contact sheets")
    manifest = load_manifest(prepared_dir)
    sheets = []
    for record in manifest["clips"]:
        base = prepared_dir / "clips" / record["id"]
        frames = np.load(base.with_name(base.name + ".frames.npy"))
        wav = audio.mu_law_decode(np.load(base.with_name(base.name + ".audio.npy")))
        name = record["id"].replace("/", "_")
        sheets.append(contact_sheet(frames, wav, config.sample_rate, config.fps, out / f"{name}.png",
                                    title=f"{record['id']} ({record['label']}, {record['split']})"))
    print(f"done: {len(sheets)} contact sheets in {out}/ (e.g. {sheets[0]})")


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

    p = sub.add_parser("demo", help="the main job: synthesize dancers, prepare them, draw what came out",
                       formatter_class=fmt)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    from movenet.data import DataError
    from movenet.pose import MediaPipeMissing
    from movenet.video import MediaError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, MediaError, MediaPipeMissing, FileExistsError, NotADirectoryError, PermissionError) as err:
        fatal(str(err))
    except KeyboardInterrupt:
        fatal("interrupted", code=130)
