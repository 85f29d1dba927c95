// The browser client: wires the page to the connection, the audio and the transcript.
// `window.novakit` exposes what the page knows, for tests and for curious developers.

import { AudioEngine, base64ToPcm, pcmToBase64 } from "./audio.js";
import { Connection, defaultUrl } from "./connection.js";
import { canConnect, canDisconnect, canReconnect, streams } from "./lifecycle.js";
import { Transcript } from "./transcript.js";
import { DEFAULT_MODEL, voicesOf } from "./voices.js";

const FRAMES_PER_MESSAGE = 3; // 3 × 32 ms: ~100 ms of audio per frame, as the protocol suggests
const INTERRUPT_WAIT_MS = 2000; // how long audio is dropped while the server confirms a stop
const NOT_ANSWERING = "the agent is not answering, retrying…";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const transcript = new Transcript($("transcript"));

const stats = {
  framesReceived: 0,
  audioFramesReceived: 0,
  framesPlayed: 0, // audio frames that started playing
  playedSeqs: [], // their seq numbers, in the order they started
  playedSeconds: 0,
  queuedSeconds: 0,
  lateAudioIgnored: 0, // audio of an interrupted answer that arrived after its clear_audio
  // One per stop: {seq, reason, queuedSecondsBefore, and once the player has emptied its
  // queue: queuedSecondsAfter, droppedSeconds, framesPlayedAfter (the playedSeqs index then)}
  clears: [],
  micFramesSent: 0,
  micLevel: 0,
  usage: null,
  errors: [],
  banners: 0, // error banners shown (a banner that stays up counts once)
};

let engine = null;
let microphone = "off"; // off, on, unavailable
let connection = null;
let sessionState = null;
let sessionLive = false; // a session frame said the conversation is on (ready, resumed, ...)
let muted = false;
let batch = [];
let clearedBelow = -1; // audio frames with a lower seq belong to an interrupted answer
let interruptedAt = 0;

// -- connecting ------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
$("url").value = params.get("url") ?? defaultUrl(location);
$("token").value = params.get("token") ?? "";
showVoices(DEFAULT_MODEL, "");
useHostingConfig();

// Hosted by the stack (web_client=true), the page has a config.json naming its WebSocket API
// and how clients authenticate; served by `novakit dev`, it has none and talks to its origin.
async function useHostingConfig() {
  let config;
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) return;
    config = await response.json();
  } catch {
    return;
  }
  if (config.url && !params.has("url")) $("url").value = config.url;
  const hints = {
    secret: "the stack's shared secret",
    cognito: "a Cognito access token",
    iam: "IAM auth: use a client that signs requests",
  };
  if (hints[config.auth]) $("token").placeholder = hints[config.auth];
}

$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
$("reconnect").addEventListener("click", () => connect());
$("disconnect").addEventListener("click", () => connection?.close());

// The voices of the model: before a session the bridge's default model's, then the session's.
// The user's choice stays chosen (for the next connection) when the model has that voice.
function showVoices(model, voice) {
  const select = $("voice");
  const chosen = select.value;
  const voices = voicesOf(model) ?? [...select.options].map((o) => o.value).filter(Boolean);
  if (voice && !voices.includes(voice)) voices.push(voice);
  const options = [new Option("the server's", "")];
  for (const name of voices) options.push(new Option(name, name));
  select.replaceChildren(...options);
  select.value = voices.includes(chosen) ? chosen : "";
}

async function connect() {
  showError("");
  // The previous connection ends (politely, if it was live); its events are no longer news.
  const old = connection;
  connection = null;
  old?.close();
  await startAudio();
  const options = { url: $("url").value.trim(), token: $("token").value, voice: $("voice").value };
  try {
    connection = new Connection(options);
  } catch (error) {
    showError(`that URL does not work: ${error.message}`);
    return;
  }
  const current = connection;
  current.addEventListener("state", (event) => {
    if (current !== connection) return;
    const { state, previous, event: cause, words } = event.detail;
    if (cause === "opened") {
      newConversation();
      showError(""); // whatever went wrong before, this connection works
    }
    if (state === "retrying" && previous !== "retrying") showError(NOT_ANSWERING);
    if (cause === "answered") showError("");
    if (cause === "giveUp") showError(`gave up: ${words}. Press Reconnect to try again.`);
    // The conversation is over for good: let the microphone go.
    if (["closing", "closed", "failed"].includes(state)) releaseMicrophone();
    showState(event.detail);
  });
  current.addEventListener("frame", (event) => {
    if (current === connection) receive(event.detail);
  });
  current.addEventListener("problem", (event) => {
    if (current === connection) showError(event.detail);
  });
  current.open();
}

