// The page's audio: microphone capture and assistant playback, both through AudioWorklets
// (worklets.js) in one AudioContext.

export const INPUT_RATE = 16000;

export class AudioEngine {
  // Create it from a click or key press: browsers only start audio after a user gesture.
  static async create({ frameSamples = 512, startMs = 80 } = {}) {
    const context = new AudioContext({ latencyHint: "interactive" });
    await context.audioWorklet.addModule(new URL("./worklets.js", import.meta.url));
    return new AudioEngine(context, frameSamples, startMs);
  }

  constructor(context, frameSamples, startMs) {
    this.context = context;
    this.frameSamples = frameSamples;
    this.onFrame = () => {};
    this.onPlayer = () => {};
    this.player = new AudioWorkletNode(context, "novakit-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { startMs },
    });
    this.player.port.onmessage = (event) => this.onPlayer(event.data);
    this.player.connect(context.destination);
    this.stream = null;
    this.source = null;
    this.capture = null;
    this.tracks = []; // every microphone track this engine opened, stopped ones included
  }

  // Ask for the microphone and stream it: onFrame(Int16Array of 16 kHz samples, level 0..1).
  async startMicrophone() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("this page cannot use a microphone here (it needs https or localhost)");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    this.tracks.push(...this.stream.getTracks());
    this.source = this.context.createMediaStreamSource(this.stream);
    // No outputs: Chromium still runs it, and nothing of the microphone reaches the speakers.
    this.capture = new AudioWorkletNode(this.context, "novakit-capture", {
      numberOfOutputs: 0,
      processorOptions: { frameSamples: this.frameSamples },
    });
    this.capture.port.onmessage = (event) => this.onFrame(event.data.pcm, event.data.level);
    this.source.connect(this.capture);
  }

  // Let the microphone go: no frame is reported from now on, every track is stopped (the
  // browser's recording indicator goes out) and the audio clock is suspended.
  async stopMicrophone() {
    if (this.capture) {
      this.capture.port.onmessage = null;
      this.capture.port.close();
      this.source.disconnect();
      this.capture = null;
      this.source = null;
    }
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.clear("disconnected");
    if (this.context.state === "running") await this.context.suspend();
  }

  play(seq, pcm, rate) {
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    this.player.port.postMessage({ type: "push", seq, samples, rate }, [samples.buffer]);
  }

  clear(reason) {
    this.player.port.postMessage({ type: "clear", reason });
  }

  async resume() {
    if (this.context.state !== "running") await this.context.resume();
  }
}

// PCM16 little-endian bytes as base64, and back.
export function pcmToBase64(pcm) {
  const bytes = new Uint8Array(pcm.length * 2);
  const view = new DataView(bytes.buffer);
  pcm.forEach((sample, i) => view.setInt16(2 * i, sample, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64ToPcm(data) {
  const binary = atob(data);
  const view = new DataView(new ArrayBuffer(binary.length - (binary.length % 2)));
  for (let i = 0; i < view.byteLength; i++) view.setUint8(i, binary.charCodeAt(i));
  const pcm = new Int16Array(view.byteLength / 2);
  for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(2 * i, true);
  return pcm;
}
