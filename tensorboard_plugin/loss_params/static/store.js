// The requests of the tab: fetches the plugin's routes (relative URLs: the
// page's base is the plugin's route prefix), caches series per run until the
// run writes a new epoch, runs the requests in turn, and holds the one step
// both panels take to show their runs (Loader): read, draw what is still
// current, and read every epoch after a reduction to the chart's width.

import {decodeFloats} from './model.js';
import {runColor} from './numeric.js';

/**
 * The most values a card or the model panel reads for every epoch at once
 * (about 20 MB of JSON). Past it the reduction drawn stays: it is exact at
 * the chart's width, and a tooltip names an epoch it drew (a pixel column
 * holds at most four).
 */
const FULL_READ_VALUES = 2_000_000;

export class Store {
  /** @param {Promise<Response>=} firstRuns the first run listing's response, if already asked for */
  constructor(firstRuns) {
    this.firstRuns = firstRuns;
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
   * @return {Promise<{listing: import('./model.js').Listing, changed: Set<string>}>}
   */
  async runs() {
    const first = this.firstRuns;
    this.firstRuns = undefined;  // used once: a refresh asks afresh
    const listing = await getJson('./runs', first);
    const changed = new Set();
    for (const run of listing.runs) {
      if (!this.colors.has(run.name)) this.colors.set(run.name, runColor(this.colors.size));
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
   * http_api.md). The runs with neither are fetched in one request, their
   * floats as base64 (`floats=base64`: see model.js's decodeFloats). A
   * body's `sampled` says whether it lacks epochs (for the tooltip and the
   * CSV); a reduction that lacks none is cached as the whole series.
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
      query.set('floats', 'base64');
      for (const run of missing) query.append('run', run);
      const request = this.queue.run(columns > 0, () => getJson(`./${route}?${query}`));
      for (const run of missing) {
        const one = request.then((body) => body.runs[run] ? decodeFloats(body.runs[run]) : skippedBody(body, run));
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
 * @typedef {{sampled: boolean, more: boolean, values: number}} Coverage
 *   `sampled`: some body drawn lacks epochs; `more`: every epoch is to be
 *   read after it; `values`: how many values that read holds.
 * @template T
 * @typedef {{columns: function(): number,
 *            read: function(number): Promise<T>,
 *            draw: function(T): (Object[]|null),
 *            covered: function(Coverage): void,
 *            failed: function(string, Error): void}} Panel
 *   `read(columns)` fetches what `draw` takes, each series reduced to a chart
 *   `columns` pixels wide, or every epoch with 0; `draw` draws it and returns
 *   the bodies drawn (null: nothing drawn, a newer load is on its way);
 *   `covered` says what the bodies drawn lack; `failed('read' or 'draw', error)`
 *   says what went wrong.
 */

/**
 * The step every panel takes to show its runs, one load at a time: read the
 * bodies, draw them unless a newer load started meanwhile (the selection
 * changed), and where they are reductions that leave epochs out, load
 * every epoch after them, for the tooltip. A read or a draw that fails is
 * the panel's to report; the other panels stay drawn.
 * @template T
 */
export class Loader {
  /** @param {Panel<T>} panel */
  constructor(panel) {
    this.panel = panel;
    this.token = 0;
  }

  /**
   * Reads and draws the panel's series. With `preview`, the series reduced to
   * the chart's width come first: exact to the pixel (a one-epoch spike or
   * NaN is in it), quick to read and send for a long run; every epoch
   * follows where the reduction left some out.
   * @param {{preview?: boolean}=} options
   * @return {Promise<void>}
   */
  async load({preview = false} = {}) {
    const token = ++this.token;
    let read;
    try {
      read = await this.panel.read(preview ? this.panel.columns() : 0);
    } catch (error) {
      this.panel.failed('read', error);
      return;
    }
    // The user may have changed the selection while this was in flight.
    if (token !== this.token) return;
    let more = false;
    try {
      const drawn = this.panel.draw(read);
      if (drawn) {
        const covered = coverage(drawn);
        this.panel.covered(covered);
        more = covered.more;
      }
    } catch (error) {
      this.panel.failed('draw', error);
      return;
    }
    if (more) this.load();
  }
}

/**
 * What the drawn bodies lack: whether some are reductions that left epochs
 * out (the drawing is exact; the tooltip lacks those epochs), and whether
 * every epoch is to follow, as it does but for a very large panel (see
 * FULL_READ_VALUES).
 * @param {Object[]} bodies
 * @return {Coverage}
 */
export function coverage(bodies) {
  const sampled = bodies.some((body) => body.sampled);
  if (!sampled) return {sampled, more: false, values: 0};
  const values = bodies.reduce((n, body) => n + (body.epochs || body.steps.length) * arraysOf(body), 0);
  return {sampled, more: values <= FULL_READ_VALUES, values};
}

/**
 * How many per-epoch arrays a /series or /weights body holds.
 * @param {Object} body
 * @return {number}
 */
function arraysOf(body) {
  const fields = (group) => Object.keys(group || {}).length;
  const values = (part) => (part.value || []).length + (part.distribution ? part.distribution.values.length : 0);
  return values(body) + (body.shown ? values(body.shown) : 0) +
      fields(body.stats) + fields(body.grad_norm) + fields(body.norms) +
      ['norm', 'grad_norm_mean', 'grad_norm_max', 'update_ratio'].filter((f) => f in body).length +
      fields(body.global_grad_norm);
}

/**
 * How many pixel columns `host`'s chart has: the server reduces a series to
 * each column's extremes (see http_api.md, `columns`), so the first view is
 * exact at that width, and little to read and send.
 * @param {HTMLElement} host
 * @return {number}
 */
export function columnsAcross(host) {
  return Math.max(100, Math.round(host.clientWidth || 0));
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
   * Runs `task` once a slot is free: within this call where one is, so
   * that its request goes out before the caller's other work (the page
   * lays out its other cards meanwhile).
   * @param {boolean} first whether `task` fetches a reduction, which goes first
   * @param {function(): Promise} task
   * @return {Promise} what `task` gives
   */
  run(first, task) {
    const kind = first ? 0 : 1;
    return new Promise((resolve) => {
      this.waiting[kind].push(() => resolve(this.hold(kind, task)));
      this.start();
    });
  }

  /**
   * Runs `task` in a slot of `kind` it holds until `task` settles.
   * @param {number} kind
   * @param {function(): Promise} task
   * @return {Promise}
   */
  async hold(kind, task) {
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
  return `./series?${new URLSearchParams({run, variable: path, format: 'csv'})}`;
}

/**
 * @param {string} url
 * @param {Promise<Response>=} pending its response, where already asked for
 * @return {Promise<Object>}
 */
async function getJson(url, pending) {
  const response = await (pending || fetch(url));
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}
