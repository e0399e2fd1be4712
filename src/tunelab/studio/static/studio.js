// tunelab studio: fills the server-rendered pages from the JSON API (/v1/studio). Plain
// JavaScript, no build step; Chart.js (served locally) draws the curves.
"use strict";

const T = JSON.parse(document.getElementById("i18n").textContent);
const CSRF = document.querySelector('meta[name="csrf"]').content;
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  kids.forEach((k) => e.append(k));
  return e;
};
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

// One line from any error answer: {"detail": "..."} or FastAPI's [{"msg": ...}] list.
function detail(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((x) => x.msg).join("; ");
  return `HTTP ${status}`;
}

async function api(method, url, body, raw) {
  const headers = { "X-CSRF-Token": CSRF };
  let payload;
  if (raw !== undefined) { payload = raw; headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const r = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
  if (!r.ok) throw new Error(detail(data, r.status));
  return data;
}

function showError(id, msg) {
  const e = $(id);
  e.textContent = msg || "";
  e.hidden = !msg;
}

function chart(canvas, type, datasets, options = {}) {
  return new Chart(canvas, {
    type,
    data: { labels: [], datasets },
    options: Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
      parsing: type === "line" ? false : undefined,
      scales: type === "line" ? { x: { type: "linear", title: { display: true, text: "step" } } } : {} }, options),
  });
}

function line(label, i) {
  return { label, data: [], borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length], pointRadius: 2, borderWidth: 2 };
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "…";
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

const NOT_METRICS = new Set(["type", "step", "epoch", "loss", "total_steps", "eval_s", "time", "n", "elapsed_s", "replayed"]);

// ---------------------------------------------------------------------------------- Data
async function dataPage() {
  // the listeners first: a file picked while the lists below still load is previewed too
  let sets = { bundled: [] };
  let current = null;
  let charts = [];
  const task = () => $("#task").value || "text-classification";  // the default until the list loads
  const show = async () => {
    if (!current) return;
    $("#data-path").textContent = current;
    const q = new URLSearchParams({ path: current, task: task() });
    if ($("#text-column").value) q.set("text_column", $("#text-column").value);
    if ($("#label-column").value) q.set("label_column", $("#label-column").value);
    let p;
    try { p = await api("GET", `/v1/studio/preview?${q}`); } catch (e) { showError("#data-error", e.message); return; }
    showError("#data-error", p.error);
    $("#data-preview").hidden = !!p.error;
    if (p.error) return;
    $("#data-count").textContent = p.n;
    const body = $("#data-rows tbody");
    body.replaceChildren(...p.rows.map((r) => el("tr", {}, el("td", { text: r.line }), el("td", { text: r.text }), el("td", { text: String(r.label) }))));
    charts.forEach((c) => c.destroy());
    const dist = p.values ? p.values.counts : Object.values(p.labels);  // a number target: its histogram
    const lc = chart($("#label-chart"), "bar", [{ label: T["data.labels"], data: dist, backgroundColor: COLORS[0] }]);
    lc.data.labels = p.values ? p.values.counts.map((_, i) => `${p.values.edges[i]}–${p.values.edges[i + 1]}`) : Object.keys(p.labels);
    lc.update();
    const hc = chart($("#length-chart"), "bar", [{ label: T["data.lengths"], data: p.lengths.counts, backgroundColor: COLORS[2] }]);
    hc.data.labels = p.lengths.counts.map((_, i) => `${p.lengths.edges[i]}–${p.lengths.edges[i + 1] - 1}`); hc.update();
    charts = [lc, hc];
    const set = sets.bundled.find((s) => s.train === current);
    const q2 = new URLSearchParams({ task: task(), train: current });
    if (set) { q2.set("validation", set.validation); q2.set("test", set.test); }
    $("#use-data").href = `/studio/train?${q2}`;
  };
  $("#bundled").addEventListener("change", () => { current = $("#bundled").value || null; show(); });
  for (const id of ["#task", "#text-column", "#label-column"]) $(id).addEventListener("change", show);
  $("#upload").addEventListener("change", async () => {
    const f = $("#upload").files[0];
    if (!f) return;
    try {
      const up = await api("POST", `/v1/studio/uploads?name=${encodeURIComponent(f.name)}`, undefined, f);
      current = up.path;
      show();
    } catch (e) { showError("#data-error", e.message); $("#data-preview").hidden = true; }
  });
  const [found, form] = await Promise.all([api("GET", "/v1/studio/datasets"), api("GET", "/v1/studio/form")]);
  sets = found;
  for (const s of sets.bundled) $("#bundled").append(el("option", { value: s.train, text: s.name }));
  for (const t of form.tasks) $("#task").append(el("option", { value: t.name, text: t.name }));
}

