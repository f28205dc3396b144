// ash dashboard views: the study state the page keeps (a whole view, then deltas merged into it)
// and how each part is drawn. Plain JS, no imports: the page loads it as a module, and
// report.html inlines it (with plotly.js and the data) so a finished study looks the same
// offline. Charts are plotly.js (the global `Plotly`, vendored in static/plotly.min.js).

const POINTS_CAP = 2000;
const TIMELINE_CAP = 1500;
const PALETTE = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725", "#f89540", "#cc4778"];
const CONFIG = { displaylogo: false, responsive: true };
// SVG draws a few thousand points faster than WebGL starts (and a browser without a GPU emulates
// WebGL slowly); beyond that, WebGL.
const GL_FROM = 5000;
const scatterType = (n) => (n >= GL_FROM ? "scattergl" : "scatter");

export function newState() {
  return {
    head: {}, status: {}, rungs: [], series: [], points: [], trials: new Map(),
    segments: [], running: [], workers: [], errors: [], importance: null, density: null, seq: -1,
    dirty: new Set(["all"]), param: null, timings: {}, chartTimer: null,
    sent: null, latency: { tables: [], charts: [] }, visible: null,
    msgAt: 0, chartsSinceMsg: 0, parcoords: { on: false, seq: null },
  };
}

// Merge a message of the server (kind "full" or "delta") into the state.
export function applyMessage(st, msg) {
  const full = msg.kind === "full";
  if (full) {
    const { param, timings, chartTimer, latency, visible, parcoords } = st;
    Object.assign(st, newState(), { param, timings, chartTimer, latency, visible, parcoords });
  } else if (msg.seq <= st.seq) {
    return;
  }
  st.seq = msg.seq;
  if (!full) {  // the charts make way for the deltas (scheduleCharts)
    st.msgAt = performance.now();
    st.chartsSinceMsg = 0;
  }
  st.sent = msg.sent || null;  // when the server sent it (ms since the epoch): update latency
  st.head = {
    study: msg.study, metric: msg.metric, mode: msg.mode, algorithm: msg.algorithm,
    eta: msg.eta, clock: msg.clock, source: msg.source, params: msg.params || [],
  };
  st.status = msg.status;
  st.rungs = msg.rungs;
  st.running = msg.running || [];
  st.workers = msg.workers || [];
  const dirty = st.dirty;
  dirty.add("status").add("rungs").add("workers").add("timeline");
  if (full || msg.series.length || msg.points.length) {
    st.series.push(...msg.series);
    pushCapped(st.points, msg.points, POINTS_CAP);
    dirty.add("best");
  }
  if (full || msg.trials.length || (msg.drop && msg.drop.length)) {
    for (const t of msg.trials) st.trials.set(t.id, t);
    for (const id of msg.drop || []) st.trials.delete(id);
    dirty.add("curves").add("params");
  }
  pushCapped(st.segments, msg.segments || [], TIMELINE_CAP);
  if (msg.errors && msg.errors.length) {
    st.errors.push(...msg.errors);
    dirty.add("errors");
  }
  if (full) dirty.add("errors");
  if ("density" in msg) {
    st.density = msg.density;
    dirty.add("best");
  }
  if ("importance" in msg) {
    st.importance = msg.importance;
    dirty.add("importance").add("params");
  }
}

function pushCapped(arr, items, cap) {
  for (const x of items) arr.push(x);
  if (arr.length > cap) arr.splice(0, arr.length - cap);
}

// -- formatting ---------------------------------------------------------------------------

export function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function seconds(t) {
  if (t === null || t === undefined) return "–";
  if (t < 120) return `${t.toFixed(1)} s`;
  if (t < 7200) return `${(t / 60).toFixed(1)} min`;
  return `${(t / 3600).toFixed(2)} h`;
}

function colour(rung, top) {
  return PALETTE[Math.min(PALETTE.length - 1, Math.round((rung / Math.max(1, top)) * 4))];
}

function layout(extra) {
  return Object.assign({
    margin: { l: 60, r: 20, t: 30, b: 45 }, height: 330, font: { size: 11 },
    paper_bgcolor: "white", plot_bgcolor: "white", showlegend: true,
    legend: { orientation: "h", y: -0.2 }, uirevision: "keep",
  }, extra);
}

