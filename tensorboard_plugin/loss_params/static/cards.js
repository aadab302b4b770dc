// The loss variables' cards: one per variable (or network the loss holds)
// of the selected runs, each with its legend, status help, value chart and
// gradient-norm chart, read when it scrolls into view.

import {drawChart, lines} from './chart.js';
import {gradientOf, indexOfStep, noGradientText, numbers, severityOf, shownParts, unreadable} from './model.js';
import {formatNumber, shades, spansDecades} from './numeric.js';
import {Loader, columnsAcross, csvUrl} from './store.js';
import * as views from './views.js';

/** The most elements of a vector the tooltip lists, one row each. */
const TOOLTIP_ELEMENTS = 16;

/**
 * What the panels ask of the page.
 * @typedef {{store: import('./store.js').Store, listing: import('./model.js').Listing,
 *            smoothing: function(): number,
 *            runsWith: function(string): import('./model.js').RunVariable[],
 *            selectedRuns: function(): import('./model.js').RunInfo[],
 *            showWeights: function(string): void}} Page
 */

/** The cards of the loss variables, in `host`. */
export class Cards {
  /**
   * @param {HTMLElement} host
   * @param {Page} page
   */
  constructor(host, page) {
    this.host = host;
    this.page = page;
    /** @type {Map<string, Card>} */
    this.cards = new Map();
    // A card is read once in view, and described (legend, statuses, help)
    // once within a screen of it: the cards far below cost nothing.
    this.inView = new IntersectionObserver((entries) => {
      for (const [card, entry] of this.entries(entries)) if (entry.isIntersecting) card.show();
    });
    this.nearView = new IntersectionObserver((entries) => {
      for (const [card, entry] of this.entries(entries)) {
        card.near = entry.isIntersecting;
        if (card.near) card.describe();
      }
    }, {rootMargin: '100% 0px'});
  }

  /**
   * The cards of an observer's entries, with their entries.
   * @param {IntersectionObserverEntry[]} entries
   * @return {Array<[Card, IntersectionObserverEntry]>}
   */
  entries(entries) {
    return entries.map((entry) => [this.cards.get(entry.target.dataset.path), entry]).filter(([card]) => card);
  }

  /**
   * Shows a card per path, in order, and redraws the cards read so far that
   * hold a changed run. The cards in view are described in order, each read
   * as soon as it is (its request goes out before the next is described);
   * the others once they come within a screen of the view (see nearView),
   * and again at each layout while they are, or once they have been read.
   * @param {string[]} paths
   * @param {Set<string>} changed runs whose charts must be redrawn
   */
  layout(paths, changed) {
    for (const [path, card] of this.cards) {
      if (!paths.includes(path)) {
        this.inView.unobserve(card.ui.root);
        this.nearView.unobserve(card.ui.root);
        card.ui.root.remove();
        this.cards.delete(path);
      }
    }
    const cards = paths.map((path, i) => this.place(path, i));
    const update = (card) => {
      card.describe();
      if (card.visible && this.page.runsWith(card.path).some((r) => changed.has(r.name))) card.loader.load();
    };
    let next = 0;
    while (next < cards.length) {
      const card = cards[next++];
      update(card);
      // The observer reports the cards in view after the next frame; asking
      // the layout now starts their requests sooner.
      const box = card.ui.root.getBoundingClientRect();
      if (box.top >= innerHeight) break;
      if (box.bottom > 0) card.show();
    }
    for (const card of cards.slice(next)) if (card.near || card.visible) update(card);
  }

  /**
   * The card of `path`, made if new, at place `i` among the cards.
   * @param {string} path
   * @param {number} i
   * @return {Card}
   */
  place(path, i) {
    let card = this.cards.get(path);
    if (!card) {
      card = new Card(path, this.page);
      this.cards.set(path, card);
      this.inView.observe(card.ui.root);
      this.nearView.observe(card.ui.root);
    }
    if (this.host.children[i] !== card.ui.root) {
      this.host.insertBefore(card.ui.root, this.host.children[i] || null);
    }
    return card;
  }

