// AudioWorklet processors of the browser client. They run on the audio thread, at the
// AudioContext's rate (usually 48 kHz), so both convert rates themselves:
//   "novakit-capture": microphone → 16 kHz PCM16 mono frames posted to the page;
//   "novakit-player":  24 kHz PCM16 chunks from the page → the speakers, with a jitter buffer.

const CAPTURE_RATE = 16000;

// A windowed-sinc low-pass filter: `taps` coefficients, cutoff in cycles per input sample.
function lowPass(cutoff, taps) {
  const middle = (taps - 1) / 2;
  const coefficients = new Float32Array(taps);
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman =
      0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) +
      0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    coefficients[i] = sinc * blackman;
    sum += coefficients[i];
  }
  return coefficients.map((c) => c / sum);
}

// Streaming rate converter: low-pass below the new Nyquist frequency (when going down, so
// nothing aliases), then linear interpolation at the output instants.
class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    const downsampling = this.step > 1;
    this.taps = downsampling ? lowPass(0.45 / this.step, 2 * Math.ceil(8 * this.step) + 1) : null;
    this.history = new Float32Array(this.taps ? this.taps.length : 1);
    this.at = 0;
    this.previous = 0;
    this.next = 1; // where the next output sample falls, in input samples after `previous`
  }

  push(input, emit) {
    for (let n = 0; n < input.length; n++) {
      const value = this.taps ? this.filter(input[n]) : input[n];
      while (this.next <= 1) {
        emit(this.previous + (value - this.previous) * this.next);
        this.next += this.step;
      }
      this.next -= 1;
      this.previous = value;
    }
  }

  filter(sample) {
    const { history, taps } = this;
    history[this.at] = sample;
    this.at = (this.at + 1) % history.length;
    let sum = 0;
    for (let i = 0, j = this.at; i < taps.length; i++, j = (j + 1) % history.length) {
      sum += taps[i] * history[j];
    }
    return sum;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { frameSamples = 512 } = options.processorOptions ?? {};
    this.resampler = new Resampler(sampleRate, CAPTURE_RATE);
    this.frameSamples = frameSamples;
    this.startFrame();
    this.emit = (sample) => this.add(sample);
  }

  startFrame() {
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.energy = 0;
  }

  add(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = Math.round(clipped * 32767);
    this.energy += clipped * clipped;
    if (this.filled === this.frameSamples) {
      const level = Math.sqrt(this.energy / this.filled);
      this.port.postMessage({ pcm: this.frame, level }, [this.frame.buffer]);
      this.startFrame();
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels.length === 1) {
      this.resampler.push(channels[0], this.emit);
    } else if (channels.length > 1) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) channel.forEach((v, i) => (mono[i] += v / channels.length));
      this.resampler.push(mono, this.emit);
    }
    return true;
  }
}

// Plays chunks in seq order. Playback starts once `startMs` of audio is queued (or has waited
// that long), and waits again after running dry: a small jitter buffer. "clear" empties the
// queue within one render quantum (128 samples): the barge-in stop.
class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { startMs = 80 } = options.processorOptions ?? {};
    this.startSeconds = startMs / 1000;
    this.queue = []; // {seq, samples: Float32Array, rate}, ascending seq
    this.current = null;
    this.position = 0; // fractional index into current.samples
    this.buffering = true;
    this.waited = 0;
    this.playedSeconds = 0;
    this.sinceReport = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "push") {
      const chunk = { seq: message.seq, samples: message.samples, rate: message.rate };
      if (this.current && chunk.seq < this.current.seq) return; // too late to play in order
      let i = this.queue.length;
      while (i > 0 && this.queue[i - 1].seq > chunk.seq) i--;
      this.queue.splice(i, 0, chunk);
    } else if (message.type === "clear") {
      const dropped = this.queuedSeconds();
      this.queue = [];
      this.current = null;
      this.position = 0;
      this.buffering = true;
      this.waited = 0;
      this.port.postMessage({
        type: "cleared",
        reason: message.reason,
        droppedSeconds: dropped,
        queuedSeconds: 0,
      });
    }
  }

  queuedSeconds() {
    let seconds = this.current
      ? (this.current.samples.length - this.position) / this.current.rate
      : 0;
    for (const chunk of this.queue) seconds += chunk.samples.length / chunk.rate;
    return seconds;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    if (this.buffering && (this.current || this.queue.length)) {
      this.waited += out.length / sampleRate;
      if (this.queuedSeconds() >= this.startSeconds || this.waited >= this.startSeconds) {
        this.buffering = false;
      }
    }
    while (!this.buffering && written < out.length) {
      if (!this.current) {
        this.current = this.queue.shift() ?? null;
        if (!this.current) {
          this.buffering = true; // ran dry: wait for a little audio again
          this.waited = 0;
          this.port.postMessage({ type: "idle" });
          break;
        }
        this.port.postMessage({ type: "started", seq: this.current.seq });
      }
      const { samples, rate } = this.current;
      const step = rate / sampleRate;
      while (written < out.length && this.position < samples.length) {
        const i = Math.floor(this.position);
        const a = samples[i];
        const b = i + 1 < samples.length ? samples[i + 1] : (this.queue[0]?.samples[0] ?? a);
        out[written++] = a + (b - a) * (this.position - i);
        this.position += step;
      }
      if (this.position >= samples.length) {
        this.position -= samples.length;
        this.playedSeconds += samples.length / rate;
        this.current = null;
      }
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) {
      this.sinceReport = 0;
      const partial = this.current ? this.position / this.current.rate : 0;
      this.port.postMessage({
        type: "stats",
        playedSeconds: this.playedSeconds + partial,
        queuedSeconds: this.queuedSeconds(),
      });
    }
    return true;
  }
}

registerProcessor("novakit-capture", CaptureProcessor);
registerProcessor("novakit-player", PlayerProcessor);
