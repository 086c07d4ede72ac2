"""`movenet live` over its WebSocket, without a browser: the page and its files, the frame -> audio protocol, what a
recorded session replays to, a file played as the camera, several clients at once, and hostile messages."""

import asyncio
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from movenet import audio, checkpoint, demo, live, synth, video
from movenet.generate import generate_file

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def shipped():
    return checkpoint.load(demo.SHIPPED)


@pytest.fixture(scope="module")
def walker_jpegs(walker_frames):
    """What a page would send of a camera watching a man walk in (vtest.avi): JPEGs with a longest side of
    SEND_SIDE. MediaPipe finds him from the 7th frame on."""
    h, w = walker_frames.shape[1:3]
    size = live.pose.bounded_size(w, h, live.SEND_SIDE)
    return [live.encode_jpeg(live.model_frame_rgb(f, *size)) for f in walker_frames]


@pytest.fixture(scope="module")
def dancer_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("live_dancer")
    return synth.write_dataset(out, n_clips=1, seconds=2.0, seed=7, progress=False)[0]


async def serving(server, body):
    """Run `body(url)` against the server's app on a free port."""
    from aiohttp import web

    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        return await body(f"http://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()


class Client:
    """A page's part of the protocol: frames out at the frame rate, audio messages in."""

    def __init__(self, ws):
        self.ws, self.audio, self.texts, self.closed = ws, [], [], None

    async def read(self, until, seconds=60):
        deadline = asyncio.get_running_loop().time() + seconds  # stats come every second: a bound of its own
        while not until(self):
            msg = await asyncio.wait_for(self.ws.receive(), timeout=deadline - asyncio.get_running_loop().time())
            if msg.type.name == "BINARY":
                self.audio.append(msg.data)
            elif msg.type.name == "TEXT":
                self.texts.append(json.loads(msg.data))
            else:
                self.closed = (msg.data, msg.extra)
                return

    def pcm(self, hop):
        off = live.AUDIO_HEADER.size + 4 * 15 * 3 + 4 * 3
        return np.concatenate([np.frombuffer(m[off: off + 4 * hop], "<f4") for m in self.audio])

    def stopped(self):
        done = [t for t in self.texts if t["type"] == "stopped"]
        return bool(done) and len(self.audio) >= done[0]["played"]


async def play(http, url, jpegs, n_frames, seed=0, style=None, fps=25, keypoints=None):
    """A client playing n_frames at fps: the JPEGs (cycled), or keypoints [n_frames, 15, 3] the client found itself."""
    ws = await http.ws_connect(url + "ws")
    client = Client(ws)
    await client.read(lambda c: any(t["type"] == "hello" for t in c.texts))
    await ws.send_str(json.dumps({"type": "start", "seed": seed, "style": style}))
    await client.read(lambda c: any(t["type"] == "started" for t in c.texts))
    reader = asyncio.create_task(client.read(lambda c: c.closed is not None or c.stopped()))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n_frames):
        await asyncio.sleep(max(0.0, start + i / fps - loop.time()))
        if keypoints is not None:
            await ws.send_bytes(live.FRAME_HEADER.pack(live.KEYPOINTS_MAGIC, i, loop.time() * 1000)
                                + keypoints[i].astype("<f4").tobytes())
        elif jpegs is not None:
            await ws.send_bytes(live.FRAME_HEADER.pack(live.FRAME_MAGIC, i, loop.time() * 1000) + jpegs[i % len(jpegs)])
    # the last frames' ticks: a frame plays at its due time, up to a period past its pose time's median on a busy host
    deadline = loop.time() + 2.0
    while len(client.audio) < n_frames and loop.time() < deadline:
        await asyncio.sleep(1 / fps)
    await ws.send_str(json.dumps({"type": "stop"}))
    await reader
    await ws.close()
    return client


def test_the_page_and_its_files_are_served_and_need_no_network(shipped):
    from aiohttp import ClientSession

    server = live.LiveServer(shipped, log=lambda line: None)

    async def body(url):
        async with ClientSession() as http:
            page = await (await http.get(url)).text()
            files = {name: await (await http.get(url + "static/" + name)).text()
                     for name in ("live.js", "worklet.js", "style.css")}
            missing = (await http.get(url + "static/nothing.js")).status
            escape = (await http.get(url + "static/../live.py")).status
        return page, files, missing, escape

    page, files, missing, escape = asyncio.run(serving(server, body))
    assert "/static/live.js" in page and "AudioWorkletProcessor" in files["worklet.js"]
    assert "getUserMedia" in files["live.js"] and "audioWorklet.addModule" in files["live.js"]
    for text in (page, *files.values()):  # works offline: nothing is fetched from elsewhere
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text) and "cdn" not in text.lower()
    assert missing == 404 and escape in (403, 404)


