// One conversation's WebSocket (client protocol v1, docs/protocol.md): the start frame, audio
// seq numbers, keep-alive, close codes in words, and reconnection with backoff.

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

const BACKOFF_SECONDS = [1, 2, 4, 8, 15, 30];
const PING_AFTER_MS = 4 * 60 * 1000; // API Gateway closes connections idle for 10 minutes

// Events: "state" (detail: {state, words}), "frame" (detail: a server frame), "problem"
// (detail: words for the user). States: connecting, open, waiting (to reconnect), closed.
export class Connection extends EventTarget {
  constructor({ url, token, voice }) {
    super();
    this.url = socketUrl(url, token);
    this.voice = voice;
    this.state = "closed";
    this.socket = null;
    this.attempt = 0;
    this.userClosed = false;
    this.timer = null;
    this.lastSent = 0;
    this.keepAlive = setInterval(() => this.pingIfIdle(), 30_000);
  }

  open() {
    clearTimeout(this.timer);
    this.userClosed = false;
    this.setState("connecting", this.attempt ? `reconnecting (attempt ${this.attempt + 1})` : "");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.seq = 0;
      const start = { type: "start", v: 1, output_sample_rate: 24000 };
      if (this.voice) start.voice = this.voice;
      this.send(start);
      this.setState("open");
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        this.problem("the server sent a frame that is not JSON");
        return;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.userClosed) {
        this.setState("closed", "disconnected");
      } else if (!opened && this.attempt === 0) {
        // A refused handshake (a wrong token is 401) looks like any failure to a browser.
        this.problem(`could not connect to ${this.safeUrl()}: the server refused the connection
          (a wrong token?) or is not reachable`);
        this.setState("closed", "could not connect");
      } else {
        if (opened) this.problem(closeInWords(event.code, event.reason));
        this.retry();
      }
    };
  }

  retry() {
    if (this.attempt >= BACKOFF_SECONDS.length) {
      this.setState("closed", "gave up reconnecting");
      return;
    }
    const seconds = BACKOFF_SECONDS[this.attempt++];
    this.setState("waiting", `reconnecting in ${seconds} s`);
    this.timer = setTimeout(() => this.open(), seconds * 1000);
  }

  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  sendAudio(data) {
    if (this.state !== "open") return false;
    return this.send({ type: "audio", seq: this.seq++, data });
  }

  pingIfIdle() {
    if (this.state === "open" && Date.now() - this.lastSent > PING_AFTER_MS) {
      this.send({ type: "ping", id: `keep-alive-${Date.now()}` });
    }
  }

  // End the conversation politely; the server sends its last frames, then closes.
  close() {
    this.userClosed = true;
    clearTimeout(this.timer);
    clearInterval(this.keepAlive);
    const socket = this.socket;
    if (!socket) {
      this.setState("closed", "disconnected");
      return;
    }
    if (!this.send({ type: "end" })) socket.close(1000);
    setTimeout(() => socket.close(1000), 2000);
  }

  safeUrl() {
    const url = new URL(this.url);
    if (url.searchParams.has("token")) url.searchParams.set("token", "***");
    return url.toString().replace("%2A%2A%2A", "***");
  }

  setState(state, words = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, words } }));
  }

  problem(words) {
    this.dispatchEvent(new CustomEvent("problem", { detail: words.replace(/\s+/g, " ") }));
  }
}
