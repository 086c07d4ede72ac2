"""Writing files so that nothing is lost or half-written: every file movenet writes goes through `atomic_write`.

    with atomic_write("out.wav") as tmp:   # a hidden temporary name beside the target, same suffix
        write_the_file(tmp)                # any writer that takes a path: wave, torch.save, PyAV, matplotlib
    # renamed over "out.wav" only if the block finished; removed otherwise

The temporary file lies in the target's directory (so the rename is atomic) and keeps its suffix (so FFmpeg and
matplotlib pick the format from the name). It is created with mode 0666 less the user's umask, as `open` would
create the target itself; `tempfile.mkstemp` would make every output private (0600). A failed write (full disk,
read-only filesystem) raises `WriteError`, one line naming the target, and leaves no temporary file; a temporary
file left by a killed process (kill -9 cannot be caught) is removed by the next write of the same target.

Commands check their destinations before any long work with `check_output` (a file) and `check_output_dir`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from pathlib import Path

TEMP_PREFIX = ".movenet-"  # hidden, and recognisably ours: a kill -9 leaves at most such a file behind


class WriteError(OSError):
    """A destination that cannot be written; str() is one line naming it and the reason."""

    def __str__(self) -> str:
        return str(self.strerror)


class OutputError(Exception):
    """An output path a command refuses to write (an input, a directory, an existing file without --force);
    the message is one line naming it."""


def temp_name(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.stem}.{os.getpid()}.{secrets.token_hex(3)}{path.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of `path` that a killed writer left behind (their process is gone); returns
    them. Files of a live process are kept: it may still be writing."""
    pattern = re.compile(re.escape(f"{TEMP_PREFIX}{path.stem}.") + r"(\d+)\.[0-9a-f]{6}" + re.escape(path.suffix) + "$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _write_error(path: Path, err: OSError) -> WriteError:
    reason = err.strerror or " ".join(str(err).split()) or type(err).__name__
    return WriteError(err.errno or errno.EIO, f"{path}: cannot write ({reason})")


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside `path`; on success rename it to `path`, on any error remove it.

    An OSError on the way (creating, writing, renaming) becomes WriteError naming `path`, not the temporary file.
    """
    path = Path(path)
    remove_stale_temps(path)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for the target
        os.close(fd)
    except WriteError:
        raise
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as err:
        if err.errno is None:  # not the operating system's: a library's own error, passed on as it is
            raise
        raise _write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    """JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, separators=None if indent else (",", ":")))


def save_npy(path: str | Path, array) -> None:
    """A numpy array as .npy, atomically."""
    import numpy as np

    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


# ----------------------------------------------------------------------------------------------------------------
# Checking destinations before the work


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(directory: str | Path) -> None:
    """Raise WriteError unless files can be created in `directory` (or, if it does not exist yet, in its nearest
    existing parent, where it would be made). Tries it: creates and removes a hidden file."""
    directory = Path(directory)
    where = _existing_ancestor(directory)
    if not where.is_dir():
        raise WriteError(errno.ENOTDIR, f"{directory}: cannot write there ({where} is not a directory)")
    probe = where / f"{TEMP_PREFIX}probe.{os.getpid()}.{secrets.token_hex(3)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise WriteError(err.errno or errno.EIO,
                         f"{directory}: cannot write there ({err.strerror or type(err).__name__})") from None


def _same_or_inside(path: Path, other: Path) -> bool:
    """path is `other`, or lies inside the directory `other`."""
    try:
        if other.is_dir():
            return os.path.realpath(path) == os.path.realpath(other) or \
                Path(os.path.realpath(path)).is_relative_to(os.path.realpath(other))
        return path.exists() and other.exists() and os.path.samefile(path, other)
    except OSError:
        return False


def check_output(path: str | Path, force: bool = False, inputs=(), suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, before any long work, that a command may and can write the file `path`; returns it.

    Raises OutputError (one line) if it names a directory, the command's own input (a file given as input, or an
    existing file inside an input directory: never, not even with --force), a file that exists (unless force),
    or lacks one of `suffixes`; WriteError if its directory cannot be written (read-only filesystem, no
    permission, a parent that is a file).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: the output must end in {' or '.join(suffixes)}")
    for source in inputs:
        if source is not None and path.exists() and _same_or_inside(path, Path(source)):
            raise OutputError(f"{path}: is {'part of ' if Path(source).is_dir() else ''}this command's input "
                              f"{source}; write the output elsewhere")
    if path.exists() and not force:
        raise OutputError(f"{path}: exists (use --force to overwrite)")
    check_writable_dir(path.parent)
    return path


def check_output_dir(directory: str | Path, inputs=()) -> Path:
    """Check that a command can write files into `directory` (made if missing); returns it. OutputError if it
    is a file or one of the command's inputs; WriteError if it cannot be written."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: not a directory")
    for source in inputs:
        if source is not None and os.path.realpath(directory) == os.path.realpath(source):
            raise OutputError(f"{directory}: is this command's input; write the output elsewhere")
    check_writable_dir(directory)
    return directory