def test_each_frame_comes_back_as_its_audio_and_a_recorded_session_replays_exactly(shipped, walker_jpegs, tmp_path):
    from aiohttp import ClientSession

    lines = []
    record = tmp_path / "session.mp4"
    server = live.LiveServer(shipped, record=record, log=lines.append)

    async def body(url):
        async with ClientSession() as http:
            return await play(http, url, walker_jpegs, 30, seed=11, style="square_minor")

    client = asyncio.run(serving(server, body))
    hop = shipped.model.config.hop
    assert client.closed is None and len(client.audio) >= 30
    headers = [live.AUDIO_HEADER.unpack_from(m) for m in client.audio]
    assert all(h[0] == live.AUDIO_MAGIC for h in headers)
    fresh = [h for h in headers if h[2] != live.NO_FRAME]
    assert len(fresh) >= 15 and all(not math.isnan(h[3]) for h in fresh)  # (a loaded machine drops some)
    assert [h[2] for h in fresh] == sorted(h[2] for h in fresh)  # frames played in order, each once
    assert len({h[2] for h in fresh}) == len(fresh)
    pcm = client.pcm(hop)
    assert pcm.dtype == np.float32 and len(pcm) == len(client.audio) * hop
    kp = np.stack([np.frombuffer(m[live.AUDIO_HEADER.size: live.AUDIO_HEADER.size + 180], "<f4").reshape(15, 3)
                   for m in client.audio])
    assert (kp[..., 2] > 0).any(-1).sum() >= 3  # MediaPipe found the walker in the frames it was sent
    # the recording: the frames it played, their audio, and the keypoints beside it
    sidecar = json.loads(record.with_suffix(".json").read_text())
    assert len(sidecar["keypoints"]) == len(client.audio) and sidecar["movenet_live"]["seed"] == 11
    assert len(video.read_frames(record, 25, (64, 64))) == len(client.audio)
    assert any("session recorded in" in line for line in lines)
    # `movenet generate` on the recording, with the session's seed and style, plays what the client heard
    replay = generate_file(shipped, record, [tmp_path / "replay.wav"], seed=11, style="square_minor", progress=False)
    np.testing.assert_array_equal(replay, pcm)


def test_a_file_plays_as_the_camera_what_generate_makes_of_it(shipped, dancer_clip, tmp_path):
    from aiohttp import ClientSession

    server = live.LiveServer(shipped, video_path=dancer_clip, log=lambda line: None)
    n_frames = len(video.read_frames(dancer_clip, 25, (16, 16)))

    async def body(url):
        async with ClientSession() as http:
            return await play(http, url, None, n_frames + 10, seed=3, style="sine_major")

    client = asyncio.run(serving(server, body))
    hop = shipped.model.config.hop
    assert len(client.audio) > n_frames  # it loops
    jpeg = client.audio[0][live.AUDIO_HEADER.size + 4 * 48 + 4 * hop:]
    assert jpeg[:2] == b"\xff\xd8" and live.decode_jpeg(jpeg).shape[2] == 3  # the page shows the file's frames
    offline = generate_file(shipped, dancer_clip, [tmp_path / "offline.wav"], seed=3, style="sine_major",
                            progress=False)
    np.testing.assert_array_equal(client.pcm(hop)[: len(offline)], offline)


def test_a_hostile_client_is_closed_in_one_line_and_the_others_play_on(shipped, walker_jpegs):
    from aiohttp import ClientSession

    lines = []
    server = live.LiveServer(shipped, log=lines.append)

    async def hostile(http, url, payload):
        ws = await http.ws_connect(url + "ws", max_msg_size=0)
        client = Client(ws)
        await client.read(lambda c: bool(c.texts))
        await (ws.send_str(payload) if isinstance(payload, str) else ws.send_bytes(payload))
        await client.read(lambda c: c.closed is not None)
        return client.closed

    async def body(url):
        async with ClientSession() as http:
            good = asyncio.create_task(play(http, url, walker_jpegs, 40, seed=1))
            payloads = [b"\x00" * 40, live.FRAME_HEADER.pack(live.FRAME_MAGIC, 1, 0.0) + b"\xff\xd8 not a jpeg",
                        live.FRAME_HEADER.pack(live.KEYPOINTS_MAGIC, 1, 0.0) + b"\x00" * 12,
                        b"x" * (live.MAX_MESSAGE_BYTES + 1), "{not json", json.dumps({"type": "start",
                                                                                       "temperature": "hot"}),
                        json.dumps({"type": "start", "style": "tango"}), json.dumps({"type": "shout"}),
                        json.dumps({"type": "start", "spread": 2})]
            closed = [await hostile(http, url, p) for p in payloads]
            return await good, closed

    good, closed = asyncio.run(serving(server, body))
    assert good.closed is None and len(good.audio) >= 40  # played on, whatever the others sent
    assert all(c is not None for c in closed)
    reasons = [line for line in lines if " closed: " in line]
    assert len(reasons) == len(closed) and all("\n" not in r and len(r) < 200 for r in reasons)
    for needle in ("bad magic", "damaged JPEG", "keypoints must be", "larger than 2 MB", "not JSON", "temperature", "unknown style",
                   "unknown message", "spread must be"):
        assert any(needle in r for r in reasons), (needle, reasons)


