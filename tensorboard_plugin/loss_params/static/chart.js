// A line chart over epochs, drawn in SVG: lines, optional bands, axes with
// ticks, a log-y option and a hover rule with a tooltip. One function out:
// drawChart.

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 170;
const MARGIN = {top: 8, right: 12, bottom: 22, left: 52};

/**
 * @typedef {{x: number[], y: number[], color: string, opacity?: number,
 *            width?: number, dash?: string, attrs?: Object<string, string>}} Line
 * @typedef {{x: number[], lo: number[], hi: number[], color: string}} Band
 * @typedef {{color: string, label: string, value: string}} TooltipRow
 * @typedef {{lines: Line[], bands?: Band[], logY?: boolean, label: string,
 *            empty?: string, tooltip: function(number): TooltipRow[]}} ChartSpec
 */

/**
 * Draws `spec` into `host`, replacing what was there.
 *
 * Non-finite values (and values <= 0 on a log axis) break a line rather than
 * bend it. A line's path has one point per finite value, so a series of N
 * epochs draws N points.
 *
 * @param {HTMLElement} host
 * @param {ChartSpec} spec
 */
export function drawChart(host, spec) {
  const width = Math.max(host.clientWidth || 0, 260);
  const plot = {w: width - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom};
  const shown = (v) => Number.isFinite(v) && (!spec.logY || v > 0);
  const xs = [];
  const ys = [];
  for (const line of spec.lines) {
    line.x.forEach((x, i) => {
      if (shown(line.y[i])) {
        xs.push(x);
        ys.push(line.y[i]);
      }
    });
  }
  for (const band of spec.bands || []) {
    band.x.forEach((x, i) => {
      for (const v of [band.lo[i], band.hi[i]]) {
        if (shown(v)) {
          xs.push(x);
          ys.push(v);
        }
      }
    });
  }
  const svg = el('svg', {width, height: HEIGHT, class: 'chart', role: 'img'});
  svg.setAttribute('aria-label', spec.label);
  host.replaceChildren(svg);
  if (!xs.length) {
    const text = el('text', {x: width / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'empty'});
    text.textContent = spec.logY ? 'No positive values to show on a log scale' : spec.empty || 'No finite values';
    svg.append(text);
    return;
  }
  const [xLo, xHi] = extent(xs);
  const [yLo, yHi] = extent(ys);
  const x = linearScale(xLo, xHi, 0, plot.w);
  const y = (spec.logY ? logScale : linearScale)(yLo, yHi, plot.h, 0);
  const g = el('g', {transform: `translate(${MARGIN.left},${MARGIN.top})`});
  svg.append(g);
  drawAxes(g, x, y, plot);
  for (const band of spec.bands || []) {
    g.append(el('path', {d: bandPath(band, x, y, shown), fill: band.color, 'fill-opacity': 0.15, stroke: 'none'}));
  }
  for (const line of spec.lines) {
    const path = el('path', {
      d: linePath(line, x, y, shown),
      fill: 'none',
      stroke: line.color,
      'stroke-width': line.width || 1.5,
      'stroke-opacity': line.opacity ?? 1,
      ...(line.dash ? {'stroke-dasharray': line.dash} : {}),
      ...line.attrs,
    });
    g.append(path);
    // A lone point draws no segment: mark it so a run's first epoch shows.
    if (line.x.filter((_, i) => shown(line.y[i])).length === 1) {
      const i = line.y.findIndex(shown);
      g.append(el('circle', {cx: x(line.x[i]), cy: y(line.y[i]), r: 3, fill: line.color}));
    }
  }
  addHover(host, svg, g, x, plot, [...new Set(xs)].sort((a, b) => a - b), spec.tooltip);
}

/**
 * The least and the greatest of `values`, found in a loop: `Math.min(...values)`
 * passes each value as an argument, and Chromium throws a RangeError above
 * about 125,000 of them (a 64-element variable over 2,000 epochs).
 * @param {number[]} values
 * @return {number[]} [least, greatest]
 */
function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function linePath(line, x, y, shown) {
  let d = '';
  let pen = 'M';
  line.x.forEach((xv, i) => {
    if (!shown(line.y[i])) {
      pen = 'M';
      return;
    }
    d += `${pen}${x(xv).toFixed(1)},${y(line.y[i]).toFixed(1)}`;
    pen = 'L';
  });
  return d;
}

function bandPath(band, x, y, shown) {
  const kept = band.x.map((_, i) => i).filter((i) => shown(band.lo[i]) && shown(band.hi[i]));
  if (!kept.length) return '';
  const upper = kept.map((i) => [band.x[i], band.hi[i]]);
  const lower = kept.map((i) => [band.x[i], band.lo[i]]).reverse();
  return 'M' + [...upper, ...lower].map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join('L') + 'Z';
}

