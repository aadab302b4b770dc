// A line chart over epochs, drawn in SVG: lines, optional bands, axes with
// ticks and titles, a log-y option and a hover rule with a tooltip. Out:
// drawChart, lines (a series' raw and smoothed lines), and followTheme,
// which keeps the tab's colours on TensorBoard's light or dark theme. Ticks
// and their labels are numeric.js's.

import {FLOAT32_EPSILON, logTicks, niceTicks, smooth, tickLabels} from './numeric.js';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 180;
// Room at the left for tick labels such as "1.23e-5" and the y title beside
// them (more where the labels are longer); at the bottom for the epoch
// labels and the x title below them.
const MARGIN = {top: 8, right: 12, bottom: 32, left: 64};
// About how wide a character of a tick label (10px) and of the empty
// chart's message (12px) is, in pixels: enough for digits and most words.
const TICK_CHAR = 5.8;
const MESSAGE_CHAR = 6.8;
// The y title's room at the left, beside the tick labels, and the gap
// between the labels and the plot.
const TITLE_ROOM = 20;
const TICK_GAP = 6;
// The unit of the paths' coordinates: a tenth of a pixel (see `point`).
const TENTHS = 10;

/**
 * @typedef {{x: number[], y: number[], color: string, opacity?: number,
 *            width?: number, dash?: string, attrs?: Object<string, string>}} Line
 *   `x` ascending, as steps are.
 * @typedef {{x: number[], lo: number[], hi: number[], color: string}} Band
 *   `x` ascending.
 * @typedef {{color: string, label: string, value: string}} TooltipRow
 * @typedef {{lines: Line[], bands?: Band[], logY?: boolean, label: string,
 *            yTitle?: string, empty?: string,
 *            tooltip: function(number): TooltipRow[]}} ChartSpec
 * @typedef {{lo: number, hi: number}} Range
 */

/**
 * Draws `spec` into `host`, replacing what was there.
 *
 * Non-finite values (and values <= 0 on a log axis) break a line rather than
 * bend it. A line keeps, per pixel column of the plot, its first, least,
 * greatest and last point there (M4, Jugel et al. 2014): the drawn path
 * covers the same pixels as one through every point, a one-epoch spike
 * included, with at most about four points per column however long the
 * series. Bands keep, per column, their lowest `lo` and highest `hi`.
 *
 * @param {HTMLElement} host
 * @param {ChartSpec} spec
 */