def test_clients_share_each_tick_and_each_plays_its_own_stream(shipped, dancer_clip):
    """Three clients in one batched step, each with its own seed. They send a synthetic dancer's keypoints, which
    sound from the first frame: a camera's walker can play silence through the frames compared (MediaPipe finds him
    late on a busy host, and the silence gate plays the same silence for every seed)."""
    from aiohttp import ClientSession

    from movenet import pose

    keypoints = pose.keypoints_from_sidecar(pose.read_sidecar(dancer_clip), 50, 25)
    server = live.LiveServer(shipped, log=lambda line: None)
    batches = []
    tick = server.tick
    server.tick = lambda sessions, slot=None: (batches.append(len(sessions)), tick(sessions, slot))[1]

    async def body(url):
        async with ClientSession() as http:
            return await asyncio.gather(*(play(http, url, None, 40, seed=s, keypoints=keypoints) for s in (1, 2, 3)))

    clients = asyncio.run(serving(server, body))
    assert max(batches) == 3  # one batched step for all three
    n = 30 * 640
    pcms = [c.pcm(shipped.model.config.hop)[:n] for c in clients]
    for a, b in ((0, 1), (1, 2)):  # their own seeds, heard where either sounds
        sounding = (np.abs(pcms[a]) > 1e-3) | (np.abs(pcms[b]) > 1e-3)
        assert sounding.sum() > 10 * 640 and not np.array_equal(pcms[a][sounding], pcms[b][sounding])


