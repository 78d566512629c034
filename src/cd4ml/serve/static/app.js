// The model page: a form built from GET /inputs, predictions from POST /predict,
// and the live release from GET /version (polled, so a release swap shows up
// without a reload). Vanilla ES2020, no dependencies, same-origin requests only.
"use strict";

(() => {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 10000;
  const OTHER = "\u0000other"; // the "Other value…" option of a select

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("predict-form"), help: $("form-help"), fields: $("fields"), more: $("more"),
    optional: $("optional-fields"), errors: $("errors"), submit: $("submit"), busy: $("busy"),
    result: $("result"), banner: $("banner"), announcer: $("announcer"), title: $("title"),
    subtitle: $("subtitle"), release: $("release"), releaseStatus: $("release-status"),
    releaseModel: $("release-model"), releaseVersion: $("release-version"),
    releaseCommit: $("release-commit"), releaseData: $("release-data"), releaseSince: $("release-since"),
  };

  const state = {
    inputs: null,        // the GET /inputs document
    controls: new Map(), // field name -> {field, read(), write(), focus()}
    release: null,       // the last GET /version document
    releaseKey: null,    // model_version + live_since of the release shown
    banner: null,        // source of the banner shown: "release" | "predict" | null
    busy: false,
  };

  // ---------------------------------------------------------------- helpers

  /** Build an element: h("p", {class: "x", text: "hi"}, child, ...). */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function humanize(name) {
    const text = String(name).replace(/[_\-.]+/g, " ").trim();
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /** fetch JSON with a timeout; resolves {status, body} or throws on a network failure. */
  async function call(path, options = {}) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(path, {
        cache: "no-store", ...options, signal: abort.signal,
        headers: {Accept: "application/json", ...(options.headers || {})},
      });
      let body = null;
      try { body = await response.json(); } catch { body = null; }
      return {status: response.status, body};
    } finally {
      clearTimeout(timer);
    }
  }

  function detailOf(body, fallback) {
    if (body && typeof body.detail === "string") return body.detail;
    return fallback;
  }

  function announce(text) {
    ui.announcer.textContent = "";
    // A fresh text node after a tick makes screen readers read it even when unchanged.
    setTimeout(() => { ui.announcer.textContent = text; }, 50);
  }

  function showBanner(source, title, text) {
    state.banner = source;
    ui.banner.replaceChildren(h("strong", {text: title}), " ", h("span", {text}));
    ui.banner.hidden = false;
  }

  function clearBanner(source) {
    if (source && state.banner !== source) return;
    state.banner = null;
    ui.banner.hidden = true;
    ui.banner.replaceChildren();
  }

  /** Decimals shown for a prediction: 2, or more for small magnitudes (3 significant digits). */
  function decimalsFor(value) {
    const size = Math.abs(value);
    if (!Number.isFinite(size) || size === 0 || size >= 1) return 2;
    return Math.min(8, 2 - Math.floor(Math.log10(size)));
  }

  function formatNumber(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
    const digits = decimalsFor(value);
    return new Intl.NumberFormat(undefined, {minimumFractionDigits: digits, maximumFractionDigits: digits})
      .format(value);
  }

  function formatTime(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "medium"}).format(when);
  }

  function ago(iso) {
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function today() {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  }

  /** This ISO 8601 week, as a week field takes it (2024-W05): the week of this week's Thursday. */
  function thisWeek() {
    const now = new Date();
    const thursday = new Date(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate()));
    thursday.setUTCDate(thursday.getUTCDate() + 4 - (thursday.getUTCDay() || 7));
    const january1 = Date.UTC(thursday.getUTCFullYear(), 0, 1);
    const week = Math.floor((thursday - january1) / 86400000 / 7) + 1;
    return `${thursday.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
  }

  function nowMinutes() {
    const now = new Date();
    now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
    return now.toISOString().slice(0, 16);
  }

  // ------------------------------------------------------------- the form

  const isBinary = (values) => Array.isArray(values) && values.length === 2 &&
    values.map(String).sort().join(",") === "0,1";

  /** Convert text from a control into the field's JSON type (the server validates the rest). */
  function typed(field, raw) {
    if (field.type === "int" || field.type === "float") {
      const number = Number(raw);
      return raw.trim() !== "" && Number.isFinite(number) ? number : raw;
    }
    if (field.type === "bool") return raw === "true" || raw === "1";
    return raw;
  }

  function rangeText(field) {
    const fmt = (v) => (field.type === "int" ? String(Math.round(v)) : String(v));
    if (field.min !== null && field.max !== null) return `${fmt(field.min)} – ${fmt(field.max)}`;
    if (field.min !== null) return `≥ ${fmt(field.min)}`;
    if (field.max !== null) return `≤ ${fmt(field.max)}`;
    return null;
  }

  /** A text/number/date input for `field`, with the field's type and range. */
  function plainInput(field, id) {
    const attrs = {id, name: field.name, autocomplete: "off"};
    if (field.type === "int" || field.type === "float") {
      Object.assign(attrs, {type: "number", inputmode: field.type === "int" ? "numeric" : "decimal",
                            step: field.type === "int" ? "1" : "any"});
      if (field.min !== null) attrs.min = String(field.min);
      if (field.max !== null) attrs.max = String(field.max);
    } else if (field.type === "date") {
      attrs.type = "date";
    } else if (field.type === "datetime") {
      Object.assign(attrs, {type: "datetime-local", step: "1"});
    } else if (field.type === "week" || field.type === "month") {  // their values are 2024-W05, 2024-05
      Object.assign(attrs, {type: field.type, placeholder: field.type === "week" ? "2024-W05" : "2024-05"});
    } else {
      attrs.type = "text";
    }
    return h("input", attrs);
  }

  /** One field: its wrapper node and how to read/write its value. */
  function buildControl(field) {
    const id = `field-${field.name}`;
    const hintId = `hint-${field.name}`;
    const errorId = `error-${field.name}`;
    const values = field.known_values ?? field.categories;
    const label = humanize(field.name);
    const hints = [h("code", {text: field.name})];
    const wrap = h("div", {class: "field", dataset: {field: field.name}});
    const error = h("p", {class: "field-error", id: errorId, hidden: true});
    let read; let write; let main;

    const checkbox = field.required && (field.type === "bool" || isBinary(field.categories ?? field.known_values));
    if (checkbox) {
      main = h("input", {type: "checkbox", id, name: field.name});
      const on = field.type === "bool" ? true : 1;
      const off = field.type === "bool" ? false : 0;
      read = () => ({value: main.checked ? on : off});
      write = (v) => { main.checked = v === true || v === 1 || v === "1" || v === "true"; };
      hints.push(` · checked = ${on}, unchecked = ${off}`);
      wrap.classList.add("field-check");
      wrap.append(h("label", {for: id, text: label}),
                  h("div", {class: "check-row"}, main, h("label", {for: id, text: "Yes"})));
    } else if (Array.isArray(values) || field.type === "bool") {
      const options = Array.isArray(values) ? values : [true, false];
      main = h("select", {id, name: field.name});
      if (!field.required) main.append(h("option", {value: "", text: "— not given —"}));
      for (const v of options) main.append(h("option", {value: String(v), text: String(v)}));
      // Values the model never saw are still valid requests (the answer is a fallback):
      // "Other value…" lets one type them when the field is not a closed set of categories.
      let other = null;
      if (!field.categories && field.type !== "bool") {
        main.append(h("option", {value: OTHER, text: "Other value…"}));
        other = plainInput(field, `${id}-other`);
        other.setAttribute("aria-label", `${label}: other value`);
        other.hidden = true;
        main.addEventListener("change", () => {
          other.hidden = main.value !== OTHER;
          if (!other.hidden) other.focus();
        });
      }
      if (field.known_values) hints.push(` · ${field.known_values.length} values seen in training`);
      else if (field.categories) hints.push(` · ${field.categories.length} categories`);
      const range = rangeText(field);
      if (range && other) hints.push(` · ${range}`);
      read = () => {
        if (main.value === "") return {value: undefined};
        if (main.value !== OTHER) return {value: typed(field, main.value)};
        if (other.validity && other.validity.badInput) return {error: "not a valid value"};
        return other.value.trim() === "" ? {value: undefined} : {value: typed(field, other.value.trim())};
      };
      write = (v) => {
        const text = v === undefined || v === null ? "" : String(v);
        if ([...main.options].some((o) => o.value === text && o.value !== OTHER)) {
          main.value = text;
          if (other) other.hidden = true;
        } else if (other) {
          main.value = OTHER; other.value = text; other.hidden = false;
        }
      };
      wrap.append(h("label", {for: id, text: label}), h("div", {class: "control"}, main, other));
    } else {
      main = plainInput(field, id);
      const range = rangeText(field);
      if (range) hints.push(` · ${range}`);
      read = () => {
        if (main.validity && main.validity.badInput) {
          return {error: ["date", "datetime", "week", "month"].includes(field.type) ? "incomplete date" : "not a number"};
        }
        const raw = main.value.trim();
        return raw === "" ? {value: undefined} : {value: typed(field, raw)};
      };
      write = (v) => { main.value = v === undefined || v === null ? "" : String(v); };
      if (field.required && field.type === "date") main.value = today();
      if (field.required && field.type === "datetime") main.value = nowMinutes();
      if (field.required && field.type === "week") main.value = thisWeek();
      if (field.required && field.type === "month") main.value = today().slice(0, 7);
      wrap.append(h("label", {for: id, text: label}), h("div", {class: "control"}, main));
    }

    main.setAttribute("aria-describedby", `${hintId} ${errorId}`);
    if (field.required) main.setAttribute("aria-required", "true");
    wrap.append(h("p", {class: "hint", id: hintId}, hints), error);

    const setError = (message) => {
      error.textContent = message || "";
      error.hidden = !message;
      wrap.classList.toggle("invalid", Boolean(message));
      if (message) main.setAttribute("aria-invalid", "true");
      else main.removeAttribute("aria-invalid");
    };
    return {field, node: wrap, read, write, setError, focus: () => main.focus()};
  }

  /** (Re)build the form from an /inputs document, keeping the values already entered. */
  function buildForm(inputs) {
    const previous = new Map();
    for (const [name, control] of state.controls) {
      const got = control.read();
      if (!got.error) previous.set(name, got.value);
    }
    state.inputs = inputs;
    state.controls = new Map();
    ui.fields.replaceChildren();
    ui.optional.replaceChildren();
    for (const field of inputs.fields) {
      const control = buildControl(field);
      state.controls.set(field.name, control);
      (field.required ? ui.fields : ui.optional).append(control.node);
      if (previous.has(field.name) && (field.required || previous.get(field.name) !== undefined)) {
        control.write(previous.get(field.name));
      }
    }
    ui.more.hidden = ui.optional.childElementCount === 0;
    const target = inputs.target;
    ui.title.textContent = humanize(inputs.project);
    ui.subtitle.replaceChildren("Forecast ", h("code", {text: target}), " with the live champion release");
    document.title = `${humanize(inputs.project)} · ${target} forecast · cd4ml`;
    ui.help.textContent = "Fill in the inputs the model needs, then press Predict.";
    ui.submit.disabled = false;
  }

  async function loadInputs() {
    try {
      const got = await call("inputs");
      if (got.status === 200 && got.body && Array.isArray(got.body.fields)) {
        buildForm(got.body);
        return true;
      }
      ui.help.textContent = `Cannot read the model's inputs: ${detailOf(got.body, `HTTP ${got.status}`)}`;
    } catch (err) {
      ui.help.textContent = "Cannot reach the service to read the model's inputs; retrying…";
    }
    return false;
  }

  async function loadInputsUntilDone() {
    while (!(await loadInputs())) await new Promise((done) => setTimeout(done, POLL_MS));
  }

  // ------------------------------------------------------- errors & result

  function clearErrors() {
    for (const control of state.controls.values()) control.setError(null);
    ui.errors.hidden = true;
    ui.errors.replaceChildren();
  }

  /** Show errors ({field, reason, value}) next to their fields and in the summary. */
  function showErrors(title, errors) {
    const items = [];
    let first = null;
    for (const err of errors) {
      const control = err.field ? state.controls.get(err.field) : null;
      if (control) {
        control.setError(err.reason);
        if (!control.field.required) ui.more.open = true;
        first = first || control;
      }
      items.push(h("li", {},
        err.field ? h("code", {text: err.field}) : null, err.field ? ": " : null, err.reason,
        err.value !== undefined && err.value !== null ? h("span", {class: "muted", text: ` (got ${JSON.stringify(err.value)})`}) : null));
    }
    ui.errors.replaceChildren(h("p", {class: "errors-title", text: title}), items.length ? h("ul", {}, items) : null);
    ui.errors.hidden = false;
    if (first) first.focus();
  }

  function showResultMessage(text) {
    ui.result.dataset.state = "empty";
    ui.result.replaceChildren(h("h2", {id: "result-heading", text: "Forecast"}), h("p", {class: "muted placeholder", text}));
  }

  function renderResult(doc, record) {
    const target = state.inputs ? state.inputs.target : "prediction";
    const inputs = Object.entries(record).map(([k, v]) => h("span", {class: "chip"}, h("code", {text: k}), " ", String(v)));
    const fallback = doc.fallback ? h("div", {id: "fallback", class: "flag", role: "note", "data-testid": "fallback"},
      h("strong", {text: "Fallback"}), " — never seen in training: ",
      (doc.unknown || []).flatMap((name, i) => [i ? ", " : "", h("code", {text: name})]),
      ". The model answered without what it learned about these values.") : null;
    const exchange = JSON.stringify({request: record, response: doc}, null, 2);
    ui.result.dataset.state = doc.fallback ? "fallback" : "ok";
    ui.result.replaceChildren(...[
      h("h2", {id: "result-heading", text: "Forecast"}),
      h("p", {class: "target"}, humanize(target), " ", h("code", {class: "muted", text: target})),
      h("p", {class: "prediction-line"},
        h("output", {id: "prediction", "data-testid": "prediction", dataset: {value: String(doc.prediction)},
                     text: formatNumber(doc.prediction)})),
      // A classifier's answer: each class with its probability.
      doc.probabilities ? h("p", {class: "probabilities", "data-testid": "probabilities"},
        Object.entries(doc.probabilities).flatMap(([name, p], i) => [i ? " · " : "", h("code", {text: name}), " ",
                                                                       formatNumber(p)])) : null,
      h("p", {class: "inputs-used"}, inputs),
      fallback,
      h("dl", {class: "meta"},
        h("div", {}, h("dt", {text: "Model version"}), h("dd", {id: "result-version", "data-testid": "result-version", text: String(doc.model_version)})),
        h("div", {}, h("dt", {text: "Request id"}), h("dd", {}, h("code", {id: "result-request-id", text: doc.request_id})))),
      h("p", {id: "result-stale", class: "stale", hidden: true}),
      h("details", {class: "exchange"}, h("summary", {text: "Request and response (JSON)"}), h("pre", {text: exchange})),
    ].filter(Boolean));
    ui.result.dataset.version = String(doc.model_version);
    markStale();
  }

  /** A shown result answered by another version than the live one says so. */
  function markStale() {
    const note = document.getElementById("result-stale");
    if (!note || !state.release) return;
    const answered = ui.result.dataset.version;
    const live = String(state.release.model_version);
    note.hidden = answered === live;
    note.textContent = note.hidden ? "" : `Version ${live} is live now: press Predict again for its forecast.`;
  }

  function collect() {
    const record = {};
    const problems = [];
    for (const [name, control] of state.controls) {
      const got = control.read();
      if (got.error) problems.push({field: name, reason: got.error});
      else if (got.value !== undefined) record[name] = got.value;
    }
    return {record, problems};
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (state.busy || !state.inputs) return;
    clearErrors();
    const {record, problems} = collect();
    if (problems.length) {
      showErrors("Please correct these inputs:", problems);
      return;
    }
    state.busy = true;
    ui.submit.disabled = true;
    ui.busy.textContent = "Predicting…";
    ui.result.setAttribute("aria-busy", "true");
    try {
      const got = await call("predict", {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(record),
      });
      if (got.status === 200 && got.body) {
        clearBanner("predict");
        renderResult(got.body, record);
      } else if (got.status === 422) {
        const errors = got.body && Array.isArray(got.body.errors) ? got.body.errors : [];
        const title = errors.length ? "The service rejected these inputs:" : detailOf(got.body, "Invalid input");
        showResultMessage("No forecast: correct the inputs and press Predict.");
        showErrors(title, errors);
      } else if (got.status === 503) {
        showResultMessage("No forecast: the service has no live model yet.");
        showBanner("predict", "No model is live.", detailOf(got.body, "The service has no champion release yet."));
      } else {
        showResultMessage("No forecast.");
        showErrors(`The service answered HTTP ${got.status}: ${detailOf(got.body, "unexpected error")}`, []);
      }
    } catch (err) {
      showResultMessage("No forecast: the service did not answer.");
      showBanner("predict", "The service is unreachable.", "Check that `cd4ml serve` is running, then try again.");
    } finally {
      state.busy = false;
      ui.submit.disabled = false;
      ui.busy.textContent = "";
      ui.result.removeAttribute("aria-busy");
    }
  }

  // ---------------------------------------------------------- the release

  function setRelease(stateName, status) {
    ui.release.dataset.state = stateName;
    ui.releaseStatus.textContent = status;
  }

  function renderRelease(info) {
    const key = `${info.model_version}@${info.live_since}`;
    const swapped = state.releaseKey !== null && state.releaseKey !== key;
    const first = state.releaseKey === null;
    state.release = info;
    state.releaseKey = key;
    setRelease("live", "Live release");
    ui.releaseModel.textContent = info.model_name ?? "—";
    ui.releaseVersion.textContent = String(info.model_version);
    ui.releaseVersion.title = info.release_time ? `released ${formatTime(info.release_time)}` : "";
    const commit = info.git_commit ? String(info.git_commit) : null;
    ui.releaseCommit.replaceChildren(commit ? h("code", {text: commit.slice(0, 7), title: commit}) : "—");
    ui.releaseData.textContent = info.data_version === null || info.data_version === undefined ? "—" : `v${info.data_version}`;
    ui.releaseSince.replaceChildren(info.live_since
      ? h("time", {datetime: info.live_since, title: info.live_since}, formatTime(info.live_since),
          h("span", {class: "ago", text: ` (${ago(info.live_since)})`}))
      : "—");
    clearBanner("release");
    if (state.banner === "predict") clearBanner("predict");
    if (swapped || first) {
      if (swapped) {
        announce(`Now serving ${info.model_name} version ${info.model_version}.`);
        ui.release.classList.remove("swapped");
        void ui.release.offsetWidth; // restart the highlight animation
        ui.release.classList.add("swapped");
      }
      // The known values follow the live model: refresh them (the values entered are kept).
      if (swapped || (state.inputs && state.inputs.model_version !== String(info.model_version))) loadInputs();
    }
    markStale();
  }

  async function pollRelease() {
    if (document.hidden) { setTimeout(pollRelease, POLL_MS); return; }
    try {
      const got = await call("version");
      if (got.status === 200 && got.body) {
        renderRelease(got.body);
      } else {
        const detail = detailOf(got.body, `HTTP ${got.status}`);
        setRelease("none", "No live release");
        for (const node of [ui.releaseModel, ui.releaseVersion, ui.releaseCommit, ui.releaseData, ui.releaseSince]) {
          node.textContent = "—";
        }
        state.release = null;
        state.releaseKey = null;
        showBanner("release", "No model is live.", detail);
      }
    } catch (err) {
      setRelease("down", "Service unreachable");
      showBanner("release", "The service is unreachable.", "Retrying every 2 seconds…");
    } finally {
      setTimeout(pollRelease, POLL_MS);
    }
  }

  // ------------------------------------------------------------------ start

  ui.form.addEventListener("submit", onSubmit);
  loadInputsUntilDone();
  pollRelease();
})();