export function drawChart(host, spec) {
  const width = Math.max(host.clientWidth || 0, 260);
  const plot = {w: width - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom};
  const shown = (v) => Number.isFinite(v) && (!spec.logY || v > 0);
  const bands = spec.bands || [];
  const svg = el('svg', {width, height: HEIGHT, class: 'chart', role: 'img'});
  svg.setAttribute('aria-label', spec.label);
  host.replaceChildren(svg);
  const xRange = {lo: Infinity, hi: -Infinity};
  for (const line of spec.lines) widen(xRange, line.x, (i) => shown(line.y[i]));
  for (const band of bands) widen(xRange, band.x, (i) => shown(band.lo[i]) && shown(band.hi[i]));
  if (xRange.lo > xRange.hi) {
    const finite = spec.lines.some((line) => line.y.some(Number.isFinite)) ||
        bands.some((band) => band.lo.some(Number.isFinite));
    const message = spec.logY && finite ? 'No positive values to show on a log scale' :
      spec.empty || 'No finite values';
    svg.append(wrapped(message, width));
    return;
  }
  let x = linearScale(xRange.lo, xRange.hi, 0, plot.w);
  const column = (v) => Math.floor(x(v));
  // Which indices of each x array some line or band shows: the steps a hover can land on.
  const marks = new Map();
  const markOf = (xs) => marks.get(xs) || marks.set(xs, new Uint8Array(xs.length)).get(xs);
  const yRange = {lo: Infinity, hi: -Infinity};
  const keptLines = spec.lines.map((line) => reduceLine(line, column, shown, markOf(line.x), yRange));
  const keptBands = bands.map((band) => reduceBand(band, column, shown, markOf(band.x), yRange));
  const y = spec.logY ? logScale(yRange.lo, yRange.hi, plot.h, 0) : linearScale(...float32Ends(yRange), plot.h, 0);
  const labels = tickLabels(y.ticks);
  // Long labels (ticks that differ in their sixth digit) take room from the
  // plot. The points kept per column of the wider plot are a superset of
  // those the narrower one needs: the drawing stays exact.
  const left = Math.max(MARGIN.left,
      Math.ceil(Math.max(0, ...labels.map((l) => l.length)) * TICK_CHAR) + TICK_GAP + TITLE_ROOM);
  if (left > MARGIN.left) {
    plot.w -= left - MARGIN.left;
    x = linearScale(xRange.lo, xRange.hi, 0, plot.w);
  }
  const g = el('g', {transform: `translate(${left},${MARGIN.top})`});
  svg.append(g);
  drawAxes(g, x, y, labels, plot, left, spec.yTitle);
  // Bands and lines are drawn in tenths of a pixel (see `point`), their strokes in pixels.
  const tenths = el('g', {transform: `scale(${1 / TENTHS})`});
  g.append(tenths);
  bands.forEach((band, b) => {
    const d = bandPath(band, keptBands[b], x, y);
    tenths.append(el('path', {d, fill: band.color, 'fill-opacity': 0.15, stroke: 'none'}));
  });
  spec.lines.forEach((line, l) => {
    const kept = keptLines[l];
    tenths.append(el('path', {
      d: linePath(line, kept, x, y),
      fill: 'none',
      stroke: line.color,
      'stroke-width': line.width || 1.5,
      'stroke-opacity': line.opacity ?? 1,
      'vector-effect': 'non-scaling-stroke',
      ...(line.dash ? {'stroke-dasharray': line.dash} : {}),
      ...line.attrs,
    }));
    // A lone point draws no segment: mark it so a run's first epoch shows.
    // One point kept means one point shown: two in a column keep both.
    if (kept.length === 1) {
      const i = ~kept[0];
      g.append(el('circle', {cx: x(line.x[i]), cy: y(line.y[i]), r: 3, fill: line.color}));
    }
  });
  addHover(g, x, plot, union([...marks].map(([xs, mark]) => markedSteps(xs, mark))), spec.tooltip);
}

/**
 * The lines of one series: the raw values, and when smoothing is on, the
 * smoothed values drawn over a faint raw line, as in the Scalars tab.
 * @param {number[]} steps
 * @param {number[]} values
 * @param {number} weight the smoothing's
 * @param {Object<string, string>} attrs `color`, and the path's data attributes (without `data-`)
 * @return {Line[]}
 */
export function lines(steps, values, weight, attrs) {
  const data = Object.fromEntries(Object.entries(attrs).filter(([k]) => k !== 'color')
      .map(([k, v]) => [`data-${k}`, v]));
  if (!weight) return [{x: steps, y: values, color: attrs.color, attrs: data}];
  return [
    {x: steps, y: values, color: attrs.color, opacity: 0.25, attrs: data},
    {x: steps, y: smooth(values, weight), color: attrs.color, attrs: {...data, 'data-smoothed': 'true'}},
  ];
}

/**
 * Widens `range` to the first and last x at which `isShown`: x ascending,
 * that is the x extent of the shown points, found from both ends.
 * @param {Range} range
 * @param {number[]} xs
 * @param {function(number): boolean} isShown
 */
function widen(range, xs, isShown) {
  let i = 0;
  while (i < xs.length && !isShown(i)) i++;
  if (i === xs.length) return;
  let j = xs.length - 1;
  while (!isShown(j)) j--;
  range.lo = Math.min(range.lo, xs[i]);
  range.hi = Math.max(range.hi, xs[j]);
}

