// Traffic: predictions per day stacked by model version, and latency p50/p99 per day and version.
"use strict";

import {h, empty, table, numbers, legend} from "./dom.js";
import {stackedBars, lines, versionColors} from "./charts.js";
import * as fmt from "./format.js";

const sum = (rows, key) => rows.reduce((total, r) => total + (Number.isFinite(r[key]) ? r[key] : 0), 0);

/** Predictions kept out of every window: test traffic and days far from when they were served. */
function excludedNote(report) {
  const ex = report.excluded;
  if (!ex || !(ex.test || ex.out_of_range)) return null;
  const days = (ex.out_of_range_days || []).join(", ");
  const text = `Kept out of windows, accuracy and checks: ${fmt.count(ex.test)} test-traffic predictions, `
    + `${fmt.count(ex.out_of_range)} dated out of range`
    + (ex.out_of_range ? ` (e.g. ${days}; more than ${ex.plausible_days} days from the usual lead)` : "") + ".";
  return h("p", {class: "note", id: "traffic-excluded", text});
}

export function renderTraffic(body, report, width) {
  const rows = report.traffic || [];
  const excluded = excludedNote(report);
  if (!rows.length) {
    body.replaceChildren(empty("No predictions logged yet: traffic appears once the service answers requests.",
      "traffic-empty"), ...(excluded ? [excluded] : []));
    return;
  }
  const color = versionColors(report);
  const days = [...new Set(rows.map((r) => r.day))].sort();
  const versions = [...new Set(rows.map((r) => String(r.model_version)))];
  const at = new Map(rows.map((r) => [`${r.day}|${r.model_version}`, r]));
  const get = (day, v, key) => at.get(`${day}|${v}`)?.[key] ?? null;

  const predictions = sum(rows, "predictions");
  const fallback = sum(rows, "fallback");
  const stats = h("dl", {class: "stats", id: "traffic-stats"},
    h("div", {}, h("dt", {text: "Predictions"}), h("dd", {id: "traffic-total", text: fmt.count(predictions)})),
    h("div", {}, h("dt", {text: "Requests"}), h("dd", {text: fmt.count(sum(rows, "requests"))})),
    h("div", {title: "predictions answered with a fallback for values the model never saw"},
      h("dt", {text: "Fallback"}), h("dd", {text: `${fmt.count(fallback)} (${fmt.pct(predictions ? fallback / predictions : null, 2)})`})),
    h("div", {}, h("dt", {text: "Days"}), h("dd", {text: `${days.length} (${fmt.shortDay(days[0])} – ${fmt.shortDay(days.at(-1))})`})));

  const chartWidth = Math.max(280, width);
  const volume = stackedBars({
    days, dayLabel: fmt.shortDay, keys: versions, color, width: chartWidth, height: 190,
    label: "Predictions per day, stacked by model version",
    value: (day, v) => get(day, v, "predictions"), fmt: fmt.compact,
    tipOf: (day, v, n) => `${day} · ${fmt.version(v)}: ${fmt.count(n)} predictions`,
  });
  const latencySeries = versions.flatMap((v) => [
    {name: `${v}-p50`, version: v, q: "p50", color: color(v), values: new Map(days.map((d) => [d, get(d, v, "latency_p50_ms")]))},
    {name: `${v}-p99`, version: v, q: "p99", color: color(v), dash: true,
      values: new Map(days.map((d) => [d, get(d, v, "latency_p99_ms")]))},
  ]);
  const hasLatency = latencySeries.some((one) => [...one.values.values()].some(Number.isFinite));
  const latency = hasLatency ? lines({
    days, dayLabel: fmt.shortDay, series: latencySeries, width: chartWidth, height: 170, fromZero: true,
    label: "Latency per day: p50 (solid) and p99 (dashed) by model version", fmt: (v) => `${v} ms`,
    tipOf: (day, one, v) => `${day} · ${fmt.version(one.version)} ${one.q}: ${fmt.ms(v)}`,
  }) : empty("No latency recorded.");

  body.replaceChildren(
    stats,
    ...(excluded ? [excluded] : []),
    legend(versions.map((v) => ({label: fmt.version(v), color: color(v)})), "Model versions"),
    h("figure", {id: "traffic-volume"}, h("figcaption", {class: "chart-title", text: "Predictions per day"}), volume),
    h("figure", {id: "traffic-latency"},
      h("figcaption", {class: "chart-title"}, "Latency per day ",
        h("span", {class: "aside", text: "p50 solid · p99 dashed"})), latency),
    numbers("Traffic per day as a table", table({
      id: "traffic-table", head: ["Day", "Version", "Predictions", "Requests", "Fallback", "p50", "p99"],
      numeric: [2, 3, 4, 5, 6],
      rows: rows.map((r) => [r.day, fmt.version(r.model_version), fmt.count(r.predictions), fmt.count(r.requests),
        fmt.count(r.fallback), fmt.ms(r.latency_p50_ms), fmt.ms(r.latency_p99_ms)]),
    })));
}
