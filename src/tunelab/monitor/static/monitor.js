// tunelab monitor: the dashboard, filled from /v1/monitor/overview and refreshed in place
// every few seconds (no reload). Times are the posts' own, shown in UTC.
(function () {
  "use strict";
  const T = JSON.parse(document.getElementById("i18n").textContent);
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 3000;
  let charts = null;
  let timer = null;

  function hhmm(epoch, withDate) {
    const iso = new Date(epoch * 1000).toISOString();
    return withDate ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
  }
  function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : "-"; }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fill(tableId, rows, make) {
    const body = $(tableId).querySelector("tbody");
    if (!rows.length) {  // say so, rather than an empty table
      const tr = document.createElement("tr");
      const td = cell(tr, T["monitor.none"], "muted");
      td.colSpan = $(tableId).querySelectorAll("th").length;
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...rows.map((r) => { const tr = document.createElement("tr"); make(tr, r); return tr; }));
  }

  function makeCharts() {
    const opts = (yTitle, extra) => ({
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "index", intersect: false },
      scales: Object.assign({ y: { beginAtZero: true, title: { display: true, text: yTitle } } }, extra || {}),
    });
    return {
      volume: new Chart($("chart-volume"), {
        type: "bar",
        data: { labels: [], datasets: [
          { label: T["monitor.posts"], data: [], backgroundColor: "#93c5fd" },
          { label: T["monitor.negative"], data: [], backgroundColor: "#fca5a5" },
        ] },
        options: Object.assign(opts(T["monitor.posts"]), { scales: { x: { stacked: false }, y: { beginAtZero: true } } }),
      }),
      sentiment: new Chart($("chart-sentiment"), {
        type: "line",
        data: { labels: [], datasets: [
          { label: T["monitor.negative_share"], data: [], borderColor: "#dc2626", pointRadius: 0, spanGaps: true },
          { label: T["monitor.mean_score"], data: [], borderColor: "#2563eb", pointRadius: 0, spanGaps: true, borderDash: [4, 3] },
        ] },
        options: opts("", { y: { min: 0, max: 1 } }),
      }),
    };
  }

  function draw(o) {
    const s = o.series;
    const multiDay = s.length && s[s.length - 1].t - s[0].t > 86400;
    const labels = s.map((p) => hhmm(p.t, multiDay));
    if (!charts) charts = makeCharts();
    charts.volume.data.labels = labels;
    charts.volume.data.datasets[0].data = s.map((p) => p.volume);
    charts.volume.data.datasets[1].data = s.map((p) => p.negative);
    charts.sentiment.data.labels = labels;
    charts.sentiment.data.datasets[0].data = s.map((p) => p.negative_share);
    charts.sentiment.data.datasets[1].data = s.map((p) => p.mean_score);
    charts.volume.update("none");
    charts.sentiment.update("none");

    $("stat-posts").textContent = o.totals.posts.toLocaleString();
    $("stat-negative").textContent = pct(o.totals.negative_share);
    $("stat-alerts").textContent = o.totals.alerts;
    $("stat-firing").textContent = o.totals.firing;
    $("stat-firing").className = o.totals.firing ? "sev-critical" : "";
    $("mon-period").textContent = `${when(o.from)} – ${when(o.to)} UTC · ${o.bucket_s / 60} min`;

    fill("mon-entities", o.entities.top, (tr, e) => { cell(tr, e.entity); cell(tr, e.volume); cell(tr, e.negative); });
    fill("mon-trending", o.entities.trending, (tr, e) => {
      cell(tr, e.entity); cell(tr, e.recent); cell(tr, e.baseline); cell(tr, "×" + e.growth);
    });
    const groups = o.sources.map((g) => Object.assign({ kind: T["monitor.source"] }, g))
      .concat(o.topics.map((g) => Object.assign({ kind: T["monitor.topic"] }, g)));
    fill("mon-sources", groups, (tr, g) => { cell(tr, `${g.kind}: ${g.name}`); cell(tr, g.volume); cell(tr, pct(g.negative_share)); });
    fill("mon-negative", o.negative_posts, (tr, p) => {
      cell(tr, when(p.time)); cell(tr, p.source);
      const td = cell(tr, p.text);
      for (const e of p.entities) { const c = document.createElement("span"); c.className = "chip"; c.textContent = e; td.appendChild(c); }
      cell(tr, p.score === null ? "-" : p.score.toFixed(2));
    });

    const list = $("mon-alerts");
    list.replaceChildren(...o.alerts.map((a) => {
      const li = document.createElement("li");
      li.dataset.rule = a.rule;
      li.dataset.state = a.state;
      const st = document.createElement("span");
      st.className = "state " + a.state;
      st.textContent = T["monitor.state." + a.state] || a.state;
      const name = document.createElement("span");
      name.innerHTML = "";
      const b = document.createElement("strong");
      b.textContent = a.rule;
      const sev = document.createElement("div");
      sev.className = "muted sev-" + a.severity;
      sev.textContent = T["monitor.severity." + a.severity] || a.severity;
      name.append(b, sev);
      const why = document.createElement("span");
      const d = a.details || {};
      const times = `${T["monitor.started"]} ${when(a.started_at)}` +
        (a.fired_at ? ` · ${T["monitor.fired"]} ${when(a.fired_at)}` : "") +
        (a.resolved_at ? ` · ${T["monitor.resolved"]} ${when(a.resolved_at)}` : "");
      const value = a.value === null ? "" : ` · ${T["monitor.value"]} ${Number(a.value.toFixed(3))}`;
      why.textContent = `${d.condition || ""}${value}`;
      const sub = document.createElement("div");
      sub.className = "muted";
      sub.textContent = times + (d.description ? ` — ${d.description}` : "");
      why.appendChild(sub);
      li.append(st, name, why);
      return li;
    }));
    $("mon-no-alerts").hidden = o.alerts.length > 0;
  }

  async function refresh() {
    const span = $("mon-span").value;
    try {
      const r = await fetch(`/v1/monitor/overview?span=${encodeURIComponent(span)}`, { credentials: "same-origin" });
      const body = await r.json();
      if (!r.ok) throw new Error(typeof body.detail === "string" ? body.detail : r.statusText);
      draw(body);
      $("mon-error").hidden = true;
      $("mon-updated").textContent = `${T["monitor.updated"]} ${new Date().toLocaleTimeString()}`;
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      $("mon-error").textContent = String(e.message || e);
      $("mon-error").hidden = false;
    }
  }

  function schedule() {
    clearInterval(timer);
    if ($("mon-live").checked) timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  $("mon-span").addEventListener("change", refresh);
  $("mon-live").addEventListener("change", schedule);
  refresh();
  schedule();
})();
