// The tab: the page's frame, the run listing polled every few seconds, the
// run selection, and the two panels it hands them to (cards.js,
// weights.js). index.js starts it.

import {Cards} from './cards.js';
import {followTheme} from './chart.js';
import {Store} from './store.js';
import * as views from './views.js';
import {ModelPanel} from './weights.js';

const REFRESH_MS = 5000;

/**
 * Builds the tab and keeps it current while training writes.
 * @param {{runs: Promise<Response>, styled: Promise}} early the first run
 *     listing's response and the stylesheet's load, both under way
 */
export async function start(early) {
  followTheme();
  const page = new Page(early);
  document.body.append(page.ui.root);
  await page.refresh();
  setInterval(() => page.refresh(), REFRESH_MS);
}

/** The tab: the listing and the selection, handed to the panels (see cards.js's Page). */
class Page {
  /** @param {{runs: Promise<Response>, styled: Promise}} early see `start` */
  constructor(early) {
    this.styled = early.styled;
    this.store = new Store(early.runs);
    this.ui = views.frame();
    /** @type {import('./model.js').Listing} */
    this.listing = {runs: [], statuses: {}, causes: {}};
    /** Runs seen so far: a new run starts selected, a run the user unticked stays so. */
    this.known = new Set();
    this.selected = new Set();
    this.runNames = '';
    this.cards = new Cards(this.ui.cards, this);
    this.model = new ModelPanel(this.ui.weights, this);
    this.ui.smoothing.addEventListener('input', () => {
      this.cards.redraw();
      this.model.load();
    });
  }

  /** Fetches the run listing and redraws what changed. */
  async refresh() {
    let result;
    try {
      // The layout sizes the charts' reductions by their width: it needs the
      // stylesheet, which loads meanwhile.
      [result] = await Promise.all([this.store.runs(), this.styled]);
    } catch (error) {
      this.ui.updated.textContent = `Could not load the runs: ${error.message}`;
      return;
    }
    this.listing = result.listing;
    for (const run of this.listing.runs) {
      if (!this.known.has(run.name)) {
        this.known.add(run.name);
        this.selected.add(run.name);
      }
    }
    try {
      this.layout(result.changed);
    } catch (error) {
      this.ui.updated.textContent = `Could not show the runs: ${error.message}`;
      return;
    }
    this.ui.updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  /** @param {Set<string>} changed runs whose charts must be redrawn */
  layout(changed) {
    const names = this.listing.runs.map((r) => r.name);
    if (names.join('\n') !== this.runNames) {
      this.runNames = names.join('\n');
      views.runSelector(this.ui.runs, names, this.selected, this.store.colors, (run, on) => {
        on ? this.selected.add(run) : this.selected.delete(run);
        this.layout(new Set(names));
      });
    }
    this.showMessage();
    // The model panel first: its data is on its way while the cards are built.
    this.model.layout(changed);
    this.cards.layout(this.lossPaths(), changed);
  }

  /** @return {number} the smoothing's weight, 0 for none */
  smoothing() {
    return Number(this.ui.smoothing.value);
  }

  /** @return {import('./model.js').RunInfo[]} */
  selectedRuns() {
    return this.listing.runs.filter((r) => this.selected.has(r.name));
  }

  /** @return {string[]} the loss variables of the selected runs, sorted */
  lossPaths() {
    const paths = new Set();
    for (const run of this.selectedRuns()) {
      for (const v of run.variables) if (v.role === 'loss') paths.add(v.path);
    }
    return [...paths].sort();
  }

  /**
   * The selected runs that hold `path`, with that variable's listing entry.
   * @param {string} path
   * @return {import('./model.js').RunVariable[]}
   */
  runsWith(path) {
    return this.selectedRuns()
        .map((run) => ({name: run.name, info: run.variables.find((v) => v.path === path)}))
        .filter((r) => r.info);
  }

  /**
   * Shows a network's weights in the model panel (its card's "N weights").
   * @param {string} path
   */
  showWeights(path) {
    this.model.showLayer(path);
    this.ui.weights.scrollIntoView({block: 'nearest'});
  }

  showMessage() {
    const lines = [];
    if (!this.listing.runs.length) {
      lines.push('No loss parameters logged yet. Train with model.fit(..., callbacks=' +
          '[loss_param_tracker.LossParamTracker(log_dir="logs/run1")]) and start TensorBoard ' +
          'on that directory; runs appear here as their first epoch ends.');
    } else if (!this.selected.size) {
      lines.push('Select a run on the left.');
    }
    for (const run of this.selectedRuns()) {
      if (!run.variables.some((v) => v.role === 'loss')) {
        lines.push(`Run "${run.name}" logs no loss variables: its loss holds no trainable ` +
            'variables, so only the model\'s weights are shown for it.');
      }
    }
    this.ui.message.replaceChildren(...lines.map((line) => views.h('p', '', line)));
    const skipped = this.listing.skipped || [];
    if (skipped.length) this.ui.message.append(views.skippedNote(skipped));
  }
}