/**
 * The points of `line` to draw, in one pass: per pixel column, the indices
 * of its first, least, greatest and last shown value, deduplicated; an
 * index `i` that starts a segment (after a gap, or the first) is stored as
 * `~i`. Marks the shown indices in `mark`, and widens `range` to the values:
 * each column's least and greatest are kept, so the extent is the one of
 * every shown value.
 * @param {Line} line
 * @param {function(number): number} column pixel column of an x
 * @param {function(number): boolean} shown
 * @param {Uint8Array} mark
 * @param {Range} range
 * @return {number[]}
 */
function reduceLine(line, column, shown, mark, range) {
  const {x: xs, y: ys} = line;
  const kept = [];
  let col = NaN; // the column being gathered; NaN: none
  let first = 0;
  let low = 0;
  let high = 0;
  let last = 0;
  let starts = true;
  const close = () => {
    if (Number.isNaN(col)) return;
    // first <= min(low, high) <= max(low, high) <= last: each kept once, in x order.
    const a = Math.min(low, high);
    const b = Math.max(low, high);
    kept.push(starts ? ~first : first);
    if (a > first) kept.push(a);
    if (b > a) kept.push(b);
    if (last > b) kept.push(last);
    range.lo = Math.min(range.lo, ys[low]);
    range.hi = Math.max(range.hi, ys[high]);
    starts = false;
    col = NaN;
  };
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (!shown(v)) {
      close();
      starts = true;
      continue;
    }
    mark[i] = 1;
    const c = column(xs[i]);
    if (c !== col) {
      close();
      col = c;
      first = low = high = last = i;
      continue;
    }
    if (v < ys[low]) low = i;
    if (v > ys[high]) high = i;
    last = i;
  }
  close();
  return kept;
}

/**
 * The columns of `band` to draw, in one pass over the indices where both
 * edges are shown: per pixel column, `[first, last, least lo, greatest hi]`
 * in a flat array. Marks those indices in `mark` and widens `range`.
 * @param {Band} band
 * @param {function(number): number} column
 * @param {function(number): boolean} shown
 * @param {Uint8Array} mark
 * @param {Range} range
 * @return {number[]}
 */
function reduceBand(band, column, shown, mark, range) {
  const columns = [];
  let col = NaN;
  for (let i = 0; i < band.x.length; i++) {
    const lo = band.lo[i];
    const hi = band.hi[i];
    if (!shown(lo) || !shown(hi)) continue;
    mark[i] = 1;
    range.lo = Math.min(range.lo, lo);
    range.hi = Math.max(range.hi, hi);
    const c = column(band.x[i]);
    if (c !== col) {
      col = c;
      columns.push(i, i, lo, hi);
    } else {
      const at = columns.length - 4;
      columns[at + 1] = i;
      columns[at + 2] = Math.min(columns[at + 2], lo);
      columns[at + 3] = Math.max(columns[at + 3], hi);
    }
  }
  return columns;
}

/**
 * @param {Line} line
 * @param {number[]} kept from reduceLine
 * @param {function(number): number} x
 * @param {function(number): number} y
 * @return {string}
 */
function linePath(line, kept, x, y) {
  let d = '';
  for (const k of kept) {
    const i = k < 0 ? ~k : k;
    d += `${k < 0 ? 'M' : 'L'}${point(x(line.x[i]), y(line.y[i]))}`;
  }
  return d;
}

/**
 * The band's outline: its upper edge forwards, its lower edge back, each
 * column spanning its first to last x at its extreme.
 * @param {Band} band
 * @param {number[]} columns from reduceBand
 * @param {function(number): number} x
 * @param {function(number): number} y
 * @return {string}
 */
function bandPath(band, columns, x, y) {
  if (!columns.length) return '';
  const upper = [];
  const lower = [];
  for (let at = 0; at < columns.length; at += 4) {
    const from = x(band.x[columns[at]]);
    const to = x(band.x[columns[at + 1]]);
    upper.push(point(from, y(columns[at + 3])), point(to, y(columns[at + 3])));
    lower.push(point(from, y(columns[at + 2])), point(to, y(columns[at + 2])));
  }
  return `M${upper.join('L')}L${lower.reverse().join('L')}Z`;
}

