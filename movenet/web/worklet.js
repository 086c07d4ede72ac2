// The player: PCM frames from the server into a ring buffer, played at the AudioContext's rate (the model's).
//
// An adaptive jitter buffer. What matters is the low-water mark: the least audio left when a frame arrives, over
// the last `window` frames. Playback runs a little fast or slow (at most `maxStretch`, resampled linearly: under
// 9 cents) to hold that mark at `margin` samples, so neither a late network nor a sound card whose clock drifts
// from the server's makes it run dry or grow. An empty buffer when a block is due is an underrun: counted, the
// margin grows by half a frame (up to `maxMargin`), and playback waits until a frame plus the margin is in. Each
// `relaxSeconds` played without one gives back a quarter frame of margin (down to the starting one), so that a
// passing hiccup (the server's first seconds, another program's burst) does not add latency for good. More
// than `maxBuffer` samples drops the oldest, so latency cannot grow. Reports about four times a second.
class MovenetPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.ring = new Float32Array(o.capacity);
    this.hop = o.hop;
    this.margin = this.minMargin = o.margin;
    this.relaxSamples = o.relaxSeconds * sampleRate;
    this.clean = 0;  // samples played since the last underrun or relaxation
    this.maxMargin = o.maxMargin;
    this.maxBuffer = o.maxBuffer;
    this.maxStretch = o.maxStretch;
    this.window = o.window;
    this.lows = [];  // the buffer's level as each of the last `window` frames arrived
    this.rate = 1;  // samples read per sample played
    this.read = 0;
    this.frac = 0;  // the read position between ring[read] and ring[read + 1]
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
    if (this.playing) {
      this.lows.push(this.count);
      if (this.lows.length > this.window) this.lows.shift();
    }
    const n = this.ring.length;
    for (let i = 0; i < pcm.length; i++) this.ring[(this.read + this.count + i) % n] = pcm[i];
    this.count = Math.min(this.count + pcm.length, n);
    if (this.count > this.maxBuffer) {
      const drop = this.count - this.maxBuffer;
      this.read = (this.read + drop) % n;
      this.count -= drop;
      this.dropped += drop;
    }
    this.steer();
  }

  // Proportional control of the low-water mark: a frame's worth of error is corrected over about 2 s.
  steer() {
    if (this.lows.length < Math.min(this.window, 10)) { this.rate = 1; return; }
    const error = Math.min(...this.lows) - this.margin;
    const stretch = error / (2 * sampleRate);
    this.rate = 1 + Math.max(-this.maxStretch, Math.min(this.maxStretch, stretch));
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const n = this.ring.length;
    if (!this.playing && this.count >= this.hop + this.margin) {
      this.playing = true;
      this.lows = [];
      if (!this.started) this.startedAt = currentTime;
      this.started = true;
    }
    let i = 0;
    if (this.playing) {
      for (; i < out.length && this.count > 1; i++) {
        const a = this.ring[this.read], b = this.ring[(this.read + 1) % n];
        out[i] = a + (b - a) * this.frac;
        this.frac += this.rate;
        while (this.frac >= 1 && this.count > 1) {
          this.frac -= 1;
          this.read = (this.read + 1) % n;
          this.count--;
        }
      }
      if (i < out.length) {
        this.underruns++;
        this.underrunTimes.push(currentTime);
        this.playing = false;
        this.margin = Math.min(this.maxMargin, this.margin + this.hop / 2);
        this.clean = 0;
      } else if ((this.clean += out.length) >= this.relaxSamples) {
        this.margin = Math.max(this.minMargin, this.margin - this.hop / 4);
        this.clean = 0;
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let k = 0; k < out.length; k++) this.sumSquares += out[k] * out[k];
    if (++this.blocks % Math.max(1, Math.round(sampleRate / 128 / 4)) === 0) {
      const rms = Math.sqrt(this.sumSquares / (this.blocks * out.length));
      this.port.postMessage({underruns: this.underruns, underrunTimes: this.underrunTimes.slice(-50),
                             buffered: this.count, dropped: this.dropped, level: rms, time: currentTime,
                             started: this.started, startedAt: this.startedAt, margin: this.margin,
                             lowWater: this.lows.length ? Math.min(...this.lows) : null, rate: this.rate});
      this.sumSquares = 0;
      this.blocks = 0;
    }
    return true;
  }
}

registerProcessor("movenet-player", MovenetPlayer);
