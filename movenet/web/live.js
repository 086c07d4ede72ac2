// movenet live: the camera's frames to the server, each frame's music back into an AudioWorklet.
// Protocol: movenet/live.py. With ?keep=1 in the address the page keeps everything it received, for tests.
"use strict";

const FRAME_MAGIC = [0x4d, 0x56, 0x46, 0x31]; // "MVF1"
const AUDIO_HEADER = 20; // "MVA1", uint32 tick, uint32 frame index, float64 capture time
const NO_FRAME = 0xffffffff;
const keep = new URLSearchParams(location.search).get("keep") === "1";
const $ = (id) => document.getElementById(id);

const app = {
  hello: null, ws: null, ctx: null, player: null, gain: null, running: false,
  frameIndex: 0, timer: null, sendCanvas: document.createElement("canvas"),
  keypoints: null, controls: null, fileImage: null, fresh: true, statsShownAt: 0,
  latencies: [], worklet: {underruns: 0, underrunTimes: [], buffered: 0, level: 0, started: false},
  server: {}, received: [], ticks: [], bufferTrace: [], audioMessages: 0, captureErrors: 0,
};

function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))];
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => (typeof e.data === "string" ? onText(JSON.parse(e.data)) : onAudio(e.data));
  ws.onclose = (e) => {
    stopCapture();
    $("start").disabled = true;
    $("status").textContent = `disconnected${e.reason ? ": " + e.reason : ""} (reload to play again)`;
  };
  app.ws = ws;
}

function onText(msg) {
  if (msg.type === "hello") {
    app.hello = msg;
    $("model").textContent = `${msg.model} · ${msg.features} · ${msg.sample_rate} Hz · ${msg.fps} fps` +
      (msg.source === "file" ? ` · playing ${msg.video}` : "");
    const style = $("style");
    style.innerHTML = "";
    for (const name of msg.styles.length ? msg.styles : ["(one style)"]) style.add(new Option(name, name));
    if (msg.style) style.value = msg.style;  // --video: the style the file was made in
    $("spread").value = msg.spread;  // the server's default
    $("spread-value").textContent = Number(msg.spread).toFixed(2);
    style.disabled = !msg.styles.length;
    $("start").disabled = false;
  } else if (msg.type === "started") {
    startCapture();
  } else if (msg.type === "stats") {
    app.server = msg;
    $("tick").textContent = `${msg.tick_ms_p95.toFixed(1)} ms of ${msg.frame_ms} ms`;
  }
}

function onAudio(buffer) {
  const view = new DataView(buffer);
  const tick = view.getUint32(4, true), frame = view.getUint32(8, true), captured = view.getFloat64(12, true);
  const J = app.hello.joints, hop = app.hello.hop;
  let offset = AUDIO_HEADER;
  app.keypoints = new Float32Array(buffer.slice(offset, offset + 12 * J)); offset += 12 * J;
  app.controls = new Float32Array(buffer.slice(offset, offset + 12)); offset += 12;
  const pcm = new Float32Array(buffer.slice(offset, offset + 4 * hop)); offset += 4 * hop;
  if (offset < buffer.byteLength) {  // a file's frame
    createImageBitmap(new Blob([buffer.slice(offset)], {type: "image/jpeg"})).then((img) => {
      if (app.fileImage) app.fileImage.close();
      app.fileImage = img;
      app.fresh = true;
    });
  }
  if (frame !== NO_FRAME) {
    app.latencies.push(performance.now() - captured);
    if (app.latencies.length > 500 && !keep) app.latencies.shift();
  }
  app.audioMessages++;
  app.fresh = true;
  if (keep) { app.received.push(pcm.slice()); app.ticks.push([tick, frame === NO_FRAME ? -1 : frame, performance.now(), app.ctx ? app.ctx.currentTime : null]); }
  if (app.player) app.player.port.postMessage(pcm, [pcm.buffer]);
}

