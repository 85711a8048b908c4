// The console's live parts: polling for machines and new alarms, the trend chart (SVG), the feedback buttons.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

function fmt(x) { return x === null || x === undefined ? "" : String(Number(Number(x).toPrecision(4))); }
function clock(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

async function post(url) {
  const response = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.status);
  return body;
}

function updateMachines(data) {
  const version = document.getElementById("detector-version");
  if (version) version.textContent = data.version;
  for (const m of data.machines) {
    const row = document.querySelector(`tr[data-machine="${CSS.escape(m.name)}"]`);
    if (row) {
      row.className = "state-" + m.state;
      row.querySelector(".state").innerHTML = `<span class="badge ${m.state}">${m.state}</span>`;
      row.querySelector(".score").textContent = fmt(m.score);
      row.querySelector(".threshold").textContent = fmt(m.threshold);
      row.querySelector(".smoothed").textContent = fmt(m.smoothed);
      row.querySelector(".t").textContent = clock(m.t);
      row.querySelector(".summary").textContent = m.summary || "";
    }
    const trend = document.getElementById("trend");
    if (trend && trend.dataset.machine === m.name) {
      const badge = document.getElementById("machine-state");
      badge.textContent = m.state; badge.className = "badge " + m.state;
      document.getElementById("machine-score").textContent = fmt(m.score);
      document.getElementById("machine-threshold").textContent = fmt(m.threshold);
    }
  }
  if (data.machines.some(m => !document.querySelector(`tr[data-machine="${CSS.escape(m.name)}"]`))
      && document.body.dataset.page === "index") location.reload();  // a new machine: its row from the server
}

async function newAlarms() {
  const box = document.getElementById("alarms");
  if (!box) return;
  const ids = [...box.querySelectorAll("article[data-alarm]")].map(a => Number(a.dataset.alarm));
  const after = ids.length ? Math.max(...ids) : 0;
  const url = `/api/alarms?format=html&after=${after}&machine=${encodeURIComponent(box.dataset.machine || "")}`;
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return;
  const html = (await response.text()).trim();
  if (html) {
    box.insertAdjacentHTML("afterbegin", html);
    const none = document.getElementById("no-alarms");
    if (none) none.remove();
  }
}

function line(points, key, y, cls) {
  const path = document.createElementNS(SVG, "polyline");
  path.setAttribute("points", points.map(p => `${p.x.toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "));
  path.setAttribute("class", cls);
  return path;
}

function text(x, y, content, cls) {
  const t = document.createElementNS(SVG, "text");
  t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("class", cls || "tick");
  t.textContent = content;
  return t;
}

async function drawTrend() {
  const trend = document.getElementById("trend");
  if (!trend) return;
  const svg = document.getElementById("trend-chart");
  const data = await getJSON(`/api/trend?machine=${encodeURIComponent(trend.dataset.machine)}&span=${trend.dataset.span}`);
  const W = 900, H = 260, left = 60, right = 10, top = 10, bottom = 30;
  svg.replaceChildren();
  if (!data.points.length) { svg.appendChild(text(left, H / 2, "no window in this span", "empty")); return; }
  const values = data.points.flatMap(p => [p.score, p.threshold, p.smoothed]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const x = t => left + (t - data.since) / (data.until - data.since) * (W - left - right);
  const y = v => top + (hi - v) / (hi - lo) * (H - top - bottom);
  const points = data.points.map(p => ({ ...p, x: x(p.t) }));
  for (const p of points.filter(p => p.alert)) {
    const band = document.createElementNS(SVG, "rect");
    band.setAttribute("x", p.x - 1.5); band.setAttribute("y", top); band.setAttribute("width", 3);
    band.setAttribute("height", H - top - bottom); band.setAttribute("class", "alert");
    svg.appendChild(band);
  }
  svg.appendChild(line(points, "threshold", y, "threshold"));
  svg.appendChild(line(points, "smoothed", y, "smoothed"));
  svg.appendChild(line(points, "score", y, "score"));
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    svg.appendChild(text(4, y(v) + 4, fmt(v)));
    const t = data.since + (data.until - data.since) * i / 4;
    svg.appendChild(text(x(t) - (i === 4 ? 110 : i ? 55 : 0), H - 8, clock(t).slice(5, 16)));
  }
  trend.dataset.points = points.length;
}

function wire() {
  document.addEventListener("click", async event => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.action) {
      const id = button.dataset.alarm, result = document.getElementById("result-" + id);
      const card = document.getElementById("alarm-" + id);
      card.querySelectorAll("button").forEach(b => { b.disabled = true; });
      result.textContent = "learning...";
      try {
        const done = await post(`/api/alarm/${id}/${button.dataset.action}`);
        result.textContent = done.message;
        card.classList.add("labelled");
        document.getElementById("detector-version").textContent = done.version;
      } catch (error) {
        result.textContent = "failed: " + error.message;
        card.querySelectorAll("button").forEach(b => { b.disabled = false; });
      }
    } else if (button.dataset.span) {
      document.querySelectorAll("button.span").forEach(b => b.classList.toggle("chosen", b === button));
      document.getElementById("trend").dataset.span = button.dataset.span;
      drawTrend();
    } else if (button.id === "undo") {
      const result = document.getElementById("undo-result");
      try {
        const done = await post(`/api/undo/${button.dataset.machine}`);
        result.textContent = done.message;
        document.getElementById("detector-version").textContent = done.version;
      } catch (error) { result.textContent = "failed: " + error.message; }
    }
  });
}

let polling = false;  // one poll at a time: two at once would insert the same new alarm twice

async function poll() {
  if (polling) return;
  polling = true;
  const live = document.getElementById("live");
  try {
    updateMachines(await getJSON("/api/machines"));
    await newAlarms();
    await drawTrend();
    if (live) { live.textContent = "live, " + clock(Date.now() / 1000).slice(11); live.className = "muted"; }
  } catch (error) {
    if (live) { live.textContent = "not updating: " + error.message; live.className = "error"; }
  } finally {
    polling = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "login") return;
  wire();
  poll();
  setInterval(poll, Number(document.body.dataset.poll) || 5000);
});
