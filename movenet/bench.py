"""Generation speed and memory (`movenet bench`, benchmarks/bench_generate.py): the compiled engine for one stream
and for batches, the PyTorch step loop as a same-run reference, and the peak memory of a long video.

Only the bench command and benchmarks import this module.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numba
import numpy as np
import torch

from movenet.audio import SAMPLE_RATE, SILENCE
from movenet.controls import Excitation, SourceState
from movenet.fastgen import FastGenerator
from movenet.generate import generate_chunks
from movenet.int8 import host_has_vnni, takes as int8_takes
from movenet.kernels import host_cache_bytes, host_has_amx, host_has_bf16_dot, host_is_intel, matmul, tile_rows
from movenet.model import ModelConfig, MoveNet
from movenet.movement import Movement, condition
from movenet.sampling import sample_inverse_cdf


def random_movement(config: ModelConfig, n_frames: int, seed: int = 0) -> Movement:
    """Random frames and/or keypoints of the shapes a model of `config` listens to (speed does not depend on them)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, config.frame_size, config.frame_size, config.frame_channels),
                          dtype=np.uint8) if config.uses_frames else None
    keypoints = rng.random((n_frames, config.n_joints, 3), dtype=np.float32) if config.uses_keypoints else None
    return Movement(frames, keypoints)


def _pin(threads: int) -> tuple[set, list[int]]:
    """Restrict this process to `threads` of its CPUs (numba, torch likewise); returns the old affinity and the new."""
    old = os.sched_getaffinity(0)
    cpus = sorted(old)[-threads:]  # the last ones: CPU 0 tends to take interrupts and housekeeping
    os.sched_setaffinity(0, cpus)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    return old, cpus


ROUNDS = 5  # turns each precision takes at each batch size


