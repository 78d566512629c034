// Hand-drawn SVG charts: scales, axes and the few chart shapes the panels need.
// Charts are drawn at the pixel width of their container (re-drawn on resize), so text
// keeps its size; colors come from CSS classes and variables (light and dark themes).
"use strict";

import {s, tip} from "./dom.js";

const PALETTE_SIZE = 6;

/** A color per model version, the same in every panel: versions in report order. */
export function versionColors(report) {
  const order = [];
  const add = (v) => {
    if (v !== null && v !== undefined && !order.includes(String(v))) order.push(String(v));
  };
  for (const r of report.releases || []) add(r.version);
  for (const r of report.traffic || []) add(r.model_version);
  for (const r of report.accuracy || []) add(r.model_version);
  const colors = new Map(order.map((v, i) => [v, `var(--v${i % PALETTE_SIZE})`]));
  return (v) => colors.get(String(v)) ?? "var(--muted)";
}

/** A linear map from [d0, d1] to [r0, r1]. */
export function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** Round bounds and about `count` ticks at 1/2/5 steps covering [lo, hi]. */
export function nice(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const rough = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const err = rough / mag;
  const step = (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1) * mag;
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return {lo: start, hi: end, ticks};
}

/** An empty chart: the svg and its plot area. */
export function frame({width, height, label, margin = {}}) {
  const m = {top: 14, right: 14, bottom: 30, left: 52, ...margin};
  const svg = s("svg", {class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label});
  return {svg, width, height, x0: m.left, x1: width - m.right, y0: height - m.bottom, y1: m.top};
}

/** Horizontal grid lines with their labels on the left. */
export function yAxis(f, ticks, y, fmt) {
  const g = s("g", {class: "axis y-axis"});
  for (const t of ticks) {
    g.append(s("line", {class: t === 0 ? "baseline" : "grid", x1: f.x0, x2: f.x1, y1: y(t), y2: y(t)}),
      s("text", {x: f.x0 - 6, y: y(t), dy: "0.32em", "text-anchor": "end", text: fmt(t)}));
  }
  f.svg.append(g);
}

/** Labels under a band axis, thinned so they never overlap. */
export function bandLabels(f, labels, center, minGap = 64) {
  const every = Math.max(1, Math.ceil((labels.length * minGap) / Math.max(1, f.x1 - f.x0)));
  const g = s("g", {class: "axis x-axis"});
  labels.forEach((label, i) => {
    if (i % every !== 0) return;
    g.append(s("text", {x: center(i), y: f.y0 + 18, "text-anchor": "middle", text: label}));
  });
  f.svg.append(g);
}

/** Bands of equal width over the plot: index -> {x, w, c} (left, width, center). */
export function bands(f, n, padding = 0.2) {
  const step = (f.x1 - f.x0) / Math.max(1, n);
  return (i) => ({x: f.x0 + i * step + (step * padding) / 2, w: step * (1 - padding), c: f.x0 + (i + 0.5) * step});
}

/**
 * Stacked bars per day: `keys` stack in order, `value(day, key)` is a number or null.
 * tipOf(day, key, value) is each segment's tooltip.
 */
export function stackedBars({days, dayLabel, keys, value, color, width, height, label, fmt, tipOf}) {
  const totals = days.map((d) => keys.reduce((sum, k) => sum + (value(d, k) || 0), 0));
  const f = frame({width, height, label});
  const axis = nice(0, Math.max(...totals, 0));
  const y = linear(axis.lo, axis.hi, f.y0, f.y1);
  yAxis(f, axis.ticks, y, fmt);
  const band = bands(f, days.length, 0.25);
  const g = s("g", {class: "bars"});
  days.forEach((day, i) => {
    let base = 0;
    for (const key of keys) {
      const v = value(day, key);
      if (!v) continue;
      const {x, w} = band(i);
      g.append(s("rect", {class: "bar", x, width: Math.max(1, w), y: y(base + v), height: Math.max(0, y(base) - y(base + v)),
        style: {fill: color(key)}, dataset: {day, key}}, tip(tipOf(day, key, v))));
      base += v;
    }
  });
  f.svg.append(g);
  bandLabels(f, days.map(dayLabel), (i) => band(i).c);
  return f.svg;
}

/**
 * Lines over days: series are {name, color, dash, values: Map(day -> number)}; a missing day
 * breaks the line. fromZero puts 0 on the axis (counts, latencies), else the axis fits the data.
 */
