// The model panel: the norms of the selected runs' model weights (all of
// them, a layer matched across runs by its place, or a network the loss
// holds) on the cards' epoch axis: weight norm, gradient norm, update ratio.

import {drawChart, lines} from './chart.js';
import {indexOfStep, numbers, unreadable} from './model.js';
import {formatNumber, spansDecades} from './numeric.js';
import {Loader, columnsAcross} from './store.js';
import * as views from './views.js';

/** The layer menu's entry for the model's weights as one vector. */
const ALL_WEIGHTS = '';

/** The model panel, in `host`. */
export class ModelPanel {
  /**
   * @param {HTMLElement} host
   * @param {import('./cards.js').Page} page
   */
  constructor(host, page) {
    this.host = host;
    this.page = page;
    this.ui = views.weightsPanel(host);
    /** The layer shown: a layer's or a network's path, `place:N`, or ALL_WEIGHTS. */
    this.layer = ALL_WEIGHTS;
    /** Whether it has been drawn once (it needs no scroll to load). */
    this.drawn = false;
    this.loader = new Loader({
      columns: () => columnsAcross(this.ui.norm),
      read: async (columns) => {
        const layer = this.layer;
        const runs = page.selectedRuns();
        return {layer, runs, bodies: await page.store.weights(runs.map((r) => r.name), layer, columns)};
      },
      draw: ({layer, runs, bodies}) => this.draw(layer, runs, bodies),
      covered: (coverage) => views.markSampled(this.host, this.ui.note, coverage),
      failed: (stage, error) => stage === 'read' ?
        (this.ui.note.textContent = `Could not load the weights: ${error.message}`) :
        views.failed(this.host, this.ui.note, 'Could not draw the weights', error),
    });
    this.ui.layer.addEventListener('change', () => this.showLayer(this.ui.layer.value));
    for (const control of [this.ui.logGradient, this.ui.logRatio]) {
      control.addEventListener('change', () => this.load());
    }
  }

  /**
   * Shows the panel where a run is selected, and draws it: the first time,
   * or where a run it shows has changed.
   * @param {Set<string>} changed
   */
  layout(changed) {
    const runs = this.page.selectedRuns();
    this.host.hidden = !runs.length;
    if (!this.drawn) this.load({preview: true});
    else if (runs.some((r) => changed.has(r.name))) this.load();
  }

  /**
   * Shows `layer`: a layer of the model, a network's path (its weights as
   * one vector) or one of its layers, or ALL_WEIGHTS.
   * @param {string} layer
   */
  showLayer(layer) {
    this.layer = layer;
    this.load({preview: true});
  }

  /**
   * Reads and draws the panel (see Loader.load).
   * @param {{preview?: boolean}=} options
   */
  load(options) {
    this.drawn = true;
    this.loader.load(options);
  }

