// The connection's lifecycle as a pure state machine, and the back-off between attempts: no
// sockets or timers here, so every transition can be checked on its own (tests/browser).
//
//   closed ──connect──> connecting ──opened──> open ──gatewayErrors──> retrying
//     ^                  │    ^                 │  ^                     │
//     │             lost │    │ retry       lost│  └───────answered──────┘
//     │                  v    │                 v
//     │                 waiting <───────────────┴── (retrying: lost)
//     │                  │
//     │         giveUp / refused ──> failed ──connect──> connecting
//     └─closed── closing <──disconnect── (connecting, open, retrying)
//
// closed: no connection (at first, or after Disconnect). connecting: the WebSocket handshake.
// open: the socket is up and audio streams. retrying: the socket is up but the gateway says the
// agent did not take our frames; audio is held back and a ping probes, with back-off, until
// the agent answers. waiting: the socket was lost and a reconnection is due. closing: `end` was
// sent and the server is finishing. failed: given up, until the user connects again.

export const STATES = ["closed", "connecting", "open", "retrying", "waiting", "closing", "failed"];

const TRANSITIONS = {
  closed: { connect: "connecting" },
  connecting: {
    opened: "open",
    lost: "waiting",
    refused: "failed",
    giveUp: "failed",
    disconnect: "closing",
  },
  open: { gatewayErrors: "retrying", lost: "waiting", disconnect: "closing" },
  retrying: {
    answered: "open",
    gatewayErrors: "retrying", // a probe failed too: try again later
    lost: "waiting",
    giveUp: "failed",
    disconnect: "closing",
  },
  waiting: { retry: "connecting", giveUp: "failed", disconnect: "closed" },
  closing: { closed: "closed" },
  failed: { connect: "connecting" },
};

// The state after `event`, or null when the event means nothing in `state` (a late timer, a
// frame of a socket that is already being closed): callers ignore it.
export function transition(state, event) {
  return TRANSITIONS[state]?.[event] ?? null;
}

// Audio goes out only while the agent takes it.
export function streams(state) {
  return state === "open";
}

// Reconnect makes sense when there is no live connection to lose.
export function canReconnect(state) {
  return state === "closed" || state === "failed" || state === "waiting";
}

// Connect (with the form's options) only when nothing is going on.
export function canConnect(state) {
  return state === "closed" || state === "failed";
}

export function canDisconnect(state) {
  return ["connecting", "open", "retrying", "waiting"].includes(state);
}

// Exponential back-off with jitter: attempt 0, 1, 2, ... waits about base, 2 × base, 4 × base,
// never more than cap. Half of each wait is random, so that many pages dropped at once (a
// deployment, a gateway hiccup) do not all come back in the same instant.
export const BACKOFF = { baseMs: 1000, capMs: 30_000, attempts: 10 };

export function backoffMs(attempt, { baseMs, capMs } = BACKOFF, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

// API Gateway's own frame when the agent behind it could not take a frame:
// {"message": "Internal server error", "connectionId": ..., "requestId": ...}, no `type`.
export function isGatewayError(frame) {
  return frame !== null && typeof frame === "object" && !("type" in frame) && "message" in frame;
}

// Counts the gateway's error frames in a sliding window: one lost frame is a hiccup worth a
// word, a few in a row mean the agent is not answering.
export class ErrorWindow {
  constructor({ count = 3, withinMs = 2000 } = {}) {
    this.count = count;
    this.withinMs = withinMs;
    this.times = [];
  }

  // Whether this error, at `now` (ms), makes `count` within `withinMs`.
  add(now) {
    this.times = this.times.filter((t) => now - t < this.withinMs);
    this.times.push(now);
    return this.times.length >= this.count;
  }

  reset() {
    this.times = [];
  }
}
