// Fetches the plugin's routes (relative URLs: the page's base is the plugin's
// route prefix), caches series per run until the run writes a new epoch, and
// holds the pure data transforms the views need.

/**
 * @typedef {{fn: string, inner_scale: number, shift: number, scale: number,
 *            offset: number, label: string}} Display
 * @typedef {{path: string, role: string, shape: number[], dtype: string,
 *            kind: string, status: string, cause: string, display?: Display,
 *            layer_index?: number}} VariableInfo
 * @typedef {{name: string, last_step: number, last_wall_time: number,
 *            variables: VariableInfo[]}} RunInfo
 * @typedef {{runs: RunInfo[], statuses: Object<string, {explanation: string, fix: string}>,
 *            causes: Object<string, {explanation: string, fix: string}>}} Listing
 */

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
  '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#ad494a',
];

export class Store {
  constructor() {
    this.queue = new Queue(5);
    /** @type {Map<string, Promise<Object>>} */
    this.cache = new Map();
    /** @type {Map<string, string>} last diagnosis seen per run: its step and time */
    this.lastWrite = new Map();
    /** @type {Map<string, string>} a colour per run, kept for the page's life */
    this.colors = new Map();
  }

  /**
   * Fetches the run listing; forgets the cached series of runs that have
   * written since. Returns the listing and the names of the runs that are
   * new or changed.
   * @return {Promise<{listing: Listing, changed: Set<string>}>}
   */
  async runs() {
    const listing = await getJson('./runs');
    const changed = new Set();
    for (const run of listing.runs) {
      if (!this.colors.has(run.name)) {
        this.colors.set(run.name, PALETTE[this.colors.size % PALETTE.length]);
      }
      const write = `${run.last_step} ${run.last_wall_time}`;
      if (this.lastWrite.get(run.name) !== write) {
        changed.add(run.name);
        this.lastWrite.set(run.name, write);
        for (const key of [...this.cache.keys()]) {
          if (key.startsWith(`${run.name}\n`)) this.cache.delete(key);
        }
      }
    }
    return {listing, changed};
  }

