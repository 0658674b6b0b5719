// Small SVG charts drawn with the DOM only (no library, nothing loaded from elsewhere).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clockLabel(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: d.getSeconds() ? "2-digit" : undefined });
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 100) return String(Math.round(value));
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

// Line chart: labels are ISO times; series [{name, values (numbers or null), cls}].
function drawLineChart(svg, legend, labels, series) {
  const W = 600, H = 200, L = 44, R = 10, T = 10, B = 24;
  svg.replaceChildren();
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const top = niceMax(Math.max(0, ...values));
  const x = (i) => L + (labels.length > 1 ? (i * (W - L - R)) / (labels.length - 1) : 0);
  const y = (v) => H - B - (v / top) * (H - T - B);
  for (const tick of [0, top / 2, top]) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(tick), y2: y(tick), class: "axis" }));
    svg.append(svgEl("text", { x: L - 6, y: y(tick) + 4, "text-anchor": "end" }, formatNumber(tick)));
  }
  if (labels.length) {
    for (const i of [0, Math.floor((labels.length - 1) / 2), labels.length - 1]) {
      svg.append(svgEl("text", { x: x(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === labels.length - 1 ? "end" : "middle" }, clockLabel(labels[i])));
    }
  }
  for (const s of series) {
    // A gap (null) breaks the line rather than pretending a zero.
    let points = [];
    const flush = () => {
      if (points.length === 1) svg.append(svgEl("circle", { cx: points[0][0], cy: points[0][1], r: 2.5, class: s.cls }));
      if (points.length > 1) svg.append(svgEl("polyline", { points: points.map((p) => p.join(",")).join(" "), class: `series ${s.cls}` }));
      points = [];
    };
    s.values.forEach((v, i) => (v === null || v === undefined ? flush() : points.push([x(i).toFixed(1), y(v).toFixed(1)])));
    flush();
  }
  legend.replaceChildren(
    ...series.map((s) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = `swatch ${s.cls}`;
      item.append(swatch, document.createTextNode(s.name));
      return item;
    }),
  );
}

// Horizontal bars: rows [{label, value, cls, key}].
function drawBars(svg, rows) {
  const W = 420, rowH = 26, L = 150, R = 50;
  svg.setAttribute("viewBox", `0 0 ${W} ${rows.length * rowH + 4}`);
  svg.replaceChildren();
  const top = Math.max(1, ...rows.map((r) => r.value));
  rows.forEach((r, i) => {
    const g = svgEl("g", { "data-state": r.key });
    const yMid = i * rowH + rowH / 2 + 2;
    g.append(svgEl("text", { x: 0, y: yMid + 4, class: "bar-label" }, r.label));
    g.append(svgEl("rect", { x: L, y: i * rowH + 6, height: rowH - 10, width: Math.max(r.value ? 2 : 0, ((W - L - R) * r.value) / top), rx: 3, class: r.cls }));
    g.append(svgEl("text", { x: W - 4, y: yMid + 4, "text-anchor": "end", class: "bar-value count" }, String(r.value)));
    svg.append(g);
  });
}

window.charts = { drawLineChart, drawBars, formatNumber, clockLabel };