  /** Redraws the cards in view (the smoothing changed). */
  redraw() {
    for (const card of this.cards.values()) if (card.visible) card.loader.load();
  }
}

/** One variable's card. */
class Card {
  /**
   * @param {string} path
   * @param {Page} page
   */
  constructor(path, page) {
    this.path = path;
    this.page = page;
    this.ui = views.card(path);
    /** Whether it has come into view: it is read from then on. */
    this.visible = false;
    /** Whether it is within a screen of the view, as last seen: it is described. */
    this.near = false;
    /** Whether the last bodies drawn held the displayed values their runs' displays show. */
    this.served = true;
    this.loader = new Loader({
      columns: () => columnsAcross(this.ui.value),
      read: async (columns) => {
        const wanted = page.runsWith(path);
        return {wanted, bodies: await page.store.series(wanted.map((r) => r.name), path, columns)};
      },
      draw: ({wanted, bodies}) => this.draw(wanted, bodies),
      covered: (coverage) => views.markSampled(this.ui.root, this.ui.note, coverage),
      failed: (stage, error) => stage === 'read' ?
        (this.ui.note.textContent = `Could not load the series: ${error.message}`) :
        views.failed(this.ui.root, this.ui.note, 'Could not draw this card', error),
    });
    this.ui.logY.addEventListener('change', () => this.loader.load());
    this.ui.stored.addEventListener('change', () => {
      this.describe();
      this.loader.load();
    });
    this.ui.showWeights.addEventListener('click', () => page.showWeights(path));
  }

  /** Reads and draws the card the first time it comes into view. */
  show() {
    if (this.visible) return;
    this.visible = true;
    this.loader.load({preview: true});
  }

  /** Fills the card's text from the listing: its size, legend, statuses and titles. */
  describe() {
    const {page, path, ui} = this;
    const runs = page.runsWith(path);
    if (!runs.length) return; // its runs were unticked while it was read: it goes
    const info = runs[0].info;
    const network = info.kind === 'network';
    const display = runs.map((r) => r.info.display).find((d) => d);
    if (network) {
      ui.meta.textContent = 'network · ';
      ui.showWeights.textContent = `${info.weights} weights`;
    } else {
      ui.meta.textContent = `shape [${info.shape.join(', ')}] · ${info.dtype}` +
          (info.kind === 'stats' ? ' · large: its distribution' : '') +
          (display ? ` · shown as ${display.label}` : '');
    }
    ui.showWeights.hidden = !network;
    ui.storedLabel.hidden = !display;
    ui.valueTitle.textContent = network ? 'weight norm' : this.valueTitle(display);
    const size = info.shape.reduce((a, b) => a * b, 1);
    const colors = page.store.colors;
    views.legend(ui.legend, runs.map((r) => ({
      run: r.name, color: colors.get(r.name), status: r.info.status,
      severity: severityOf(page.listing.statuses, r.info.status),
      csv: csvUrl(r.name, path),
      elements: r.info.kind === 'value' ? shades(colors.get(r.name), size) : [],
    })));
    views.help(ui.help, runs.map((r) => r.info), page.listing, path);
  }

  /**
   * The title of the value chart: what the display shows, or the
   * variable's own name, as stored (the user's choice, or the server sent no
   * displayed values).
   * @param {import('./model.js').Display|undefined} display the display of a run of the card
   * @return {string}
   */
  valueTitle(display) {
    if (display && !this.ui.stored.checked && this.served) return `value: ${display.label}`;
    return `value${display ? ' as stored' : ''}: ${this.path.split('/').pop()}`;
  }