// --------------------------------------------------------------------------------- Train
function fieldInput(f, known) {
  const id = `f-${f.key}`;
  let input;
  if (f.choices || f.type === "bool" || known) {
    const opts = known || f.choices || ["true", "false"];
    input = el("select", { name: f.key, id });
    input.append(el("option", { value: "", text: f.default === null || f.default === undefined ? "—" : `${f.default} (default)` }));
    for (const o of opts) input.append(el("option", { value: o, text: o }));
  } else {
    input = el("input", { name: f.key, id, placeholder: f.default === null || f.default === undefined ? "" : String(f.default) });
    if (f.key === "train" || f.key === "validation" || f.key === "test") input.setAttribute("list", "data-files");
    if (f.key === "model") input.setAttribute("list", "model-aliases");
  }
  const label = el("label", { title: f.help + (f.range ? ` (${f.range})` : "") }, f.key.replaceAll("_", " "), input);
  return label;
}

async function trainPage() {
  const [form, sets] = await Promise.all([api("GET", "/v1/studio/form"), api("GET", "/v1/studio/datasets")]);
  const files = el("datalist", { id: "data-files" });
  for (const s of sets.bundled) for (const k of ["train", "validation", "test"]) files.append(el("option", { value: s[k] }));
  for (const u of sets.uploads) files.append(el("option", { value: u.path }));
  document.body.append(files);
  const aliases = el("datalist", { id: "model-aliases" });  // an alias, or a local model folder
  for (const m of form.models) aliases.append(el("option", { value: m.name, label: `${m.name}: ${m.languages}` }));
  document.body.append(aliases);
  const known = { task: form.tasks.map((t) => t.name), method: form.methods.map((m) => m.name) };
  for (const [sec, fields] of Object.entries(form.sections)) {
    const box = $(`#sec-${sec}`);
    for (const f of fields) box.append(fieldInput(f, known[f.key]));
  }
  const q = new URLSearchParams(location.search);
  for (const [k, v] of q) { const i = $(`#f-${k}`); if (i) i.value = v; }
  const methodOptions = () => {
    const m = form.methods.find((x) => x.name === ($("#f-method").value || "full"));
    $("#sec-method").replaceChildren(...(m ? m.options.map((f) => fieldInput(f)) : []));
  };
  $("#f-method").addEventListener("change", methodOptions);
  methodOptions();
  const values = () => {
    const out = {};
    for (const i of $("#train-form").querySelectorAll("input[name], select[name]")) if (i.value.trim()) out[i.name] = i.value.trim();
    return out;
  };
  let timer = null;
  const refresh = async () => {
    try {
      const c = await api("POST", "/v1/studio/command", values());
      $("#command").textContent = c.command; $("#yaml").textContent = c.yaml; showError("#train-error", "");
    } catch (e) { showError("#train-error", e.message); }
  };
  $("#train-form").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 300); });
  $("#train-form").addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(refresh, 100); });
  $("#train-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const job = await api("POST", "/v1/studio/jobs", values());
      location.href = `/studio/jobs/${job.id}`;
    } catch (e) { showError("#train-error", e.message); }
  });
  if (q.get("train")) refresh();
}

