// One conversation's WebSocket (client protocol v1, docs/protocol.md): the start frame, audio
// seq numbers, keep-alive, close codes in words, reconnection with back-off, and a pause with
// probes while the gateway says the agent behind it is not answering. The states and their
// transitions are in lifecycle.js.

import {
  BACKOFF,
  ErrorWindow,
  backoffMs,
  isGatewayError,
  streams,
  transition,
} from "./lifecycle.js";

const CLOSE_WORDS = {
  1000: "the connection was closed",
  1001: "the server went away (10 minutes idle, the 2-hour limit, or a restart)",
  1003: "the server refused a binary frame",
  1006: "the connection was lost (network trouble, or the server stopped)",
  1008: "the server refused the connection (policy)",
  1009: "a frame was too large (over 32 KB)",
  1011: "the server hit an error",
  1012: "the server is restarting",
  1013: "the server is overloaded; try again later",
};

export function closeInWords(code, reason) {
  const words = CLOSE_WORDS[code] ?? "the connection closed";
  return `${words} (code ${code}${reason ? `: ${reason}` : ""})`;
}

export function defaultUrl(location) {
  if (!location.host) return "ws://127.0.0.1:8080/";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

export function socketUrl(base, token) {
  const url = new URL(base);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

const PING_AFTER_MS = 4 * 60 * 1000; // API Gateway closes connections idle for 10 minutes
const PROBE_ANSWER_MS = 10_000; // a probe with no answer at all counts as failed
const CLOSE_AFTER_END_MS = 2000; // the server closes after `end`; if it does not, we do

function inSeconds(ms) {
  return Math.max(1, Math.round(ms / 1000));
}

// Events: "state" (detail: {state, previous, event, words}; states and events in lifecycle.js),
// "frame" (detail: a server frame), "problem" (detail: words for the user).
export class Connection extends EventTarget {
  constructor({ url, token, voice, backoff = BACKOFF, random = Math.random }) {
    super();
    this.url = socketUrl(url, token);
    this.voice = voice;
    this.backoff = backoff;
    this.random = random;
    this.state = "closed";
    this.socket = null;
    this.everOpened = false;
    this.attempt = 0; // failed attempts in a row: reconnections, or probes while retrying
    this.timer = null; // the next reconnection or probe
    this.probeDeadline = null;
    this.closeTimer = null;
    this.keepAlive = null;
    this.lastSent = 0;
    this.seq = 0;
    this.gatewayErrors = new ErrorWindow();
    // For the page's counters: sockets opened (first one included), probes sent, and the
    // gateway's error frames received.
    this.counts = { dials: 0, probes: 0, gatewayErrors: 0 };
  }

  open() {
    if (this.go("connect")) this.dial();
  }

  dial() {
    this.counts.dials++;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      this.everOpened = true;
      this.attempt = 0;
      this.seq = 0;
      this.gatewayErrors.reset();
      const start = { type: "start", v: 1, output_sample_rate: 24000 };
      if (this.voice) start.voice = this.voice;
      this.send(start);
      this.keepAlive ??= setInterval(() => this.pingIfIdle(), 30_000);
      this.go("opened");
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        this.problem("the server sent a frame that is not JSON");
        return;
      }
      if (isGatewayError(frame)) {
        this.gatewayError(frame);
        return;
      }
      // Any frame of the agent's own means it is back: stream again.
      if (this.state === "retrying") this.answered();
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.clearTimers();
      if (this.state === "failed") return; // given up already: closed by us
      if (this.state === "closing") {
        this.stop();
        this.go("closed", "disconnected");
      } else if (!this.everOpened) {
        // A refused handshake (a wrong token is 401) looks like any failure to a browser.
        this.problem(`could not connect to ${this.safeUrl()}: the server refused the connection
          (a wrong token?) or is not reachable`);
        this.stop();
        this.go("refused", "could not connect");
      } else {
        if (opened) {
          this.problem(closeInWords(event.code, event.reason));
          this.attempt = 0; // a connection that worked starts the back-off afresh
        }
        this.reconnectLater();
      }
    };
  }

  reconnectLater() {
    if (this.attempt >= this.backoff.attempts) {
      this.stop();
      this.go("giveUp", `gave up reconnecting after ${this.attempt} attempts`);
      return;
    }
    const ms = backoffMs(this.attempt++, this.backoff, this.random);
    this.go("lost", `reconnecting in ${inSeconds(ms)} s`);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.go("retry", `attempt ${this.attempt + 1}`)) this.dial();
    }, ms);
  }

  // API Gateway answered for the agent: the bridge behind it could not take a frame. One is a
  // lost frame; several in a row mean the agent is not answering. Then audio is held back and
  // a ping probes, with back-off, instead of a stream of frames that all fail.
  gatewayError(frame) {
    this.counts.gatewayErrors++;
    if (this.state === "open") {
      if (this.gatewayErrors.add(Date.now())) {
        this.attempt = 0;
        this.probeLater();
      } else {
        this.problem(`the gateway says: ${frame.message}`);
      }
    } else if (this.state === "retrying" && this.timer === null) {
      // The probe failed (or a frame sent before the pause did): the next probe waits longer.
      this.probeLater();
    }
  }

  probeLater() {
    clearTimeout(this.probeDeadline);
    this.probeDeadline = null;
    if (this.attempt >= this.backoff.attempts) {
      const socket = this.socket;
      this.stop();
      this.go("giveUp", `the agent did not answer after ${this.attempt} tries`);
      socket?.close(1000);
      return;
    }
    const ms = backoffMs(this.attempt++, this.backoff, this.random);
    this.go("gatewayErrors", `next try in ${inSeconds(ms)} s`);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.probe();
    }, ms);
  }

  probe() {
    if (this.state !== "retrying") return;
    this.counts.probes++;
    this.send({ type: "ping", id: `probe-${this.counts.probes}` });
    this.probeDeadline = setTimeout(() => this.probeLater(), PROBE_ANSWER_MS);
  }

  answered() {
    this.clearTimers();
    this.attempt = 0;
    this.gatewayErrors.reset();
    this.go("answered");
  }

  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN || this.state === "closing") return false;
    return this.write(frame);
  }

  write(frame) {
    this.socket.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  sendAudio(data) {
    if (!streams(this.state)) return false;
    return this.send({ type: "audio", seq: this.seq++, data });
  }

  pingIfIdle() {
    if (this.state === "open" && Date.now() - this.lastSent > PING_AFTER_MS) {
      this.send({ type: "ping", id: `keep-alive-${Date.now()}` });
    }
  }

  // End the conversation politely: from this moment no audio goes out, `end` is the last
  // frame sent, and the server sends its last frames, then closes.
  close() {
    this.clearTimers();
    if (this.state === "waiting") {
      this.stop();
      this.go("disconnect", "disconnected");
      return;
    }
    const socket = this.socket;
    if (!this.go("disconnect")) return; // closed, failed or already closing
    if (socket?.readyState === WebSocket.OPEN) this.write({ type: "end" });
    else socket?.close(1000);
    this.stopKeepAlive();
    this.closeTimer = setTimeout(() => socket?.close(1000), CLOSE_AFTER_END_MS);
  }

  clearTimers() {
    clearTimeout(this.timer);
    clearTimeout(this.probeDeadline);
    this.timer = null;
    this.probeDeadline = null;
  }

  stopKeepAlive() {
    clearInterval(this.keepAlive);
    this.keepAlive = null;
  }

  // Nothing more will happen on this connection (until it is opened again).
  stop() {
    this.clearTimers();
    clearTimeout(this.closeTimer);
    this.stopKeepAlive();
  }

  safeUrl() {
    const url = new URL(this.url);
    if (url.searchParams.has("token")) url.searchParams.set("token", "***");
    return url.toString().replace("%2A%2A%2A", "***");
  }

  // Take `event`; false (and nothing happens) when it means nothing in the current state.
  go(event, words = "") {
    const next = transition(this.state, event);
    if (next === null) return false;
    const previous = this.state;
    this.state = next;
    this.dispatchEvent(new CustomEvent("state", { detail: { state: next, previous, event, words } }));
    return true;
  }

  problem(words) {
    this.dispatchEvent(new CustomEvent("problem", { detail: words.replace(/\s+/g, " ") }));
  }
}