function timeAxis(st) {
  return st.head.clock === "order" ? "result # (no times: pass the trace for seconds)" : "seconds";
}

// -- sections -----------------------------------------------------------------------------

function renderStatus(st, root) {
  const s = st.status;
  const h = st.head;
  root.querySelector("#title").textContent = h.study || "study";
  root.querySelector("#subtitle").textContent =
    `${h.metric} (${h.mode})${h.algorithm ? " · " + h.algorithm : ""}` +
    `${h.eta ? " · eta " + fmt(h.eta) : ""} · ${h.source || ""}`;
  const set = (id, v) => {
    const el = root.querySelector("#" + id);
    el.textContent = v;
  };
  set("st-trials", s.max_trials ? `${s.trials} / ${s.max_trials}` : s.trials);
  set("st-results", s.results);
  set("st-running", s.running);
  set("st-failed", s.failed + (s.lost ? ` (+${s.lost} lost)` : ""));
  set("st-workers", s.workers);
  set("st-elapsed", h.clock === "order" ? "–" : seconds(s.t));
  set("st-best", s.best ? `${fmt(s.best.value)} (trial ${s.best.trial} @ ${fmt(s.best.resource)})` : "–");
  root.querySelector("#st-results").dataset.n = s.results;
  const badge = root.querySelector("#state");
  badge.textContent = s.error ? "error" : s.finished ? "finished" : "live";
  badge.className = "badge " + (s.error ? "bad" : s.finished ? "done" : "live");
  root.querySelector("#error").textContent = s.error || "";
  root.querySelector("#shown").textContent = st.trials.size < s.trials
    ? `The server sends the page ${count(st.trials.size)} of ${count(s.trials)} trials, those that went highest first; ` +
      "each chart says how many of them it draws."
    : "";
}

// Replace an element's content only when it changed (no new nodes, five times a second, for
// the same rows).
function setHTML(el, html) {
  if (el.ashHTML !== html) {
    el.innerHTML = html;
    el.ashHTML = html;
  }
}

// A table body's rows ({data: {k: v} for data-k attributes, cells: [text, or {html, cls}]}),
// changed in place: only the cells whose content changed are touched, a text cell by its text
// node. Rebuilding a table five times a second makes thousands of nodes of garbage a second,
// which Chromium keeps (hundreds of MB) until it chooses to collect.
function setRows(tbody, rows) {
  while (tbody.rows.length > rows.length) tbody.deleteRow(-1);
  rows.forEach((row, i) => {
    const tr = tbody.rows[i] || tbody.insertRow();
    for (const [k, v] of Object.entries(row.data || {})) {
      if (tr.dataset[k] !== String(v)) tr.dataset[k] = v;
    }
    row.cells.forEach((cell, j) => {
      const td = tr.cells[j] || tr.insertCell();
      if (typeof cell === "object" && cell !== null) {
        if (cell.cls && td.className !== cell.cls) td.className = cell.cls;
        setHTML(td, cell.html);
        return;
      }
      const text = String(cell);
      const node = td.firstChild;
      if (node && node.nodeType === Node.TEXT_NODE && !node.nextSibling) {
        if (node.nodeValue !== text) node.nodeValue = text;
      } else {
        td.textContent = text;
      }
    });
  });
}

function count(n) {
  return Number(n).toLocaleString("en-US");
}

// "showing k of n trials" on a chart: what it draws, of the study's trials
function shownNote(st, root, id, k, how) {
  const n = st.status.trials || 0;
  root.querySelector("#" + id).textContent = k < n
    ? `showing ${count(k)} of ${count(n)} trials (${how})` : `all ${count(n)} trials`;
}

function renderRungs(st, root) {
  const max = Math.max(1, ...st.rungs.map((r) => r.results));
  setRows(root.querySelector("#rungs tbody"), st.rungs.map((r) => ({
    data: { bracket: r.bracket, rung: r.rung },
    cells: [r.bracket, r.rung, fmt(r.resource),
      { html: `<div class="bar" style="width:${(100 * r.results) / max}%"></div><span>${r.results}</span>`, cls: "count" },
      r.promoted, r.failed, fmt(r.threshold), fmt(r.best)],
  })));
}