def test_another_host_than_this_machine_warns(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "movenet", "live", "--host", "0.0.0.0", "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = live.server_address(proc.stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert url is not None, lines
    assert any("warning: listening on 0.0.0.0" in line for line in lines), lines
    assert live.is_loopback("127.0.0.1") and live.is_loopback("::1") and live.is_loopback("localhost")
    assert not live.is_loopback("0.0.0.0") and not live.is_loopback("192.168.1.4")


def test_record_wav_keeps_the_audio_the_client_got(shipped, walker_jpegs, tmp_path):
    from aiohttp import ClientSession

    server = live.LiveServer(shipped, record=tmp_path / "take.wav", log=lambda line: None)

    async def body(url):
        async with ClientSession() as http:
            first = await play(http, url, walker_jpegs, 12, seed=5)
            second = await play(http, url, walker_jpegs, 12, seed=6)
            return first, second

    first, second = asyncio.run(serving(server, body))
    hop = shipped.model.config.hop
    for path, client in ((tmp_path / "take.wav", first), (tmp_path / "take-2.wav", second)):
        wav = video.read_audio(path, 16000)
        expected = np.rint(np.clip(client.pcm(hop), -1, 1) * 32767) / 32768  # 16-bit, as write_wav
        np.testing.assert_allclose(wav, expected, atol=1.5 / 32768)
    assert not list(tmp_path.glob(".movenet-*"))  # no temporary file left
    assert audio.SAMPLE_RATE == 16000


def test_a_client_that_finds_the_pose_itself_sends_keypoints(shipped, dancer_clip, tmp_path):
    from aiohttp import ClientSession

    from movenet import pose

    truth = pose.keypoints_from_sidecar(pose.read_sidecar(dancer_clip), 50, 25)
    messages = [live.FRAME_HEADER.pack(live.KEYPOINTS_MAGIC, i, 0.0) + truth[i].astype("<f4").tobytes()
                for i in range(50)]

    server = live.LiveServer(shipped, record=tmp_path / "kp.mp4", log=lambda line: None)

    async def body(url):
        async with ClientSession() as http:
            ws = await http.ws_connect(url + "ws")
            client = Client(ws)
            await client.read(lambda c: bool(c.texts))
            await ws.send_str(json.dumps({"type": "start", "seed": 9}))
            await client.read(lambda c: any(t["type"] == "started" for t in c.texts))
            reader = asyncio.create_task(client.read(lambda c: c.closed is not None or c.stopped()))
            for m in messages:
                await ws.send_bytes(m)
                await asyncio.sleep(0.04)
            await asyncio.sleep(0.12)
            await ws.send_str(json.dumps({"type": "stop"}))
            await reader
            return client

    client = asyncio.run(serving(server, body))
    hop = shipped.model.config.hop
    played = np.stack([np.frombuffer(m[live.AUDIO_HEADER.size: live.AUDIO_HEADER.size + 180], "<f4").reshape(15, 3)
                       for m in client.audio])
    fresh = [live.AUDIO_HEADER.unpack_from(m)[2] for m in client.audio]
    for k, index in enumerate(fresh):  # each tick played the pose it was sent (or held the last one)
        if index != live.NO_FRAME:
            np.testing.assert_array_equal(played[k], truth[index])
    replay = generate_file(shipped, tmp_path / "kp.mp4", [tmp_path / "kp.wav"], seed=9, progress=False)
    np.testing.assert_array_equal(replay, client.pcm(hop))
    assert np.abs(client.pcm(hop)).max() > 0.05  # the dancer's own pose plays the instrument


def test_a_frame_plays_at_its_due_time_so_a_quick_one_does_not_leave_the_next_tick_without_one(shipped):
    """Frames whose pose takes 2-75 ms: each is due the typical transit plus the pose times' PHASE_ON_TIME quantile
    after its capture. A quick frame ready before the tick of the one before it waits for its own tick; a late one
    is played by the next tick (or, when a newer frame is due by then, replaced by it)."""
    server = live.LiveServer(shipped, log=lambda line: None)
    period = server.streams.frame_period
    session = live.Session(1, None, "test")
    rng = np.random.default_rng(0)
    session.poses.extend(rng.uniform(0.010, 0.030, 240).tolist() + [0.046] * 10)  # 4 % at 46 ms
    session.transits.extend([0.0] * 249 + [0.5])  # once the server was busy
    due_lag = session.due_lag(period)
    assert 0.030 <= due_lag <= 0.046

    def seen(index, lag):
        frame = live.Frame(index, 1000 * index * period)
        return live.Seen(frame, np.zeros((4, 4, 3), np.uint8), None, np.zeros((15, 3), np.float32),
                         ready_at=index * period + lag)

    lags = {0: 0.028, 1: 0.002, 2: 0.020, 3: 0.070, 4: 0.025, 5: 0.075, 6: 0.045}  # 3 and 5 late
    played = []
    for tick in range(8):
        slot = tick * period + due_lag + live.PHASE_MARGIN
        for i, lag in lags.items():  # the frames whose pose has been found by this tick's time
            if slot - period < i * period + lag <= slot:
                session.seen.append(seen(i, lag))
        session.seen = type(session.seen)(sorted(session.seen, key=lambda s: s.frame.index))
        fresh = server._movement(session, slot)[3]
        played.append(None if fresh is None else fresh.index)
    assert played[:3] == [0, 1, 2]  # frame 1 was ready before frame 0's tick, and waited for its own
    assert played[3:5] == [None, 4]  # frame 3 was late: its tick held frame 2, and by the next frame 4 was due
    assert played[5:] == [None, 6, None] and session.dropped == 2 and session.held == 3

    # the clock moves its ticks towards PHASE_MARGIN after the due times, whichever frame tells it the phase
    for frame, early in ((0, 0.005), (3, 0.005), (0, -0.004)):
        server.phase_shift = 0.0
        server._lock_phase(session, seen(frame, 0.0).frame, due_lag + live.PHASE_MARGIN - early + 7 * period)
        assert server.phase_shift == pytest.approx(live.PHASE_GAIN * early)
    # once acquired, it moves later no faster than a page's jitter buffer can stretch (a later tick drains it)
    session.played = live.PHASE_ACQUIRE_TICKS
    for early, shift in ((0.005, live.PHASE_LATER_STEP), (-0.005, -live.PHASE_TRACK_STEP), (0.0002, 0.00004)):
        server.phase_shift = 0.0
        server._lock_phase(session, seen(0, 0.0).frame, due_lag + live.PHASE_MARGIN - early + 7 * period)
        assert server.phase_shift == pytest.approx(shift)
    assert live.PHASE_LATER_STEP / period < 0.005  # the page stretches by at most 0.5 %
