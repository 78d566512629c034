// Live accuracy: the primary metric per day and version, live against offline per release,
// and what came back from the feedback loop (how many actuals matched a logged prediction).
"use strict";

import {h, empty, table, numbers, legend} from "./dom.js";
import {lines, groupedBars, versionColors} from "./charts.js";
import * as fmt from "./format.js";
import {outcomeTables} from "./outcomes.js";

const FEEDBACK = [
  ["received", "Received", "actuals sent back"],
  ["matched", "Matched", "actuals joined to a logged prediction"],
  ["duplicate", "Duplicate", "actuals for a prediction that already had one"],
  ["unknown", "Unknown", "actuals for no logged prediction"],
  ["late", "Late", "actuals that arrived after their window was scored"],
];

function feedback(report) {
  const fb = report.feedback || {};
  const received = fb.received;
  return h("dl", {class: "stats", id: "feedback"}, FEEDBACK.map(([key, label, why]) =>
    h("div", {title: why, dataset: {key}}, h("dt", {text: label}),
      h("dd", {id: `feedback-${key}`}, fmt.count(fb[key] ?? null),
        key !== "received" && received > 0 && Number.isFinite(fb[key])
          ? h("span", {class: "aside", text: ` ${fmt.pct(fb[key] / received)}`}) : null))));
}

/** Relative change live vs offline, and whether it is worse given the metric's direction. */
function drift(offline, live, direction) {
  if (!Number.isFinite(offline) || !Number.isFinite(live) || offline === 0) return {text: fmt.NONE};
  const change = (live - offline) / Math.abs(offline);
  const worse = direction === "max" ? change < 0 : change > 0;
  return {text: fmt.change(change), class: worse ? "worse" : "better"};
}

export function renderAccuracy(body, report, width) {
  const metric = report.primary_metric;
  const direction = report.direction === "max" ? "higher is better" : "lower is better";
  const rows = report.accuracy || [];
  const releases = (report.releases || []).filter((r) => Number.isFinite(r.offline?.[metric]) || r.live);
  const color = versionColors(report);
  const parts = [h("p", {class: "lede"}, "Primary metric ", h("code", {text: metric ?? "?"}), ` (${direction}).`)];

  if (rows.length) {
    const days = [...new Set(rows.map((r) => r.day))].sort();
    const versions = [...new Set(rows.map((r) => String(r.model_version)))];
    const series = versions.map((v) => ({name: v, color: color(v), values: new Map(rows
      .filter((r) => String(r.model_version) === v).map((r) => [r.day, r.metrics?.[metric]]))}));
    parts.push(h("figure", {id: "accuracy-daily"},
      h("figcaption", {class: "chart-title", text: `Live ${metric} per day`}),
      legend(versions.map((v) => ({label: fmt.version(v), color: color(v), shape: "line"})), "Model versions"),
      lines({days, dayLabel: fmt.shortDay, series, width: Math.max(280, width), height: 200, fmt: fmt.metric,
        label: `Live ${metric} per day by model version`,
        tipOf: (day, one, v) => `${day} · ${fmt.version(one.name)}: ${metric} ${fmt.metric(v)}`})));
  } else {
    parts.push(empty("No actuals yet: live accuracy appears once actuals come back and match logged predictions.",
      "accuracy-empty"));
  }

  if (releases.length) {
    const groups = releases.map((r) => {
      const offline = r.offline?.[metric];
      const live = r.live?.metrics?.[metric];
      return {label: fmt.version(r.version), bars: [
        {name: "offline", value: offline, cls: "offline", text: fmt.metric(offline),
          title: `${fmt.version(r.version)} offline ${metric} (holdout): ${fmt.metric(offline)}`},
        {name: "live", value: live, color: color(r.version), cls: "live", text: Number.isFinite(live) ? fmt.metric(live) : "no actuals",
          title: Number.isFinite(live) ? `${fmt.version(r.version)} live ${metric}: ${fmt.metric(live)} over ${fmt.count(r.live.rows)} rows`
            : `${fmt.version(r.version)}: no actuals yet`},
      ]};
    });
    parts.push(h("figure", {id: "accuracy-releases"},
      h("figcaption", {class: "chart-title", text: `Offline (holdout) vs live ${metric} per release`}),
      legend([{label: "offline", color: "var(--muted)", shape: "hatch"}, {label: "live (version color)", color: "var(--accent)"}],
        "Bars legend"),
      h("div", {class: "split bars-and-table"},
        groupedBars({groups, height: 200,
          // Beside the table on wide screens (the CSS split), alone on narrow ones.
          width: width < 700 ? width : Math.max(260, Math.min(width * 0.45, 120 + releases.length * 120)),
          fmt: fmt.metric, label: `Offline and live ${metric} per release`}),
        h("div", {class: "scroll"}, table({id: "accuracy-table", head: ["Release", "Gate", "Offline", "Live", "Change", "Live rows"], numeric: [2, 3, 4, 5],
        rowAttrs: (i) => ({dataset: {version: releases[i].version}}),
        rows: releases.map((r) => [fmt.version(r.version) + (r.champion ? " (champion)" : ""), r.gate,
          fmt.metric(r.offline?.[metric]), r.live ? fmt.metric(r.live.metrics?.[metric]) : {text: "no actuals yet", class: "aside"},
          drift(r.offline?.[metric], r.live?.metrics?.[metric], report.direction), r.live ? fmt.count(r.live.rows) : fmt.NONE])})))));
  }

  parts.push(...outcomeTables(report));
  parts.push(h("h3", {text: "Feedback"}), feedback(report));
  if (rows.length) {
    const names = [...new Set(rows.flatMap((r) => Object.keys(r.metrics || {})))];
    parts.push(numbers("Live metrics per day as a table", table({
      id: "accuracy-days", head: ["Day", "Version", "Rows", ...names], numeric: [2, ...names.map((_, i) => i + 3)],
      rows: rows.map((r) => [r.day, fmt.version(r.model_version), fmt.count(r.rows), ...names.map((n) => fmt.metric(r.metrics?.[n]))]),
    })));
  }
  body.replaceChildren(...parts);
}