// ------------------------------------------------------------------------------- Live run
async function jobPage() {
  const id = document.body.dataset.job;
  const loss = chart($("#loss-chart"), "line", [line(T["job.train_loss"], 0), line(T["job.val_loss"], 1)]);
  const metric = chart($("#metric-chart"), "line", []);
  const lr = chart($("#lr-chart"), "line", [line(T["job.lr"], 2)]);
  let points = 0;
  const clear = () => {
    for (const c of [loss, metric, lr]) c.data.datasets.forEach((d) => { d.data = []; });
    metric.data.datasets = []; points = 0;
  };
  const add = (e) => {
    if (e.type === "train") {
      loss.data.datasets[0].data.push({ x: e.step, y: e.loss });
      if (e.learning_rate !== null && e.learning_rate !== undefined) lr.data.datasets[0].data.push({ x: e.step, y: e.learning_rate });
    } else if (e.type === "eval") {
      if (typeof e.loss === "number") loss.data.datasets[1].data.push({ x: e.step, y: e.loss });
      for (const [k, v] of Object.entries(e)) {
        if (NOT_METRICS.has(k) || typeof v !== "number") continue;
        let d = metric.data.datasets.find((x) => x.label === k);
        if (!d) { d = line(k, metric.data.datasets.length); metric.data.datasets.push(d); }
        d.data.push({ x: e.step, y: v });
      }
    }
    points += 1;
    $("#job-points").textContent = String(points);
  };
  let source = null;
  let pending = false;
  const redraw = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; loss.update(); metric.update(); lr.update(); }); } };
  const status = (s) => {
    $("#job-state").textContent = s.state;
    document.body.dataset.state = s.state;
    const p = s.progress;
    if (p) {
      $("#job-progress").value = p.fraction;
      $("#job-steps").textContent = `${p.step} / ${p.total_steps}`;
      $("#job-eta").textContent = ["finished", "stopped", "interrupted", "failed"].includes(s.state) ? "—" : fmtSeconds(p.eta_s);
    }
    showError("#job-error", s.error);
    if (s.output !== undefined) $("#job-output").textContent = s.output;
    $("#stop").hidden = !["running", "queued", "stopping"].includes(s.state);
    $("#resume").hidden = !["stopped", "interrupted", "failed"].includes(s.state);
  };
  const open = () => {
    clear();
    source = new EventSource(`/v1/studio/jobs/${id}/events`);
    source.addEventListener("log", (m) => { add(JSON.parse(m.data)); redraw(); });
    source.addEventListener("reset", () => { clear(); redraw(); });
    source.addEventListener("status", (m) => status(JSON.parse(m.data)));
    source.addEventListener("end", async () => {
      source.close();
      const job = await api("GET", "/v1/studio/jobs").then((js) => js.find((j) => j.id === id));
      if (job && job.state === "finished") { const a = $("#open-run"); a.href = `/studio/runs/${job.run}/report`; a.hidden = false; }
    });
  };
  $("#stop").addEventListener("click", async () => {
    try { status(Object.assign(await api("POST", `/v1/studio/jobs/${id}/stop`), {})); } catch (e) { showError("#job-error", e.message); }
  });
  $("#resume").addEventListener("click", async () => {
    try { await api("POST", `/v1/studio/jobs/${id}/resume`); open(); } catch (e) { showError("#job-error", e.message); }
  });
  open();
}

