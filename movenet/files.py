"""Writing files so that nothing is lost or half-written: every file movenet writes goes through `atomic_write`.

    with atomic_write("out.wav") as tmp:   # a hidden temporary name beside the target, same suffix
        write_the_file(tmp)                # any writer that takes a path: wave, torch.save, PyAV, matplotlib
    # renamed over "out.wav" only if the block finished; removed otherwise

The temporary file lies in the target's directory (so the rename is atomic) and keeps its suffix (so FFmpeg and
matplotlib pick the format from the name). It is created with mode 0666 less the user's umask, as `open` would
create the target itself; `tempfile.mkstemp` would make every output private (0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".movenet-"  # hidden, and recognisably ours: a kill -9 leaves at most such a file behind


def temp_name(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.stem}.{os.getpid()}.{secrets.token_hex(3)}{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path beside `path`; on success rename it to `path`, on any error remove it."""
    path = Path(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for the target
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
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
