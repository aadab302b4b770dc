// Fetches the plugin's routes (relative URLs: the page's base is the plugin's
// route prefix), caches series per run until the run writes a new epoch, and
// holds the pure data transforms the views need.

/**
 * @typedef {{path: string, role: string, shape: number[], dtype: string,
 *            kind: string, status: string}} VariableInfo
 * @typedef {{name: string, last_step: number, variables: VariableInfo[]}} RunInfo
 * @typedef {{runs: RunInfo[], statuses: Object<string, {explanation: string, fix: string}>}} Listing
 */

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b',
  '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#ad494a',
];

export class Store {
  constructor() {
    /** @type {Map<string, Promise<Object>>} */
    this.cache = new Map();
    /** @type {Map<string, number>} last step seen per run */
    this.lastStep = new Map();
    /** @type {Map<string, string>} a colour per run, kept for the page's life */
    this.colors = new Map();
  }

  /**
   * Fetches the run listing; forgets the cached series of runs that have
   * written since. Returns the listing and the names of the runs that changed.
   * @return {Promise<{listing: Listing, changed: Set<string>}>}
   */
  async runs() {
    const listing = await getJson('./runs');
    const changed = new Set();
    for (const run of listing.runs) {
      if (!this.colors.has(run.name)) {
        this.colors.set(run.name, PALETTE[this.colors.size % PALETTE.length]);
      }
      if (this.lastStep.get(run.name) !== run.last_step) {
        if (this.lastStep.has(run.name)) changed.add(run.name);
        this.lastStep.set(run.name, run.last_step);
        for (const key of [...this.cache.keys()]) {
          if (key.startsWith(`${run.name}\n`)) this.cache.delete(key);
        }
      }
    }
    return {listing, changed};
  }

  /**
   * The series of one variable in several runs: the runs not cached yet are
   * fetched in one request.
   * @param {string[]} runs
   * @param {string} path
   * @return {Promise<Object[]>} one series per run, in order
   */
  series(runs, path) {
    const key = (run) => `${run}\nseries\n${path}`;
    const missing = runs.filter((run) => !this.cache.has(key(run)));
    if (missing.length) {
      const params = new URLSearchParams({variable: path});
      for (const run of missing) params.append('run', run);
      const request = getJson(`./series_multirun?${params}`);
      for (const run of missing) {
        const one = request.then((body) => body.runs[run] || Promise.reject(
            new Error(`run ${run} has no variable ${path}`)));
        one.catch(() => this.cache.delete(key(run)));
        this.cache.set(key(run), one);
      }
    }
    return Promise.all(runs.map((run) => this.cache.get(key(run))));
  }

  /**
   * The norms of one run's model weights: all of them as one vector, or one layer's.
   * @param {string} run
   * @param {string} layer a layer's name, or '' for the whole model
   * @return {Promise<Object>}
   */
  weights(run, layer) {
    return this.cached(`${run}\nweights\n${layer}`, `./weights?${new URLSearchParams({run, layer})}`);
  }

  cached(key, url) {
    if (!this.cache.has(key)) {
      const promise = getJson(url);
      promise.catch(() => this.cache.delete(key));
      this.cache.set(key, promise);
    }
    return this.cache.get(key);
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
