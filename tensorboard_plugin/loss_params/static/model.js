// Fetches the plugin's routes (relative URLs: the page's base is the plugin's
// route prefix), caches series per run until the run writes a new epoch, and
// holds the pure data transforms the views need.

/**
 * @typedef {{path: string, role: string, shape: number[], dtype: string,
 *            kind: string, status: string, cause: string}} VariableInfo
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
    this.queue = new Queue(2);
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
   * @param {number} samples 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  series(runs, path, samples) {
    return this.multirun('series_multirun', runs, {variable: path}, samples);
  }

  /**
   * The norms of some runs' model weights: all as one vector, or one layer's.
   * @param {string[]} runs
   * @param {string} layer a layer's name, or '' for the whole model
   * @param {number} samples 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  weights(runs, layer, samples) {
    return this.multirun('weights_multirun', runs, {layer}, samples);
  }

  /**
   * The bodies a multirun route gives for `runs`, in order; null for a run the
   * route leaves out (it lacks the variable or layer), `{skipped: reason}` for
   * one it names as unreadable.
   *
   * Per run: the cached series of every epoch when there is one, else, with
   * `samples`, a cached sample of that many epochs. The runs with neither are
   * fetched in one request. A body's `sampled` says whether it may lack
   * epochs; a sample that holds every epoch is cached as the whole series.
   * @param {string} route
   * @param {string[]} runs
   * @param {Object<string, string>} params the route's other parameters
   * @param {number} samples 0 for every epoch
   * @return {Promise<Array<Object|null>>}
   */
  multirun(route, runs, params, samples) {
    const id = `${route}\n${new URLSearchParams(params)}`;
    const key = (run, n) => `${run}\n${id}\n${n}`;
    const cached = (run) => this.cache.get(key(run, 0)) || (samples ? this.cache.get(key(run, samples)) : null);
    const missing = runs.filter((run) => !cached(run));
    if (missing.length) {
      const query = new URLSearchParams(params);
      if (samples) query.set('samples', String(samples));
      for (const run of missing) query.append('run', run);
      const request = this.queue.run(samples > 0, () => getJson(`./${route}?${query}`));
      for (const run of missing) {
        const one = request.then((body) => body.runs[run] || skippedBody(body, run));
        this.cache.set(key(run, samples), one);
        // Only while still current: a poll may have dropped it, and a newer
        // read taken its place, meanwhile.
        const current = () => this.cache.get(key(run, samples)) === one;
        one.then(
            (body) => samples && !(body && body.sampled) && current() && !this.cache.has(key(run, 0)) &&
                this.cache.set(key(run, 0), one),
            () => current() && this.cache.delete(key(run, samples)));
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
 * Runs at most `slots` requests at a time, samples before reads of every
 * epoch. TensorBoard answers requests in Python threads that share one
 * interpreter lock: five reads at once each take longer than one after
 * another, and the samples the page draws first would wait for the long
 * reads.
 */
class Queue {
  /** @param {number} slots */
  constructor(slots) {
    this.free = slots;
    /** @type {Array<Array<function()>>} who waits: samples, then the rest */
    this.waiting = [[], []];
  }

  /**
   * @param {boolean} sample whether `task` fetches a sample, which goes first
   * @param {function(): Promise} task
   * @return {Promise}
   */
  async run(sample, task) {
    if (this.free > 0) {
      this.free -= 1;
    } else {
      await new Promise((go) => this.waiting[sample ? 0 : 1].push(go));
    }
    try {
      return await task();
    } finally {
      const next = this.waiting[0].shift() || this.waiting[1].shift();
      if (next) next(); // hands this slot over
      else this.free += 1;
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
