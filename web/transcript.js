// The live transcript: user lines, assistant lines (speculative text shown at once, replaced by
// the final text of what was spoken), tool activity and notes. `entries()` is what it shows.

export class Transcript {
  constructor(element) {
    this.element = element;
    this.turn = null; // the assistant's answer being spoken: {line, guesses}
    this.cut = null; // an interrupted answer, whose final text may still arrive
    this.tools = new Map(); // call_id → line element
    this.pieces = { user: "", assistant: "" }; // texts split over frames ("continues")
  }

  // Joins the pieces of a text split over several frames; null until the last one.
  whole(role, frame) {
    this.pieces[role] += frame.text;
    if (frame.continues) return null;
    const text = this.pieces[role];
    this.pieces[role] = "";
    return text;
  }

  user(frame) {
    const text = this.whole("user", frame);
    if (text === null) return;
    this.endTurn();
    this.cut = null;
    this.add("user", text);
  }

  typed(text) {
    this.endTurn();
    this.cut = null;
    this.add("user", text).classList.add("typed");
  }

  assistant(frame) {
    const text = this.whole("assistant", frame);
    if (text === null) return;
    if (!this.turn && frame.final && this.cut) {
      // The final text of what was spoken before a stop can come after the stop itself.
      this.cut.line.querySelector(".text").append(finalSpan(text));
      return;
    }
    if (!this.turn) {
      this.turn = { line: this.add("assistant", ""), guesses: [] };
    }
    const body = this.turn.line.querySelector(".text");
    if (!frame.final) {
      const guess = document.createElement("span");
      guess.className = "speculative";
      guess.textContent = text + " ";
      body.append(guess);
      this.turn.guesses.push(guess);
      return;
    }
    const spoken = finalSpan(text);
    const guess = this.turn.guesses.shift();
    if (guess) guess.replaceWith(spoken);
    else body.append(spoken);
    this.scroll();
  }

  interrupted() {
    if (!this.turn) return;
    this.turn.line.classList.add("interrupted");
    this.cut = this.turn;
    this.endTurn();
  }

  endTurn() {
    if (!this.turn) return;
    // Speculative text that never became final was not spoken.
    for (const guess of this.turn.guesses) guess.remove();
    this.turn = null;
  }

  tool(frame) {
    let line = this.tools.get(frame.call_id);
    if (!line) {
      line = this.add("tool", "");
      this.tools.set(frame.call_id, line);
    }
    const words = {
      started: "running…",
      succeeded: "done",
      failed: "failed",
      timed_out: "timed out",
    }[frame.status] ?? frame.status;
    const ms = frame.ms === undefined ? "" : ` in ${frame.ms} ms`;
    const error = frame.error ? `: ${frame.error}` : "";
    line.querySelector(".text").textContent = `${frame.name} ${words}${ms}${error}`;
    line.dataset.status = frame.status;
  }

  note(text) {
    this.add("note", text);
  }

  add(role, text) {
    const line = document.createElement("li");
    line.className = `line ${role}`;
    line.dataset.role = role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = { user: "You", assistant: "Assistant", tool: "Tool", note: "" }[role];
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    line.append(who, body);
    this.element.append(line);
    this.scroll();
    return line;
  }

  scroll() {
    this.element.scrollTop = this.element.scrollHeight;
  }

  entries() {
    return [...this.element.querySelectorAll(".line")].map((line) => ({
      role: line.dataset.role,
      text: line.querySelector(".text").textContent.trim(),
      final: [...line.querySelectorAll(".final")].map((s) => s.textContent.trim()).join(" "),
      interrupted: line.classList.contains("interrupted"),
    }));
  }
}

function finalSpan(text) {
  const span = document.createElement("span");
  span.className = "final";
  span.textContent = text + " ";
  return span;
}
