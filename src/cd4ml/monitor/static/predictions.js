// The champion's predictions: live distribution against the reference (training-time) one.
"use strict";

import {h, empty, table, numbers, legend} from "./dom.js";
import {histogram} from "./charts.js";
import * as fmt from "./format.js";

const edge = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(3))) : fmt.NONE);

export function renderPredictions(body, report, width) {
  const hist = report.prediction_histogram;
  if (!hist || !(hist.reference || []).length) {
    body.replaceChildren(empty("No live predictions to compare with the reference yet.", "predictions-empty"));
    return;
  }
  const {edges, reference, live} = hist;
  body.replaceChildren(
    h("p", {class: "lede"}, "Share of predictions per bin for ",
      h("strong", {id: "predictions-version", text: fmt.version(hist.version)}), ": live against the reference."),
    legend([{label: "reference", color: "var(--muted)", shape: "outline"}, {label: "live", color: "var(--accent)"}],
      "Histogram legend"),
    histogram({edges, reference, live, width: Math.max(240, width), height: 220, fmtEdge: edge, fmtShare: fmt.pct,
      label: `Prediction histogram of ${fmt.version(hist.version)}: reference and live shares per bin`}),
    numbers("Bins as a table", table({
      id: "predictions-table", head: ["Bin", "Reference", "Live", "Live − reference"], numeric: [1, 2, 3],
      rows: reference.map((ref, i) => [`${edge(edges[i])} – ${edge(edges[i + 1])}`, fmt.pct(ref), fmt.pct(live[i]),
        Number.isFinite(live[i]) && Number.isFinite(ref) ? `${live[i] >= ref ? "+" : "−"}${(Math.abs(live[i] - ref) * 100).toFixed(1)} pt` : fmt.NONE]),
    })));
}
