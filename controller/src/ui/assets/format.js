// @ts-check
// Number, size and time formatting for every page.
// They take what the API sent, which may be missing: anything that is not
// a number (or a time) is shown as a dash.

/**
 * An API timestamp (RFC 3339) or milliseconds since the epoch.
 * @typedef {string | number | null | undefined} Time
 */

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/**
 * @param {unknown} v
 * @returns {v is number}
 */
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const DASH = "—";

/** @param {unknown} v */
export function num(v) {
  return isNum(v) ? nf0.format(v) : DASH;
}

/**
 * 12.3k, 4.5M
 * @param {unknown} v
 */
export function compact(v) {
  if (!isNum(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1e9) return nf1.format(v / 1e9) + "G";
  if (a >= 1e6) return nf1.format(v / 1e6) + "M";
  if (a >= 1e4) return nf1.format(v / 1e3) + "k";
  if (a >= 100 || Number.isInteger(v)) return nf0.format(v);
  return nf1.format(v);
}

/**
 * A fraction as a percentage: 0.771 → "77.1%".
 * @param {unknown} v
 * @param {number} [digits]
 */
export function pct(v, digits = 1) {
  if (!isNum(v)) return DASH;
  return (v * 100).toFixed(digits) + "%";
}

/**
 * CPU in percent of one core.
 * @param {unknown} v
 */
export function core(v) {
  if (!isNum(v)) return DASH;
  return (v < 1 ? v.toFixed(3) : v.toFixed(2)) + "% of a core";
}

/** @param {unknown} v */
export function bytes(v) {
  if (!isNum(v)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return (i === 0 ? nf0.format(x) : x.toFixed(x < 10 ? 2 : 1)) + " " + units[i];
}

/** @param {unknown} v */
export function mib(v) {
  return isNum(v) ? (v / 1048576).toFixed(1) + " MiB" : DASH;
}

/**
 * @param {unknown} v
 * @param {string} [currency] ISO 4217, USD when not given
 */
export function money(v, currency) {
  if (!isNum(v)) return DASH;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(v);
  } catch {
    return (currency || "") + " " + v.toFixed(2);
  }
}

/** @param {string | null | undefined} h */
export function shortHash(h) {
  return h ? String(h).slice(0, 12) : DASH;
}

/**
 * @param {Time} t
 * @returns {number | null} milliseconds since the epoch
 */
export function parseTime(t) {
  const ms = typeof t === "number" ? t : Date.parse(t);
  return Number.isFinite(ms) ? ms : null;
}

/** @param {Time} t */
export function clock(t) {
  const ms = parseTime(t);
  if (ms === null) return DASH;
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
}

/** @param {Time} t */
export function dateTime(t) {
  const ms = parseTime(t);
  if (ms === null) return DASH;
  return new Date(ms).toLocaleString(undefined, { hour12: false });
}

/** @param {unknown} ms */
export function span(ms) {
  if (!isNum(ms)) return DASH;
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

/**
 * "12s ago", "3m 4s ago".
 * @param {Time} t
 */
export function ago(t) {
  const ms = parseTime(t);
  if (ms === null) return DASH;
  const d = Date.now() - ms;
  if (d < 1500) return "just now";
  return d > 0 ? span(d) + " ago" : "in " + span(-d);
}

/**
 * The badge class of a state or outcome word.
 * @param {string | null | undefined} word
 * @returns {"ok" | "bad" | "warn" | "info" | ""}
 */
export function tone(word) {
  switch (word) {
    case "online":
    case "applied":
    case "succeeded":
    case "promoted":
    case "pass":
    case "passed":
      return "ok";
    case "failed":
    case "fail":
    case "timeout":
      return "bad";
    case "inconclusive":
    case "rolled_back":
    case "superseded":
    case "cancelled":
    case "skipped":
      return "warn";
    case "pending":
    case "applying":
    case "deploying":
    case "running":
    case "analyzing":
    case "promoting":
    case "watching":
    case "in_progress":
      return "info";
    default:
      return "";
  }
}

/** @param {string | null | undefined} s */
export function words(s) {
  return String(s ?? "").replaceAll("_", " ");
}