// ---------------------------------------------------------------------------------- Runs
async function runsPage() {
  const [jobs, runs] = await Promise.all([api("GET", "/v1/studio/jobs"), api("GET", "/v1/studio/runs")]);
  $("#jobs tbody").replaceChildren(...jobs.slice().reverse().map((j) => el("tr", {},
    el("td", {}, el("a", { href: `/studio/jobs/${j.id}`, text: j.id })), el("td", { text: j.run }), el("td", { text: j.state }),
    el("td", { text: j.progress ? `${j.progress.step} / ${j.progress.total_steps}` : "" }))));
  let sortKey = "run", asc = true;
  const draw = () => {
    const f = $("#runs-filter").value.toLowerCase();
    const rows = runs.filter((r) => JSON.stringify(r).toLowerCase().includes(f))
      .sort((a, b) => { const x = a[sortKey] ?? "", y = b[sortKey] ?? ""; return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); });
    $("#runs tbody").replaceChildren(...rows.map((r) => el("tr", { "data-run": r.run },
      el("td", {}, el("input", Object.assign({ type: "checkbox", value: r.run, class: "pick" }, r.status === "finished" ? {} : { disabled: "" }))),
      ...["run", "status", "task", "model", "method", "metric"].map((k) => el("td", { text: r[k] ?? "" })),
      el("td", { text: typeof r.value === "number" ? r.value.toFixed(4) : "" }),
      el("td", { text: typeof r.train_seconds === "number" ? r.train_seconds.toFixed(0) : "" }),
      el("td", {}, r.status === "finished" ? el("a", { href: `/studio/runs/${r.run}/report`, text: T["runs.report"] }) : ""))));
    $("#runs-empty").hidden = runs.length > 0;
  };
  document.querySelectorAll("#runs th[data-key]").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.key === "seconds" ? "train_seconds" : th.dataset.key;
    asc = sortKey === k ? !asc : true; sortKey = k; draw();
  }));
  $("#runs-filter").addEventListener("input", draw);
  draw();
  let charts = [];
  $("#compare").addEventListener("click", async () => {
    const picked = [...document.querySelectorAll("input.pick:checked")].map((i) => i.value);
    if (picked.length < 1) return;
    const c = await api("GET", `/v1/studio/compare?${picked.map((r) => `runs=${encodeURIComponent(r)}`).join("&")}`);
    const table = (id, rows) => $(id).replaceChildren(el("tr", {}, el("th"), ...c.runs.map((r) => el("th", { text: r }))),
      ...rows.map(([k, ...vs]) => el("tr", {}, el("th", { text: k }), ...vs.map((v) => el("td", { text: typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : String(v) })))));
    table("#cmp-settings", c.settings);
    table("#cmp-metrics", c.metrics);
    charts.forEach((x) => x.destroy());
    const mc = chart($("#cmp-metric-chart"), "line", []);
    const lc = chart($("#cmp-loss-chart"), "line", []);
    c.runs.forEach((r, i) => {
      const ev = c.logs[r].filter((e) => e.type === "eval");
      const key = ev.length ? Object.keys(ev[0]).find((k) => !NOT_METRICS.has(k) && typeof ev[0][k] === "number") : null;
      const m = line(`${r} · ${key || ""}`, i); m.data = ev.filter((e) => key && e[key] !== undefined).map((e) => ({ x: e.step, y: e[key] })); mc.data.datasets.push(m);
      const l = line(`${r} · ${T["job.train_loss"]}`, i); l.data = c.logs[r].filter((e) => e.type === "train").map((e) => ({ x: e.step, y: e.loss })); lc.data.datasets.push(l);
    });
    mc.update(); lc.update(); charts = [mc, lc];
    $("#comparison").hidden = false;
  });
}