/**
 * A path's point, in whole tenths of a pixel (drawn in a group scaled by
 * 1 / TENTHS): finer is invisible and longer to parse, and an integer is
 * written in a fifth of the time of a decimal such as `12.3`, where the
 * first view of 20 runs writes a quarter of a million points.
 */
function point(px, py) {
  return `${Math.round(px * TENTHS)},${Math.round(py * TENTHS)}`;
}

/**
 * The ascending, distinct values of `xs` (ascending) where `mark` is set.
 * @param {number[]} xs
 * @param {Uint8Array} mark
 * @return {number[]}
 */
function markedSteps(xs, mark) {
  const steps = [];
  for (let i = 0; i < xs.length; i++) {
    if (mark[i] && xs[i] !== steps[steps.length - 1]) steps.push(xs[i]);
  }
  return steps;
}

/**
 * The ascending, distinct values of ascending lists, merged in pairs:
 * each value is copied once per halving, not once per list.
 * @param {number[][]} lists
 * @return {number[]}
 */
function union(lists) {
  while (lists.length > 1) {
    const merged = [];
    for (let i = 0; i < lists.length; i += 2) {
      merged.push(i + 1 < lists.length ? merge(lists[i], lists[i + 1]) : lists[i]);
    }
    lists = merged;
  }
  return lists[0] || [];
}

/**
 * @param {number[]} a ascending, distinct
 * @param {number[]} b ascending, distinct
 * @return {number[]} the ascending, distinct values of both
 */
function merge(a, b) {
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const v = j >= b.length || (i < a.length && a[i] <= b[j]) ? a[i] : b[j];
    if (v !== out[out.length - 1]) out.push(v);
    while (i < a.length && a[i] === v) i++;
    while (j < b.length && b[j] === v) j++;
  }
  return out;
}

/**
 * The grid, the ticks with their labels, and the axes' titles.
 * @param {SVGElement} g the plot's group
 * @param {Function} x the epoch scale
 * @param {Function} y the value scale, with its `ticks` and `minor` ticks
 * @param {string[]} labels the labels of `y.ticks`
 * @param {{w: number, h: number}} plot
 * @param {number} left the room at the plot's left
 * @param {string=} yTitle
 */
function drawAxes(g, x, y, labels, plot, left, yTitle) {
  const axes = el('g', {class: 'axes'});
  g.append(axes);
  for (const t of y.minor || []) {
    axes.append(el('line', {x1: 0, x2: plot.w, y1: y(t), y2: y(t), class: 'grid minor'}));
  }
  y.ticks.forEach((t, i) => {
    axes.append(el('line', {x1: 0, x2: plot.w, y1: y(t), y2: y(t), class: 'grid'}));
    axes.append(text(labels[i], {x: -TICK_GAP, y: y(t) + 3, 'text-anchor': 'end'}));
  });
  for (const t of x.ticks.filter(Number.isInteger)) {
    axes.append(text(String(t), {x: x(t), y: plot.h + 14, 'text-anchor': 'middle'}));
  }
  axes.append(el('line', {x1: 0, x2: plot.w, y1: plot.h, y2: plot.h, class: 'axis'}));
  axes.append(text('epoch', {x: plot.w / 2, y: plot.h + 27, 'text-anchor': 'middle', class: 'title'}));
  if (yTitle) {
    const at = 6 - left;
    axes.append(text(yTitle, {
      x: at, y: plot.h / 2, 'text-anchor': 'middle', 'dominant-baseline': 'hanging',
      transform: `rotate(-90 ${at} ${plot.h / 2})`, class: 'title',
    }));
  }
}

/**
 * An empty chart's message, centred, in as many lines as the chart's width
 * needs: one text node (its text the message, whole), a line per tspan.
 * @param {string} message
 * @param {number} width
 * @return {SVGElement}
 */
