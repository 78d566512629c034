// Releases in the order they were registered (gate verdict, champion) and the moves of the
// champion alias as arcs between them: promotions point forward or back, rollbacks are amber.
// Columns are evenly spaced, not proportional to time: releases are often minutes apart.
"use strict";

import {h, s, tip, empty, table, numbers, legend} from "./dom.js";
import * as fmt from "./format.js";

const GATES = ["passed", "rejected", "pending"];

/** Arc levels: two moves whose spans overlap never share a level (so arcs never coincide). */
function levels(spans) {
  const taken = [];
  return spans.map(([a, b]) => {
    let level = 0;
    while ((taken[level] || []).some(([c, d]) => a < d && c < b || (a === c && b === d))) level += 1;
    (taken[level] = taken[level] || []).push([a, b]);
    return level;
  });
}

function chart(report, width) {
  const releases = report.releases;
  const index = new Map(releases.map((r, i) => [String(r.version), i]));
  const moves = (report.timeline || []).filter((m) => index.has(String(m.to))); // the table keeps all
  const spans = moves.map((m) => {
    const to = index.get(String(m.to));
    const from = m.from === null || m.from === undefined || !index.has(String(m.from)) ? to : index.get(String(m.from));
    return [Math.min(from, to), Math.max(from, to)];
  });
  const level = levels(spans);
  const top = Math.max(0, ...level) + 1;
  const col = Math.max(96, Math.min(260, (width - 40) / releases.length));
  const full = Math.max(width, col * releases.length + 40);
  const nodeY = 34 + top * 34;
  const height = nodeY + 80;
  const x = (i) => 20 + (full - 40 - col * releases.length) / 2 + (i + 0.5) * col;
  const svg = s("svg", {class: "chart timeline-chart", width: full, height, viewBox: `0 0 ${full} ${height}`,
    role: "img", "aria-label": `${releases.length} releases and ${moves.length} moves of the champion alias`},
    s("defs", {},
      ["promote", "rollback"].map((kind) => s("marker", {id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 8, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"},
        s("path", {d: "M0,0 L10,5 L0,10 z", class: `arrowhead ${kind}`})))));

  svg.append(s("line", {class: "rail", x1: x(0), x2: x(releases.length - 1), y1: nodeY, y2: nodeY}));
  const champions = new Set(releases.filter((r) => r.champion).map((r) => String(r.version)));
  /** Where an arc meets a node: on its rim, tilted by `angle` degrees from the top (positive: right). */
  const rim = (version, angle) => {
    const radius = champions.has(String(version)) ? 21 : 15;
    const rad = (angle * Math.PI) / 180;
    return [x(index.get(String(version))) + radius * Math.sin(rad), nodeY - radius * Math.cos(rad)];
  };
  moves.forEach((move, i) => {
    const kind = move.kind === "rollback" ? "rollback" : "promote";
    const hasFrom = move.from !== null && move.from !== undefined && index.has(String(move.from))
      && String(move.from) !== String(move.to);
    const lift = 36 + level[i] * 34;
    let path;
    let label;
    if (hasFrom) {
      // Flatter arcs meet the nodes further to the side, so arrowheads on one node stay apart.
      const dir = Math.sign(index.get(String(move.to)) - index.get(String(move.from)));
      const tilt = Math.max(12, 62 - level[i] * 22);
      const [sx, sy] = rim(move.from, dir * tilt);
      const [ex, ey] = rim(move.to, -dir * tilt);
      path = `M${sx},${sy} C${sx},${nodeY - lift} ${ex},${nodeY - lift} ${ex},${ey}`;
      label = [(sx + ex) / 2, nodeY - lift * 0.75 - 6]; // a curve peaks at 3/4 of its control height
    } else {
      // Nothing was champion before (or the old version is gone): the arrow comes from outside.
      const [ex, ey] = rim(move.to, -40);
      const [sx, sy] = [x(index.get(String(move.to))) - 34, nodeY - 44];
      path = `M${sx},${sy} L${ex},${ey}`;
      label = [Math.max(sx, 46), sy - 6]; // kept inside the chart's left edge
    }
    const text = `${move.kind} ${fmt.version(move.from)} → ${fmt.version(move.to)} · ${fmt.time(move.time)}` +
      `${move.by ? ` · by ${move.by}` : ""}${move.why ? `: ${move.why}` : ""}`;
    svg.append(s("g", {class: `move ${kind}`, dataset: {kind: move.kind, from: move.from ?? "", to: move.to}},
      tip(text),
      s("path", {class: "arc", d: path, "marker-end": `url(#arrow-${kind})`}),
      s("text", {class: "move-label", x: label[0], y: label[1], "text-anchor": "middle",
        text: `${move.kind} ${fmt.shortTime(move.time)}`})));
  });

  releases.forEach((release, i) => {
    const gate = GATES.includes(release.gate) ? release.gate : "pending";
    const champion = Boolean(release.champion);
    svg.append(s("g", {class: `release-marker gate-${gate}${champion ? " champion" : ""}`,
      dataset: {version: release.version, gate: release.gate}},
      tip(`${fmt.version(release.version)} · gate ${release.gate} · registered ${fmt.time(release.created_at)}` +
        (champion ? " · champion" : "")),
      champion ? s("circle", {class: "champion-ring", cx: x(i), cy: nodeY, r: 17}) : null,
      s("circle", {class: "node", cx: x(i), cy: nodeY, r: 11}),
      s("text", {class: "node-version", x: x(i), y: nodeY + 36, "text-anchor": "middle",
        text: fmt.version(release.version)}),
      s("text", {class: "node-gate", x: x(i), y: nodeY + 52, "text-anchor": "middle",
        text: champion ? `${release.gate} · champion` : release.gate}),
      s("text", {class: "node-date", x: x(i), y: nodeY + 67, "text-anchor": "middle",
        text: fmt.shortTime(release.created_at)})));
  });
  return svg;
}

/** Hours as a person reads them ("-": nothing measured). */
function hours(h) {
  if (h === null || h === undefined) return "-";
  if (h < 1 / 60) return `${Math.round(h * 3600)} s`;
  if (h < 1) return `${Math.round(h * 60)} min`;
  return h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} days`;
}

/** The release process's own DORA measures over the report's window, in one line. */
function delivery(d) {
  const days = Math.round((Date.parse(d.until) - Date.parse(d.since)) / 86_400_000);
  const rate = d.change_failure_rate === null ? "-" : `${Math.round(d.change_failure_rate * 100)}%`;
  return `Delivery, the last ${days} days: ${d.deployments} deployment${d.deployments === 1 ? "" : "s"} ` +
    `(${d.per_week.toFixed(2)} a week) · lead time ${hours(d.lead_time_hours_median)} (median) · ` +
    `change failure rate ${rate} · time to restore ${hours(d.restore_hours_median)} (median)`;
}

export function renderTimeline(body, report, width) {
  const releases = report.releases || [];
  const moves = report.timeline || [];
  if (!releases.length) {
    body.replaceChildren(empty("No registered model versions yet: run the pipeline to register one.", "timeline-empty"));
    return;
  }
  const metric = report.primary_metric;
  const rejected = releases.filter((r) => r.gate === "rejected").length;
  const rollbacks = moves.filter((m) => m.kind === "rollback").length;
  const summary = `${releases.length} release${releases.length === 1 ? "" : "s"} · ${rejected} rejected by the gate · ` +
    `${moves.length} alias move${moves.length === 1 ? "" : "s"}${rollbacks ? ` (${rollbacks} rollback${rollbacks === 1 ? "" : "s"})` : ""}`;
  body.replaceChildren(
    h("p", {class: "lede", id: "timeline-summary", text: summary}),
    ...(report.delivery ? [h("p", {class: "lede", id: "timeline-delivery", text: delivery(report.delivery)})] : []),
    legend([
      {label: "gate passed", color: "var(--pass)", shape: "dot"},
      {label: "rejected", color: "var(--fail)", shape: "dot"},
      {label: "pending", color: "var(--pending)", shape: "dot"},
      {label: "champion", color: "var(--accent)", shape: "ring"},
      {label: "promote", color: "var(--accent)", shape: "line"},
      {label: "rollback", color: "var(--rollback)", shape: "line"},
    ], "Timeline legend"),
    h("div", {class: "scroll"}, chart(report, width)),
    numbers("Releases and alias moves as tables", [
      table({id: "releases-table", caption: "Registered versions, oldest first",
        head: ["Version", "Gate", "Registered", "Champion", `Offline ${metric}`, `Live ${metric}`, "Live rows"],
        numeric: [4, 5, 6],
        rows: releases.map((r) => [fmt.version(r.version), r.gate, fmt.time(r.created_at), r.champion ? "yes" : "",
          fmt.metric(r.offline?.[metric]), r.live ? fmt.metric(r.live.metrics?.[metric]) : "no actuals yet",
          r.live ? fmt.count(r.live.rows) : fmt.NONE])}),
      moves.length
        ? table({id: "moves-table", caption: "Moves of the champion alias, oldest first",
          head: ["Time", "Kind", "From", "To", "By", "Why"],
          rows: moves.map((m) => [fmt.time(m.time), m.kind, fmt.version(m.from), fmt.version(m.to), m.by ?? fmt.NONE,
            m.why ?? fmt.NONE])})
        : empty("The champion alias never moved."),
    ]));
}
