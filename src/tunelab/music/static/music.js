// tunelab music: compose a melody (POST /v1/music/NAME/compose), then play its WAV, show its
// piano roll and offer its MIDI.
(function () {
  "use strict";
  const T = JSON.parse(document.getElementById("i18n").textContent);
  const CSRF = document.querySelector('meta[name="csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const fill = (s, v) => s.replace(/\{(\w+)\}/g, (_, k) => (k in v ? v[k] : ""));

  async function compose(body) {
    const r = await fetch(`/v1/music/${encodeURIComponent($("mu-model").value)}/compose`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!r.ok) {
      const d = data && data.detail;
      throw new Error(typeof d === "string" ? d : Array.isArray(d) ? d.map((x) => x.msg).join("; ") : `HTTP ${r.status}`);
    }
    return data;
  }

  $("mu-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { bars: Number($("mu-bars").value || 8), instrument: $("mu-instrument").value };
    if ($("mu-mood").value) body.mood = $("mu-mood").value;
    if ($("mu-key").value.trim()) body.key = $("mu-key").value.trim();
    if ($("mu-tempo").value) body.tempo = Number($("mu-tempo").value);
    if ($("mu-seed").value) body.seed = Number($("mu-seed").value);
    $("mu-error").hidden = true;
    $("mu-go").disabled = true;
    $("mu-go").textContent = T["music.working"];
    try {
      const c = await compose(body);
      $("mu-summary").textContent = fill(T["music.result"], c);
      $("mu-audio").src = c.files.wav;
      $("mu-roll").src = c.files.png;
      $("mu-midi").href = c.files.mid;
      $("mu-out").hidden = false;
    } catch (e) {
      $("mu-error").textContent = e.message;
      $("mu-error").hidden = false;
    } finally {
      $("mu-go").disabled = false;
      $("mu-go").textContent = T["music.compose"];
    }
  });
  document.body.dataset.ready = "1";
})();