function drawAxes(g, x, y, plot) {
  const axes = el('g', {class: 'axes'});
  g.append(axes);
  for (const t of y.ticks) {
    axes.append(el('line', {x1: 0, x2: plot.w, y1: y(t), y2: y(t), class: 'grid'}));
    const label = el('text', {x: -6, y: y(t) + 3, 'text-anchor': 'end'});
    label.textContent = formatNumber(t);
    axes.append(label);
  }
  for (const t of x.ticks.filter(Number.isInteger)) {
    const label = el('text', {x: x(t), y: plot.h + 15, 'text-anchor': 'middle'});
    label.textContent = String(t);
    axes.append(label);
  }
  axes.append(el('line', {x1: 0, x2: plot.w, y1: plot.h, y2: plot.h, class: 'axis'}));
}

function addHover(host, svg, g, x, plot, steps, tooltip) {
  const rule = el('line', {y1: 0, y2: plot.h, class: 'rule', visibility: 'hidden'});
  const overlay = el('rect', {width: plot.w, height: plot.h, fill: 'transparent'});
  g.append(rule, overlay);
  overlay.addEventListener('mousemove', (event) => {
    const area = overlay.getBoundingClientRect();
    const step = nearest(steps, x.invert(event.clientX - area.left));
    rule.setAttribute('x1', x(step));
    rule.setAttribute('x2', x(step));
    rule.setAttribute('visibility', 'visible');
    const box = tooltipBox();
    box.replaceChildren(tooltipContent(step, tooltip(step)));
    box.hidden = false;
    const left = area.left + x(step) + 12;
    box.style.left = `${Math.max(0, Math.min(left, innerWidth - box.offsetWidth))}px`;
    box.style.top = `${Math.max(0, Math.min(area.top, innerHeight - box.offsetHeight))}px`;
  });
  overlay.addEventListener('mouseleave', () => {
    rule.setAttribute('visibility', 'hidden');
    tooltipBox().hidden = true;
  });
}

/**
 * The page's one tooltip, on the body and fixed to the viewport, so that no
 * card clips it (cards contain their paint: see style.css).
 * @return {HTMLElement}
 */
function tooltipBox() {
  let box = document.body.querySelector(':scope > .tooltip');
  if (!box) {
    box = document.createElement('div');
    box.className = 'tooltip';
    box.hidden = true;
    document.body.append(box);
  }
  return box;
}

function tooltipContent(step, rows) {
  const table = document.createElement('table');
  const head = table.insertRow();
  const title = head.insertCell();
  title.colSpan = 3;
  title.className = 'step';
  title.textContent = `epoch ${step}`;
  for (const row of rows) {
    const tr = table.insertRow();
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = row.color;
    tr.insertCell().append(swatch);
    tr.insertCell().textContent = row.label;
    tr.insertCell().textContent = row.value;
  }
  return table;
}

function nearest(sorted, value) {
  let best = sorted[0];
  for (const s of sorted) {
    if (Math.abs(s - value) < Math.abs(best - value)) best = s;
  }
  return best;
}

function linearScale(lo, hi, from, to) {
  // A constant series (up to rounding, e.g. after smoothing) gets a padded
  // range, rather than a zoom onto float noise.
  if (hi - lo <= Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const scale = (v) => from + ((v - lo) / (hi - lo)) * (to - from);
  scale.invert = (p) => lo + ((p - from) / (to - from)) * (hi - lo);
  scale.ticks = niceTicks(lo, hi);
  return scale;
}

function logScale(lo, hi, from, to) {
  const inner = linearScale(Math.log10(lo), Math.log10(hi), from, to);
  const scale = (v) => inner(Math.log10(v));
  scale.invert = (p) => 10 ** inner.invert(p);
  const decades = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) decades.push(10 ** e);
  const inside = decades.filter((t) => t >= lo && t <= hi);
  scale.ticks = inside.length >= 2 ? inside : [lo, ...inside, hi];
  return scale;
}

function niceTicks(lo, hi, count = 4) {
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  if (!(step > 0) || !Number.isFinite(step)) return [lo];
  const ticks = [];
  // Counting in whole steps: adding a step to a large value can leave it unchanged.
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9 && ticks.length <= count * 3; i++) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/**
 * Formats a number for axes and tooltips: 4 significant digits.
 * @param {number} v
 * @return {string}
 */
export function formatNumber(v) {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
