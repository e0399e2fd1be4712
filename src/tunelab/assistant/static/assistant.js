// tunelab assistant: a chat with a knowledge base (POST /v1/assistant/NAME/chat, one session per
// conversation), each answer with where it came from and its confidence, and the hand-offs.
(function () {
  "use strict";
  const T = JSON.parse(document.getElementById("i18n").textContent);
  const CSRF = document.querySelector('meta[name="csrf"]').content;
  const $ = (id) => document.getElementById(id);
  let session = null;

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": CSRF };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(url, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!r.ok) {
      const d = data && data.detail;
      throw new Error(typeof d === "string" ? d : Array.isArray(d) ? d.map((x) => x.msg).join("; ") : `HTTP ${r.status}`);
    }
    return data;
  }
  function msg(cls, text, note) {
    const div = document.createElement("div");
    div.className = `msg ${cls}`;
    const body = document.createElement("div");
    body.textContent = text;
    div.appendChild(body);
    if (note) {
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = note;
      div.appendChild(why);
    }
    $("as-log").appendChild(div);
    div.scrollIntoView({ block: "end" });
    return div;
  }
  function kb() { return $("as-kb").value; }
  function newSession() {
    session = null;
    $("as-log").replaceChildren();
    $("as-session").textContent = "";
  }
  async function tickets() {
    if (!kb()) return;
    const rows = await api("GET", `/v1/assistant/${encodeURIComponent(kb())}/tickets`);
    const body = $("as-tickets").querySelector("tbody");
    body.replaceChildren(...rows.slice(-20).reverse().map((t) => {
      const tr = document.createElement("tr");
      for (const v of [t.id, t.question, t.status, (t.created_at || "").slice(0, 16).replace("T", " ")]) {
        const td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
      }
      return tr;
    }));
  }

  $("as-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const message = $("as-input").value.trim();
    if (!message || !kb()) return;
    $("as-input").value = "";
    msg("user", message);
    try {
      const r = await api("POST", `/v1/assistant/${encodeURIComponent(kb())}/chat`, { message, session });
      session = r.session;
      $("as-session").textContent = `${T["assistant.session"]} ${session.slice(0, 8)}`;
      const conf = `${T["assistant.confidence"]} ${(100 * r.score).toFixed(0)}%`;
      const note = r.handoff
        ? `${T["assistant.handed_off"]} (${T["assistant.ticket"]} ${r.ticket}) · ${conf}`
        : `${T["assistant.from"]} ${r.matched_question} · ${conf}`;
      const m = msg(r.handoff ? "bot handoff" : "bot", r.answer, note);
      m.dataset.handoff = String(r.handoff);
      $("as-error").hidden = true;
      if (r.handoff) tickets().catch(() => {});
    } catch (e) {
      $("as-error").textContent = e.message;
      $("as-error").hidden = false;
    }
  });
  $("as-new").addEventListener("click", newSession);
  $("as-kb").addEventListener("change", () => { newSession(); tickets().catch(() => {}); });
  tickets().catch((e) => { $("as-error").textContent = e.message; $("as-error").hidden = false; })
    .finally(() => { document.body.dataset.ready = "1"; });
})();
