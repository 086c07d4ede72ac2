"""movenet: turn human movement into music.

    import movenet
    loaded = movenet.load_model("runs/demo/model.pt")
    wav = movenet.soundtrack(loaded, "dance.mp4", outputs=["dance_with_music.mp4"])
"""

__version__ = "0.1.0"


def _drop_stale_compiled_code() -> None:
    """numba's cache checks each compiled function against its own file only, but functions here take in code from
    other files (kernels' and int8's intrinsics are emitted inside fastgen's and sampling's loops): after an update
    that changed kernels.py alone, fastgen's cached machine code would still hold the old kernels. So the package's
    sources are checked together, once an import: if any changed, every cached function of the package is compiled
    afresh (its files in __pycache__; a NUMBA_CACHE_DIR elsewhere is the user's to clear)."""
    import hashlib
    import os
    from pathlib import Path

    package = Path(__file__).parent
    cache = package / "__pycache__"
    try:
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(package.glob("*.py")))).hexdigest()
        stamp = cache / "compiled-sources.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            return
        for old in cache.glob("*.nb[ic]"):
            old.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        partial = cache / f"compiled-sources.{os.getpid()}.tmp"
        partial.write_text(digest)
        partial.replace(stamp)
    except OSError:  # a read-only install: numba then caches elsewhere, or not at all
        pass


_drop_stale_compiled_code()


def load_model(path, device="cpu"):
    """A trained model.pt (see movenet.checkpoint.load)."""
    from movenet.checkpoint import load

    return load(path, device)


def soundtrack(loaded, video_path, outputs=(), temperature: float = 1.0, seed: int = 0, style=None):
    """A soundtrack for a video: float32 waveform at loaded.inputs.sample_rate; also written to each of `outputs`
    (.wav or .mp4). See movenet.generate.generate_file."""
    from pathlib import Path

    from movenet.generate import generate_file

    return generate_file(loaded, video_path, [Path(o) for o in outputs], temperature, seed, style)