  /**
   * The series of one variable in several runs (see `multirun`).
   * @param {string[]} runs
   * @param {string} path
   * @param {number} columns 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  series(runs, path, columns) {
    return this.multirun('series_multirun', runs, {variable: path}, columns);
  }

  /**
   * The norms of some runs' model weights: all as one vector, or one layer's.
   * @param {string[]} runs
   * @param {string} layer a layer's path, `place:N` for the layer at place N
   *     of each run's model, or '' for the whole model
   * @param {number} columns 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  weights(runs, layer, columns) {
    const place = /^place:(\d+)$/.exec(layer);
    return this.multirun('weights_multirun', runs, place ? {place: place[1]} : {layer}, columns);
  }

  /**
   * The bodies a multirun route gives for `runs`, in order; null for a run the
   * route leaves out (it lacks the variable or layer), `{skipped: reason}` for
   * one it names as unreadable.
   *
   * Per run: the cached series of every epoch when there is one, else, with
   * `columns`, a cached reduction to a chart that many pixels wide, exact to
   * the pixel (each column's extremes and non-finite values are in it; see
   * http_api.md). The runs with neither are fetched in one request. A body's
   * `sampled` says whether it lacks epochs (for the tooltip and the CSV); a
   * reduction that lacks none is cached as the whole series.
   * @param {string} route
   * @param {string[]} runs
   * @param {Object<string, string>} params the route's other parameters
   * @param {number} columns 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  multirun(route, runs, params, columns) {
    const id = `${route}\n${new URLSearchParams(params)}`;
    const key = (run, n) => `${run}\n${id}\n${n}`;
    const cached = (run) => this.cache.get(key(run, 0)) || (columns ? this.cache.get(key(run, columns)) : null);
    const missing = runs.filter((run) => !cached(run));
    if (missing.length) {
      const query = new URLSearchParams(params);
      if (columns) query.set('columns', String(columns));
      for (const run of missing) query.append('run', run);
      const request = this.queue.run(columns > 0, () => getJson(`./${route}?${query}`));
      for (const run of missing) {
        const one = request.then((body) => body.runs[run] || skippedBody(body, run));
        this.cache.set(key(run, columns), one);
        // Only while still current: a poll may have dropped it, and a newer
        // read taken its place, meanwhile.
        const current = () => this.cache.get(key(run, columns)) === one;
        one.then(
            (body) => columns && !(body && body.sampled) && current() && !this.cache.has(key(run, 0)) &&
                this.cache.set(key(run, 0), one),
            () => current() && this.cache.delete(key(run, columns)));
      }
    }
    return Promise.all(runs.map(cached));
  }
}

/**
 * What a multirun answer says of a run it left out: `{skipped: reason}` where
 * it could not read the run, else null (the run lacks the variable or layer).
 * @param {{skipped: Array<{run: string, reason: string}>}} body
 * @param {string} run
 * @return {{skipped: string}|null}
 */
function skippedBody(body, run) {
  const skip = (body.skipped || []).find((s) => s.run === run);
  return skip ? {skipped: skip.reason} : null;
}

/**
 * Runs at most `slots` requests at a time, reductions first: a read of every
 * epoch starts only while no reduction is running or waiting. TensorBoard
 * answers requests in Python threads that share one interpreter lock, while
 * its data server reads in a process of its own: five at once let the first
 * view (four cards and the model panel in a window of usual size) ask
 * together, more would only take turns at the lock, and a long read beside
 * them would delay the reductions the page draws first.
 */
class Queue {
  /** @param {number} slots */
  constructor(slots) {
    this.free = slots;
    /** @type {Array<Array<function()>>} who waits: reductions, then the rest */
    this.waiting = [[], []];
    /** how many of each run */
    this.running = [0, 0];
  }

  /**
   * @param {boolean} first whether `task` fetches a reduction, which goes first
   * @param {function(): Promise} task
   * @return {Promise}
   */
  async run(first, task) {
    const kind = first ? 0 : 1;
    await new Promise((go) => {
      this.waiting[kind].push(go);
      this.start();
    });
    try {
      return await task();
    } finally {
      this.running[kind] -= 1;
      this.free += 1;
      this.start();
    }
  }

  /** Starts what may start now. */
  start() {
    while (this.free > 0) {
      const kind = this.waiting[0].length ? 0 :
        this.waiting[1].length && !this.running[0] ? 1 : -1;
      if (kind < 0) return;
      this.free -= 1;
      this.running[kind] += 1;
      this.waiting[kind].shift()();
    }
  }
}

/**
 * The CSV download URL of one variable's series.
 * @param {string} run
 * @param {string} path
 * @return {string}
 */
export function csvUrl(run, path) {
  return `${seriesUrl(run, path)}&format=csv`;
}

function seriesUrl(run, path) {
  return `./series?${new URLSearchParams({run, variable: path})}`;
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

/**
 * Numbers from the routes' JSON, where NaN and +-Infinity come as strings.
 * @param {Array<number|string>} values
 * @return {number[]}
 */
export function numbers(values) {
  return values.map(Number);
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
 * The shown value of stored values under a display (see display.py):
 * offset + scale * fn(inner_scale * stored + shift). Without a display, the
 * values as they are.
 * @param {Display|undefined} display
 * @param {number[]} values
 * @return {number[]}
 */
export function shown(display, values) {
  if (!display) return values;
  const fn = FUNCTIONS[display.fn];
  return values.map((v) => display.offset + display.scale * fn(display.inner_scale * v + display.shift));
}

const FUNCTIONS = {
  exp: Math.exp,
  // log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|).
  softplus: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
  sigmoid: (x) => {
    const z = Math.exp(-Math.abs(x));
    return x >= 0 ? 1 / (1 + z) : z / (1 + z);
  },
};
