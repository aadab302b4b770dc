// Entry point of the "Loss Params" tab. TensorBoard imports this module in
// the plugin's iframe and calls render().

import {drawChart, followTheme, formatNumber} from './chart.js';
import {Store, csvUrl, numbers, shades, shown, smooth} from './model.js';
import * as views from './views.js';

const REFRESH_MS = 5000;
const ALL_WEIGHTS = '';

/** Builds the tab and keeps it current while training writes. */
export async function render() {
  followTheme();
  const style = document.createElement('link');
  style.rel = 'stylesheet';
  style.href = './static/style.css';
  const styled = new Promise((resolve) => (style.onload = style.onerror = resolve));
  document.head.append(style);
  const page = new Page(styled);
  document.body.append(page.ui.root);
  await page.refresh();
  setInterval(() => page.refresh(), REFRESH_MS);
}

class Page {
  /** @param {Promise} styled settles once the stylesheet has loaded (or failed to) */
  constructor(styled) {
    this.styled = styled;
    this.store = new Store();
    this.ui = views.frame();
    this.weights = views.weightsPanel(this.ui.weights);
    /** @type {{runs: Object[], statuses: Object, causes: Object}} */
    this.listing = {runs: [], statuses: {}, causes: {}};
    /** Runs seen so far: a new run starts selected, a run the user unticked stays so. */
    this.known = new Set();
    this.selected = new Set();
    /** @type {Map<string, {ui: Object, visible: boolean, token: number}>} */
    this.cards = new Map();
    this.weightsToken = 0;
    /** The layer the model panel shows: a layer's or a network's path, or ALL_WEIGHTS. */
    this.layer = ALL_WEIGHTS;
    /** Whether the model panel has been drawn once (it needs no scroll to load). */
    this.weightsDrawn = false;
    this.runNames = '';
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const card = this.cards.get(entry.target.dataset.path);
        if (card && entry.isIntersecting && !card.visible) {
          card.visible = true;
          this.drawCard(entry.target.dataset.path, {preview: true});
        }
      }
    });
    this.ui.smoothing.addEventListener('input', () => this.redraw());
    this.weights.layer.addEventListener('change', () => this.showLayer(this.weights.layer.value));
    for (const control of [this.weights.logGradient, this.weights.logRatio]) {
      control.addEventListener('change', () => this.drawWeights());
    }
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
    this.ui.weights.hidden = !this.selectedRuns().length;
    if (!this.weightsDrawn) {
      this.drawWeights({preview: true});
    } else if (this.selectedRuns().some((r) => changed.has(r.name))) {
      this.drawWeights();
    }
    const paths = this.lossPaths();
    for (const [path, card] of this.cards) {
      if (!paths.includes(path)) {
        this.observer.unobserve(card.ui.root);
        card.ui.root.remove();
        this.cards.delete(path);
      }
    }
    paths.forEach((path, i) => {
      let card = this.cards.get(path);
      if (!card) {
        card = {ui: views.card(path), visible: false, token: 0};
        card.ui.logY.addEventListener('change', () => this.drawCard(path));
        card.ui.stored.addEventListener('change', () => {
          this.describeCard(path);
          this.drawCard(path);
        });
        card.ui.showWeights.addEventListener('click', () => {
          this.showLayer(path);
          this.ui.weights.scrollIntoView({block: 'nearest'});
        });
        this.cards.set(path, card);
        this.observer.observe(card.ui.root);
      }
      if (this.ui.cards.children[i] !== card.ui.root) {
        this.ui.cards.insertBefore(card.ui.root, this.ui.cards.children[i] || null);
      }
      this.describeCard(path);
      if (card.visible && this.runsWith(path).some((r) => changed.has(r.name))) this.drawCard(path);
    });
    // The observer reports the cards in view after the next frame; asking
    // the layout now starts their requests a frame sooner.
    for (const [path, card] of this.cards) {
      const box = card.ui.root.getBoundingClientRect();
      if (!card.visible && box.top < innerHeight && box.bottom > 0) {
        card.visible = true;
        this.drawCard(path, {preview: true});
      }
    }
  }

  redraw() {
    for (const [path, card] of this.cards) if (card.visible) this.drawCard(path);
    this.drawWeights();
  }

  selectedRuns() {
    return this.listing.runs.filter((r) => this.selected.has(r.name));
  }

  lossPaths() {
    const paths = new Set();
    for (const run of this.selectedRuns()) {
      for (const v of run.variables) if (v.role === 'loss') paths.add(v.path);
    }
    return [...paths].sort();
  }

  /** The selected runs that hold `path`, with that variable's listing entry. */
  runsWith(path) {
    return this.selectedRuns()
        .map((run) => ({name: run.name, info: run.variables.find((v) => v.path === path)}))
        .filter((r) => r.info);
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

  describeCard(path) {
    const card = this.cards.get(path);
    const runs = this.runsWith(path);
    const info = runs[0].info;
    const network = info.kind === 'network';
    const display = runs.map((r) => r.info.display).find((d) => d);
    if (network) {
      card.ui.meta.textContent = 'network · ';
      card.ui.showWeights.textContent = `${info.weights} weights`;
    } else {
      card.ui.meta.textContent = `shape [${info.shape.join(', ')}] · ${info.dtype}` +
          (info.kind === 'stats' ? ' · large: its distribution' : '') +
          (display ? ` · shown as ${display.label}` : '');
    }
    card.ui.showWeights.hidden = !network;
    card.ui.storedLabel.hidden = !display;
    card.ui.valueTitle.textContent = network ? 'weight norm' : this.valueTitle(card, display, path);
    const size = info.shape.reduce((a, b) => a * b, 1);
    views.legend(card.ui.legend, runs.map((r) => ({
      run: r.name, color: this.store.colors.get(r.name), status: r.info.status,
      csv: csvUrl(r.name, path),
      elements: r.info.kind === 'value' ? shades(this.store.colors.get(r.name), size) : [],
    })));
    views.help(card.ui.help, runs.map((r) => r.info), this.listing);
  }

  /**
   * The title of a card's value chart: what the display shows, or the
   * variable's own name, as stored.
   * @param {Object} card
   * @param {Object|undefined} display the display of a run of the card
   * @param {string} path
   * @return {string}
   */
  valueTitle(card, display, path) {
    if (display && !card.ui.stored.checked) return `value: ${display.label}`;
    return `value${display ? ' as stored' : ''}: ${path.split('/').pop()}`;
  }

  /**
   * Draws a card's charts from every epoch of each run. With `preview`, the
   * series reduced to the chart's width come first: exact to the pixel (a
   * one-epoch spike or NaN is in it), quick to read and send for a long run.
   * Every epoch follows where the reduction left some out, for the tooltip.
   */
  async drawCard(path, {preview = false} = {}) {
    const card = this.cards.get(path);
    const token = ++card.token;
    const wanted = this.runsWith(path);
    let bodies;
    try {
      bodies = await this.store.series(wanted.map((r) => r.name), path,
          preview ? columnsAcross(card.ui.value) : 0);
    } catch (error) {
      card.ui.note.textContent = `Could not load the series: ${error.message}`;
      return;
    }
    // The user may have changed the selection while this was in flight.
    if (token !== card.token) return;
    let more;
    try {
      more = this.drawSeries(card, path, wanted, bodies);
    } catch (error) {
      // One card that cannot draw says so, and leaves the others drawn.
      failed(card.ui.root, card.ui.note, 'Could not draw this card', error);
      return;
    }
    if (more) this.drawCard(path);
  }

  /**
   * Draws a card's charts from the bodies of its runs; returns whether every
   * epoch is to be read after them (see markSampled).
   */
  drawSeries(card, path, wanted, bodies) {
    delete card.ui.root.dataset.error;
    const drawn = (body) => body && !body.skipped;
    const runs = wanted.filter((r, i) => drawn(bodies[i]));
    const data = bodies.filter(drawn);
    const unread = unreadable(wanted, bodies);
    const network = wanted.some((r) => r.info.kind === 'network');
    const weight = Number(this.ui.smoothing.value);
    const stored = card.ui.stored.checked;
    const value = [];
    const gradient = [];
    const bands = [];
    data.forEach((series, i) => {
      const color = this.store.colors.get(runs[i].name);
      const run = runs[i].name;
      const display = stored ? undefined : runs[i].info.display;
      if (series.value) {
        const colors = shades(color, series.value.length);
        series.value.forEach((element, e) => {
          value.push(...lines(series.steps, shown(display, numbers(element)), weight,
              {color: colors[e], run, series: 'value', element: String(e)}));
        });
      } else if (series.distribution) {
        // As TensorBoard's Distributions: nested bands between quantiles, and the median.
        const q = series.distribution.values.map((v) => shown(display, numbers(v)));
        for (let k = 0; k < 4; k++) bands.push({x: series.steps, lo: q[k], hi: q[8 - k], color});
        value.push(...lines(series.steps, q[4], weight, {color, run, series: 'median'}));
      } else if (series.stats) {
        const mean = numbers(series.stats.mean);
        const std = numbers(series.stats.std);
        bands.push({x: series.steps, lo: mean.map((m, k) => m - std[k]),
          hi: mean.map((m, k) => m + std[k]), color});
        value.push(...lines(series.steps, mean, weight, {color, run, series: 'mean'}));
      } else if (series.norms) {
        value.push(...lines(series.steps, numbers(series.norms.norm), weight, {color, run, series: 'norm'}));
      }
      const gradNorm = gradientOf(series);
      if (gradNorm) {
        gradient.push(...lines(series.steps, numbers(gradNorm.mean), weight,
            {color, run, series: 'grad_norm'}));
      }
    });
    const tooltip = (key) => (step) => data.flatMap((series, i) => {
      const run = runs[i].name;
      const color = this.store.colors.get(run);
      const k = indexOfStep(series.steps, step);
      const display = stored ? undefined : runs[i].info.display;
      if (key === 'value' && series.value && series.value.length > 1) {
        // One row per element, in its shade, up to the legend's few.
        const colors = shades(color, series.value.length);
        return series.value.slice(0, TOOLTIP_ELEMENTS).map((element, e) => ({
          color: colors[e], label: `${run} [${e}]`,
          value: k < 0 ? '–' : formatNumber(shown(display, [Number(element[k])])[0]),
        }));
      }
      return [{color, label: run, value: describe(series, key, k, display)}];
    });
    const display = runs.map((r) => r.info.display).find((d) => d);
    drawChart(card.ui.value, {
      lines: value, bands, label: `${path} ${network ? 'weight norm' : 'value'}`, tooltip: tooltip('value'),
      yTitle: network ? 'weight norm' : this.valueTitle(card, display, path).replace(/^value: /, ''),
    });
    drawChart(card.ui.gradient, {
      lines: gradient, logY: card.ui.logY.checked, label: `${path} gradient norm`, yTitle: 'gradient norm',
      empty: `No gradient reached this ${network ? 'network' : 'variable'}`, tooltip: tooltip('grad_norm'),
    });
    const young = runs.filter((r, i) => data[i].steps.length === 1).map((r) => r.name);
    card.ui.note.textContent = [
      young.length ? `${young.join(', ')}: 1 epoch so far; the lines grow as training writes.` : '',
      unread.length ? `Left out, as they cannot be read: ${unread.join('; ')}.` : '',
    ].filter((text) => text).join(' ');
    return markSampled(card.ui.root, card.ui.note, data);
  }

  /**
   * Shows `layer` in the model panel: a layer of the model, a network's
   * path (its weights as one vector) or one of its layers, or ALL_WEIGHTS.
   * @param {string} layer
   */
  showLayer(layer) {
    this.layer = layer;
    this.drawWeights({preview: true});
  }

  /** Draws the model panel; `preview` as for drawCard. */
  async drawWeights({preview = false} = {}) {
    this.weightsDrawn = true;
    const token = ++this.weightsToken;
    const layer = this.layer;
    const runs = this.selectedRuns();
    let data;
    try {
      data = await this.store.weights(runs.map((r) => r.name), layer,
          preview ? columnsAcross(this.weights.norm) : 0);
    } catch (error) {
      this.weights.note.textContent = `Could not load the weights: ${error.message}`;
      return;
    }
    if (token !== this.weightsToken) return;
    let more;
    try {
      more = this.drawWeightCharts(layer, runs, data);
    } catch (error) {
      failed(this.ui.weights, this.weights.note, 'Could not draw the weights', error);
      return;
    }
    if (more) this.drawWeights();
  }

  /**
   * Draws the model panel's charts from the bodies of `runs`; returns
   * whether every epoch is to be read after them (see markSampled).
   */
  drawWeightCharts(layer, runs, data) {
    delete this.ui.weights.dataset.error;
    // A run without the chosen layer (another model) is left out of the charts.
    const present = runs.map((run, i) => ({run: run.name, data: data[i]}))
        .filter((r) => r.data && !r.data.skipped);
    const unread = unreadable(runs, data);
    if (layer !== ALL_WEIGHTS && runs.length && !present.length && !unread.length) {
      // No selected run has it any more (its runs were unticked): the whole model instead.
      this.showLayer(ALL_WEIGHTS);
      return false;
    }
    const networks = networksOf(present.map((r) => r.data));
    const inNetwork = [...networks.keys()].some((network) => within(layer, network));
    views.options(this.weights.layer, layerMenu(present.map((r) => r.data), networks, layer), layer);
    this.weights.title.textContent = inNetwork ? 'Network weights' : 'Model weights';
    const weight = Number(this.ui.smoothing.value);
    const chart = (host, field, logY, yTitle) => {
      const color = (r) => this.store.colors.get(r.run);
      drawChart(host, {
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
    };
    const lacking = runs.length - present.length - unread.length;
    this.weights.note.textContent = [
      lacking ? `${lacking} selected run(s) have no such layer or no model weights.` : '',
      unread.length ? `Left out, as they cannot be read: ${unread.join('; ')}.` : '',
    ].filter((text) => text).join(' ');
    chart(this.weights.norm, 'norm', false, 'weight norm');
    chart(this.weights.gradient, 'grad_norm_mean', this.weights.logGradient.checked, 'gradient norm');
    chart(this.weights.ratio, 'update_ratio', this.weights.logRatio.checked, 'update / weight');
    this.ui.weights.dataset.layer = layer;
    return markSampled(this.ui.weights, this.weights.note, present.map((r) => r.data));
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
 * The model panel's layer menu: the model as a whole and its layers, then a
 * group per network the loss holds: the network as a whole, and its layers
 * while it or one of them is shown (a network may have dozens).
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

/**
 * How many pixel columns `host`'s chart has: the server reduces a series to
 * each column's extremes (see http_api.md, `columns`), so the first view is
 * exact at that width, and little to read and send.
 * @param {HTMLElement} host
 * @return {number}
 */
function columnsAcross(host) {
  return Math.max(100, Math.round(host.clientWidth || 0));
}

/** The most elements of a vector the tooltip lists, one row each. */
const TOOLTIP_ELEMENTS = 16;

/**
 * The index of `step` in the sorted `steps`, or -1: a binary search, as a
 * hover asks it of every run at every move.
 * @param {number[]} steps
 * @param {number} step
 * @return {number}
 */
function indexOfStep(steps, step) {
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
 * The most values a card or the model panel reads for every epoch at once
 * (about 20 MB of JSON). Past it the reduction drawn stays: it is exact at
 * the chart's width, and a tooltip names an epoch it drew (a pixel column
 * holds at most four).
 */
const FULL_READ_VALUES = 2_000_000;

/**
 * Marks `root` (data-sampled) and says in `note` when the drawn bodies are
 * reductions that left epochs out (the drawing is exact; the tooltip lacks
 * those epochs); returns whether every epoch is to follow, as it does but
 * for a very large card (see FULL_READ_VALUES).
 * @param {HTMLElement} root
 * @param {HTMLElement} note
 * @param {Object[]} bodies
 * @return {boolean}
 */
function markSampled(root, note, bodies) {
  const sampled = bodies.some((body) => body.sampled);
  root.dataset.sampled = String(sampled);
  if (!sampled) return false;
  const values = bodies.reduce((n, body) => n + (body.epochs || body.steps.length) * arraysOf(body), 0);
  const more = values <= FULL_READ_VALUES;
  note.textContent = more ?
    'Drawn from the extremes of each pixel column; loading every epoch for the tooltip…' :
    `Drawn from the extremes of each pixel column, exact at this width; the tooltip names the epochs ` +
    `drawn (every epoch, ${values.toLocaleString()} values, is more than the tab loads; the CSV has them).`;
  return more;
}

/**
 * How many per-epoch arrays a /series or /weights body holds.
 * @param {Object} body
 * @return {number}
 */
function arraysOf(body) {
  const fields = (group) => Object.keys(group || {}).length;
  return (body.value || []).length + fields(body.stats) + fields(body.grad_norm) + fields(body.norms) +
      (body.distribution ? body.distribution.values.length : 0) +
      ['norm', 'grad_norm_mean', 'grad_norm_max', 'update_ratio'].filter((f) => f in body).length +
      fields(body.global_grad_norm);
}

/**
 * The runs a multirun route could not read, each named with the reason.
 * @param {Array<{name: string}>} runs
 * @param {Array<Object|null>} bodies the store's bodies of `runs`, in order
 * @return {string[]}
 */
function unreadable(runs, bodies) {
  return runs.flatMap((run, i) =>
    bodies[i] && bodies[i].skipped ? [`${run.name} (${bodies[i].skipped})`] : []);
}

/**
 * Marks `root` (data-error) and says in `note` why it could not be drawn.
 * @param {HTMLElement} root
 * @param {HTMLElement} note
 * @param {string} what
 * @param {Error} error
 */
function failed(root, note, what, error) {
  root.dataset.error = 'true';
  note.textContent = `${what}: ${error.message}`;
  console.error(error);
}

/**
 * The lines of one series: the raw values, and when smoothing is on, the
 * smoothed values drawn over a faint raw line, as in the Scalars tab.
 */
function lines(steps, values, weight, attrs) {
  const data = Object.fromEntries(Object.entries(attrs).filter(([k]) => k !== 'color')
      .map(([k, v]) => [`data-${k}`, v]));
  if (!weight) return [{x: steps, y: values, color: attrs.color, attrs: data}];
  return [
    {x: steps, y: values, color: attrs.color, opacity: 0.25, attrs: data},
    {x: steps, y: smooth(values, weight), color: attrs.color, attrs: {...data, 'data-smoothed': 'true'}},
  ];
}

/**
 * The gradient norm of a series, mean and max: a loss variable's own, or the
 * one of a network's norms (all its weights' gradients as one vector).
 * @return {{mean: Array<number|string>, max: Array<number|string>}|undefined}
 */
function gradientOf(series) {
  if (series.grad_norm || !series.norms) return series.grad_norm;
  return {mean: series.norms.grad_norm_mean, max: series.norms.grad_norm_max};
}

/**
 * The tooltip text of one run's series at step index `k`, the value as
 * `display` shows it (undefined: as stored).
 */
function describe(series, key, k, display) {
  if (k < 0) return '–';
  if (key === 'grad_norm') {
    const gradNorm = gradientOf(series);
    if (!gradNorm) return 'no gradient';
    return `${formatNumber(Number(gradNorm.mean[k]))} (max ${formatNumber(Number(gradNorm.max[k]))})`;
  }
  const one = (v) => formatNumber(shown(display, [Number(v)])[0]);
  if (series.value) return one(series.value[0][k]);
  if (series.norms) return formatNumber(Number(series.norms.norm[k]));
  if (series.distribution) {
    const q = series.distribution.values;
    return `median ${one(q[4][k])} (${one(q[0][k])} to ${one(q[8][k])})`;
  }
  return `${formatNumber(Number(series.stats.mean[k]))} ± ${formatNumber(Number(series.stats.std[k]))}`;
}