// A large study: every result as counts on a grid (the server's, st.density) under its latest
// RECENT results as points; the value axis is the grid's (one diverged trial does not squash it).
const RECENT = 300;

function renderBest(st, root) {
  const top = Math.max(1, ...st.rungs.map((r) => r.rung));
  const d = st.density;
  const points = d ? st.points.slice(-RECENT) : st.points;
  const byRung = new Map();
  for (const [t, v, rung] of points) {
    if (!byRung.has(rung)) byRung.set(rung, { x: [], y: [] });
    byRung.get(rung).x.push(t);
    byRung.get(rung).y.push(v);
  }
  const type = scatterType(points.length);
  const traces = [];
  if (d) {
    traces.push({
      type: "heatmap", name: "all results", x: d.x, y: d.y, showscale: false, hoverongaps: false,
      z: d.z.map((row) => row.map((c) => (c ? Math.log10(1 + c) : null))),
      text: d.z, hovertemplate: "%{text} results<extra></extra>",
      colorscale: [[0, "#e8e8e8"], [1, "#4d4d4d"]],
    });
  }
  traces.push(...[...byRung.entries()].sort((a, b) => a[0] - b[0]).map(([rung, p]) => ({
    type, mode: "markers", name: `rung ${rung}`, x: p.x, y: p.y,
    marker: { size: 4, color: colour(rung, top), opacity: 0.45 },
  })));
  const s = st.series;
  if (s.length) {
    traces.push({
      type: "scatter", mode: "lines+markers", name: "best so far", line: { shape: "hv", color: "#d62728", width: 2 },
      x: [...s.map((p) => p[0]), st.head.clock === "order" ? s[s.length - 1][0] : Math.max(st.status.t, s[s.length - 1][0])],
      y: [...s.map((p) => p[1]), s[s.length - 1][1]],
      text: [...s.map((p) => `trial ${p[2]} @ ${fmt(p[3])}`), "now"], marker: { size: 5 },
    });
  }
  const yaxis = { title: { text: st.head.metric } };
  if (d) {  // the grid's values and the best so far (at one end of them by definition)
    const ys = s.map((p) => p[1]).filter((y) => Number.isFinite(y) && (!d.log || y > 0));
    const lo = Math.min(d.y[0], ...ys);
    const hi = Math.max(d.y[d.y.length - 1], ...ys);
    const pad = (d.log ? Math.log10(hi / lo) : hi - lo) * 0.03;
    Object.assign(yaxis, d.log
      ? { type: "log", range: [Math.log10(lo) - pad, Math.log10(hi) + pad] }
      : { range: [lo - pad, hi + pad] });
  }
  Plotly.react(root.querySelector("#plot-best"), traces, layout({
    xaxis: { title: { text: timeAxis(st) } }, yaxis,
  }), CONFIG);
  root.querySelector("#best-note").textContent = d
    ? `All ${count(d.n)} successful results as counts (grey, darker: more), the last ${count(points.length)} as points` +
      (d.outside ? `; ${count(d.outside)} results beyond the value axis (the middle 98% of values) not drawn` : "") + "."
    : "";
}

function curveOf(t) {
  const pts = [];
  for (let i = 0; i < t.x.length; i++) if (t.y[i] !== null) pts.push([t.x[i], t.y[i]]);
  for (const p of t.r || []) pts.push(p);
  pts.sort((a, b) => a[0] - b[0]);
  return pts;
}

// The trials that went highest, best first at each rung (those with no value last): the ones a
// user looks at when there are more than a chart can show.
function ranked(st) {
  const sign = st.head.mode === "max" ? -1 : 1;
  return [...st.trials.values()].sort((a, b) => b.top - a.top ||
    (a.v === null) - (b.v === null) || sign * ((a.v ?? 0) - (b.v ?? 0)) || a.id - b.id);
}

// Learning curves: at most CURVES_DRAWN of the trials the page has (a few hundred lines are
// already a thicket; more cost drawing time and memory and show nothing more).
const CURVES_DRAWN = 500;

