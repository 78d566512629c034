// Drift: the latest window feature by feature (PSI bars, KS, new values), the outputs
// (prediction, target), every window at a glance, and the segments whose residuals are biased.
// The PSI alarm threshold is not in the report: alarms come from each row's own `alarm` flag.
"use strict";

import {h, empty, table} from "./dom.js";
import {meter} from "./charts.js";
import * as fmt from "./format.js";

const range = (w) => `${fmt.shortDay(w.start)} – ${fmt.shortDay(w.end)}`;
const flag = (alarm) => (alarm ? h("span", {class: "flag-alarm", title: "alarm", text: "alarm"}) : h("span", {class: "flag-ok", text: "ok"}));

function featureTable(window) {
  const features = [...(window.features || [])].sort((a, b) => (b.psi ?? -1) - (a.psi ?? -1));
  if (!features.length) return empty("No features were profiled in this window.");
  const max = Math.max(0.1, ...features.map((f) => f.psi).filter(Number.isFinite)) * 1.05;
  return table({
    id: "drift-features", caption: "Features, most drifted first",
    head: ["Feature", "Kind", "PSI", "KS", "KS p-value", "New values"], numeric: [3, 4],
    rowAttrs: (i) => ({class: features[i].alarm ? "alarm" : null, dataset: {feature: features[i].name}}),
    rows: features.map((f) => [
      {node: h("span", {}, f.alarm ? h("span", {class: "mark", title: "alarm", "aria-label": "alarm", text: "▲ "}) : null,
        h("code", {text: f.name}))},
      f.kind,
      {node: h("span", {class: "psi-cell"}, meter(f.psi, max, f.alarm, `${f.name} PSI ${fmt.stat(f.psi)}`),
        h("span", {class: "psi-value", text: fmt.stat(f.psi)})), class: "psi"},
      fmt.stat(f.ks), fmt.pvalue(f.ks_pvalue),
      {node: (f.new_values || []).length
        ? h("span", {class: "chips"}, f.new_values.map((v) => h("span", {class: "chip new", title: "never seen in the reference", text: String(v)})))
        : h("span", {class: "aside", text: "none"})},
    ]),
  });
}

function outputsTable(window) {
  const probabilities = window.probabilities || [];
  const outputs = [window.prediction, window.target, ...probabilities];
  const row = (name, value, missing) => (value
    ? [name, fmt.stat(value.psi), fmt.stat(value.ks), fmt.pvalue(value.ks_pvalue), {node: flag(value.alarm)}]
    : [name, {text: missing, class: "aside"}, "", "", ""]);
  return table({
    id: "drift-outputs", caption: "Outputs",
    head: ["Output", "PSI", "KS", "KS p-value", "Status"], numeric: [1, 2, 3],
    rowAttrs: (i) => ({class: outputs[i]?.alarm ? "alarm" : null}),
    rows: [row("prediction", window.prediction, "no predictions profiled"), row("target", window.target, "no actuals yet"),
      // A classifier's: each class's probability.
      ...probabilities.map((p) => row(`probability of ${p.name}`, p.psi == null ? null : p, "no predictions"))],
  });
}

function windowsTable(windows) {
  const names = [];
  for (const w of windows) for (const f of w.features || []) if (!names.includes(f.name)) names.push(f.name);
  const cell = (w, entry, name) => (entry
    ? {text: fmt.stat(entry.psi), class: entry.alarm ? "alarm-cell" : null,
      title: `${name} PSI ${fmt.stat(entry.psi)} in ${range(w)}${entry.alarm ? ": alarm" : ""}`}
    : {text: fmt.NONE, class: "aside"});
  const rows = names.map((name) => [{node: h("code", {text: name})},
    ...windows.map((w) => cell(w, (w.features || []).find((f) => f.name === name), name))]);
  rows.push([{text: "prediction", class: "output"}, ...windows.map((w) => cell(w, w.prediction, "prediction"))]);
  rows.push([{text: "target", class: "output"}, ...windows.map((w) => cell(w, w.target, "target"))]);
  return table({
    id: "drift-windows", caption: "PSI per window (alarms highlighted)",
    head: ["", ...windows.map((w) => `${range(w)}${w.alarm ? " ▲" : ""}`)],
    numeric: windows.map((_, i) => i + 1), rows,
  });
}

function segments(window) {
  const all = window.segments || [];
  if (!all.length) return empty("No segment bias yet: it needs actuals for this window.", "segments-empty");
  const alarming = all.filter((seg) => seg.alarm).sort((a, b) => Math.abs(b.bias) - Math.abs(a.bias));
  if (!alarming.length) return empty(`No segment alarms (${all.length} segments checked).`, "segments-empty");
  return table({
    id: "drift-segments", caption: `${alarming.length} of ${all.length} segments alarm`,
    head: ["Feature", "Value", "Rows", "Bias"], numeric: [2, 3],
    rows: alarming.map((seg) => [{node: h("code", {text: seg.feature})}, String(seg.value), fmt.count(seg.rows),
      {text: fmt.signed(seg.bias), title: "mean residual (actual − prediction) in this segment"}]),
  });
}

export function renderDrift(body, report) {
  const drift = report.drift || {};
  const windows = drift.windows || [];
  if (!windows.length) {
    body.replaceChildren(empty("No drift windows yet: drift needs a full window of logged predictions.", "drift-empty"));
    return;
  }
  const latest = windows.at(-1);
  const drifted = latest.drifted || [];
  body.replaceChildren(
    h("div", {class: "window-head", id: "drift-latest", dataset: {alarm: String(Boolean(latest.alarm))}},
      h("h3", {}, "Latest window ", h("span", {class: "aside", text: `${latest.start} – ${latest.end}`})),
      h("p", {class: "lede"},
        h("span", {class: latest.alarm ? "pill bad" : "pill good", text: latest.alarm ? "drift alarm" : "no alarm"}), " ",
        `${fmt.count(latest.rows)} rows against the reference of ${fmt.version(drift.reference_version)}`,
        drifted.length ? ". Drifted: " : "", drifted.length ? h("strong", {id: "drifted", text: drifted.join(", ")}) : "")),
    h("div", {class: "split"},
      h("div", {class: "scroll"}, featureTable(latest)),
      h("div", {class: "side"},
        h("div", {class: "scroll"}, outputsTable(latest)),
        h("h3", {text: "Biased segments"}), h("div", {class: "scroll", id: "segments"}, segments(latest)))),
    h("h3", {}, "All windows ", h("span", {class: "aside", text: `${windows.length}, oldest first`})),
    h("div", {class: "scroll"}, windowsTable(windows)));
}