def _chunks(gen: FastGenerator, cond: np.ndarray, source, u: np.ndarray, n_cond: int, chunk: int, threads: int):
    """A call that generates the next `chunk` frames for cond's streams with `gen`, cycling through its n_cond
    frames (and the source's samples), from a state of its own."""
    hop = gen.hop
    state = gen.init_state(cond[:, 0])

    def run():
        if state.t + chunk * hop > n_cond * hop:
            state.t = 0
        t = state.t
        gen.generate(cond[:, t // hop: t // hop + chunk], None if source is None else source[:, t: t + chunk * hop],
                     state, 1.0, u, threads)
    return run


def _rate(run, n_per_call: int, seconds: float, min_calls: int = 3) -> float:
    """Items per second of run() (n_per_call items per call), timed for at least `seconds` after one warm-up call."""
    run()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * n_per_call / (time.perf_counter() - start)


def benchmark(config: ModelConfig | None = None, seconds: float = 3.0, batch_sizes=(1, 8, 32), threads: int = 1,
              reference_seconds: float = 3.0, long_seconds: float = 600.0, chunk_frames: int = 250,
              seed: int = 0) -> dict:
    """Generation speed and memory, as a JSON-ready dict (`benchmarks/bench_generate.py` prints it).

    - "fast": per batch size B, samples/s in total and per stream and the real-time factors (samples/s / 16 kHz),
      generating 5 frames per call, streams in lockstep on `threads` threads; the precisions take turns, ROUNDS
      rounds of `seconds` / ROUNDS each (after a warm-up call): samples_per_s is the best round's (the engine
      undisturbed, as the roofline's peaks are measured), median_samples_per_s the rounds' median;
    - "reference": the PyTorch loop (`MoveNet.step` + `sample_inverse_cdf`, one stream) for `reference_seconds`,
      the same-run yardstick: "speedup" is one fast stream over it, robust to a busy machine where absolute rates
      are not; "over_fp32": each compact precision's rate over fp32's at the same batch size, in this run, and
      "over_fp32_paired_median" the median of the same ratio round by round;
    - "long": `long_seconds` of audio (default 10 min) for one stream from a video's frames, chunk by chunk with
      `generate.generate_chunks`, then decoded and written as a WAV, in a fresh process: the resident memory before
      generating (Python, torch, numba, the model and the video's frames), the peak up to the end of generation,
      and the peak with the decoding and writing of the whole WAV at once; 0 skips it.
    The process is pinned to `threads` CPUs meanwhile (restored after); the load average tells how busy the machine
    was. The model has random weights (speed does not depend on them), the default config unless one is given.
    """
    config = config or ModelConfig()
    old_affinity, cpus = _pin(threads)
    old_torch_threads = torch.get_num_threads()
    try:
        torch.manual_seed(seed)
        model = MoveNet(config).eval()
        gen = FastGenerator(model)
        n_cond = 25
        rng = np.random.default_rng(seed)
        part = condition(model, random_movement(config, n_cond, seed), 0 if config.n_labels else None)
        cond1 = part.rows[None]
        excitation = Excitation.of(config)
        source1 = None if excitation is None else excitation.render(part.controls[None], SourceState.silent(1))
        precisions = (("fp32", "bf16") + (("bf16dot",) if host_has_bf16_dot() else ())
                      + (("amx",) if host_has_amx() and _whole_tiles(config) else ())
                      + (("int8",) if host_has_vnni() and int8_takes(config) else ()))
        gens = {precision: FastGenerator(model, precision) for precision in precisions}
        roofline = _roofline({p: g.n_weight_bytes for p, g in gens.items()}, 2 * gen.macs_per_sample, seconds)
        results = {
            "host": _host(), "config": config.to_dict(), "threads": threads, "cpus": cpus,
            "load_average": os.getloadavg(), "weight_bytes": {p: g.n_weight_bytes for p, g in gens.items()},
            "flops_per_sample": 2 * gen.macs_per_sample, "auto_precision": FastGenerator(model, "auto").precision,
            "roofline": roofline, "numba": numba.__version__, "torch": torch.__version__, "fast": [],
        }
        hop, chunk = config.hop, 5
        paired = {}
        for B in batch_sizes:
            cond = np.ascontiguousarray(np.repeat(cond1, B, axis=0))
            source = None if source1 is None else np.ascontiguousarray(np.repeat(source1, B, axis=0))
            runs = {p: _chunks(g, cond, source, rng.random((B, chunk * hop)), n_cond, chunk, threads)
                    for p, g in gens.items()}
            # the precisions take turns, a few short rounds each: a busy neighbour slows whichever runs at the
            # time, and turns share that out; the best round is each one's speed undisturbed, as the roofline's
            # peaks are, and the rounds' ratios to fp32's (paired) say how steady that is
            rounds = {p: [] for p in runs}
            for _ in range(ROUNDS):
                for p, run in runs.items():
                    rounds[p].append(_rate(run, B * chunk * hop, seconds / ROUNDS, min_calls=1))
            paired[B] = {p: round(float(np.median(np.array(r) / rounds["fp32"])), 2) for p, r in rounds.items()
                         if p != "fp32"}
            for precision, g in gens.items():
                rate = max(rounds[precision])
                # what bounds it: one stream re-reads the weights every sample; a batch shares the reads and is
                # bound by the multiply-adds
                bound = min(roofline["cache_bandwidth_gb_s_by_block"][precision] * 1e9 / g.n_weight_bytes * B,
                            roofline["gemm_gflop_s_by_type"][precision] * 1e9 / (2 * gen.macs_per_sample))
                results["fast"].append({
                    "batch": B, "precision": precision, "samples_per_s": round(rate),
                    "median_samples_per_s": round(float(np.median(rounds[precision]))),
                    "per_stream_samples_per_s": round(rate / B), "realtime_factor": round(rate / SAMPLE_RATE, 2),
                    "per_stream_realtime_factor": round(rate / B / SAMPLE_RATE, 2),
                    "roofline_samples_per_s": round(bound), "fraction_of_roofline": round(rate / bound, 3)})
        if excitation is not None:  # the source is rendered once per chunk, outside the compiled loop
            render_state = SourceState.silent(1)
            rate = _rate(lambda: excitation.render(part.controls[None, :chunk], render_state), chunk * hop, seconds)
            results["source_render_samples_per_s"] = round(rate)
        cond_t = torch.from_numpy(cond1)
        source_t = None if source1 is None else torch.from_numpy(source1)
        ref_state = model.init_state(cond_t[:, 0])
        prev = torch.full((1,), SILENCE)

        def ref_step():
            nonlocal prev
            t = ref_state.t % (n_cond * hop)
            logits, _ = model.step(prev, cond_t[:, t // hop], ref_state, None if source_t is None else source_t[:, t])
            prev = torch.from_numpy(sample_inverse_cdf(logits.numpy(), 1.0, rng.random(1)))

        ref_rate = _rate(ref_step, 1, reference_seconds, min_calls=20)
        results["reference"] = {"batch": 1, "samples_per_s": round(ref_rate),
                                "realtime_factor": round(ref_rate / SAMPLE_RATE, 3)}
        one = [r for r in results["fast"] if r["batch"] == 1 and r["precision"] == "fp32"]
        if one:
            results["speedup"] = round(one[0]["samples_per_s"] / ref_rate, 1)
        # each compact precision against fp32 at the same batch size, measured in this run
        fp32 = {r["batch"]: r["samples_per_s"] for r in results["fast"] if r["precision"] == "fp32"}
        results["over_fp32"] = {f"batch {B}": {r["precision"]: round(r["samples_per_s"] / fp32[B], 2)
                                               for r in results["fast"] if r["batch"] == B and r["precision"] != "fp32"}
                                for B in fp32}
        results["over_fp32_paired_median"] = {f"batch {B}": ratios for B, ratios in paired.items()}
        results["load_average_after"] = os.getloadavg()
    finally:
        os.sched_setaffinity(0, old_affinity)
        torch.set_num_threads(old_torch_threads)
    if long_seconds > 0:
        code = (f"import json, movenet.bench as b; print(json.dumps(b._long_run({config.to_dict()!r}, "
                f"{long_seconds}, {chunk_frames}, {threads}, {seed})))")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        results["long"] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


@numba.njit(cache=True, fastmath=True)
def _read_all(a, times):
    """Sum of `a` read `times` times over (the bandwidth probe: sums vectorize under fastmath)."""
    total = np.float32(0)
    for _ in range(times):
        for i in range(a.shape[0]):
            total += a[i]
    return total


def _roofline(weight_bytes: dict, flops_per_sample: int, seconds: float) -> dict:
    """What the compiled engine is up against on this core, measured now: the bandwidth of reading a block of the
    weights' size over and over (where they live between samples: L2 or L3) for each weight type, and the peak of
    the engine's own register-tiled product on operands in L1 with the multiply instruction each type uses (fp32
    FMA for fp32 and bf16, whose weights are widened to fp32; vdpbf16ps for bf16dot; AMX tiles for amx, on 32
    rows; vpdpbusd for int8, its inputs already quantized, counting a multiply-add of bytes as 2 operations)."""
    from movenet.int8 import int8_acc, pack_quads, to_int8_quads
    from movenet.kernels import WIDE_TILES, aligned, matmul_acc, to_amx_pairs, to_bf16_pairs

    out = {"tiles": "avx512" if WIDE_TILES else "avx2"}
    bandwidth = {}
    try_seconds = min(seconds, 1.0) / 3
    for precision, n_bytes in weight_bytes.items():
        block = aligned(np.ones(n_bytes // 4, np.float32))  # as the engine's weights are
        times = max(1, int(2e8 // max(n_bytes, 1)))
        # a roofline is a peak: the best of a few tries (as many as the engine's rounds), since another process
        # can take any one of them
        rate = max(_rate(lambda: _read_all(block, times), times * n_bytes, try_seconds) for _ in range(ROUNDS))
        bandwidth[precision] = rate / 1e9
    out["cache_bandwidth_gb_s_by_block"] = {p: round(b, 1) for p, b in bandwidth.items()}
    rows = 8 if WIDE_TILES else 6
    x, w, y = np.ones((rows, 128), np.float32), np.ones((128, 128), np.float32), np.zeros((rows, 128), np.float32)
    n = 2000
    operands = {"fp32": (x, w)}
    if "bf16dot" in weight_bytes:
        operands["bf16dot"] = (to_bf16_pairs(x.T).T.copy(), to_bf16_pairs(w))  # 64 pairs: the same 128 x 128 MACs
    if "int8" in weight_bytes:
        quads = np.zeros((rows, 128 // 4 + 1), np.uint32)
        pack_quads(x, quads)
        operands["int8"] = (quads, to_int8_quads(w))
    peak = {}
    for kind, (a, b) in operands.items():
        product = int8_acc if kind == "int8" else matmul_acc

        def products():
            for _ in range(n):
                product(y, a, b)

        peak[kind] = round(max(_rate(products, n * 2 * rows * 128 * 128, try_seconds) for _ in range(ROUNDS)) / 1e9, 1)
    if "amx" in weight_bytes:
        y32, x32, w_tiles = np.zeros((32, 128), np.float32), np.ones((32, 128), np.float32), to_amx_pairs(w)
        pairs = np.zeros((32, 80), np.uint32)
        peak["amx"] = round(max(_rate(lambda: _amx_products(y32, x32, w_tiles, pairs, n), n * 2 * 32 * 128 * 128,
                                      try_seconds) for _ in range(ROUNDS)) / 1e9, 1)
    peak["bf16"] = peak["fp32"]
    out["gemm_gflop_s_by_type"] = {p: peak[p] for p in weight_bytes}
    out["single_stream_bound_samples_per_s"] = {
        p: round(min(bandwidth[p] * 1e9 / weight_bytes[p], peak[p] * 1e9 / flops_per_sample))
        for p in weight_bytes}
    return out


def _whole_tiles(config: ModelConfig) -> bool:
    """Whether the AMX tiles take this model (its products' columns in multiples of 16)."""
    c = config
    return not any(n % 16 for n in (c.gate_channels, c.residual_channels + c.skip_channels, c.skip_channels,
                                    c.n_classes))


@numba.njit(cache=True)
def _amx_products(y, x, w, pairs, n):
    """n products y += x @ w on AMX tiles, the inputs rounded into pairs each time, as the engine multiplies."""
    tile_rows(w, y.shape[0])  # configures this thread's tiles
    for _ in range(n):
        matmul(y, x, w, pairs)


def _rss_mb() -> float:
    """Current resident memory of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _long_run(config: dict, seconds: float, chunk_frames: int, threads: int, seed: int) -> dict:
    """`benchmark`'s long run, in a process of its own so that its peak resident memory is its own."""
    import tempfile

    from movenet.audio import mu_law_decode, write_wav

    _pin(threads)
    c = ModelConfig.from_dict(config)
    torch.manual_seed(seed)
    model = MoveNet(c).eval()
    gen = FastGenerator(model)
    n_frames = int(round(seconds * SAMPLE_RATE / c.hop))
    movement = random_movement(c, n_frames, seed)
    label = 0 if c.n_labels else None
    list(generate_chunks(gen, model, [movement.window(0, 1)], [label], [seed]))  # compile/load
    rss_before = _rss_mb()
    start = time.perf_counter()
    chunks = list(generate_chunks(gen, model, [movement], [label], [seed], 1.0, chunk_frames, threads))
    wall = time.perf_counter() - start
    peak_generating = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    with tempfile.TemporaryDirectory() as tmp:  # decoded whole, as a caller holding all codes would
        write_wav(os.path.join(tmp, "long.wav"), mu_law_decode(np.concatenate(chunks, axis=1)[0]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_samples = n_frames * c.hop
    return {"seconds_of_audio": seconds, "frames": n_frames, "chunk_frames": chunk_frames,
            "movement_input_mb": round(sum(a.nbytes for a in (movement.frames, movement.keypoints) if a is not None)
                                       / 2**20, 1),
            "rss_before_generating_mb": round(rss_before), "peak_rss_generating_mb": round(peak_generating),
            "peak_rss_with_wav_mb": round(peak),
            "generate_wall_s": round(wall, 1), "samples_per_s": round(n_samples / wall)}


# -- live ------------------------------------------------------------------------------------------------------------


def live_benchmark(checkpoint_path, clients=(1, 2, 4, 6, 8), seconds: float = 8.0, frame_side: int = 256,
                   seed: int = 0) -> dict:
    """How many live clients one core serves in real time, and their latency (`movenet bench --live`).

    A `movenet live` server runs in a process of its own pinned to one CPU (one thread each for torch, numba and
    MediaPipe's work); this process, on the other CPUs, plays N clients: each sends, at the model's frame rate for
    `seconds`, either the JPEG frames of a synthetic dancer (frame_side pixels square: the server decodes them and
    runs MediaPipe, as for a camera) or, for a client that finds the pose itself, the dancer's keypoints (the
    server only generates), and times each frame from its capture to its audio's arrival. N clients are served in
    real time when every client got its audio at the frame rate (>= 95% of the ticks after the first second) and
    the 95th percentile latency is at most one frame period + 50 ms (the live issue's bound).
    """
    import asyncio

    from movenet import live, synth

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpus = cpus[0], (cpus[1:] or cpus)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MOVENET_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "movenet", "live", str(checkpoint_path), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, {server_cpu}))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, client_cpus)
    try:
        url, _ = live.server_address(proc.stdout)
        if url is None:
            raise RuntimeError("the live server did not start")
        clip = synth.generate_clip(seconds + 2, seed=seed, style="sine_major", size=frame_side)
        bodies = {"camera (server runs pose)": (live.FRAME_MAGIC, [live.encode_jpeg(np.ascontiguousarray(f))
                                                                 for f in clip.frames]),
                  "pose from the client": (live.KEYPOINTS_MAGIC, [
                      np.concatenate([j / frame_side, np.ones((len(j), 1))], 1).astype("<f4").tobytes()
                      for j in clip.joints])}
        results = {"host": _host(), "server_cpu": server_cpu, "frame_side": frame_side, "seconds": seconds,
                   "checkpoint": str(checkpoint_path)}
        for kind, (magic, payloads) in bodies.items():
            runs, served = [], 0
            for n in clients:
                run = asyncio.run(_live_clients(url, n, magic, payloads, seconds))
                runs.append(run)
                if not run["real_time"]:
                    break
                served = n
            results[kind] = {"clients_served_in_real_time": served, "runs": runs}
        return results
    finally:
        os.sched_setaffinity(0, old)
        proc.terminate()
        proc.wait(timeout=30)


async def _live_clients(url: str, n: int, magic: bytes, payloads: list[bytes], seconds: float) -> dict:
    import asyncio

    from aiohttp import ClientSession

    from movenet import live

    async def client(http, k):
        lat, arrivals = [], []
        async with http.ws_connect(url.replace("http", "ws", 1) + "ws", max_msg_size=0) as ws:
            hello = json.loads((await ws.receive()).data)
            period = 1.0 / hello["fps"]
            await ws.send_str(json.dumps({"type": "start", "seed": k}))
            loop = asyncio.get_running_loop()
            start = loop.time()

            async def send():
                for i in range(int(seconds / period)):
                    await asyncio.sleep(max(0.0, start + i * period - loop.time()))
                    await ws.send_bytes(live.FRAME_HEADER.pack(magic, i, loop.time() * 1000)
                                        + payloads[i % len(payloads)])

            sender = asyncio.create_task(send())
            stats = {}
            while not sender.done() or loop.time() < start + seconds + 0.2:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if msg.type.name == "BINARY":
                    _, _, index, captured = live.AUDIO_HEADER.unpack_from(msg.data)
                    arrivals.append(loop.time() - start)
                    if index != live.NO_FRAME:
                        lat.append(loop.time() * 1000 - captured)
                elif msg.type.name == "TEXT":
                    stats = json.loads(msg.data)
                else:
                    break
            await sender
        return lat, arrivals, stats, period

    async with ClientSession() as http:
        runs = await asyncio.gather(*(client(http, k) for k in range(n)))
    period = runs[0][3]
    latencies = np.concatenate([np.asarray(r[0]) for r in runs]) if any(len(r[0]) for r in runs) else np.zeros(1)
    expected = (seconds - 1.0) / period
    on_time = min(sum(1 for t in r[1] if t >= 1.0) / expected for r in runs)
    p95 = float(np.percentile(latencies, 95))
    return {"clients": n, "latency_ms": {q: round(float(np.percentile(latencies, q)), 1) for q in (50, 90, 95, 99)},
            "audio_at_frame_rate": round(on_time, 3), "server_tick_ms_p95": runs[0][2].get("tick_ms_p95"),
            "real_time": bool(on_time >= 0.95 and p95 <= 1000 * period + 50)}


def _host() -> dict:
    """The CPU this runs on: its model name and the ISA flags that matter to the kernels."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    from numba.core import config

    return {"cpu": model, "intel": host_is_intel(), "isa": [f for f in wanted if f in flags], "cpus": os.cpu_count(),
            "l2_bytes_per_core": host_cache_bytes(2),  # with the vendor, what precision="auto" goes by
            # the CPU numba compiles for where NUMBA_CPU_NAME names another (kernels._host_features): "host" else
            "compiled_for": config.CPU_NAME or "host"}


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"]  # no sandbox as root; no background connections


def dancer_camera(out_dir, seconds: float = 10.0, side: int = 256):
    """A synthetic dancer (one MediaPipe finds in most frames) as a fake camera's video: out_dir/dancer.y4m."""
    from pathlib import Path

    from movenet import synth, video

    out_dir = Path(out_dir)
    clips = synth.write_dataset(out_dir / "dancers", n_clips=2, seconds=seconds, seed=0, progress=False)
    path = out_dir / "dancer.y4m"
    video.write_y4m(path, np.stack(list(video.iter_frames(clips[1], 25, (side, side), gray=False))), 25)
    return path


def browser_session(camera, seconds: float = 22.0, record=None, screenshot=None, checkpoint_path=None,
                    chromium: str = "/usr/bin/chromium", video_path=None) -> dict:
    """Play `movenet live` in a real browser for `seconds`: Chromium (headless, driven by Playwright) with a fake
    camera playing `camera` (a .y4m), the server in a process of its own (with `video_path`, `--video` instead:
    the server plays that file). Returns the page's numbers (latencies from capture to audio, underruns, timings),
    the PCM it received (float32), the style it played, page errors and the server's lines; `record` and
    `screenshot` (a PNG of the page) are written if given."""
    import base64

    from playwright.sync_api import sync_playwright

    from movenet import live

    command = [sys.executable, "-m", "movenet", "live", *([str(checkpoint_path)] if checkpoint_path else []),
               "--port", "0", "--quiet", *(["--record", str(record), "--force"] if record else []),
               *(["--video", str(video_path)] if video_path else [])]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = live.server_address(server.stdout)
        if url is None:
            raise RuntimeError(f"the live server did not start: {''.join(lines)[-2000:]}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
                *CHROMIUM_ARGS, *([f"--use-file-for-fake-video-capture={camera}"] if camera else [])])
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url + "?keep=1")
            page.wait_for_selector("#start:not([disabled])", timeout=60_000)
            style = page.eval_on_selector("#style", "s => s.value")
            page.click("#start")
            page.wait_for_function("window.movenet.stats().audioMessages > 0", timeout=60_000)
            time.sleep(seconds)
            stats = page.evaluate("window.movenet.stats()")
            if screenshot:
                page.screenshot(path=str(screenshot))
            page.click("#start")  # stop
            page.wait_for_function("!window.movenet.stats().running", timeout=10_000)
            time.sleep(1.0)  # the audio messages still on their way
            received = np.frombuffer(base64.b64decode(page.evaluate("window.movenet.receivedBase64()")), "<f4")
            browser.close()
        if record:
            deadline = time.time() + 30
            while not os.path.exists(os.path.splitext(str(record))[0] + ".json") and time.time() < deadline:
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = np.array(stats["latencies"])  # none with --video: its frames are not captured by the page
    return {"stats": stats, "received": received, "style": style, "errors": errors, "server_lines": lines,
            "latency_ms": {q: round(float(np.percentile(latencies, q)), 1) if latencies.size else None
                           for q in (50, 90, 95, 99)}}
