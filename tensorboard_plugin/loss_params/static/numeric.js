// Numeric helpers of the tab: smoothing, the numbers an axis or a tooltip
// writes, an axis's ticks, the decades a chart spans, and the colours of
// runs and of a vector's elements.

/** The run colours, in the order runs are first seen. */
const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
  '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#ad494a',
];
// Below this many pixels per label, labels of a log axis overlap.
const LABEL_SPACING = 20;
// Above this many decades, minor grid lines of a log axis are a smear.
const MINOR_DECADES = 3;

/**
 * The relative spacing of float32 values (2^-23): the values the routes
 * send are float32, read exactly (`floats=base64`), so a series the user
 * wrote as 0.3433 comes as 0.34330001473. An axis takes in a tick within
 * this much of its ends, as it does the end itself.
 */
export const FLOAT32_EPSILON = 2 ** -23;

/**
 * The colour of the `index`-th run seen.
 * @param {number} index
 * @return {string} '#rrggbb'
 */
export function runColor(index) {
  return PALETTE[index % PALETTE.length];
}

/**
 * The colours of a vector's elements in one run: a family of the run's
 * colour, dark to light, so that each run keeps its hue and each element
 * its own shade.
 * @param {string} color the run's colour, '#rrggbb'
 * @param {number} count
 * @return {string[]}
 */
export function shades(color, count) {
  if (count <= 1) return [color];
  const [h, s] = hsl(color);
  return Array.from({length: count}, (_, i) => {
    const lightness = 28 + (44 * i) / (count - 1);
    return `hsl(${h.toFixed(1)}, ${s.toFixed(1)}%, ${lightness.toFixed(1)}%)`;
  });
}

function hsl(color) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16) / 255);
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const l = (max + min) / 2;
  const d = max - min;
  if (!d) return [0, 0, l * 100];
  const s = d / (1 - Math.abs(2 * l - 1));
  const h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  return [(h * 60 + 360) % 360, s * 100, l * 100];
}

/**
 * Exponential moving average with the debiasing of TensorBoard's Scalars tab;
 * non-finite values pass through and do not poison the average.
 * @param {number[]} values
 * @param {number} weight in [0, 1); 0 returns the values unchanged
 * @return {number[]}
 */
export function smooth(values, weight) {
  if (!weight) return values;
  let last = 0;
  let count = 0;
  return values.map((v) => {
    if (!Number.isFinite(v)) return v;
    last = last * weight + (1 - weight) * v;
    count += 1;
    return last / (1 - weight ** count);
  });
}

/**
 * Formats a number for tooltips: 4 significant digits, or 3 in exponent
 * notation without trailing zeros ("1e-4", "2.5e+6"). Axes write their
 * ticks with tickLabels, in as many digits as tell them apart.
 * @param {number} v
 * @return {string}
 */
export function formatNumber(v) {
  if (!Number.isFinite(v)) return String(v);
  return withDigits(v, 4, 3);
}

/**
 * The labels of an axis's ticks, each in as few significant digits as tell
 * it from its neighbours: the digits down to the place of the gap to the
 * nearer one (ticks 99.998, 100, 100.002 read so, not "100" thrice; 0.3433
 * and 0.3433002 likewise), more where rounding still makes two labels
 * equal. Powers of ten of a log axis stay "1e-4", "0.01", "100". Exponent
 * notation where formatNumber writes it: below 1e-3 and from 1e5.
 * @param {number[]} ticks ascending
 * @return {string[]}
 */
export function tickLabels(ticks) {
  const gaps = ticks.map((t, i) => Math.min(
      i > 0 ? t - ticks[i - 1] : Infinity,
      i < ticks.length - 1 ? ticks[i + 1] - t : Infinity));
  for (let extra = 0; extra <= 17; extra++) {
    const labels = ticks.map((t, i) => {
      const digits = Number.isFinite(gaps[i]) && gaps[i] > 0 ?
        magnitude(t) - magnitude(gaps[i]) + 1 : 4;
      const sig = Math.min(17, Math.max(1, digits) + extra);
      return withDigits(t, sig, sig);
    });
    if (new Set(labels).size === labels.length) return labels;
  }
  return ticks.map(String);
}

/** The decimal exponent of |v|'s leading digit; 0 for 0. */
function magnitude(v) {
  return v ? Math.floor(Math.log10(Math.abs(v))) : 0;
}

/**
 * `v` in `digits` significant digits, or `exponentDigits` in exponent
 * notation (below 1e-3 and from 1e5), trailing zeros dropped.
 */
function withDigits(v, digits, exponentDigits) {
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) {
    return Number(v.toPrecision(exponentDigits)).toExponential();
  }
  return String(Number(v.toPrecision(digits)));
}

/**
 * About `count` ticks over [lo, hi], at 1, 2 or 5 times a power of ten.
 * @param {number} lo
 * @param {number} hi
 * @param {number=} count
 * @return {number[]}
 */
export function niceTicks(lo, hi, count = 4) {
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  if (!(step > 0) || !Number.isFinite(step)) return [lo];
  const ticks = [];
  // Counting in whole steps: adding a step to a large value can leave it unchanged.
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9 && ticks.length <= count * 3; i++) {
    // Rounded (0.30000000000000004 is 0.3); once, where steps are below that precision.
    const tick = Number((i * step).toPrecision(12));
    if (tick !== ticks[ticks.length - 1]) ticks.push(tick);
  }
  return ticks;
}

/**
 * Ticks of a log axis over [lo, hi], `length` pixels long: powers of ten
 * when two or more fall inside (every second or third when they would
 * crowd), else 1, 2 and 5 times powers of ten, else (a range within a
 * factor of about 2) linear ones; never the range's own ends, which are
 * arbitrary numbers. Minor ticks, for grid lines, at 1..9 times powers of
 * ten when few decades are shown.
 * @param {number} lo > 0
 * @param {number} hi > lo
 * @param {number} length
 * @return {{ticks: number[], minor: number[]}}
 */
export function logTicks(lo, hi, length) {
  const inside = (multiples) => {
    const found = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of multiples) {
        // Rounded: 10 ** -3 is 0.0010000000000000002, just outside [0.001, ...].
        const t = Number((m * 10 ** e).toPrecision(12));
        if (t >= lo * (1 - FLOAT32_EPSILON) && t <= hi * (1 + FLOAT32_EPSILON)) found.push(t);
      }
    }
    return found;
  };
  const decades = inside([1]);
  const oneTwoFive = inside([1, 2, 5]);
  let ticks;
  if (decades.length >= 2) {
    const every = Math.ceil(decades.length / Math.max(2, Math.floor(length / LABEL_SPACING)));
    ticks = decades.filter((t) => Math.round(Math.log10(t)) % every === 0);
  } else {
    ticks = oneTwoFive.length >= 2 ? oneTwoFive : niceTicks(lo, hi);
  }
  const minor = Math.log10(hi / lo) <= MINOR_DECADES ?
    inside([1, 2, 3, 4, 5, 6, 7, 8, 9]).filter((t) => !ticks.includes(t)) : [];
  return {ticks, minor};
}

/**
 * Whether the positive finite values of `arrays` span more than `decades`
 * decades (their greatest over their least is above 10^decades): a chart
 * of them reads better on a log axis.
 * @param {Iterable<number[]>} arrays
 * @param {number=} decades
 * @return {boolean}
 */
export function spansDecades(arrays, decades = 3) {
  let lo = Infinity;
  let hi = 0;
  for (const values of arrays) {
    for (const v of values) {
      if (v > 0 && v < Infinity) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  return hi / lo > 10 ** decades;
}