export function lines({days, dayLabel, series, width, height, label, fmt, tipOf, fromZero = false}) {
  const all = series.flatMap((one) => [...one.values.values()]).filter(Number.isFinite);
  const lo = fromZero ? 0 : Math.min(...all);
  const hi = Math.max(...all);
  const pad = fromZero ? 0 : (hi - lo) * 0.1 || Math.abs(hi) * 0.05 || 1;
  const axis = nice(lo - pad, hi + pad);
  const f = frame({width, height, label});
  const y = linear(axis.lo, axis.hi, f.y0, f.y1);
  yAxis(f, axis.ticks, y, fmt);
  const band = bands(f, days.length);
  for (const one of series) {
    let d = "";
    let open = false;
    const dots = s("g", {class: "dots"});
    days.forEach((day, i) => {
      const v = one.values.get(day);
      if (!Number.isFinite(v)) { open = false; return; }
      const x = band(i).c;
      d += `${open ? "L" : "M"}${x.toFixed(1)},${y(v).toFixed(1)}`;
      open = true;
      dots.append(s("circle", {class: "dot", cx: x, cy: y(v), r: 3.5, style: {fill: one.color}},
        tip(tipOf(day, one, v))));
    });
    f.svg.append(s("g", {class: "series", dataset: {series: one.name}},
      s("path", {class: "line", d, style: {stroke: one.color}, "stroke-dasharray": one.dash ? "6 4" : null}),
      dots));
  }
  bandLabels(f, days.map(dayLabel), (i) => band(i).c);
  return f.svg;
}

/** Reference (outlined) and live (filled) fractions per bin; bins drawn at equal width. */
export function histogram({edges, reference, live, width, height, label, fmtEdge, fmtShare}) {
  const n = reference.length;
  const f = frame({width, height, label, margin: {left: 46}});
  const axis = nice(0, Math.max(...reference, ...live, 0));
  const y = linear(axis.lo, axis.hi, f.y0, f.y1);
  yAxis(f, axis.ticks, y, (v) => fmtShare(v, 0));
  const band = bands(f, n, 0.12);
  const g = s("g", {class: "bins"});
  for (let i = 0; i < n; i++) {
    const {x, w} = band(i);
    const range = `${fmtEdge(edges[i])} – ${fmtEdge(edges[i + 1])}`;
    const text = `${range}: reference ${fmtShare(reference[i])}, live ${fmtShare(live[i])}`;
    g.append(s("g", {class: "bin"}, tip(text),
      s("rect", {class: "bar-ref", x, width: w, y: y(reference[i]), height: y(0) - y(reference[i])}),
      s("rect", {class: "bar-live", x: x + w * 0.22, width: w * 0.56, y: y(live[i]), height: y(0) - y(live[i])})));
  }
  f.svg.append(g);
  // Edges sit between bins: n + 1 labels, thinned like days.
  const every = Math.max(1, Math.ceil(((n + 1) * 40) / Math.max(1, f.x1 - f.x0)));
  const axisG = s("g", {class: "axis x-axis"});
  for (let i = 0; i <= n; i += every) {
    axisG.append(s("text", {x: f.x0 + (i * (f.x1 - f.x0)) / n, y: f.y0 + 18, "text-anchor": "middle",
      text: fmtEdge(edges[i])}));
  }
  f.svg.append(axisG);
  return f.svg;
}

/**
 * Groups of bars with their values printed on top: groups are {label, bars: [{name, value, cls,
 * color, text, title}]}; a null value leaves a gap with the bar's text ("no actuals").
 */
export function groupedBars({groups, width, height, label, fmt}) {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter(Number.isFinite);
  const axis = nice(0, Math.max(...values, 0) * 1.08);
  const f = frame({width, height, label});
  const y = linear(axis.lo, axis.hi, f.y0, f.y1);
  yAxis(f, axis.ticks, y, fmt);
  const band = bands(f, groups.length, 0.35);
  groups.forEach((group, i) => {
    const {x, w} = band(i);
    const bw = w / Math.max(1, group.bars.length);
    const g = s("g", {class: "group", dataset: {group: group.label}});
    group.bars.forEach((bar, j) => {
      const bx = x + j * bw + bw * 0.08;
      const inner = bw * 0.84;
      const cx = bx + inner / 2;
      if (Number.isFinite(bar.value)) {
        g.append(s("rect", {class: `bar ${bar.cls || ""}`, x: bx, width: inner, y: y(bar.value),
          height: Math.max(0, y(0) - y(bar.value)), style: bar.color ? {fill: bar.color} : null}, tip(bar.title)),
        s("text", {class: `value ${bar.cls || ""}${inner < 32 ? " small" : ""}`, x: cx, y: y(bar.value) - 5,
          "text-anchor": "middle", text: bar.text}));
      } else {
        // Upright along the empty slot: the words would not fit across a bar's width.
        g.append(s("text", {class: "value missing", x: cx, y: y(0) - 6, dy: "0.32em", "text-anchor": "start",
          transform: `rotate(-90 ${cx} ${y(0) - 6})`, text: bar.text}, tip(bar.title)));
      }
    });
    f.svg.append(g);
  });
  bandLabels(f, groups.map((g) => g.label), (i) => band(i).c, 40);
  return f.svg;
}

/** A small horizontal bar for a table cell (PSI): `value` of `max`, colored by alarm. */
export function meter(value, max, alarm, title, width = 140) {
  const w = Number.isFinite(value) && max > 0 ? Math.max(1.5, (Math.min(value, max) / max) * width) : 0;
  return s("svg", {class: "meter", width, height: 12, viewBox: `0 0 ${width} 12`, "aria-hidden": "true"},
    s("rect", {class: "track", x: 0, y: 2, width, height: 8, rx: 2}),
    s("rect", {class: alarm ? "fill alarm" : "fill", x: 0, y: 2, width: w, height: 8, rx: 2}, tip(title)));
}
