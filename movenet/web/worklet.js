// The player: PCM frames from the server into a ring buffer, played at the AudioContext's rate (the model's).
// Playback starts once `prefill` samples are in (the jitter buffer); an empty buffer when a block is due is an
// underrun (counted, and playback waits for the prefill again); more than `maxBuffer` samples drops the oldest,
// so latency cannot grow. Reports its state to the page about four times a second.
class MovenetPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.ring = new Float32Array(o.capacity);
    this.prefill = o.prefill;
    this.maxBuffer = o.maxBuffer;
    this.read = 0;
    this.count = 0;
    this.playing = false;
    this.started = false;
    this.startedAt = null;  // context time playback first began
    this.underruns = 0;
    this.underrunTimes = [];
    this.dropped = 0;
    this.sumSquares = 0;
    this.blocks = 0;
    this.port.onmessage = (e) => this.push(e.data);
  }

  push(pcm) {
    const n = this.ring.length;
    for (let i = 0; i < pcm.length; i++) this.ring[(this.read + this.count + i) % n] = pcm[i];
    this.count = Math.min(this.count + pcm.length, n);
    if (this.count > this.maxBuffer) {
      const drop = this.count - this.maxBuffer;
      this.read = (this.read + drop) % n;
      this.count -= drop;
      this.dropped += drop;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const n = this.ring.length;
    if (!this.playing && this.count >= this.prefill) {
      this.playing = true;
      if (!this.started) this.startedAt = currentTime;
      this.started = true;
    }
    let i = 0;
    if (this.playing) {
      for (; i < out.length && this.count > 0; i++) {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % n;
        this.count--;
      }
      if (i < out.length) {
        this.underruns++;
        this.underrunTimes.push(currentTime);
        this.playing = false;
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let k = 0; k < out.length; k++) this.sumSquares += out[k] * out[k];
    if (++this.blocks % Math.max(1, Math.round(sampleRate / 128 / 4)) === 0) {
      const rms = Math.sqrt(this.sumSquares / (this.blocks * out.length));
      this.port.postMessage({underruns: this.underruns, underrunTimes: this.underrunTimes.slice(-50),
                             buffered: this.count, dropped: this.dropped, level: rms, time: currentTime,
                             started: this.started, startedAt: this.startedAt});
      this.sumSquares = 0;
      this.blocks = 0;
    }
    return true;
  }
}

registerProcessor("movenet-player", MovenetPlayer);