function renderCurves(st, root) {
  const groups = new Map();
  let top = 0;
  let reports = false;
  const drawn = ranked(st).slice(0, CURVES_DRAWN);
  for (const t of drawn) top = Math.max(top, t.top);
  for (const t of drawn) {
    const pts = curveOf(t);
    if (!pts.length) continue;
    if (t.r && t.r.length) reports = true;
    if (!groups.has(t.top)) groups.set(t.top, { x: [], y: [], text: [] });
    const g = groups.get(t.top);
    for (const [x, y] of pts) {
      g.x.push(x); g.y.push(y); g.text.push(`trial ${t.id}`);
    }
    g.x.push(null); g.y.push(null); g.text.push("");
  }
  const n = [...groups.values()].reduce((k, g) => k + g.x.length, 0);
  const traces = [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([rung, g]) => ({
    type: "scatter", mode: n > 1500 ? "lines" : "lines+markers", name: `reached rung ${rung}`, x: g.x, y: g.y,
    text: g.text, hoverinfo: "text+x+y", connectgaps: false,
    line: { width: 1, color: colour(rung, top) }, marker: { size: 3, color: colour(rung, top) },
    opacity: 0.35 + (0.6 * rung) / Math.max(1, top),
  }));
  Plotly.react(root.querySelector("#plot-curves"), traces, layout({
    xaxis: { title: { text: reports ? "resource (with per-step reports)" : "resource" }, type: "log" },
    yaxis: { title: { text: st.head.metric } },
  }), CONFIG);
  shownNote(st, root, "curves-note", drawn.length, "those that went highest, best first");
}