function wrapped(message, width) {
  const most = Math.max(10, Math.floor((width - 24) / MESSAGE_CHAR));
  const lines = [''];
  for (const word of message.split(' ')) {
    const line = lines[lines.length - 1];
    if (line && (line + word).length > most) lines.push('');
    lines[lines.length - 1] += `${word} `;
  }
  const node = el('text', {x: width / 2, y: HEIGHT / 2 - (lines.length - 1) * 8, 'text-anchor': 'middle',
    class: 'empty'});
  lines.forEach((line, i) => {
    const span = el('tspan', {x: width / 2, dy: i ? 16 : 0});
    // The break's space stays with the line before it: the node's text is the message.
    span.textContent = i === lines.length - 1 ? line.trimEnd() : line;
    node.append(span);
  });
  return node;
}

/** An SVG text node; `content` as text, never markup. */
function text(content, attrs) {
  const node = el('text', attrs);
  node.textContent = content;
  return node;
}

function addHover(g, x, plot, steps, tooltip) {
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

/**
 * The value of `sorted` (ascending, not empty) closest to `value`.
 * @param {number[]} sorted
 * @param {number} value
 * @return {number}
 */
function nearest(sorted, value) {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  // sorted[lo] is the first >= value (or the last): the closest is it or the one before.
  return lo > 0 && value - sorted[lo - 1] <= sorted[lo] - value ? sorted[lo - 1] : sorted[lo];
}

/**
 * A value axis's range, each end moved out to a tick it is within float32
 * rounding of (see FLOAT32_EPSILON): a series from 0.3433 starts at
 * 0.34330001473, and its axis still starts at its tick 0.3433. A constant
 * range is left to linearScale's padding.
 * @param {Range} range
 * @return {number[]} [lo, hi]
 */
function float32Ends({lo, hi}) {
  const slack = Math.max(Math.abs(lo), Math.abs(hi)) * FLOAT32_EPSILON;
  if (hi - lo <= slack) return [lo, hi];
  const ticks = niceTicks(lo - slack, hi + slack);
  return [Math.min(lo, ticks[0]), Math.max(hi, ticks[ticks.length - 1])];
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
  scale.domain = [lo, hi];
  scale.ticks = niceTicks(lo, hi);
  return scale;
}

function logScale(lo, hi, from, to) {
  const inner = linearScale(Math.log10(lo), Math.log10(hi), from, to);
  const scale = (v) => inner(Math.log10(v));
  scale.invert = (p) => 10 ** inner.invert(p);
  const [low, high] = inner.domain;
  Object.assign(scale, logTicks(10 ** low, 10 ** high, Math.abs(to - from)));
  return scale;
}

/**
 * Keeps `doc`'s theme on TensorBoard's: sets `data-theme` ("dark" or
 * "light") on its root element, which style.css keys its colours on, and
 * updates it whenever the theme changes.
 *
 * TensorBoard (2.21) toggles the class `dark-mode` on its own body, from
 * its header's light/dark/browser-default menu; the plugin's iframe is of
 * the same origin, so that body is readable and observable from here. Out
 * of TensorBoard (the plugin entry opened as a page of its own, or an
 * embedder of another origin), the browser's `prefers-color-scheme`.
 *
 * @param {Document} [doc] the tab's document. Defaults to `document`.
 */
export function followTheme(doc = document) {
  const view = doc.defaultView;
  const apply = (dark) => (doc.documentElement.dataset.theme = dark ? 'dark' : 'light');
  const board = tensorBoardBody(view);
  if (board) {
    const update = () => apply(board.classList.contains('dark-mode'));
    new MutationObserver(update).observe(board, {attributes: true, attributeFilter: ['class']});
    update();
  } else {
    const query = view.matchMedia('(prefers-color-scheme: dark)');
    query.addEventListener('change', () => apply(query.matches));
    apply(query.matches);
  }
}

/**
 * The body of the page that embeds `view`, or null when there is none or
 * it is of another origin (reading it throws).
 * @param {Window} view
 * @return {HTMLElement|null}
 */
function tensorBoardBody(view) {
  if (view.parent === view) return null;
  try {
    return view.parent.document.body;
  } catch {
    return null;
  }
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
