// A classifier's outcomes per release: confusion matrix and calibration curve, live (actuals) next to
// offline (holdout, from the release's profile). Absent from a regression report.
"use strict";

import {h, table} from "./dom.js";
import * as fmt from "./format.js";

const pair = (live, offline, show) => `${show(live)} / ${show(offline)}`;

function confusion(version, live, offline) {
  const classes = (live || offline).classes;
  return table({
    id: `confusion-${version}`, caption: `${fmt.version(version)}: confusion matrix, live / offline rows`,
    head: ["Actual \\ answered", ...classes], numeric: classes.map((_, i) => i + 1),
    rows: classes.map((name, i) => [name, ...classes.map((_, j) =>
      pair(live?.confusion[i][j], offline?.confusion[i][j], fmt.count))]),
  });
}

function calibration(version, live, offline) {
  const first = live || offline;
  const bins = first.bin_rows.length;
  return table({
    id: `calibration-${version}`,
    caption: `${fmt.version(version)}: calibration of the probability of ${first.calibration_of}, live / offline`,
    head: ["Bin", "Rows", "Mean predicted", "Observed"], numeric: [1, 2, 3],
    rows: first.bin_rows.map((_, b) => [`${(b / bins).toFixed(1)} – ${((b + 1) / bins).toFixed(1)}`,
      pair(live?.bin_rows[b], offline?.bin_rows[b], fmt.count),
      pair(live?.predicted[b], offline?.predicted[b], fmt.metric),
      pair(live?.observed[b], offline?.observed[b], fmt.metric)]),
  });
}

/** The tables of every release that has outcomes (nodes; [] for a regression report). */
export function outcomeTables(report) {
  const parts = [];
  for (const r of report.releases || []) {
    const {live, offline} = r.outcomes || {};
    if (!live && !offline) continue;
    parts.push(h("div", {class: "split", id: `outcomes-${r.version}`},
      h("div", {class: "scroll"}, confusion(r.version, live, offline)),
      h("div", {class: "scroll"}, calibration(r.version, live, offline))));
  }
  return parts.length ? [h("h3", {text: "Confusion and calibration, live vs offline"}), ...parts] : [];
}