// -------------------------------------------------------------------------------- Try it
function renderPrediction(task, input, p) {
  const box = el("div", { class: "prediction" });
  if (p.probabilities) {
    box.append(el("p", {}, el("strong", { class: "pred-label", text: p.label }), ` ${(p.score * 100).toFixed(1)}%`));
    for (const [k, v] of Object.entries(p.probabilities).sort((a, b) => b[1] - a[1])) {
      box.append(el("div", { class: "bar" }, el("span", { text: k }), el("meter", { min: 0, max: 1, value: v }), el("span", { text: `${(v * 100).toFixed(1)}%` })));
    }
  } else if (p.entities) {
    const text = typeof input === "string" ? input : "";
    const para = el("p", { class: "entities" });
    let at = 0;
    for (const e of p.entities.slice().sort((a, b) => a.start - b.start)) {
      if (e.start >= at && text) { para.append(text.slice(at, e.start)); para.append(el("mark", { title: `${e.type} ${(e.score * 100).toFixed(0)}%`, text: text.slice(e.start, e.end) }, el("sup", { text: e.type }))); at = e.end; }
    }
    para.append(text.slice(at));
    box.append(para);
  } else if (input && typeof input === "object" && typeof p.start === "number") {
    const c = input.context;
    box.append(el("p", { class: "answer" }, c.slice(0, p.start), el("mark", { text: c.slice(p.start, p.end) }), c.slice(p.end)));
  } else if (Array.isArray(p.labels)) {  // multi-label: the labels over their thresholds
    box.append(el("p", {}, ...p.labels.map((l) => el("span", { class: "chip pred-label", text: l }))));
    for (const [k, v] of Object.entries(p.scores || {}).sort((a, b) => b[1] - a[1])) {
      box.append(el("div", { class: "bar" }, el("span", { text: k }), el("meter", { min: 0, max: 1, value: v }), el("span", { text: `${(v * 100).toFixed(1)}%` })));
    }
  } else if (typeof p.generated === "string") {
    box.append(el("p", { class: "pred-label generated", text: p.generated }));
  } else if (typeof p.value === "number") {
    box.append(el("p", { class: "pred-label", text: p.value.toFixed(3) }));
  }
  box.append(el("details", {}, el("summary", { text: "JSON" }), el("pre", { text: JSON.stringify(p, null, 1) })));
  return box;
}

