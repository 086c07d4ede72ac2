"""The CLI with bad input, as a new user meets it: every mistake is one line, before any long work, and nothing is
overwritten that should not be (issue 13, items 2, 4, 5, 6 and 10)."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from movenet import cli, files, synth
from movenet.demo import SHIPPED


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 1.2 s synthetic dancer (keypoints in its sidecar, which the shipped model listens to)."""
    root = tmp_path_factory.mktemp("clip")
    return synth.write_dataset(root, n_clips=1, seconds=1.2, seed=3, progress=False)[0]


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "m.pt"
    shutil.copy(SHIPPED, path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Item 4: every numeric flag is checked by the parser


BAD_NUMBERS = [
    ("generate m.pt v.mp4 -o o.wav", "--temperature", ["nan", "inf", "-1", "x"]),
    ("generate m.pt v.mp4 -o o.wav", "--spread", ["nan", "-0.1", "1.5"]),
    ("generate m.pt v.mp4 -o o.wav", "--seed", ["-1", "1.5", str(2**32)]),
    ("generate m.pt v.mp4 -o o.wav", "--variation", ["-1", "0.5"]),
    ("generate m.pt v.mp4 -o o.wav", "--mix", ["-0.1", "1.5", "nan"]),
    ("evaluate m.pt d", "--temperature", ["nan", "-0.5"]),
    ("evaluate m.pt d", "--spread", ["2"]),
    ("evaluate m.pt d", "--seed", ["-1"]),
    ("evaluate m.pt d", "--clips", ["-1", "0"]),
    ("prepare s o", "--fps", ["0", "-25", "2.5"]),
    ("prepare s o", "--size", ["0", "-64", "100000"]),
    ("prepare s o", "--sample-rate", ["0", "-16000"]),
    ("prepare s o", "--workers", ["0", "-2"]),
    ("prepare s o", "--seed", ["-1"]),
    ("prepare s o", "--min-seconds", ["-1", "nan"]),
    ("prepare s o", "--valid-fraction", ["-0.1", "1", "nan"]),
    ("synth o", "--clips", ["0", "-3"]),
    ("synth o", "--seconds", ["0", "-1", "inf"]),
    ("synth o", "--seed", ["-1"]),
    ("train d --out r", "--residual-channels", ["0", "-16"]),
    ("train d --out r", "--layers-per-stack", ["0", "1000"]),
    ("train d --out r", "--batch-size", ["0"]),
    ("train d --out r", "--lr", ["0", "nan", "-1"]),
    ("train d --out r", "--max-steps", ["0", "-5"]),
    ("train d --out r", "--max-minutes", ["-1", "inf"]),
    ("train d --out r", "--crop-seconds", ["0"]),
    ("train d --out r", "--num-workers", ["-1"]),
    ("train d --out r", "--seed", ["-1", str(2**32)]),
    ("train d --out r", "--devices", ["0"]),
    ("train d --out r", "--latent", ["-1", "65"]),
    ("train d --out r", "--free-bits", ["-1", "nan"]),
    ("bench", "--batch", ["0"]),
    ("bench", "--threads", ["0"]),
    ("bench", "--seconds", ["0"]),
    ("bench", "--long-seconds", ["-1"]),
    ("demo", "--clips", ["0"]),
    ("demo", "--minutes", ["0", "nan"]),
    ("demo", "--seed", ["-1"]),
    ("demo", "--temperature", ["inf"]),
    ("demo", "--spread", ["-1"]),
    ("demo", "--latent", ["-1", "65"]),
]


@pytest.mark.parametrize("command, flag, values", BAD_NUMBERS, ids=[f"{c.split()[0]} {f}" for c, f, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_by_the_parser_in_one_line(cli_run, command, flag, values):
    for value in values:
        code, out, err = cli_run(*command.split(), f"{flag}={value}")
        assert code == 2, (flag, value, out, err)
        line = one_line(err)
        assert f"argument {flag}" in line and value in line, line


def test_bf16dot_on_a_cpu_without_it_is_refused_by_the_parser_in_one_line(cli_run, monkeypatch):
    from movenet import kernels

    monkeypatch.setattr(kernels, "host_has_bf16_dot", lambda: False)
    code, out, err = cli_run("generate", "m.pt", "v.mp4", "-o", "o.wav", "--precision", "bf16dot")
    assert code == 2 and "argument --precision" in one_line(err) and "AVX512-BF16" in err


def test_int8_on_a_cpu_without_vnni_is_refused_by_the_parser_in_one_line(cli_run, monkeypatch):
    from movenet import fastgen, int8

    monkeypatch.setattr(int8, "host_has_vnni", lambda: False)
    code, out, err = cli_run("generate", "m.pt", "v.mp4", "-o", "o.wav", "--precision", "int8")
    assert code == 2 and "argument --precision" in one_line(err) and "AVX512-VNNI" in err
    assert cli.PRECISIONS == fastgen.PRECISIONS  # the parser names the engine's precisions without importing it


def test_good_numbers_still_parse():
    args = cli.build_parser().parse_args(["prepare", "s", "o", "--fps", "30", "--sample-rate", "24000",
                                          "--size", "128", "--workers", "1", "--min-seconds", "0",
                                          "--valid-fraction", "0"])
    assert (args.fps, args.sample_rate, args.size, args.workers, args.min_seconds) == (30, 24000, 128, 1, 0.0)
    args = cli.build_parser().parse_args(["generate", "m", "v", "-o", "x.wav", "--temperature", "0", "--seed",
                                          str(2**32 - 1)])
    assert args.temperature == 0.0 and args.seed == 2**32 - 1
    from movenet.sampling import DEFAULT_SPREAD

    assert args.spread == DEFAULT_SPREAD
    for spread in ("0", "1"):
        assert cli.build_parser().parse_args(["evaluate", "m", "d", "--spread", spread]).spread == float(spread)
    args = cli.build_parser().parse_args(["train", "d", "--out", "r", "--num-workers", "0", "--max-minutes", "0",
                                          "--weight-decay", "0", "--lr", "1e-3", "--seed", "0"])
    assert (args.num_workers, args.max_minutes, args.weight_decay, args.lr) == (0, 0.0, 0.0, 1e-3)


def test_fine_tuning_from_a_model_that_cannot_read_the_set_is_one_line_before_training(cli_run, tmp_path, clip,
                                                                                       model):
    from movenet.data import DataConfig, prepare

    prepare(clip.parent, tmp_path / "frames", DataConfig(features="frames", valid_fraction=0.0), workers=1,
            progress=False)  # the shipped model listens to keypoints
    code, _, err = cli_run("train", tmp_path / "frames", "--out", tmp_path / "run", "--init-from", model)
    assert code == 1 and "--features keypoints" in one_line(err) and str(model) in err
    code, _, err = cli_run("train", tmp_path / "frames", "--out", tmp_path / "run", "--init-from", tmp_path / "no.pt")
    assert code == 1 and "no such checkpoint" in one_line(err)
    code, _, err = cli_run("train", tmp_path / "frames", "--out", tmp_path / "run", "--init-from", model, "--resume")
    assert code == 1 and "give one of them" in one_line(err)  # not silently one or the other
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Item 2: evaluate --json overwrites nothing it should not


def test_evaluate_json_never_overwrites_its_inputs(cli_run, tmp_path, model):
    data = tmp_path / "data"
    data.mkdir()
    before = model.read_bytes()
    for force in ([], ["--force"]):
        code, _, err = cli_run("evaluate", model, data, "--json", model, *force)
        assert code == 1 and str(model) in one_line(err), err
        assert model.read_bytes() == before
    (data / "manifest.json").write_text('{"format_version": 2}')
    code, _, err = cli_run("evaluate", model, data, "--json", data / "manifest.json", "--force")
    assert code == 1 and "part of this command's input" in one_line(err)
    assert (data / "manifest.json").read_text() == '{"format_version": 2}'


def test_evaluate_json_refuses_an_existing_file_without_force_and_other_kinds(cli_run, tmp_path, model):
    data = tmp_path / "data"
    data.mkdir()
    report = tmp_path / "report.json"
    report.write_text("mine")
    code, _, err = cli_run("evaluate", model, data, "--json", report)
    assert code == 1 and "--force" in one_line(err) and report.read_text() == "mine"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, _, err = cli_run("evaluate", model, data, "--json", notes, "--force")
    assert code == 1 and ".json" in one_line(err) and notes.read_text() == "mine"
    code, _, err = cli_run("evaluate", model, data, "--json", tmp_path, "--force")  # a directory
    assert code == 1 and "directory" in one_line(err)


# ----------------------------------------------------------------------------------------------------------------
# Item 5: destinations are checked before the work; failures are one line


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command gets as far as loading the model."""
    from movenet import checkpoint

    def load(*args, **kwargs):
        raise AssertionError("the command started its work before checking its output")

    monkeypatch.setattr(checkpoint, "load", load)


def test_generate_to_a_directory_is_one_line_even_with_force(cli_run, tmp_path, model, clip, no_work):
    folder = tmp_path / "out.mp4"
    folder.mkdir()
    code, _, err = cli_run("generate", model, clip, "-o", folder, "--force")
    assert code == 1 and "is a directory" in one_line(err)


def test_generate_over_its_own_input_is_refused_even_with_force(cli_run, tmp_path, model, clip, no_work):
    video_copy = tmp_path / "dancer.mp4"
    shutil.copy(clip, video_copy)
    before = video_copy.read_bytes()
    code, _, err = cli_run("generate", model, video_copy, "-o", video_copy, "--force")
    assert code == 1 and "input" in one_line(err) and video_copy.read_bytes() == before


def test_an_unwritable_destination_fails_before_generating(cli_run, tmp_path, model, clip, readonly_dir, no_work):
    readonly = readonly_dir
    code, _, err = cli_run("generate", model, clip, "-o", readonly / "out.wav")
    assert code == 1 and one_line(err) == f"movenet: error: {readonly}: cannot write there (Read-only file system)"
    (tmp_path / "file").write_text("x")
    code, _, err = cli_run("generate", model, clip, "-o", tmp_path / "file" / "out.wav")
    assert code == 1 and "not a directory" in one_line(err)
    code, _, err = cli_run("evaluate", model, tmp_path, "--json", readonly / "r.json")
    assert code == 1 and "Read-only file system" in one_line(err)
    code, _, err = cli_run("evaluate", model, tmp_path, "--plots", readonly / "plots")
    assert code == 1 and "Read-only file system" in one_line(err)


def test_a_full_disk_during_generate_is_one_line_and_leaves_no_temporary_file(cli_run, tmp_path, clip, full_disk):
    full_disk(tmp_path)
    for out in ("out.wav", "out.mp4"):
        code, _, err = cli_run("generate", SHIPPED, clip, "-o", tmp_path / out, "--quiet")
        assert code == 1
        assert one_line(err) == f"movenet: error: {tmp_path / out}: cannot write (No space left on device)"
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Item 6: a hostile or damaged checkpoint is refused in one line that never advises the unsafe load


class Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"format_version": 1, "model": {}, "payload": Hostile(marker)}, path)
    return path


def test_generate_refuses_a_hostile_checkpoint_without_running_it(cli_run, tmp_path, clip):
    marker = tmp_path / "pwned"
    evil = hostile_checkpoint(tmp_path / "evil.pt", marker)
    code, _, err = cli_run("generate", evil, clip, "-o", tmp_path / "out.wav")
    line = one_line(err)
    assert code == 1 and "refused: it holds code or objects (posix.system)" in line and str(evil) in line
    assert "weights_only" not in line and not marker.exists() and not (tmp_path / "out.wav").exists()


def test_generate_refuses_a_truncated_checkpoint_in_one_line(cli_run, tmp_path, clip):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(SHIPPED.read_bytes()[:5000])
    code, _, err = cli_run("generate", cut, clip, "-o", tmp_path / "out.wav")
    line = one_line(err)
    assert code == 1 and "not a movenet checkpoint, or damaged" in line and "weights_only" not in line


# ----------------------------------------------------------------------------------------------------------------
# Item 10: synth into a folder made with another seed


def test_synth_with_another_seed_does_not_pretend_to_write(cli_run, tmp_path):
    def sidecars() -> dict:
        return {p.name: p.read_bytes() for p in tmp_path.rglob("*.json")}

    code, out, _ = cli_run("synth", tmp_path, "--clips", 2, "--seconds", 0.4, "--seed", 1, "--quiet")
    assert code == 0 and f"wrote 2 clips to {tmp_path}\n" == out
    first = sidecars()
    code, out, err = cli_run("synth", tmp_path, "--clips", 2, "--seconds", 0.4, "--seed", 2, "--quiet")
    assert code == 1 and "--seed" in one_line(err) and "--force" in err and out == ""
    assert sidecars() == first  # nothing was touched
    code, out, _ = cli_run("synth", tmp_path, "--clips", 3, "--seconds", 0.4, "--seed", 1, "--quiet")
    assert code == 0 and out == f"wrote 1 clip to {tmp_path}, kept 2 already there (3 in all)\n"
    code, out, _ = cli_run("synth", tmp_path, "--clips", 2, "--seconds", 0.4, "--seed", 2, "--quiet", "--force")
    assert code == 0 and out.startswith("wrote 2 clips")
    now = sidecars()
    assert all(now[name] != first[name] for name in first)
    assert not any(p.name.startswith(files.TEMP_PREFIX) for p in tmp_path.rglob("*"))
