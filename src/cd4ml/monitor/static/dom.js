// Building DOM and SVG nodes, tables and empty states: the pieces every panel uses.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children, svg) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style" && typeof value === "object") {
      // setProperty: custom properties (--c) are not reachable as style fields.
      for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    }
    else if (!svg && key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("p", {class: "x", text: "hi"}, child, ...). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children, false);
}

/** An SVG element, same signature as h(). */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

/** A <title> child: the tooltip of an SVG shape (and its accessible name). */
export const tip = (text) => s("title", {text});

/** "Nothing to show" text for a panel or a part of one. */
export const empty = (text, id) => h("p", {class: "empty", id, text});

/**
 * A table: head is a list of column names; each row is a list of cells, a cell is text, a node, or
 * {text|node, class, title}. Columns listed in `numeric` are right-aligned.
 */
export function table({id, caption, head, rows, numeric = [], rowHeader = true, rowAttrs = () => ({})}) {
  const specOf = (value) => {
    if (value instanceof Node) return {node: value};
    return value !== null && typeof value === "object" ? value : {text: value};
  };
  const cell = (tag, spec, index) => {
    const cls = [numeric.includes(index) ? "num" : "", spec.class || ""].join(" ").trim() || undefined;
    const content = spec.node ?? (spec.text === null || spec.text === undefined ? "—" : String(spec.text));
    return h(tag, {class: cls, title: spec.title, scope: spec.scope}, content);
  };
  return h("table", {id, class: "data"},
    caption ? h("caption", {text: caption}) : null,
    h("thead", {}, h("tr", {}, head.map((name, i) => cell("th", {text: name, scope: "col"}, i)))),
    // The first cell names its row: a row header for screen readers.
    h("tbody", {}, rows.map((row, r) => h("tr", rowAttrs(r), row.map((value, i) => (i === 0 && rowHeader
      ? cell("th", {...specOf(value), scope: "row"}, i) : cell("td", specOf(value), i)))))));
}

/** The numbers behind a chart, folded: charts stay readable, the table is one click away. */
export function numbers(summary, content, id) {
  return h("details", {class: "numbers", id}, h("summary", {text: summary}), h("div", {class: "scroll"}, content));
}

/** A legend: items are {label, color, shape: "box"|"line"|"dash"|"ring"|"outline"}. */
export function legend(items, label = "Legend") {
  return h("ul", {class: "legend", "aria-label": label}, items.map((item) =>
    h("li", {}, h("span", {class: `key key-${item.shape || "box"}`, style: {"--c": item.color}, "aria-hidden": "true"}),
      item.label)));
}