function paramKind(st, name) {
  let numeric = true; let lo = Infinity; let hi = -Infinity;
  for (const t of st.trials.values()) {
    const v = t.c[name];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number") { numeric = false; break; }
    lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  return { numeric, log: numeric && lo > 0 && hi / lo >= 100 };
}

function renderImportance(st, root) {
  const el = root.querySelector("#plot-importance");
  const imp = st.importance;
  const note = root.querySelector("#importance-note");
  if (!imp) {
    note.textContent = "Not enough results yet (needs 8 or more with configs).";
    Plotly.react(el, [], layout({ height: 200 }), CONFIG);
    return;
  }
  const items = Object.entries(imp.values).sort((a, b) => a[1] - b[1]);
  note.textContent = `Share of the variance of ${st.head.metric} at resource ${fmt(imp.resource)} ` +
    `that each parameter explains alone (fANOVA first-order, random forest on ${imp.n} trials; the rest is interactions and noise).`;
  Plotly.react(el, [{
    type: "bar", orientation: "h", x: items.map((i) => i[1]), y: items.map((i) => i[0]),
    marker: { color: "#21918c" }, text: items.map((i) => (100 * i[1]).toFixed(1) + "%"), textposition: "auto",
  }], layout({ height: 60 + 28 * items.length, showlegend: false, margin: { l: 120, r: 20, t: 10, b: 30 },
    xaxis: { range: [0, 1], tickformat: ".0%" } }), CONFIG);
}

function renderScatter(st, root) {
  const sel = root.querySelector("#param");
  const params = st.head.params;
  if (!params.length) return;
  const ranked = st.importance ? Object.entries(st.importance.values).sort((a, b) => b[1] - a[1]).map((e) => e[0]) : params;
  if (!st.param || !params.includes(st.param)) st.param = ranked[0] || params[0];
  const opts = params.map((p) => `<option${p === st.param ? " selected" : ""}>${esc(p)}</option>`).join("");
  if (sel.innerHTML !== opts) sel.innerHTML = opts;
  const name = st.param;
  const kind = paramKind(st, name);
  let top = 0;
  for (const t of st.trials.values()) top = Math.max(top, t.top);
  const groups = new Map();
  for (const t of st.trials.values()) {
    if (t.v === null || t.c[name] === undefined) continue;
    if (!groups.has(t.top)) groups.set(t.top, { x: [], y: [], text: [] });
    const g = groups.get(t.top);
    g.x.push(kind.numeric ? t.c[name] : String(t.c[name])); g.y.push(t.v); g.text.push(`trial ${t.id}`);
  }
  const type = scatterType(st.trials.size);
  const traces = [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([rung, g]) => ({
    type, mode: "markers", name: `reached rung ${rung}`, x: g.x, y: g.y, text: g.text,
    marker: { size: 6, color: colour(rung, top), opacity: 0.75 },
  }));
  Plotly.react(root.querySelector("#plot-scatter"), traces, layout({
    xaxis: { title: { text: name }, type: kind.log ? "log" : kind.numeric ? "linear" : "category" },
    yaxis: { title: { text: `${st.head.metric} at the trial's highest rung` } },
  }), CONFIG);
  let k = 0;
  for (const g of groups.values()) k += g.x.length;
  shownNote(st, root, "scatter-note", k, "those that went highest first");
}

// Parallel coordinates: the PARCOORDS_CAP trials that went highest, best first (more lines
// only cover each other, and each costs drawing time). plotly.js draws them with WebGL, which a
// browser without a GPU emulates slowly and at a cost in memory (hundreds of MB in headless
// Chromium), so they are drawn when asked for (the button), and again only when asked.
const PARCOORDS_CAP = 500;

function renderParcoords(st, root) {
  const el = root.querySelector("#plot-parcoords");
  const button = root.querySelector("#parcoords-draw");
  const note = root.querySelector("#parcoords-note");
  if (!st.parcoords.on) {
    button.textContent = "Draw parallel coordinates";
    note.textContent = "Drawn when asked (WebGL: costly in a browser without a GPU).";
    return;
  }
  const trials = ranked(st).filter((t) => t.v !== null).slice(0, PARCOORDS_CAP);
  st.parcoords.seq = st.seq;
  button.textContent = "Redraw with the latest trials";
  if (!trials.length || !st.head.params.length) {
    Plotly.react(el, [], layout({ height: 200 }), CONFIG);
    note.textContent = "No trials with a value yet.";
    return;
  }
  const dims = st.head.params.map((name) => {
    const kind = paramKind(st, name);
    if (kind.numeric) {
      return {
        label: kind.log ? `log10 ${name}` : name,
        values: trials.map((t) => { const v = t.c[name]; return v === undefined ? NaN : kind.log ? Math.log10(v) : v; }),
      };
    }
    const cats = [...new Set(trials.map((t) => String(t.c[name])))].sort();
    return {
      label: name, values: trials.map((t) => cats.indexOf(String(t.c[name]))),
      tickvals: cats.map((_, i) => i), ticktext: cats,
    };
  });
  const values = trials.map((t) => t.v);
  dims.push({ label: st.head.metric, values });
  Plotly.react(el, [{
    type: "parcoords", dimensions: dims,
    line: { color: values, colorscale: "Viridis", reversescale: st.head.mode === "min", showscale: true },
  }], layout({ height: 360, margin: { l: 60, r: 60, t: 50, b: 20 } }), CONFIG);
  shownNote(st, root, "parcoords-note", trials.length, "those that went highest, best first");
  note.textContent += ` · as of ${count(st.status.results)} results`;
}

function renderTimeline(st, root) {
  const el = root.querySelector("#plot-timeline");
  const segs = st.segments.concat(st.running);
  const top = Math.max(1, ...st.rungs.map((r) => r.rung));
  const groups = new Map();
  const key = (s) => (s[5] === "ok" ? `rung ${s[4]}` : s[5]);
  for (const s of segs) {
    const k = key(s);
    if (!groups.has(k)) groups.set(k, { y: [], base: [], x: [], text: [], rung: s[4], kind: s[5] });
    const g = groups.get(k);
    g.y.push(s[0]); g.base.push(s[1]); g.x.push(Math.max(s[2] - s[1], 1e-3));
    g.text.push(`trial ${s[3]} rung ${s[4]} ${s[5]}`);
  }
  const colours = { failed: "#d62728", lost: "#111111", running: "#aaaaaa" };
  const traces = [...groups.entries()].sort().map(([k, g]) => ({
    type: "bar", orientation: "h", name: k, y: g.y, base: g.base, x: g.x, text: g.text,
    hoverinfo: "text", textposition: "none",
    marker: { color: g.kind === "ok" ? colour(g.rung, top) : colours[g.kind] || "#888", line: { width: 0 } },
  }));
  const workers = new Set(segs.map((s) => s[0]));
  Plotly.react(el, traces, layout({
    barmode: "overlay", height: Math.min(700, 120 + 22 * workers.size),
    xaxis: { title: { text: "seconds" } }, yaxis: { type: "category", automargin: true },
  }), CONFIG);
  root.querySelector("#timeline-note").textContent = st.head.clock === "order"
    ? "No times in a results.json alone: give its trace (--trace) for the timeline."
    : `The last ${st.segments.length} jobs and those running; colour: the rung trained (promotions are rungs above 0), failed, lost.`;
}

function renderWorkers(st, root) {
  setRows(root.querySelector("#workers tbody"), st.workers.map((w) => ({
    cells: [w.id, w.threads ?? "auto", w.slots ?? "–", w.devices ? JSON.stringify(w.devices) : "–",
      w.running, w.done, w.lost, w.last === null ? "–" : fmt(w.last)],
  })));
}

function renderErrors(st, root) {
  const el = root.querySelector("#errors");
  if (!st.errors.length) {
    el.innerHTML = "<p class=\"muted\">No errors.</p>";
    return;
  }
  el.innerHTML = st.errors.map((e) => {
    const first = String(e.error).split("\n").filter((l) => l.trim()).pop() || "";
    const who = e.trial === null || e.trial === undefined || e.trial < 0 ? "worker" : `trial ${esc(e.trial)}`;
    return `<details class="err"><summary>${who}${e.t === null || e.t === undefined ? "" : " at " + seconds(e.t)}: ${esc(first)}</summary><pre>${esc(e.error)}</pre></details>`;
  }).join("");
}

const SECTIONS = {
  status: renderStatus, rungs: renderRungs, workers: renderWorkers, errors: renderErrors,
  best: renderBest, curves: renderCurves, importance: renderImportance,
  params: renderScatter, parcoords: renderParcoords, timeline: renderTimeline,
};
// Charts (plotly) are drawn after the tables, one per task so the page paints in between. While
// deltas arrive (five a second at most), one chart is drawn right after each delta's tables, so
// the next delta finds the page idle and its counts are drawn at once; a chart is redrawn at
// most every two seconds, and a chart that took c ms waits 4c ms before it is drawn again. When no
// delta has come for QUIET_MS, the charts left are drawn one after another.
const CHARTS = ["best", "curves", "importance", "params", "timeline", "parcoords"];
const CHART_EL = {
  best: "plot-best", curves: "plot-curves", importance: "plot-importance", params: "plot-scatter",
  timeline: "plot-timeline", parcoords: "plot-parcoords",
};
const SPACING = 4;
const CHART_EVERY_MS = 2000;
const QUIET_MS = 250;

// Draw what changed (everything the first time): the tables now, the charts soon.
// Milliseconds per section are kept in st.timings (bench/dashboard reads them).
export function render(st, root) {
  if (st.dirty.has("all")) {
    st.dirty.delete("all");
    for (const name of Object.keys(SECTIONS)) st.dirty.add(name);
  }
  const t0 = performance.now();
  for (const name of Object.keys(SECTIONS)) {
    if (!CHARTS.includes(name) && st.dirty.has(name)) draw(st, root, name);
  }
  st.timings.tables = { seq: st.seq, ms: performance.now() - t0 };
  if (st.sent) pushCapped(st.latency.tables, [Date.now() - st.sent], 1000);
  root.dataset.seq = st.seq;
  scheduleCharts(st, root);
}

function draw(st, root, name) {
  const t = performance.now();
  st.dirty.delete(name);
  SECTIONS[name](st, root);
  st.timings[name] = { seq: st.seq, ms: performance.now() - t, at: performance.now() };
}

function scheduleCharts(st, root) {
  if (st.chartTimer) {
    clearTimeout(st.chartTimer);
    st.chartTimer = null;
  }
  if (typeof Plotly === "undefined") {  // still loading: the page calls render again when it is there
    return;
  }
  const now = performance.now();
  const live = !(st.status && st.status.finished);
  // while deltas arrive: one chart per delta, then wait for the next one (or for quiet)
  const gate = st.chartsSinceMsg >= 1 && now - st.msgAt < QUIET_MS ? st.msgAt + QUIET_MS : 0;
  let wait = Infinity;
  for (const name of CHARTS) {
    if (!st.dirty.has(name)) continue;
    if (st.visible && !st.visible.has(CHART_EL[name])) continue;  // drawn when scrolled to
    const last = st.timings[name];
    let ready = last ? last.at + SPACING * last.ms : 0;
    if (last && live) ready = Math.max(ready, last.at + CHART_EVERY_MS);
    ready = Math.max(ready, gate);
    if (ready <= now) {
      st.chartTimer = setTimeout(() => {
        st.chartTimer = null;
        st.chartsSinceMsg += 1;
        draw(st, root, name);
        if (st.sent && live) pushCapped(st.latency.charts, [Date.now() - st.sent], 1000);
        root.dataset.charts = st.seq;
        scheduleCharts(st, root);
      }, 0);
      return;
    }
    wait = Math.min(wait, ready - now);
  }
  if (wait < Infinity) {
    st.chartTimer = setTimeout(() => { st.chartTimer = null; scheduleCharts(st, root); }, wait);
  } else {
    root.dataset.drawn = st.seq;  // everything drawn up to this message
    st.timings.drawnAt = performance.now();
  }
}

// Wire the page's controls; charts off screen are left until they are scrolled into view.
export function bindControls(st, root, redraw) {
  if (typeof IntersectionObserver !== "undefined") {
    st.visible = new Set();
    const seen = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) st.visible.add(e.target.id);
        else st.visible.delete(e.target.id);
      }
      redraw();
    });
    for (const id of Object.values(CHART_EL)) seen.observe(root.querySelector("#" + id));
  }
  root.querySelector("#param").addEventListener("change", (ev) => {
    st.param = ev.target.value;
    st.dirty.add("params");
    delete st.timings.params;  // the user asked: now, not when its turn comes
    redraw();
  });
  root.querySelector("#parcoords-draw").addEventListener("click", () => {
    st.parcoords.on = true;
    st.dirty.add("parcoords");
    delete st.timings.parcoords;
    redraw();
  });
}

