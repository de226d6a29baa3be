/*
 * DeEscalWild training simulator: the page's behaviour (index.html and history.html).
 *
 * Plain JavaScript, no framework, no build step, nothing loaded from elsewhere: the server's
 * Content-Security-Policy allows scripts from this origin only. Every piece of text that comes
 * from a trainee, a card or a model is put in the page with textContent / text nodes, never as
 * HTML, so a line like "<script>...</script>" is shown, not run.
 *
 * API (served by sim/web/app.py): GET /api/cards, POST /api/sessions, POST
 * /api/sessions/{id}/turns with {"text", "stream": true} answering NDJSON events
 * ("analysis", then "delta"s, then "done"), POST /api/sessions/{id}/end, GET /api/sessions.
 * Errors are JSON {"error": {"message"}}; they are shown in a message area and the session
 * stays usable.
 */
"use strict";

(function () {
  // Display names of the tactic ids (sim/taxonomy.py); unknown ids are shown as they are.
  const TACTIC_LABELS = {
    introduction: "Introduction",
    name_use: "Name use",
    empathy: "Empathy",
    active_listening: "Active listening",
    open_question: "Open question",
    explanation: "Explaining",
    offering_choices: "Offering choices",
    calm_request: "Calm request",
    reassurance: "Reassurance",
    threat: "Threat",
    shouted_command: "Shouted command",
    repeated_command: "Repeated command",
    insult: "Insult",
    dismissive: "Dismissive",
    profanity: "Profanity",
    ultimatum: "Ultimatum",
    persona_trigger: "Personal trigger",
    persona_calm: "Calms this person",
  };

  const $ = (id) => document.getElementById(id);

  /* Element builder: attrs are properties or attributes; children are nodes or strings (strings
   * become text nodes, so they are never parsed as HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function tacticLabel(id) {
    return TACTIC_LABELS[id] || String(id || "?").replace(/_/g, " ");
  }

  function fmt(value, digits = 0) {
    const n = Number(value);
    return Number.isFinite(n) ? n.toFixed(digits) : "–";
  }

  function sessionPath(id, rest) {
    return "/api/sessions/" + encodeURIComponent(id) + (rest || "");
  }

  function reportUrl(id) {
    return "/sessions/" + encodeURIComponent(id) + "/report";
  }

  // ---- messages ------------------------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    if (!box) return;
    $("error-text").textContent = String(message);
    box.hidden = false;
  }

  function clearError() {
    const box = $("error");
    if (box) box.hidden = true;
  }

  function setStatus(message) {
    const box = $("status");
    if (box) box.textContent = message ? String(message) : "";
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  /* The message of an error answer: {"error": {"message"}} (ours), {"detail"} (FastAPI's own),
   * else the status line. */
  async function apiError(res) {
    let message = "";
    try {
      const text = await res.text();
      try {
        const data = JSON.parse(text);
        const err = data && data.error;
        if (err && typeof err === "object" && err.message) message = err.message;
        else if (typeof err === "string") message = err;
        else if (data && data.detail) {
          message = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
        }
      } catch (_) {
        message = text.slice(0, 300);
      }
    } catch (_) {
      /* body unreadable: fall back to the status */
    }
    if ((res.status === 401 || res.status === 403) && !/token/i.test(message)) {
      message = (message ? message + ". " : "") +
        "This server needs an access token: open the page as /?token=YOUR_TOKEN.";
    }
    return new ApiError(message || `${res.status} ${res.statusText || "error"}`, res.status);
  }

  async function api(method, path, body) {
    const init = {method, headers: {Accept: "application/json"}, credentials: "same-origin"};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError("Could not reach the simulator server (" + e.message + ").", 0);
    }
    if (!res.ok) throw await apiError(res);
    return res.status === 204 ? null : res.json();
  }

  /* Read an NDJSON body, calling onEvent with each parsed line as it arrives. */
  async function readNdjson(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) onEvent(JSON.parse(line));
        }
      }
      buffer += decoder.decode();
      if (buffer.trim()) onEvent(JSON.parse(buffer));
    } catch (e) {
      reader.cancel().catch(() => {});
      throw e;
    }
  }

  // ---- the agitation meter -------------------------------------------------------------------

  // sim/agitation.py's five bands of 20 points: the colour (style.css) and, when the server
  // gave no label, the label
  const BAND_NAMES = ["calm", "wary", "upset", "agitated", "explosive"];

  function band(value) {
    return Math.max(0, Math.min(4, Math.floor(Number(value) / 20)));
  }

  function setMeter(value, level) {
    const meter = $("agitation");
    const v = Math.max(0, Math.min(100, Number(value) || 0));
    const label = level || BAND_NAMES[band(v)];
    $("agitation-bar").style.width = v + "%";
    meter.setAttribute("aria-valuenow", v.toFixed(1));
    meter.setAttribute("aria-valuetext", `${Math.round(v)} of 100, ${label}`);
    meter.dataset.band = String(band(v));
    meter.dataset.level = label;
    $("agitation-label").textContent = `${Math.round(v)} / 100 · ${label}`;
  }

  // ---- the conversation ----------------------------------------------------------------------

  const state = {
    cards: [],
    session: null, // session id
    busy: false,
    ended: false,
  };

  function scrollToEnd(node) {
    if (node && node.scrollIntoView) node.scrollIntoView({block: "nearest"});
  }

  /* A message bubble: li.msg.{civilian|trainee} holding .who and .text. */
  function addMessage(who, text) {
    const li = el("li", {className: "msg " + who, dataset: {who}},
      el("span", {className: "who", text: who === "trainee" ? "You" : state.persona || "Civilian"}),
      el("p", {className: "text"}, text || ""));
    $("transcript").append(li);
    scrollToEnd(li);
    return li;
  }

  /* The trainee's text with the verdicts' evidence spans marked. Spans are offsets in code
   * points (Python's str indices), so the text is split with Array.from, not by UTF-16 units. */
  function markEvidence(li, text, verdicts) {
    const chars = Array.from(text);
    const kinds = new Array(chars.length).fill(null);
    for (const v of verdicts || []) {
      for (const span of v.spans || []) {
        const a = Math.max(0, Number(span[0]) | 0);
        const b = Math.min(chars.length, Number(span[1]) | 0);
        for (let i = a; i < b; i++) {
          if (kinds[i] !== "escalation") kinds[i] = v.kind;
        }
      }
    }
    if (!kinds.some(Boolean)) return;
    const p = li.querySelector(".text");
    p.textContent = "";
    let i = 0;
    while (i < chars.length) {
      let j = i;
      while (j < chars.length && kinds[j] === kinds[i]) j++;
      const piece = chars.slice(i, j).join("");
      p.append(kinds[i] ? el("mark", {className: kinds[i]}, piece) : document.createTextNode(piece));
      i = j;
    }
  }

  function verdictTitle(v) {
    const parts = [];
    if (v.why) parts.push(v.why);
    if (v.evidence && v.evidence.length) {
      parts.push("Evidence: " + v.evidence.map((e) => "“" + e + "”").join(", "));
    }
    const effect = Number(v.effect);
    if (Number.isFinite(effect) && effect !== 0) {
      parts.push(`Agitation ${effect > 0 ? "+" : ""}${effect.toFixed(1)}`);
    }
    if (v.source && v.source !== "rules") parts.push("Source: " + v.source);
    return parts.join("\n");
  }

  let chipDetailCount = 0;

  /* Tactic chips under a trainee message: green de-escalation, red escalation; the title (and a
   * detail line shown on tap, for touch and VR browsers without hover) says why. */
  function addChips(li, verdicts, before, after) {
    const old = li.querySelector(".chips-wrap");
    if (old) old.remove();
    const wrap = el("div", {className: "chips-wrap"});
    const list = el("ul", {className: "chips", "aria-label": "Tactics noted"});
    const detail = el("p", {className: "chip-why", id: "chip-why-" + ++chipDetailCount,
      hidden: true});
    for (const v of verdicts || []) {
      const kind = v.kind === "escalation" ? "escalation" : "deescalation";
      const arrow = kind === "escalation" ? "▲ " : "▼ ";
      const title = verdictTitle(v);
      const chip = el("button", {type: "button", className: "chip " + kind, title,
        dataset: {tactic: v.tactic, kind}, "aria-expanded": "false",
        "aria-controls": detail.id,
        "aria-label": `${tacticLabel(v.tactic)} (${kind === "escalation" ? "escalation" :
          "de-escalation"})`}, arrow + tacticLabel(v.tactic));
      chip.addEventListener("click", () => {
        const open = chip.getAttribute("aria-expanded") === "true";
        for (const c of list.querySelectorAll(".chip")) c.setAttribute("aria-expanded", "false");
        if (open) {
          detail.hidden = true;
        } else {
          chip.setAttribute("aria-expanded", "true");
          detail.textContent = tacticLabel(v.tactic) + ": " + (title || "no details");
          detail.hidden = false;
        }
      });
      list.append(el("li", {}, chip));
    }
    if (!list.childElementCount) {
      list.append(el("li", {className: "no-chips muted"}, "no tactic noted"));
    }
    wrap.append(list);
    if (Number.isFinite(Number(before)) && Number.isFinite(Number(after))) {
      const d = Number(after) - Number(before);
      const sign = d > 0.05 ? "up" : d < -0.05 ? "down" : "same";
      wrap.append(el("span", {className: "delta " + sign},
        `agitation ${fmt(before)} → ${fmt(after)}`));
    }
    wrap.append(detail);
    li.append(wrap);
  }

  function setBusy(busy) {
    state.busy = busy;
    const input = $("message");
    input.disabled = busy || state.ended;
    $("send").disabled = busy || state.ended;
    $("end").disabled = busy || state.ended;
    $("composer").setAttribute("aria-busy", busy ? "true" : "false");
  }

  /* Send one trainee line and stream the civilian's reply into a new bubble. */
  async function sendTurn(text) {
    clearError();
    setBusy(true);
    setStatus("The civilian is answering…");
    const trainee = addMessage("trainee", text);
    let civ = null;
    let received = false;
    let finished = false;
    let failed = false;  // the server said the turn failed: it recorded nothing
    let meterBefore = null;

    const civText = () => {
      if (!civ) {
        civ = addMessage("civilian", "");
        civ.classList.add("typing");
      }
      return civ.querySelector(".text");
    };

    const onEvent = (ev) => {
      if (ev.type !== "error") received = true;
      if (ev.type === "analysis") {
        meterBefore = ev.agitation_before;
        markEvidence(trainee, text, ev.verdicts);
        addChips(trainee, ev.verdicts, ev.agitation_before, ev.agitation_after);
        setMeter(ev.agitation_after, ev.level);
        civText();
      } else if (ev.type === "delta") {
        civText().append(document.createTextNode(ev.text || ""));
        scrollToEnd(civ);
      } else if (ev.type === "done") {
        finished = true;
        const turn = ev.turn || {};
        const p = civText();
        if (typeof turn.reply === "string" && turn.reply && p.textContent !== turn.reply) {
          p.textContent = turn.reply;
        }
        civ.classList.remove("typing");
        if (turn.agitation_after !== undefined) setMeter(turn.agitation_after, ev.level);
        if (turn.error) {
          showError("The civilian's model failed on this turn; a fallback line was used (" +
            turn.error + ").");
        }
        if (turn.latency_s !== undefined) {
          civ.dataset.latency = String(turn.latency_s);
          setStatus(`Reply in ${fmt(Number(turn.latency_s) * 1000)} ms.`);
        } else {
          setStatus("");
        }
      } else if (ev.type === "error") {
        failed = true;
        const err = ev.error || {};
        throw new ApiError(err.message || ev.message || "the reply failed", err.status || 500);
      }
    };

    try {
      let res;
      try {
        res = await fetch(sessionPath(state.session, "/turns"), {
          method: "POST",
          credentials: "same-origin",
          headers: {"Content-Type": "application/json",
            Accept: "application/x-ndjson, application/json"},
          body: JSON.stringify({text, stream: true}),
        });
      } catch (e) {
        throw new ApiError("Could not reach the simulator server (" + e.message + ").", 0);
      }
      if (!res.ok) throw await apiError(res);
      const type = res.headers.get("content-type") || "";
      if (res.body && type.includes("ndjson")) {
        await readNdjson(res.body, onEvent);
      } else {
        // a server that answered the whole turn at once
        const data = await res.json();
        onEvent({type: "analysis", verdicts: data.tactics || [], level: data.level,
          agitation_after: data.agitation});
        onEvent({type: "done", level: data.level, turn: {reply: data.reply,
          agitation_after: data.agitation, latency_s: data.latency_s}});
      }
      if (!finished) throw new ApiError("The reply was cut off; try again.", 0);
    } catch (e) {
      if (!received || failed) {
        // the server recorded nothing (it refused, or said the reply failed): undo the
        // bubbles and the meter, and give the line back to send again
        trainee.remove();
        if (civ) civ.remove();
        if (meterBefore !== null) setMeter(meterBefore);
        $("message").value = text;
      } else if (civ) {
        // cut off: the server finishes and stores the turn anyway; reopening shows it
        civ.classList.remove("typing");
        civ.classList.add("incomplete");
      }
      setStatus("");
      showError(e.message || String(e));
      if (e.status === 409) markEnded();
    } finally {
      setBusy(false);
      if (!state.ended) $("message").focus();
    }
  }

  function markEnded() {
    if (state.ended && $("report-link")) return;
    state.ended = true;
    setBusy(false);
    $("composer").hidden = true;
    const end = $("end");
    end.hidden = true;
    const link = el("a", {href: reportUrl(state.session), id: "report-link",
      className: "button primary"}, "Open the after-action report");
    $("end").parentNode.append(link);
  }

  async function endSession() {
    if (!state.session || state.busy) return;
    clearError();
    setBusy(true);
    setStatus("Ending the session and writing the report…");
    try {
      await api("POST", sessionPath(state.session, "/end"));
    } catch (e) {
      setStatus("");
      showError(e.message);
      setBusy(false);
      return;
    }
    window.location.assign(reportUrl(state.session));
  }

  // ---- scene and picker ----------------------------------------------------------------------

  function cardSummary(card) {
    const p = card.persona || {};
    const who = [p.name, p.age !== undefined ? `${p.age}` : null].filter(Boolean).join(", ");
    return {who, stateText: p.emotional_state || ""};
  }

  function showScene(card, fallbackTitle) {
    card = card || {};
    const {who, stateText} = cardSummary(card);
    state.persona = (card.persona && card.persona.name) || "Civilian";
    $("scene-title").textContent = card.title || fallbackTitle || "Scenario";
    $("scene-meta").textContent = [card.call_type, who && "with " + who, stateText]
      .filter(Boolean).join(" · ");
    $("scene-dispatch").textContent = card.dispatch || "–";
    $("scene-setting").textContent = card.setting || "–";
    const objectives = $("scene-objectives");
    objectives.textContent = "";
    for (const o of card.learning_objectives || []) objectives.append(el("li", {}, o));
    $("picker").hidden = true;
    $("chat").hidden = false;
    document.title = (card.title || fallbackTitle || "Session") + " · DeEscalWild simulator";
  }

  function renderCards(cards) {
    const list = $("cards");
    list.textContent = "";
    for (const card of cards) {
      const id = String(card.id);
      const radioId = "card-" + id.replace(/[^A-Za-z0-9_-]/g, "_");
      const {who, stateText} = cardSummary(card);
      const radio = el("input", {type: "radio", name: "card", value: id, id: radioId});
      const objectives = el("ul", {className: "objectives"});
      for (const o of card.learning_objectives || []) objectives.append(el("li", {}, o));
      const label = el("label", {className: "card", for: radioId, dataset: {cardId: id}},
        radio,
        el("span", {className: "card-body"},
          el("span", {className: "card-title"}, card.title || id),
          el("span", {className: "card-meta"},
            [card.call_type, `starting agitation ${fmt(card.agitation_start)}/100`]
              .filter(Boolean).join(" · ")),
          el("span", {className: "card-persona"},
            [who, stateText].filter(Boolean).join(" — ")),
          objectives.childElementCount ? objectives : null));
      radio.addEventListener("change", () => {
        for (const c of list.querySelectorAll(".card")) c.classList.remove("selected");
        label.classList.add("selected");
        $("start").disabled = false;
      });
      list.append(el("li", {}, label));
    }
  }

  async function startSession(cardId) {
    clearError();
    $("start").disabled = true;
    setStatus("Starting the session…");
    let data;
    try {
      data = await api("POST", "/api/sessions", {card_id: cardId});
    } catch (e) {
      setStatus("");
      showError(e.message);
      $("start").disabled = false;
      return;
    }
    setStatus("");
    state.session = data.session_id;
    state.ended = false;
    const card = data.card || state.cards.find((c) => String(c.id) === cardId) || {};
    showScene(card);
    $("transcript").textContent = "";
    setMeter(data.agitation !== undefined ? data.agitation : card.agitation_start, data.level);
    if (data.opening) addMessage("civilian", data.opening);
    rememberSession(state.session);
    setBusy(false);
    $("message").focus();
  }

  /* Put ?session=ID in the address bar (a reload comes back to the session) and drop a
   * ?token=... (the server has set its cookie; the token should not linger on screen). */
  function rememberSession(id) {
    const url = new URL(window.location.href);
    url.searchParams.delete("token");
    url.searchParams.delete("card");
    if (id) url.searchParams.set("session", id);
    window.history.replaceState(null, "", url.pathname + url.search);
  }

  /* Reopen a session from ?session=ID: its transcript, verdicts and agitation. */
  async function resumeSession(id) {
    const rec = await api("GET", sessionPath(id));
    state.session = rec.id || id;
    const card = state.cards.find((c) => String(c.id) === String(rec.card_id));
    showScene(card, rec.card_title);
    $("transcript").textContent = "";
    if (rec.opening) addMessage("civilian", rec.opening);
    let agitation = rec.agitation_start;
    for (const t of rec.turns || []) {
      const li = addMessage("trainee", t.trainee);
      markEvidence(li, t.trainee, t.verdicts);
      addChips(li, t.verdicts, t.agitation_before, t.agitation_after);
      addMessage("civilian", t.reply);
      agitation = t.agitation_after;
    }
    setMeter(rec.agitation !== undefined ? rec.agitation : agitation, rec.level);
    if (rec.ended_at !== null && rec.ended_at !== undefined) {
      markEnded();
      setStatus("This session has ended.");
    } else {
      setBusy(false);
      $("message").focus();
    }
  }

  async function initSimulator() {
    const params = new URLSearchParams(window.location.search);
    if (params.has("token")) rememberSession(params.get("session"));
    $("error-close").addEventListener("click", clearError);
    $("picker-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const chosen = document.querySelector('input[name="card"]:checked');
      if (chosen) startSession(chosen.value);
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      if (state.busy || state.ended || !state.session) return;
      const input = $("message");
      const text = input.value.trim();
      if (!text) {
        showError("Type what you would say to the civilian first.");
        return;
      }
      input.value = "";
      sendTurn(text);
    });
    $("end").addEventListener("click", endSession);

    try {
      const data = await api("GET", "/api/cards");
      state.cards = Array.isArray(data) ? data : (data && data.cards) || [];
    } catch (e) {
      showError("Could not load the scenario cards: " + e.message);
    }
    $("cards-loading").hidden = true;
    renderCards(state.cards);
    if (!state.cards.length) setStatus("No scenario cards are available.");

    const sid = params.get("session");
    if (sid) {
      try {
        await resumeSession(sid);
        return;
      } catch (e) {
        showError("Could not reopen session " + sid + ": " + e.message);
        $("chat").hidden = true;
        $("picker").hidden = false;
      }
    }
    const preset = params.get("card");
    if (preset) {
      const radio = Array.from(document.querySelectorAll('input[name="card"]'))
        .find((r) => r.value === preset);
      if (radio) {
        radio.checked = true;
        radio.dispatchEvent(new Event("change"));
        radio.focus();
      }
    }
  }

  // ---- history page --------------------------------------------------------------------------

  function formatTime(unix) {
    const n = Number(unix);
    if (!Number.isFinite(n) || n <= 0) return "–";
    return new Date(n * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
  }

  async function initHistory() {
    $("error-close").addEventListener("click", clearError);
    const body = $("history-rows");
    let rows;
    try {
      const data = await api("GET", "/api/sessions");
      rows = Array.isArray(data) ? data : (data && data.sessions) || [];
    } catch (e) {
      $("history-loading").hidden = true;
      showError("Could not load the sessions: " + e.message);
      return;
    }
    $("history-loading").hidden = true;
    if (!rows.length) {
      $("history-empty").hidden = false;
      return;
    }
    $("history-table").hidden = false;
    for (const s of rows) {
      const ended = s.ended_at !== null && s.ended_at !== undefined;
      const link = ended
        ? el("a", {href: reportUrl(s.id), className: "report-link"}, "Report")
        : el("a", {href: "/?session=" + encodeURIComponent(s.id)}, "Resume");
      const score = s.score === null || s.score === undefined ? "–" : fmt(s.score, 0);
      body.append(el("tr", {dataset: {sessionId: s.id}},
        el("td", {dataset: {label: "Card"}}, s.card_title || s.card_id || "?",
          s.card_title && s.card_id ? el("span", {className: "muted small"}, " " + s.card_id) :
            null),
        el("td", {dataset: {label: "Started"}}, formatTime(s.started_at)),
        el("td", {dataset: {label: "Turns"}, className: "num"}, fmt(s.turns)),
        el("td", {dataset: {label: "Agitation"}, className: "num"},
          `${fmt(s.agitation_start)} → ${fmt(s.agitation_end)}`),
        el("td", {dataset: {label: "Score"}, className: "num"}, ended ? score : "in progress"),
        el("td", {dataset: {label: "Report"}}, link)));
    }
  }

  function init() {
    const page = document.body.dataset.page;
    const run = page === "history" ? initHistory : initSimulator;
    run().catch((e) => showError(e.message || String(e)));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