async function start() {
  const h = app.hello;
  $("start").disabled = true;
  try {
    if (!app.ctx) {
      app.ctx = new AudioContext({sampleRate: h.sample_rate, latencyHint: "interactive"});
      await app.ctx.audioWorklet.addModule("/static/worklet.js");
      app.player = new AudioWorkletNode(app.ctx, "movenet-player", {processorOptions: {
        capacity: h.sample_rate * 2, hop: h.hop, margin: 1.5 * h.hop, maxMargin: 4 * h.hop, maxBuffer: 8 * h.hop,
        maxStretch: 0.005, window: 4 * h.fps, relaxSeconds: 10}});
      app.player.port.onmessage = (e) => {
        app.worklet = e.data;
        app.bufferTrace.push([e.data.time, e.data.buffered, e.data.lowWater, e.data.rate, e.data.margin]);
        if (app.bufferTrace.length > 2400 && !keep) app.bufferTrace.shift();
      };
      app.gain = new GainNode(app.ctx, {gain: Number($("volume").value)});
      app.player.connect(app.gain).connect(app.ctx.destination);
    }
    await app.ctx.resume();
    if (h.source === "camera" && !$("camera").srcObject) {
      $("status").textContent = "asking for the camera…";
      const stream = await navigator.mediaDevices.getUserMedia(
        {video: {width: {ideal: 640}, height: {ideal: 480}, frameRate: {ideal: h.fps}}, audio: false});
      $("camera").srcObject = stream;
      await $("camera").play();
    }
  } catch (err) {
    $("status").textContent = `cannot start: ${err.message || err}`;
    $("start").disabled = false;
    return;
  }
  app.ws.send(JSON.stringify({type: "start", style: h.styles.length ? $("style").value : null,
                              temperature: Number($("temperature").value), spread: Number($("spread").value),
                              seed: 0}));
  app.running = true;
  $("start").textContent = "Stop";
  $("start").disabled = false;
  $("status").textContent = h.source === "camera" ? "playing: move!" : `playing ${h.video}`;
}

function stop() {
  app.ws.send(JSON.stringify({type: "stop"}));
  stopCapture();
  app.running = false;
  app.fresh = true;  // the preview without the skeleton
  $("start").textContent = "Start";
  $("status").textContent = "stopped";
}

// Frames go out at the model's frame rate, on a clock that does not drift (each timeout aims at the next slot).
function startCapture() {
  if (app.hello.source !== "camera") return;
  stopCapture();
  const period = 1000 / app.hello.fps;
  let next = performance.now();
  const tick = () => {
    next += period;
    captureFrame();
    app.timer = setTimeout(tick, Math.max(0, next - performance.now()));
  };
  tick();
}

function stopCapture() {
  if (app.timer !== null) clearTimeout(app.timer);
  app.timer = null;
}

function captureFrame() {
  const video = $("camera"), h = app.hello;
  if (video.readyState < 2 || !video.videoWidth || app.ws.readyState !== WebSocket.OPEN) return;
  if (app.ws.bufferedAmount > 4 * 65536) return;  // the network is behind: a newer frame will do
  const scale = Math.min(1, h.send_side / Math.max(video.videoWidth, video.videoHeight));
  const c = app.sendCanvas;
  c.width = Math.round(video.videoWidth * scale);
  c.height = Math.round(video.videoHeight * scale);
  c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
  const captured = performance.now(), index = app.frameIndex++;
  // Encoded here and now: toBlob's hops between threads took 4-20 ms more on a busy two-core machine.
  const url = c.toDataURL("image/jpeg", h.jpeg_quality);
  const jpeg = atob(url.slice(url.indexOf(",") + 1));
  if (!jpeg.length) { app.captureErrors++; return; }
  const msg = new Uint8Array(16 + jpeg.length);
  msg.set(FRAME_MAGIC, 0);
  const view = new DataView(msg.buffer);
  view.setUint32(4, index, true);
  view.setFloat64(8, captured, true);
  for (let i = 0; i < jpeg.length; i++) msg[16 + i] = jpeg.charCodeAt(i);
  app.ws.send(msg);
}

