"""movenet: turn human movement into music.

    import movenet
    loaded = movenet.load_model("runs/demo/model.pt")
    wav = movenet.soundtrack(loaded, "dance.mp4", outputs=["dance_with_music.mp4"])
"""

__version__ = "0.1.0"


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
