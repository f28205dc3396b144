// ash dashboard page: the study list, or one study kept current by Server-Sent Events (a whole
// view first, then deltas at most five times a second), drawn by views.js.
import { STUDY_HTML, applyMessage, bindControls, fmt, newState, render } from "./views.js";

const app = document.getElementById("app");

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function showList(studies) {
  document.title = "ash dashboard";
  app.innerHTML = `<h1>ash studies</h1><table id="studies"><thead><tr><th>study</th><th>state</th>
    <th>trials</th><th>results</th><th>best</th><th>source</th></tr></thead><tbody>${studies.map((s) => `
    <tr><td><a href="#/study/${encodeURIComponent(s.id)}">${esc(s.study || s.id)}</a></td>
    <td>${s.status.error ? `<span class="bad-text">error: ${esc(s.status.error)}</span>` : s.status.finished ? "finished" : "live"}</td><td>${s.status.trials}</td><td>${s.status.results}</td>
    <td>${s.status.best ? fmt(s.status.best.value) : "–"}</td><td>${esc(s.source)}</td></tr>`).join("")}</tbody></table>`;
}

let source = null;

// plotly.js (4.6 MB) is fetched and parsed once the counts are drawn, not before: parsing it
// takes the page's only thread for a second or more on a slow machine.
let plotlyAsked = false;
let plotlyLoaded = () => {};  // the study shown when it is there: draw its charts

function loadPlotly() {
  if (plotlyAsked || typeof Plotly !== "undefined") return;
  plotlyAsked = true;
  const el = document.createElement("script");
  el.id = "plotly";
  el.src = "/static/plotly.min.js";
  el.addEventListener("load", () => plotlyLoaded(), { once: true });
  requestAnimationFrame(() => setTimeout(() => document.head.append(el), 0));
}

function showStudy(key, several) {
  app.innerHTML = (several ? '<p><a href="#/">← all studies</a></p>' : "") + STUDY_HTML;
  const st = newState();
  window.ashDashboard = st; // for the benchmark and for curious users' consoles
  let queued = false;
  const redraw = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      render(st, app);
      document.title = `${st.head.study || key}: ash`;
    });
  };
  bindControls(st, app, redraw);
  const csv = document.createElement("a");
  csv.href = `/api/study/${encodeURIComponent(key)}/trials.csv`;
  csv.textContent = "Every trial as CSV";
  csv.id = "trials-csv";
  app.querySelector("#download").append(csv);
  plotlyLoaded = () => { st.dirty.add("all"); redraw(); };
  source = new EventSource(`/api/study/${encodeURIComponent(key)}/events`);
  source.onmessage = (ev) => {
    applyMessage(st, JSON.parse(ev.data));
    redraw();
    loadPlotly();
  };
  source.onerror = () => {
    app.querySelector("#error").textContent = "connection to the dashboard lost; retrying…";
  };
  source.onopen = () => {
    app.querySelector("#error").textContent = "";
  };
}

async function route() {
  if (source) { source.close(); source = null; }
  let studies;
  try {
    studies = await getJSON("/api/studies");
  } catch (e) {
    app.innerHTML = `<p class="bad-text">${esc(e.message)}</p>`;
    return;
  }
  const m = location.hash.match(/^#\/study\/(.+)$/);
  if (m) showStudy(decodeURIComponent(m[1]), studies.length > 1);
  else if (studies.length === 1) showStudy(studies[0].id, false);
  else showList(studies);
}

window.addEventListener("hashchange", route);
route();