async function startAudio() {
  try {
    engine ??= await AudioEngine.create();
    engine.onFrame = microphoneFrame;
    engine.onPlayer = playerNews;
    await engine.resume();
  } catch (error) {
    showError(`audio does not work in this browser: ${error.message}`);
    return;
  }
  if (microphone === "on") return;
  try {
    await engine.startMicrophone();
    microphone = "on";
  } catch (error) {
    microphone = "unavailable";
    showError(microphoneProblem(error));
  }
  showMicrophone();
}

async function releaseMicrophone() {
  batch = [];
  if (microphone === "off") return;
  microphone = "off";
  showMicrophone();
  await engine?.stopMicrophone();
}

function microphoneProblem(error) {
  const words = {
    NotAllowedError: "microphone access was denied: allow it for this page",
    NotFoundError: "no microphone was found",
    NotReadableError: "the microphone is busy or broken",
  }[error.name] ?? `the microphone does not work: ${error.message}`;
  return `${words}. You can still type.`;
}

// -- what the server says -------------------------------------------------------------

function receive(frame) {
  stats.framesReceived++;
  switch (frame.type) {
    case "session":
      sessionState = frame.state;
      // Any state but ended means the conversation is on (unknown ones are informational).
      if (frame.state !== "ended") sessionLive = true;
      if (frame.model) showVoices(frame.model, frame.voice);
      sessionNews(frame);
      break;
    case "audio":
      if (frame.seq < clearedBelow || interrupting()) {
        stats.lateAudioIgnored++;
        break;
      }
      stats.audioFramesReceived++;
      engine?.play(frame.seq, base64ToPcm(frame.data), frame.sample_rate);
      break;
    case "transcript":
      transcript.user(frame);
      break;
    case "text":
      // Speculative text still in flight after the interrupt button belongs to the stopped answer.
      if (frame.final || !interrupting()) transcript.assistant(frame);
      break;
    case "tool":
      transcript.tool(frame);
      break;
    case "clear_audio":
      interruptedAt = 0;
      clearedBelow = Math.max(clearedBelow, frame.seq);
      stopPlayback(frame.seq, frame.reason);
      break;
    case "turn_end":
      transcript.endTurn();
      break;
    case "usage":
      stats.usage = frame;
      $("usage").textContent = `${frame.total_tokens} tokens`;
      break;
    case "error":
      stats.errors.push(frame);
      if (frame.code !== "out_of_order") {
        showError(`${frame.fatal ? "The conversation failed: " : ""}${frame.message} (${frame.code})`);
      }
      break;
    default:
      break; // pong, and frame types of newer servers
  }
}

// The interrupt button was pressed and the server's clear_audio has not arrived yet.
function interrupting() {
  return Date.now() - interruptedAt < INTERRUPT_WAIT_MS;
}

function sessionNews(frame) {
  const reason = frame.reason ? `: ${frame.reason}` : "";
  const news = {
    ready: `connected (${frame.voice}, ${frame.model})`,
    reconnected: "the server renewed the model stream; a moment of audio may be missing",
    resumed: "the conversation continues",
    draining: `the server will end this conversation soon${reason}`,
    ended: `the conversation ended${reason}`,
  }[frame.state] ?? `session ${frame.state}${reason}`;
  transcript.note(news);
  showState({ state: connection.state, words: "" });
}

function stopPlayback(seq, reason) {
  stats.clears.push({
    seq,
    reason,
    queuedSecondsBefore: stats.queuedSeconds,
    queuedSecondsAfter: null,
  });
  engine?.clear(reason);
  transcript.interrupted();
}

// Each connection is a conversation of its own, whose server seq numbers start again at 0.
function newConversation() {
  clearedBelow = -1;
  interruptedAt = 0;
  sessionState = null;
  sessionLive = false;
  batch = [];
  engine?.clear("new connection");
  transcript.endTurn();
}

