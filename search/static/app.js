// audioret search page: query box -> /api/search -> one row per clip with an audio player.
"use strict";

const form = document.getElementById("search-form");
const query = document.getElementById("query");
const topK = document.getElementById("top-k");
const statusLine = document.getElementById("status");
const list = document.getElementById("results");

function fmtDuration(s) {
  if (s === null || s === undefined) return "";
  const m = Math.floor(s / 60), sec = (s - 60 * m).toFixed(1);
  return m ? `${m}:${sec.padStart(4, "0")}` : `${sec} s`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(results) {
  list.replaceChildren();
  const top = results.length ? results[0].score : 1;
  for (const r of results) {
    const li = el("li", "result");
    const head = el("div", "head");
    head.append(el("span", "rank", `#${r.rank}`), el("span", "file", r.file), el("span", "dur", fmtDuration(r.duration)));
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(2, Math.min(100, 100 * r.score / (top || 1)))}%`;
    bar.append(fill);
    const score = el("span", "score", r.score.toFixed(3));
    const row = el("div", "row");
    row.append(bar, score);
    li.append(head, row);
    if (r.audio) {
      const audio = el("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.src = r.audio;
      li.append(audio);
    } else {
      li.append(el("p", "muted", "no audio file recorded for this clip"));
    }
    list.append(li);
  }
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const q = query.value.trim();
  if (!q) { statusLine.textContent = "Type what you want to hear."; return; }
  statusLine.textContent = "searching…";
  const t0 = performance.now();
  try {
    const resp = await fetch(`/api/search?q=${encodeURIComponent(q)}&k=${topK.value}`);
    const data = await resp.json();
    if (!resp.ok) { statusLine.textContent = data.detail || `error ${resp.status}`; list.replaceChildren(); return; }
    const results = data.queries[0].results;
    render(results);
    statusLine.textContent = `${results.length} of ${data.count} clips for “${data.queries[0].query}” in ${Math.round(performance.now() - t0)} ms`;
    history.replaceState(null, "", `?q=${encodeURIComponent(q)}`);
  } catch (err) {
    statusLine.textContent = `search failed: ${err}`;
  }
}

async function init() {
  try {
    const info = await (await fetch("/api/info")).json();
    document.getElementById("info").textContent =
      `${info.count} clips · ${info.kind} index · checkpoint ${info.checkpoint}`;
    query.maxLength = info.max_query_chars;
  } catch (err) {
    document.getElementById("info").textContent = "index info unavailable";
  }
  const q = new URLSearchParams(location.search).get("q");
  if (q) { query.value = q; search(); }
}

form.addEventListener("submit", search);
init();
