// What the routes' bodies hold and how the panels read them (see
// http_api.md): the listing's types, a status's severity, the values a
// display shows, a series' gradient norm, an epoch's index.

/**
 * @typedef {{fn: string, inner_scale: number, shift: number, scale: number,
 *            offset: number, label: string}} Display
 * @typedef {{path: string, role: string, shape: number[], dtype: string,
 *            kind: string, status: string, cause: string, display?: Display,
 *            layer_index?: number, weights?: number}} VariableInfo
 * @typedef {{name: string, last_step: number, last_wall_time: number,
 *            variables: VariableInfo[]}} RunInfo
 * @typedef {{explanation: string, fix: string, severity?: string}} StatusText
 * @typedef {{runs: RunInfo[], skipped?: Object[], statuses: Object<string, StatusText>,
 *            causes: Object<string, {explanation: string, fix: string}>}} Listing
 * @typedef {{name: string, info: VariableInfo}} RunVariable a run and its entry for one variable
 */

/** The severities the listing gives its statuses; a badge's class is `severity-<severity>`. */
const SEVERITIES = new Set(['good', 'bad', 'warn', 'info']);

// The words of the diagnosis the gradient chart needs by name: a status that
// says no gradient reached the variable, and the causes that say the tracker
// could not see its gradient. Every other status is read from the listing
// (its severity, explanation and fix).
const NO_GRADIENT = 'no_gradient';
const GRADIENT_UNKNOWN = new Set(['gradient_unknown', 'not_in_optimizer_gradient_unknown']);

/**
 * What the gradient chart says where the tracker could not see a gradient:
 * no more, since why depends on the run (the card's status says it).
 */
export const GRADIENT_NOT_OBSERVED = 'gradient not observed';

/**
 * The severity of `status` in the listing: 'good', 'bad', 'warn' or 'info';
 * 'unknown' for a status it does not name (a newer tracker's, or none yet).
 * @param {Object<string, StatusText>} statuses the listing's
 * @param {string} status
 * @return {string}
 */
export function severityOf(statuses, status) {
  const text = (statuses || {})[status];
  return text && SEVERITIES.has(text.severity) ? text.severity : 'unknown';
}

/**
 * What a card's gradient chart says when it has no gradient to draw: that
 * the tracker could not observe it, where a run's cause says so or a run
 * in good health has none; the no-gradient status's sentence only where
 * every run has that status; else that none was observed, and the status
 * of a run that explains why (a frozen variable, a non-finite one).
 * @param {RunVariable[]} runs the card's runs
 * @param {Listing} listing
 * @param {string} noun 'variable' or 'network'
 * @return {string}
 */
export function noGradientText(runs, listing, noun) {
  const infos = runs.map((r) => r.info);
  if (infos.some((info) => GRADIENT_UNKNOWN.has(info.cause))) return GRADIENT_NOT_OBSERVED;
  if (infos.length && infos.every((info) => info.status === NO_GRADIENT)) {
    return `No gradient reached this ${noun}`;
  }
  const why = infos.find((info) => info.status !== NO_GRADIENT &&
      !['good', 'unknown'].includes(severityOf(listing.statuses, info.status)));
  if (!why) return GRADIENT_NOT_OBSERVED;
  // A cause's explanation replaces its status's (a finite variable is non_finite for the loss's NaN).
  const explained = (listing.causes || {})[why.cause] || listing.statuses[why.status];
  return `gradient not observed (${why.status}: ${explained.explanation})`;
}

/**
 * Numbers from the routes' JSON, where NaN and +-Infinity come as strings;
 * the arrays `decodeFloats` made are numbers already.
 * @param {Array<number|string>|Float64Array} values
 * @return {number[]|Float64Array}
 */
export function numbers(values) {
  return ArrayBuffer.isView(values) ? values : values.map(Number);
}

// The keys of a /series or /weights body that hold an array of floats, and
// those that hold groups of them, `{field: floats}` (see http_api.md).
const FLOAT_ARRAYS = ['norm', 'grad_norm_mean', 'grad_norm_max', 'update_ratio'];
const FLOAT_GROUPS = ['stats', 'grad_norm', 'norms', 'global_grad_norm'];

/**
 * Decodes, in place, a /series or /weights body asked with `floats=base64`:
 * each of its arrays of floats comes as the base64 of its float32 values,
 * and becomes a Float64Array of them (NaN and +-Infinity as themselves).
 * Far quicker to send and read than the numbers written out.
 * @param {Object} body
 * @return {Object} the body
 */
export function decodeFloats(body) {
  const lists = (part) => {
    if (part.value) part.value = part.value.map(float32s);
    if (part.distribution) part.distribution.values = part.distribution.values.map(float32s);
  };
  lists(body);
  if (body.shown) lists(body.shown);
  for (const key of FLOAT_ARRAYS) if (key in body) body[key] = float32s(body[key]);
  for (const key of FLOAT_GROUPS) {
    for (const field of Object.keys(body[key] || {})) body[key][field] = float32s(body[key][field]);
  }
  return body;
}

/**
 * The float32 values of a base64 string, little-endian as the server writes
 * them (and as every browser's typed arrays read them), as doubles.
 * @param {string} text
 * @return {Float64Array}
 */
function float32s(text) {
  return Float64Array.from(new Float32Array(bytesOf(text).buffer));
}

/**
 * The bytes of a base64 string: the browser's own decoder where it has one
 * (Chrome 140, Firefox 133, Safari 18.2), else through `atob`.
 * @param {string} text
 * @return {Uint8Array}
 */
function bytesOf(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * The value-like parts of a /series body as its display shows them, from
 * the body's `shown` (the server applies the display: one formula, in
 * display.py); null where the body lacks `shown` or one of its parts (an
 * older server): the stored values are then what can be shown.
 * @param {Object} body
 * @return {{value?: Array<Array<number|string>>,
 *           distribution?: {basis: number[], values: Array<Array<number|string>>}}|null}
 */
export function shownParts(body) {
  const shown = body.shown;
  if (!shown) return null;
  if ((body.value && !shown.value) || (body.distribution && !shown.distribution)) return null;
  return {value: shown.value, distribution: shown.distribution};
}

/**
 * The gradient norm of a series, mean and max: a loss variable's own, or the
 * one of a network's norms (all its weights' gradients as one vector).
 * @param {Object} series a /series body
 * @return {{mean: Array<number|string>, max: Array<number|string>}|undefined}
 */
export function gradientOf(series) {
  if (series.grad_norm || !series.norms) return series.grad_norm;
  return {mean: series.norms.grad_norm_mean, max: series.norms.grad_norm_max};
}

/**
 * The index of `step` in the sorted `steps`, or -1: a binary search, as a
 * hover asks it of every run at every move.
 * @param {number[]} steps
 * @param {number} step
 * @return {number}
 */
export function indexOfStep(steps, step) {
  let lo = 0;
  let hi = steps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] === step) return mid;
    if (steps[mid] < step) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * The runs a multirun route could not read, each named with the reason.
 * @param {Array<{name: string}>} runs
 * @param {Array<Object|null>} bodies the store's bodies of `runs`, in order
 * @return {string[]}
 */
export function unreadable(runs, bodies) {
  return runs.flatMap((run, i) =>
    bodies[i] && bodies[i].skipped ? [`${run.name} (${bodies[i].skipped})`] : []);
}
