// The conversation log: the user's partial and final transcripts, the assistant's streamed text.

export class Transcript {
  constructor(listElement) {
    this.list = listElement;
    this.userByTurn = new Map();
    this.assistantByResponse = new Map();
  }

  _entry(role, turnId) {
    const item = document.createElement("li");
    item.className = `msg msg-${role}`;
    if (turnId) item.dataset.turnId = turnId;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? "Assistant" : "";
    const text = document.createElement("span");
    text.className = "text";
    item.append(who, text);
    this.list.append(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  _user(turnId) {
    let item = this.userByTurn.get(turnId);
    if (!item) {
      item = this._entry("user", turnId);
      this.userByTurn.set(turnId, item);
    }
    return item;
  }

  partial(turnId, text) {
    const item = this._user(turnId);
    if (item.classList.contains("final")) return;
    item.classList.add("partial");
    item.querySelector(".text").textContent = text;
  }

  final(turnId, text) {
    const item = this._user(turnId);
    item.classList.remove("partial");
    item.classList.add("final");
    item.querySelector(".text").textContent = text || "(nothing heard)";
  }

  typed(text) {
    const item = this._entry("user", "");
    item.classList.add("final", "typed");
    item.querySelector(".text").textContent = text;
    return item;
  }

  adoptTyped(item, turnId) {
    item.dataset.turnId = turnId;
    this.userByTurn.set(turnId, item);
  }

  assistantDelta(responseId, turnId, delta) {
    let item = this.assistantByResponse.get(responseId);
    if (!item) {
      item = this._entry("assistant", turnId);
      item.classList.add("streaming");
      this.assistantByResponse.set(responseId, item);
    }
    item.querySelector(".text").textContent += delta;
    return item;
  }

  assistantDone(responseId, turnId, status, text, playedText) {
    const item = this.assistantDelta(responseId, turnId, "");
    item.classList.remove("streaming");
    item.classList.add(status);
    const body = item.querySelector(".text");
    if (status === "cancelled") {
      body.textContent = playedText || body.textContent;
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = " (interrupted)";
      item.append(note);
    } else if (text) {
      body.textContent = text;
    }
  }

  note(text) {
    const item = this._entry("system", "");
    item.querySelector(".text").textContent = text;
  }

  clear() {
    this.list.replaceChildren();
    this.userByTurn.clear();
    this.assistantByResponse.clear();
  }
}
