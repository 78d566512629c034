// The monitoring dashboard: fetch GET api/report, draw every panel from it, show why when
// the report cannot be built. Same-origin requests only; no dependencies.
"use strict";

import {h, empty} from "./dom.js";
import {renderHeader, setStatus} from "./header.js";
import {renderTimeline} from "./timeline.js";
import {renderTraffic} from "./traffic.js";
import {renderPredictions} from "./predictions.js";
import {renderDrift} from "./drift.js";
import {renderAccuracy} from "./accuracy.js";

const REFRESH_MS = 60_000;
const TIMEOUT_MS = 30_000; // building a report reads the whole prediction store: give it time

const PANELS = [
  ["timeline", renderTimeline],
  ["traffic", renderTraffic],
  ["predictions", renderPredictions],
  ["drift", renderDrift],
  ["accuracy", renderAccuracy],
];

const $ = (id) => document.getElementById(id);
let shown = null; // the report on screen, redrawn on resize

/** Charts are drawn at the width of their panel's content box. */
function innerWidth(node) {
  const style = getComputedStyle(node);
  return Math.floor(node.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight));
}

function render(report) {
  renderHeader(report);
  for (const [id, draw] of PANELS) {
    const panel = $(id);
    const body = panel.querySelector(".body");
    try {
      draw(body, report, innerWidth(panel));
      panel.dataset.state = "ready";
    } catch (err) {
      // One odd field should not blank the whole dashboard: this panel says so, the others draw.
      console.warn(`panel ${id}:`, err);
      body.replaceChildren(empty(`This panel could not be drawn from the report (${err.message}).`));
      panel.dataset.state = "failed";
    }
  }
}

function showError(title, detail) {
  setStatus("error", "Report unavailable");
  $("banner").replaceChildren(h("strong", {text: title}), " ", h("span", {id: "error-detail", text: detail}));
  $("banner").hidden = false;
  if (shown === null) {
    for (const [id] of PANELS) $(id).querySelector(".body").replaceChildren(empty("No report to show."));
  }
}

async function load() {
  const panels = $("panels");
  panels.setAttribute("aria-busy", "true");
  $("refresh").disabled = true;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const response = await fetch("api/report", {cache: "no-store", headers: {Accept: "application/json"},
      signal: abort.signal});
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok || body === null) {
      const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
      showError("The monitoring report could not be built:", detail);
      return;
    }
    $("banner").hidden = true;
    shown = body;
    render(body);
  } catch (err) {
    showError("The dashboard server did not answer.", "Check that `cd4ml ui` is still running, then refresh.");
  } finally {
    clearTimeout(timer);
    panels.setAttribute("aria-busy", "false");
    $("refresh").disabled = false;
  }
}

let resizeTimer = null;
let lastWidth = window.innerWidth;
window.addEventListener("resize", () => {
  if (window.innerWidth === lastWidth || shown === null) return;
  lastWidth = window.innerWidth;
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => render(shown), 150);
});

$("refresh").addEventListener("click", load);
setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
load();