  /**
   * Draws the card's charts from the bodies of its runs; returns the bodies drawn.
   * @param {import('./model.js').RunVariable[]} wanted
   * @param {Array<Object|null>} bodies
   * @return {Object[]}
   */
  draw(wanted, bodies) {
    const {page, path, ui} = this;
    delete ui.root.dataset.error;
    const drawn = (body) => body && !body.skipped;
    const runs = wanted.filter((r, i) => drawn(bodies[i]));
    const data = bodies.filter(drawn);
    const unread = unreadable(wanted, bodies);
    const network = wanted.some((r) => r.info.kind === 'network');
    const weight = page.smoothing();
    const colorOf = (i) => page.store.colors.get(runs[i].name);
    // The values a display shows come from the server, all runs' or none
    // (an older server sends none): one axis holds one kind of value.
    const display = runs.map((r) => r.info.display).find((d) => d);
    const served = data.every((body, i) => !runs[i].info.display || shownParts(body));
    if (served !== this.served) {
      this.served = served;
      this.describe();
    }
    const parts = data.map((body, i) =>
      display && served && !ui.stored.checked && runs[i].info.display ? shownParts(body) : body);
    const value = [];
    const gradient = [];
    const bands = [];
    data.forEach((series, i) => {
      const color = colorOf(i);
      const run = runs[i].name;
      const part = parts[i];
      if (part.value) {
        const colors = shades(color, part.value.length);
        part.value.forEach((element, e) => {
          value.push(...lines(series.steps, numbers(element), weight,
              {color: colors[e], run, series: 'value', element: String(e)}));
        });
      } else if (part.distribution) {
        // As TensorBoard's Distributions: nested bands between quantiles, and the median.
        const q = part.distribution.values.map(numbers);
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
      const color = colorOf(i);
      const k = indexOfStep(series.steps, step);
      const part = parts[i];
      if (key === 'value' && part.value && part.value.length > 1) {
        // One row per element, in its shade, up to the legend's few.
        const colors = shades(color, part.value.length);
        return part.value.slice(0, TOOLTIP_ELEMENTS).map((element, e) => ({
          color: colors[e], label: `${run} [${e}]`, value: k < 0 ? '–' : formatNumber(Number(element[k])),
        }));
      }
      return [{color, label: run, value: describe(series, part, key, k)}];
    });
    const title = network ? 'weight norm' : this.valueTitle(display).replace(/^value: /, '');
    drawChart(ui.value, {
      lines: value, bands, label: `${path} ${network ? 'weight norm' : 'value'}`, tooltip: tooltip('value'),
      yTitle: title,
    });
    const raw = gradient.filter((line) => !line.attrs['data-smoothed']).map((line) => line.y);
    drawChart(ui.gradient, {
      lines: gradient, logY: views.suggest(ui.logY, spansDecades(raw)), label: `${path} gradient norm`,
      yTitle: 'gradient norm', empty: noGradientText(runs.length ? runs : wanted, page.listing,
          network ? 'network' : 'variable'),
      tooltip: tooltip('grad_norm'),
    });
    const young = runs.filter((r, i) => data[i].steps.length === 1).map((r) => r.name);
    ui.note.textContent = [
      young.length ? `${young.join(', ')}: 1 epoch so far; the lines grow as training writes.` : '',
      display && !served && !ui.stored.checked ?
        `The values as stored: this TensorBoard's plugin sends no values shown as ${display.label}.` : '',
      unread.length ? `Left out, as they cannot be read: ${unread.join('; ')}.` : '',
    ].filter((text) => text).join(' ');
    return data;
  }
}

/**
 * The tooltip text of one run's series at step index `k`.
 * @param {Object} series the /series body
 * @param {Object} part its value-like parts drawn: the body's own, or the displayed ones
 * @param {string} key 'value' or 'grad_norm'
 * @param {number} k
 * @return {string}
 */
function describe(series, part, key, k) {
  if (k < 0) return '–';
  const one = (v) => formatNumber(Number(v));
  if (key === 'grad_norm') {
    const gradNorm = gradientOf(series);
    if (!gradNorm) return 'no gradient';
    return `${one(gradNorm.mean[k])} (max ${one(gradNorm.max[k])})`;
  }
  if (part.value) return one(part.value[0][k]);
  if (part.distribution) {
    const q = part.distribution.values;
    return `median ${one(q[4][k])} (${one(q[0][k])} to ${one(q[8][k])})`;
  }
  if (series.norms) return one(series.norms.norm[k]);
  return `${one(series.stats.mean[k])} ± ${one(series.stats.std[k])}`;
}
