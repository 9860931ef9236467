// @ts-check
// SVG line charts, drawn here: one chart per KPI, one line per variant.
// Colours come from the stylesheet (classes s0…s8), the baseline is dashed,
// every point has a tooltip, and the figure has a text summary for screen
// readers.

import { h, s } from "/ui/dom.js";
import { clock } from "/ui/format.js";

/**
 * One line: a variant's points, `cls` its colour class (s0…s8).
 * @typedef {{ name: string, cls: string, baseline?: boolean, points: { t: number, v: number | null }[] }} Series
 */

const W = 400;
const H = 170;
const PAD = { l: 62, r: 12, t: 10, b: 26 };

/**
 * 1, 2 or 5 × 10^k, at least `raw`.
 * @param {number} raw
 */
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

/**
 * About `count` round values from `lo` to `hi`.
 * @param {number} lo
 * @param {number} hi
 * @param {number} count
 */
function ticks(lo, hi, count) {
  if (!(hi > lo)) hi = lo + 1;
  const step = niceStep((hi - lo) / count);
  const first = Math.floor(lo / step) * step;
  const out = [];
  for (let v = first; v < hi + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * lineChart({title, series: [{name, cls, baseline, points: [{t, v}]}],
 *            format, min, max}) → <figure>
 * `min`/`max` fix the axis (e.g. 0..1 for a share); otherwise it fits the
 * data, from 0.
 * @param {{ id: string, title: string, series: Series[], format: (v: number) => string, min?: number, max?: number | null }} chart
 */
export function lineChart({ id, title, series, format, min = 0, max = null }) {
  const values = series.flatMap((x) => x.points.filter((p) => Number.isFinite(p.v)));
  const fig = h("figure", { class: "chart", id });
  fig.append(h("figcaption", null, title));
  if (values.length === 0) {
    fig.append(h("p", { class: "chart-empty" }, "No measurements yet"));
    return fig;
  }
  let t0 = Math.min(...values.map((p) => p.t));
  let t1 = Math.max(...values.map((p) => p.t));
  if (t1 === t0) {
    t0 -= 500;
    t1 += 500;
  }
  let lo = Math.min(min ?? Infinity, ...values.map((p) => p.v));
  let hi = Math.max(max ?? -Infinity, ...values.map((p) => p.v));
  if (hi === lo) hi = lo === 0 ? 1 : lo * 1.1;
  const ys = ticks(lo, hi, 4);
  lo = Math.min(lo, ys[0]);
  hi = Math.max(hi, ys[ys.length - 1]);
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => PAD.t + (1 - (v - lo) / (hi - lo)) * (H - PAD.t - PAD.b);

  const summary = series
    .map((x) => {
      const last = [...x.points].reverse().find((p) => Number.isFinite(p.v));
      return `${x.name}: ${last ? format(last.v) : "no data"}`;
    })
    .join("; ");
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${title}, latest: ${summary}`,
  });
  for (const v of ys) {
    if (v < lo - 1e-12 || v > hi + 1e-12) continue;
    svg.append(
      s("line", { class: "gridline", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }),
      s("text", { class: "axis", x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)),
    );
  }
  svg.append(
    s("line", { class: "frame", x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b }),
    s("text", { class: "axis", x: PAD.l, y: H - 8, "text-anchor": "start" }, clock(t0)),
    s("text", { class: "axis", x: W - PAD.r, y: H - 8, "text-anchor": "end" }, clock(t1)),
  );
  for (const line of series) {
    // A gap in the data is a gap in the line.
    let d = "";
    let pen = false;
    for (const p of line.points) {
      if (!Number.isFinite(p.v)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    if (d) {
      svg.append(
        s("path", { class: `line ${line.cls}${line.baseline ? " baseline" : ""}`, d, "data-variant": line.name }),
      );
    }
    for (const p of line.points) {
      if (!Number.isFinite(p.v)) continue;
      svg.append(
        s(
          "circle",
          { class: `dot ${line.cls}`, cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: line.points.length > 60 ? 1.6 : 2.6 },
          s("title", null, `${line.name} at ${clock(p.t)}: ${format(p.v)}`),
        ),
      );
    }
  }
  fig.append(svg);
  return fig;
}

/**
 * The legend shared by a group of charts.
 * @param {{ name: string, cls: string, baseline?: boolean }[]} series
 */
export function legend(series) {
  return h(
    "ul",
    { class: "legend", "aria-label": "Variants" },
    series.map((x) =>
      h(
        "li",
        null,
        h("span", { class: `swatch ${x.cls}${x.baseline ? " baseline" : ""}`, "aria-hidden": "true" }),
        x.name,
        x.baseline ? h("span", { class: "muted" }, "(baseline)") : null,
      ),
    ),
  );
}