export const STUDY_HTML = `
<header><h1><span id="title"></span> <span id="state" class="badge"></span></h1>
<p id="subtitle" class="muted"></p><p id="error" class="bad-text"></p></header>
<section class="cards">
 <div><b id="st-trials">–</b><span>trials</span></div><div><b id="st-results">–</b><span>results</span></div>
 <div><b id="st-running">–</b><span>running</span></div><div><b id="st-failed">–</b><span>failed</span></div>
 <div><b id="st-workers">–</b><span>workers</span></div><div><b id="st-elapsed">–</b><span>elapsed</span></div>
 <div class="wide"><b id="st-best">–</b><span>best (highest resource first)</span></div>
</section>
<p class="muted"><span id="shown"></span> <span id="download"></span></p>
<div class="grid">
 <section><h2>Rung ladder</h2><table id="rungs"><thead><tr><th>bracket</th><th>rung</th><th>resource</th>
 <th>results</th><th>promoted</th><th>failed</th><th>threshold (top 1/eta)</th><th>best</th></tr></thead><tbody></tbody></table></section>
 <section><h2>Best so far</h2><p id="best-note" class="muted"></p><div id="plot-best" class="plot"></div></section>
 <section><h2>Learning curves <small>(colour: the highest rung reached)</small></h2><p id="curves-note" class="muted"></p><div id="plot-curves" class="plot"></div></section>
 <section><h2>Hyperparameter importance</h2><p id="importance-note" class="muted"></p><div id="plot-importance"></div></section>
 <section><h2>Parameter vs metric <select id="param"></select></h2><p id="scatter-note" class="muted"></p><div id="plot-scatter" class="plot"></div></section>
 <section><h2>Parallel coordinates <button id="parcoords-draw" type="button">Draw parallel coordinates</button></h2><p id="parcoords-note" class="muted"></p><div id="plot-parcoords" class="plot"></div></section>
 <section class="full"><h2>Workers and jobs</h2><p id="timeline-note" class="muted"></p><div id="plot-timeline" class="plot"></div></section>
 <section><h2>Workers</h2><table id="workers"><thead><tr><th>worker</th><th>threads</th><th>slots</th><th>devices</th>
 <th>running</th><th>done</th><th>lost</th><th>last seen (s)</th></tr></thead><tbody></tbody></table></section>
 <section><h2>Errors</h2><div id="errors"></div></section>
</div>`;
