"""Live streams stepped together: each plays what offline generation makes from the same movement and seed,
whenever it joins, leaves, and whoever shares its ticks."""

import numpy as np
import pytest
from tests.test_fastgen import build, movement_inputs

from movenet.checkpoint import CheckpointError, Loaded
from movenet.fastgen import FastGenerator
from movenet.generate import generate_waves
from movenet.inputs import InputConfig, InputMismatch
from movenet.movement import BLOCK_FRAMES, Movement, condition, condition_newest
from movenet.sampling import sample_inverse_cdf
from movenet.stream import Streams

STYLES = ["a", "b", "c"]


def loaded_model(features, **overrides):
    model = build(features, n_labels=3, **overrides)
    c = model.config
    return Loaded(model, InputConfig(sample_rate=c.hop * 25, fps=25, frame_size=c.frame_size, features=features),
                  STYLES)


def offline(loaded, movement, style, temperature, seed, gen):
    return np.concatenate(list(generate_waves(gen, loaded.model, [movement], [STYLES.index(style)], [seed],
                                              temperature, chunk_frames=4)), axis=1)[0]


def dancers(config, n, n_frames):
    out = []
    for k in range(n):
        _, frames, keypoints, _ = movement_inputs(config, n_frames * config.hop, batch=1, seed=10 + k)
        out.append(Movement(frames[0].numpy() if config.uses_frames else None,
                            keypoints[0].numpy() if config.uses_keypoints else None))
    return out


@pytest.mark.parametrize("features, overrides", [("keypoints", {}), ("frames", {}),
                                                 ("keypoints", {"controls": True, "kick": True, "direct_kick": True})])
def test_streams_joining_and_leaving_play_what_offline_generation_makes(features, overrides):
    loaded = loaded_model(features, **overrides)
    gen = FastGenerator(loaded.model)
    n_frames = BLOCK_FRAMES + 7  # each stream's frames cross a block of the conditioning
    moves = dancers(loaded.model.config, 3, n_frames)
    plan = {  # key: (style, temperature, seed, first tick, last tick + 1)
        "x": ("a", 1.0, 1, 0, n_frames), "y": ("c", 0.7, 2, 3, n_frames), "z": ("b", 0.0, 3, 5, n_frames - 1),
    }
    streams = Streams(loaded, gen)
    played = {key: [] for key in plan}
    for tick in range(n_frames):
        for key, (style, temperature, seed, first, stop) in plan.items():
            if tick == first:
                streams.add(key, style, temperature, seed)
            if tick == stop:
                streams.remove(key)
        step = {}
        for k, (key, (_, _, _, first, stop)) in enumerate(plan.items()):
            if first <= tick < stop:
                m = moves[k]
                step[key] = (None if m.frames is None else m.frames[tick - first],
                             None if m.keypoints is None else m.keypoints[tick - first])
        for key, pcm in streams.step(step).items():
            assert pcm.dtype == np.float32 and pcm.shape == (loaded.model.config.hop,)
            played[key].append(pcm)
    assert len(streams) == 2 and sorted(streams.keys()) == ["x", "y"]
    for k, (key, (style, temperature, seed, first, stop)) in enumerate(plan.items()):
        alone = offline(loaded, moves[k].window(0, stop - first), style, temperature, seed, gen)
        np.testing.assert_array_equal(np.concatenate(played[key]), alone, err_msg=key)


def test_a_frames_conditioning_is_the_same_bits_whole_in_chunks_and_newest_first():
    """The shipped model's encoders (their real sizes, where a CPU's kernels may round a 4-frame window otherwise
    than a 28-frame one): every frame's row and controls are equal bit for bit conditioned from the whole video, a
    chunk at a time, and as a live stream asks for them (its newest frames, nothing after)."""
    from movenet import checkpoint, demo

    model = checkpoint.load(demo.SHIPPED).model.eval()
    rng = np.random.default_rng(0)
    n_frames = 2 * BLOCK_FRAMES + 9
    keypoints = (0.5 + np.cumsum(rng.normal(0, 0.01, (n_frames, model.config.n_joints, 3)), 0)).astype(np.float32)
    keypoints[..., 2] = 1
    moving = Movement(None, keypoints)
    whole = condition(model, moving, 0)
    chunked = [condition(model, moving, 0, start, min(n_frames, start + 7)) for start in range(0, n_frames, 7)]
    np.testing.assert_array_equal(np.concatenate([c.rows for c in chunked]), whole.rows)
    np.testing.assert_array_equal(np.concatenate([c.controls for c in chunked]), whole.controls)
    for k in range(n_frames):
        newest = condition_newest(model, moving.window(max(0, k - 30), k + 1), k, 0)
        np.testing.assert_array_equal(newest.rows[0], whole.rows[k], err_msg=f"frame {k}")
        np.testing.assert_array_equal(newest.controls[0], whole.controls[k], err_msg=f"frame {k}")
    with pytest.raises(ValueError, match="needs its"):
        condition_newest(model, moving.window(BLOCK_FRAMES, BLOCK_FRAMES + 3), BLOCK_FRAMES + 2, 0)


def test_a_bad_frame_leaves_every_stream_as_it_was():
    loaded = loaded_model("keypoints")
    moves = dancers(loaded.model.config, 2, 6)
    gen = FastGenerator(loaded.model)
    streams = Streams(loaded, gen)
    streams.add(0, "a", 1.0, 5)
    streams.add(1, "b", 1.0, 6)
    played = {0: [], 1: []}
    for t in range(6):
        if t == 2:
            with pytest.raises(InputMismatch):
                streams.step({0: (None, moves[0].keypoints[t]), 1: (None, np.zeros((4, 3), np.float32))})
        for key, pcm in streams.step({k: (None, moves[k].keypoints[t]) for k in (0, 1)}).items():
            played[key].append(pcm)
    for key, style, seed in ((0, "a", 5), (1, "b", 6)):
        np.testing.assert_array_equal(np.concatenate(played[key]), offline(loaded, moves[key], style, 1.0, seed, gen))


def test_a_tick_needs_every_stream_and_known_styles():
    loaded = loaded_model("keypoints")
    streams = Streams(loaded)
    streams.add("p")
    with pytest.raises(KeyError, match="missing"):
        streams.step({})
    with pytest.raises(KeyError, match="already"):
        streams.add("p")
    with pytest.raises(CheckpointError, match="unknown style"):
        streams.add("q", style="tango")
    with pytest.raises(ValueError, match="temperature"):
        streams.add("q", temperature=float("nan"))
    streams.remove("never there")  # nothing happens
    assert streams.step({"p": (None, np.zeros((15, 3), np.float32))})["p"].shape == (loaded.model.config.hop,)


def test_per_stream_temperatures_sample_as_each_alone():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 256)).astype(np.float32) * 3
    u = rng.random(4)
    temperatures = np.array([0.0, 0.5, 1.0, 2.0])
    together = sample_inverse_cdf(logits, temperatures, u)
    alone = [sample_inverse_cdf(logits[b:b + 1], t, u[b:b + 1])[0] for b, t in enumerate(temperatures)]
    np.testing.assert_array_equal(together, alone)
    assert together[0] == logits[0].argmax()
    with pytest.raises(ValueError, match="one per stream"):
        sample_inverse_cdf(logits, np.ones(3), u)
