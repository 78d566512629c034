// The header: which project and model, the champion, and the verdict of the retraining checks.
"use strict";

import {h, empty} from "./dom.js";
import * as fmt from "./format.js";

const $ = (id) => document.getElementById(id);

export function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

// "not judged": too little evidence to say ok or due (reports without a status: from enabled and due).
function checkState(check) {
  if (check.status) return check.status === "not judged" ? "unjudged" : check.status;
  return !check.enabled ? "off" : check.due ? "due" : "ok";
}

function checkItem(check) {
  const state = checkState(check);
  const badge = {off: "off", due: "due", ok: "ok", unjudged: "not judged"}[state];
  const why = {off: "this check is disabled", due: "this check asks for retraining", ok: "this check passes",
    unjudged: `too little evidence to judge: ${fmt.count(check.rows)} rows, ${fmt.count(check.min_rows)} needed`}[state];
  return h("li", {class: "check", id: `check-${check.name}`, dataset: {state}},
    h("span", {class: "badge", title: why, text: badge}),
    h("strong", {class: "check-name", text: check.name}),
    h("span", {class: "check-detail", text: check.detail || ""}));
}

export function renderHeader(report) {
  const due = Boolean(report.retrain_due);
  const unjudged = report.not_judged || [];
  if (due) setStatus("due", "Retraining due");
  else if (unjudged.length) setStatus("unjudged", `Not judged: ${unjudged.join(", ")}`);
  else setStatus("healthy", "Healthy");
  $("status").title = due ? "At least one enabled check asks for a new model"
    : unjudged.length ? "No check asks for retraining, but some had too little evidence to judge"
    : "No enabled check asks for retraining";
  $("subtitle").textContent = `Monitoring ${report.model_name ?? "the model"} · drift windows of ${report.window_days ?? "?"} days`;
  $("fact-project").textContent = report.project ?? fmt.NONE;
  $("fact-model").textContent = report.model_name ?? fmt.NONE;

  const champion = report.champion;
  $("fact-champion").replaceChildren(champion
    ? h("span", {title: `released ${fmt.time(champion.released_at)}`},
        h("span", {id: "champion-version", text: fmt.version(champion.version)}),
        h("span", {class: "aside", text: ` · ${fmt.age(champion.age_days)} old`}))
    : h("span", {id: "champion-version", class: "aside", text: "none yet"}));
  $("fact-generated").replaceChildren(h("time", {datetime: report.generated_at, title: report.generated_at},
    fmt.time(report.generated_at)));

  const checks = report.checks || [];
  $("checks-list").replaceChildren(...(checks.length ? checks.map(checkItem)
    : [h("li", {class: "check", dataset: {state: "off"}}, empty("No retraining checks configured."))]));
}