// The preview: the camera (or the file's frame) with the skeleton the model played from, drawn when a tick's
// message came (at the frame rate, not the display's: on a laptop's two cores the page would otherwise take
// CPU from the server next to it); the numbers four times a second.
function draw(now) {
  requestAnimationFrame(draw);
  if (now - app.statsShownAt > 250) { app.statsShownAt = now; updateStats(); }
  if (!app.fresh) return;
  app.fresh = false;
  const canvas = $("preview"), g = canvas.getContext("2d"), video = $("camera");
  const image = app.hello && app.hello.source === "file" ? app.fileImage : (video.videoWidth ? video : null);
  if (image) {
    const w = image.videoWidth || image.width, h = image.videoHeight || image.height;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    g.drawImage(image, 0, 0);
  } else {
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
  }
  const kp = app.keypoints;
  if (kp && app.running) {
    const W = canvas.width, H = canvas.height, seen = (j) => kp[3 * j + 2] > 0.3;
    g.lineWidth = Math.max(2, W / 160);
    g.strokeStyle = "#4fffc0";
    g.beginPath();
    for (const [a, b] of app.hello.bones) {
      if (!seen(a) || !seen(b)) continue;
      g.moveTo(kp[3 * a] * W, kp[3 * a + 1] * H);
      g.lineTo(kp[3 * b] * W, kp[3 * b + 1] * H);
    }
    g.stroke();
    g.fillStyle = "#ff4fb0";
    for (let j = 0; j < app.hello.joints; j++) {
      if (!seen(j)) continue;
      g.beginPath();
      g.arc(kp[3 * j] * W, kp[3 * j + 1] * H, g.lineWidth * 1.5, 0, 2 * Math.PI);
      g.fill();
    }
  }
}

const NOTES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

function updateStats() {
  const w = app.worklet;
  const p50 = percentile(app.latencies.slice(-250), 50), p95 = percentile(app.latencies.slice(-250), 95);
  $("latency").textContent = isNaN(p50) ? "–" : `${p50.toFixed(0)} / ${p95.toFixed(0)} ms`;
  $("underruns").textContent = String(w.underruns);
  $("buffered").textContent = app.hello ? `${(1000 * w.buffered / app.hello.sample_rate).toFixed(0)} ms` : "–";
  $("level").style.width = `${Math.min(100, 100 * Math.sqrt(w.level) * 1.5).toFixed(0)}%`;
  const c = app.controls;
  if (c && app.running) {
    const midi = c[0] > 0 ? Math.round(69 + 12 * Math.log2(c[0] / 440)) : null;
    $("note").textContent = (midi === null ? "no note" : `${NOTES[midi % 12]}${Math.floor(midi / 12) - 1}`) +
      ` · ${c[1].toFixed(0)} dB` + (c[2] > 0 ? " · hit" : "");
  }
}

$("start").onclick = () => (app.running ? stop() : start());
$("temperature").oninput = () => {
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  if (app.running) app.ws.send(JSON.stringify({type: "set", temperature: Number($("temperature").value)}));
};
$("spread").oninput = () => {
  $("spread-value").textContent = Number($("spread").value).toFixed(2);
  if (app.running) app.ws.send(JSON.stringify({type: "set", spread: Number($("spread").value)}));
};
$("style").onchange = () => {
  if (app.running && app.hello.styles.length) app.ws.send(JSON.stringify({type: "set", style: $("style").value}));
};
$("volume").oninput = () => { if (app.gain) app.gain.gain.value = Number($("volume").value); };

// What tests read (and a curious user, from the console).
window.movenet = {
  stats: () => ({
    latencies: app.latencies.slice(), underruns: app.worklet.underruns, underrunTimes: app.worklet.underrunTimes,
    startedAt: app.worklet.startedAt, contextTime: app.ctx ? app.ctx.currentTime : null,
    audioMessages: app.audioMessages, framesSent: app.frameIndex, server: app.server, running: app.running,
    buffered: app.worklet.buffered, dropped: app.worklet.dropped, level: app.worklet.level,
    bufferTrace: app.bufferTrace.slice(),
  }),
  ticks: () => app.ticks,
  // Everything received so far as one little-endian float32 array, base64.
  receivedBase64: () => {
    const n = app.received.reduce((s, a) => s + a.length, 0), all = new Float32Array(n);
    let at = 0;
    for (const a of app.received) { all.set(a, at); at += a.length; }
    const bytes = new Uint8Array(all.buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
  start, stop,
};

connect();
requestAnimationFrame(draw);