function playerNews(message) {
  if (message.type === "started") {
    stats.framesPlayed++;
    stats.playedSeqs.push(message.seq);
  }
  if (message.type === "stats") {
    stats.playedSeconds = message.playedSeconds;
    stats.queuedSeconds = message.queuedSeconds;
  }
  if (message.type === "cleared") {
    stats.queuedSeconds = message.queuedSeconds;
    // The player empties its queue in the order it was told to: this report is for the oldest
    // stop still waiting for one (a server's clear_audio may already have followed it).
    const clear = stats.clears.find((c) => c.queuedSecondsAfter === null);
    if (clear && !["new connection", "disconnected"].includes(message.reason)) {
      // Every frame the player starts from now on was queued after this.
      clear.queuedSecondsAfter = message.queuedSeconds;
      clear.droppedSeconds = message.droppedSeconds;
      clear.framesPlayedAfter = stats.framesPlayed;
    }
  }
  $("playback").textContent = `${stats.playedSeconds.toFixed(1)} s played`;
}

// -- what the user says ---------------------------------------------------------------

function microphoneFrame(pcm, level) {
  stats.micLevel = level;
  $("mic-level").value = Math.min(1, level * 4);
  if (!connection || !streams(connection.state)) {
    batch = [];
    return;
  }
  // Muted still streams, as silence: the model hears time pass and the connection stays open.
  batch.push(muted ? new Int16Array(pcm.length) : pcm);
  if (batch.length < FRAMES_PER_MESSAGE) return;
  const joined = new Int16Array(batch.reduce((n, frame) => n + frame.length, 0));
  let at = 0;
  for (const frame of batch) {
    joined.set(frame, at);
    at += frame.length;
  }
  batch = [];
  if (connection.sendAudio(pcmToBase64(joined))) stats.micFramesSent++;
}

$("mute").addEventListener("click", () => {
  muted = !muted;
  $("mute").textContent = muted ? "Unmute" : "Mute";
  $("mute").setAttribute("aria-pressed", String(muted));
  showMicrophone();
});

function showMicrophone() {
  const words = { on: muted ? "microphone muted" : "microphone on", unavailable: "no microphone" };
  $("mic-state").textContent = words[microphone] ?? "microphone off";
}

$("interrupt").addEventListener("click", () => {
  if (!connection?.send({ type: "interrupt" })) return;
  // Stop at once; audio still in flight is dropped until the server's clear_audio arrives.
  interruptedAt = Date.now();
  stopPlayback(null, "client");
});

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text-input").value.trim();
  if (!text || !connection?.send({ type: "text", text })) return;
  transcript.typed(text);
  $("text-input").value = "";
});

// -- the page's state -----------------------------------------------------------------

function showState({ state, words }) {
  const label = {
    connecting: "connecting…",
    open: sessionLive ? "connected" : "connected, starting…",
    retrying: NOT_ANSWERING,
    waiting: "connection lost",
    closing: "disconnecting…",
    closed: "disconnected",
    failed: "not connected",
  }[state];
  $("state").textContent = words ? `${label}: ${words}` : label;
  document.body.dataset.state = state;
  const live = streams(state);
  $("disconnect").disabled = !canDisconnect(state);
  $("reconnect").disabled = !(connection && canReconnect(state));
  $("connect").disabled = !canConnect(state);
  for (const id of ["interrupt", "send", "text-input", "mute"]) $(id).disabled = !live;
}

function showError(words) {
  const shown = $("error").hidden ? "" : $("error").textContent;
  $("error").textContent = words;
  $("error").hidden = !words;
  if (words && words !== shown) {
    stats.errors.push(words);
    stats.banners++;
  }
}

showState({ state: "closed", words: "" });

window.novakit = {
  get state() {
    return connection?.state ?? "closed";
  },
  get sessionState() {
    return sessionState;
  },
  // sockets opened, probes sent and gateway error frames, for the current connection
  get counts() {
    return connection ? { ...connection.counts } : null;
  },
  // readyState of every microphone track the page opened ("live" or "ended")
  get microphoneTracks() {
    return engine ? engine.tracks.map((track) => track.readyState) : [];
  },
  get audioState() {
    return engine?.context.state ?? "none";
  },
  get microphone() {
    return microphone;
  },
  get contextTime() {
    return engine?.context.currentTime ?? 0;
  },
  transcript: () => transcript.entries(),
  stats,
};
