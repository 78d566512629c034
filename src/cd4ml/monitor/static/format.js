// How numbers, days and times read on the dashboard. Every function takes null and answers "—".
"use strict";

export const NONE = "—";
const known = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, digits) => new Intl.NumberFormat(undefined, {minimumFractionDigits: digits,
  maximumFractionDigits: digits}).format(v);

/** A count: 12,345. */
export const count = (v) => (known(v) ? new Intl.NumberFormat().format(Math.round(v)) : NONE);

/** A count on an axis: 12k. */
export const compact = (v) => (known(v) ? new Intl.NumberFormat(undefined, {notation: "compact",
  maximumFractionDigits: 1}).format(v) : NONE);

/** A model metric: three decimals below 1 (0.612), two up to 1000 (4.27), none above. */
export function metric(v) {
  if (!known(v)) return NONE;
  const size = Math.abs(v);
  return fixed(v, size < 1 ? 3 : size < 1000 ? 2 : 0);
}

/** A drift statistic (PSI, KS): two decimals, or one significant digit when smaller than 0.01. */
export function stat(v) {
  if (!known(v)) return NONE;
  if (v === 0 || Math.abs(v) >= 0.01) return fixed(v, 2);
  return String(Number(v.toPrecision(1)));
}

export function pvalue(v) {
  if (!known(v)) return NONE;
  return v < 0.001 ? "< 0.001" : fixed(v, 3);
}

export const ms = (v) => (known(v) ? `${fixed(v, v < 10 ? 1 : 0)} ms` : NONE);

/** A fraction as a percentage: 0.123 -> 12.3%. */
export const pct = (v, digits = 1) => (known(v) ? `${fixed(v * 100, digits)}%` : NONE);

/** A relative change with its sign: +16.4%. */
export const change = (v) => (known(v) ? `${v > 0 ? "+" : v < 0 ? "−" : "±"}${fixed(Math.abs(v) * 100, 1)}%` : NONE);

/** A signed number (bias): +0.31, −0.42. */
export const signed = (v) => (known(v) ? `${v > 0 ? "+" : v < 0 ? "−" : ""}${fixed(Math.abs(v), 2)}` : NONE);

/** A problem day (ISO date) on an axis: "Jan 8". Parsed as UTC: days carry no time zone. */
export function shortDay(iso) {
  const when = new Date(`${iso}T00:00:00Z`);
  if (Number.isNaN(when.getTime())) return String(iso);
  return new Intl.DateTimeFormat(undefined, {month: "short", day: "numeric", timeZone: "UTC"}).format(when);
}

/** A wall-clock time: "Mar 2, 2026, 9:00 AM" in the viewer's time zone. */
export function time(iso) {
  if (!iso) return NONE;
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"}).format(when);
}

export function shortTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return new Intl.DateTimeFormat(undefined, {month: "short", day: "numeric"}).format(when);
}

/** An age in days as words: "40 min", "5.2 h", "5.9 days". */
export function age(days) {
  if (!known(days)) return NONE;
  if (days < 1 / 24) return `${Math.max(0, Math.round(days * 1440))} min`;
  if (days < 1) return `${fixed(days * 24, 1)} h`;
  return `${fixed(days, 1)} days`;
}

export const version = (v) => (v === null || v === undefined ? NONE : `v${v}`);