async function tryPage() {
  const runs = (await api("GET", "/v1/studio/runs")).filter((r) => r.status === "finished");
  for (const r of runs) $("#try-run").append(el("option", { value: r.run, text: `${r.run} (${r.task})`, "data-task": r.task }));
  const sync = () => {
    const qa = $("#try-run").selectedOptions[0]?.dataset.task === "question-answering";
    $("#try-qa").hidden = !qa; $("#try-texts").hidden = qa;
  };
  $("#try-run").addEventListener("change", sync); sync();
  $("#predict").addEventListener("click", async () => {
    const opt = $("#try-run").selectedOptions[0];
    if (!opt) return;
    const qa = opt.dataset.task === "question-answering";
    const inputs = qa ? [{ question: $("#try-question").value, context: $("#try-context").value }]
      : $("#try-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
    try {
      const r = await api("POST", "/v1/studio/predict", { run: opt.value, inputs });
      showError("#try-error", "");
      $("#try-results").replaceChildren(...r.predictions.map((p, i) => el("div", {}, el("h3", { text: qa ? inputs[i].question : inputs[i] }), renderPrediction(r.task, inputs[i], p))));
      $("#try-results").hidden = false;
    } catch (e) { showError("#try-error", e.message); }
  });
}

// ------------------------------------------------------------------------- Export and serve
async function exportPage() {
  const runs = (await api("GET", "/v1/studio/runs")).filter((r) => r.status === "finished");
  for (const sel of ["#export-run", "#serve-run"]) for (const r of runs) $(sel).append(el("option", { value: r.run, text: `${r.run} (${r.task})` }));
  $("#export").addEventListener("click", async () => {
    const body = { run: $("#export-run").value, format: $("#export-format").value, quantize: $("#export-quantize").value === "int8" };
    if ($("#export-prune").value) { body.prune = $("#export-prune").value; body.sparsity = Number($("#export-sparsity").value || "0.25"); }
    try {
      const job = await api("POST", "/v1/studio/exports", body);
      showError("#export-error", "");
      const note = $("#export-job"); note.hidden = false;
      note.replaceChildren(el("a", { href: `/studio/jobs/${job.id}`, text: job.title }), ` · ${job.state}`);
      const name = job.run;
      for (;;) {
        await new Promise((ok) => setTimeout(ok, 1000));
        const j = (await api("GET", "/v1/studio/jobs")).find((x) => x.id === job.id);
        note.lastChild.textContent = ` · ${j.state}`;
        if (j.state !== "finished") document.body.dataset.exportState = j.state;
        if (j.state === "finished") {
          const rec = await api("GET", `/v1/studio/exports/${encodeURIComponent(name)}`);
          const rows = Object.entries(rec).filter(([k]) => !["files", "machine"].includes(k));
          $("#export-table").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }))));
          $("#export-record").hidden = false;
          document.body.dataset.exportState = "finished";  // once its record is on the page
          break;
        }
        if (["failed", "stopped", "interrupted", "cancelled"].includes(j.state)) { showError("#export-error", j.error || j.state); break; }
      }
    } catch (e) { showError("#export-error", e.message); }
  });
  const drawServers = async () => {
    const list = await api("GET", "/v1/studio/serve");
    $("#servers tbody").replaceChildren(...list.map((s) => el("tr", { "data-run": s.run },
      el("td", { text: s.run }), el("td", {}, el("a", { href: `${s.url}/docs`, text: s.url })),
      el("td", { class: "serve-state", text: s.ready ? "ready" : s.running ? "loading" : "stopped" }),
      el("td", {}, el("pre", { text: s.curl })),
      el("td", {}, el("button", { type: "button", text: T["serve.stop"], onclick: async () => { await api("POST", `/v1/studio/serve/${encodeURIComponent(s.run)}/stop`); drawServers(); } })))));
    if (list.some((s) => s.running && !s.ready)) setTimeout(drawServers, 1000);
  };
  $("#serve").addEventListener("click", async () => {
    try { await api("POST", "/v1/studio/serve", { run: $("#serve-run").value }); showError("#serve-error", ""); drawServers(); } catch (e) { showError("#serve-error", e.message); }
  });
  drawServers();
}

// ---------------------------------------------------------------------------------- Chat
async function chatPage() {
  const log = $("#chat-log");
  $("#chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const message = $("#chat-input").value.trim();
    if (!message) return;
    log.append(el("div", { class: "msg user", text: message }));
    $("#chat-input").value = "";
    try {
      const r = await api("POST", "/v1/studio/chat", { message });
      showError("#chat-error", "");
      const top = r.candidates.map((c) => `${c.function} ${(c.probability * 100).toFixed(0)}%`).join(", ");
      const bot = el("div", { class: "msg bot" });
      if (r.unsure) {
        bot.append(el("strong", { class: "chat-function", text: T["chat.unsure"] }), el("div", { class: "why", text: `${r.reason}: ${top}` }));
      } else {
        bot.append(el("div", {}, `${T["chat.picked"]} `, el("strong", { class: "chat-function", text: r.function }), ` (${(r.confidence * 100).toFixed(0)}%)`),
          el("div", { class: "why", text: `${JSON.stringify(r.arguments)} · ${top}` }),
          el("pre", { text: JSON.stringify(r.result, null, 1) }));
      }
      log.append(bot);
    } catch (e) { showError("#chat-error", e.message); }
  });
}

const PAGES = { data: dataPage, train: trainPage, runs: runsPage, try: tryPage, export: exportPage, chat: chatPage };
const page = document.body.dataset.page;
const start = document.body.dataset.job ? jobPage : PAGES[page];
// body[data-ready] once the page has loaded what it shows (or said why it could not)
const ready = () => { document.body.dataset.ready = "1"; };
if (start) start().catch((e) => { const m = el("p", { class: "error", id: "page-error", text: e.message }); $("main").prepend(m); }).finally(ready);
else ready();