  /**
   * Draws the charts from the bodies of `runs`; returns the bodies drawn,
   * or null where it shows the whole model instead.
   * @param {string} layer
   * @param {import('./model.js').RunInfo[]} runs
   * @param {Array<Object|null>} bodies
   * @return {Object[]|null}
   */
  draw(layer, runs, bodies) {
    const {host, ui, page} = this;
    delete host.dataset.error;
    // A run without the chosen layer (another model) is left out of the charts.
    const present = runs.map((run, i) => ({run: run.name, data: bodies[i]}))
        .filter((r) => r.data && !r.data.skipped);
    const unread = unreadable(runs, bodies);
    if (layer !== ALL_WEIGHTS && runs.length && !present.length && !unread.length) {
      // No selected run has it any more (its runs were unticked): the whole model instead.
      this.showLayer(ALL_WEIGHTS);
      return null;
    }
    const networks = networksOf(present.map((r) => r.data));
    const inNetwork = [...networks.keys()].some((network) => within(layer, network));
    views.options(ui.layer, layerMenu(present.map((r) => r.data), networks, layer), layer);
    ui.title.textContent = inNetwork ? 'Network weights' : 'Model weights';
    const weight = page.smoothing();
    const color = (r) => page.store.colors.get(r.run);
    const chart = (chartHost, field, logY, yTitle) => drawChart(chartHost, {
      lines: present.flatMap((r) => lines(r.data.steps, numbers(r.data[field]), weight,
          {color: color(r), run: r.run, series: field})),
      logY,
      label: `model ${field}`,
      yTitle,
      tooltip: (step) => present.map((r) => {
        const k = indexOfStep(r.data.steps, step);
        return {color: color(r), label: r.run,
          value: k >= 0 ? formatNumber(Number(r.data[field][k])) : '–'};
      }),
    });
    const lacking = runs.length - present.length - unread.length;
    ui.note.textContent = [
      lacking ? `${lacking} selected run(s) have no such layer or no model weights.` : '',
      unread.length ? `Left out, as they cannot be read: ${unread.join('; ')}.` : '',
    ].filter((text) => text).join(' ');
    const gradients = present.map((r) => numbers(r.data.grad_norm_mean));
    chart(ui.norm, 'norm', false, 'weight norm');
    chart(ui.gradient, 'grad_norm_mean', views.suggest(ui.logGradient, spansDecades(gradients)), 'gradient norm');
    // The update ratio is on a log axis by default, whatever it spans.
    chart(ui.ratio, 'update_ratio', ui.logRatio.checked, 'update / weight');
    host.dataset.layer = layer;
    return present.map((r) => r.data);
  }
}

/**
 * The networks the runs' losses hold, with their layers: `{network: layers}`
 * of the /weights bodies, merged.
 * @param {Object[]} bodies
 * @return {Map<string, string[]>} sorted by network
 */
function networksOf(bodies) {
  const networks = new Map();
  for (const body of bodies) {
    for (const [network, layers] of Object.entries(body.networks)) {
      networks.set(network, [...new Set([...(networks.get(network) || []), ...layers])].sort());
    }
  }
  return new Map([...networks].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * The layer menu: the model as a whole and its layers, then a group per
 * network the loss holds: the network as a whole, and its layers while it
 * or one of them is shown (a network may have dozens).
 *
 * The model's layers are matched across runs by their place in the model
 * where the runs record it (`place:N`), since Keras names layers anew in
 * every model a process builds (`dense` in one run, `dense_17` in the
 * next); each entry names the place and the runs' names for it.
 * @param {Object[]} bodies the /weights bodies of the runs shown
 * @param {Map<string, string[]>} networks
 * @param {string} layer the layer shown
 * @return {Array<Object>} options for views.options
 */
function layerMenu(bodies, networks, layer) {
  const option = (name) => ({value: name, label: name});
  /** @type {Map<number, Set<string>>} */
  const placed = new Map();
  const unplaced = new Set();
  for (const body of bodies) {
    const places = body.places || {};
    for (const name of body.layers) {
      if (!(name in places)) {
        unplaced.add(name);
        continue;
      }
      if (!placed.has(places[name])) placed.set(places[name], new Set());
      placed.get(places[name]).add(name);
    }
  }
  const byPlace = [...placed].sort(([a], [b]) => a - b).map(([place, names]) => {
    const [first, ...others] = [...names].sort();
    return {value: `place:${place}`,
      label: `#${place} ${first}${others.length ? ` (+${others.length} other names)` : ''}`};
  });
  return [
    {value: ALL_WEIGHTS, label: 'all layers'},
    ...byPlace,
    ...[...unplaced].sort().map(option),
    ...[...networks].map(([network, layers]) => ({
      group: `network ${network}`,
      options: [
        {value: network, label: `${network} (all weights)`},
        ...(within(layer, network) ? layers.map(option) : []),
      ],
    })),
  ];
}

/** Whether `layer` is the network at `path` or one of its layers. */
function within(layer, path) {
  return layer === path || layer.startsWith(`${path}/`);
}
