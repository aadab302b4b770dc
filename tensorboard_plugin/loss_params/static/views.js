// DOM builders. Every run name, variable path and message is set with
// textContent: a run named "<img src=x onerror=...>" shows as those characters.

import {severityOf} from './model.js';

/**
 * Creates an element with a class and text.
 * @param {string} tag
 * @param {string=} className
 * @param {string=} text
 * @return {HTMLElement}
 */
export function h(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

/**
 * The page's frame: toolbar, run selector, loss cards and model panel.
 * @return {{root: HTMLElement, smoothing: HTMLInputElement, updated: HTMLElement,
 *           runs: HTMLElement, message: HTMLElement, cards: HTMLElement, weights: HTMLElement}}
 */
export function frame() {
  const root = h('div', 'loss-params');
  const toolbar = h('header', 'toolbar');
  const label = h('label', 'smoothing', 'Smoothing ');
  const smoothing = /** @type {HTMLInputElement} */ (h('input'));
  Object.assign(smoothing, {type: 'range', min: '0', max: '0.99', step: '0.01', value: '0'});
  smoothing.setAttribute('aria-label', 'Smoothing');
  const shown = h('output', '', '0');
  smoothing.addEventListener('input', () => (shown.textContent = smoothing.value));
  label.append(smoothing, shown);
  const updated = h('span', 'updated');
  toolbar.append(h('h1', '', 'Loss Params'), label, updated);
  const runs = h('nav', 'runs');
  const message = h('div', 'message');
  const cards = h('section', 'cards');
  const weights = h('aside', 'weights');
  const main = h('main');
  main.append(message, cards);
  const body = h('div', 'body');
  body.append(runs, main, weights);
  root.append(toolbar, body);
  return {root, smoothing, updated, runs, message, cards, weights};
}

/**
 * Fills the run selector: a checkbox per run, in the run's colour.
 * @param {HTMLElement} host
 * @param {string[]} names
 * @param {Set<string>} selected
 * @param {Map<string, string>} colors
 * @param {function(string, boolean): void} onToggle
 */
export function runSelector(host, names, selected, colors, onToggle) {
  const list = h('ul');
  for (const name of names) {
    const item = h('li');
    const label = h('label');
    const box = /** @type {HTMLInputElement} */ (h('input'));
    box.type = 'checkbox';
    box.checked = selected.has(name);
    box.dataset.run = name;
    box.addEventListener('change', () => onToggle(name, box.checked));
    label.append(box, swatch(colors.get(name)), h('span', 'run-name', name));
    item.append(label);
    list.append(item);
  }
  host.replaceChildren(h('h2', '', `Runs (${names.length})`), list);
}

/**
 * A coloured square, the legend mark of a run.
 * @param {string} color
 * @return {HTMLElement}
 */
export function swatch(color) {
  const mark = h('span', 'swatch');
  mark.style.background = color;
  return mark;
}

/**
 * The note that names what `/runs` could not read: runs left out, and tags
 * left out of a listed run, each with the reason.
 * @param {Array<{run: string, tag?: string, reason: string}>} skipped
 * @return {HTMLElement}
 */
export function skippedNote(skipped) {
  const note = h('div', 'skipped');
  note.append(h('p', '', 'Left out, as they cannot be read:'));
  const list = h('ul');
  for (const skip of skipped) {
    const what = skip.tag ? `${skip.run}: ${skip.tag}` : skip.run;
    const item = h('li');
    item.dataset.run = skip.run;
    item.append(h('span', 'run-name', what), ` (${skip.reason})`);
    list.append(item);
  }
  note.append(list);
  return note;
}

/**
 * The status badge of a variable: the status word, coloured by the severity
 * the listing gives the status (class `severity-<severity>`), or as unknown.
 * @param {string} status
 * @param {string} severity 'good', 'bad', 'warn', 'info' or 'unknown' (see model.js's severityOf)
 * @return {HTMLElement}
 */
export function badge(status, severity) {
  const node = h('span', `badge severity-${severity || 'unknown'}`, status || 'no diagnosis yet');
  node.dataset.status = status;
  return node;
}

/**
 * The skeleton of a loss variable's card, or of a network's the loss holds;
 * the page fills its parts. `showWeights`, hidden but on a network's card,
 * sends its weights to the model panel.
 * @param {string} path
 * `stored`, hidden but where a run shows the variable through a display
 * (`LossParamTracker(display=...)`), switches the value chart to the value
 * as stored.
 * @return {{root: HTMLElement, meta: HTMLElement, showWeights: HTMLButtonElement,
 *           legend: HTMLElement, help: HTMLElement, note: HTMLElement, valueTitle: HTMLElement,
 *           value: HTMLElement, gradient: HTMLElement, logY: HTMLInputElement,
 *           stored: HTMLInputElement, storedLabel: HTMLElement}}
 */
export function card(path) {
  const root = h('article', 'card');
  root.dataset.path = path;
  const title = h('h3', '', path);
  const meta = h('span');
  const showWeights = /** @type {HTMLButtonElement} */ (h('button', 'show-weights'));
  showWeights.type = 'button';
  showWeights.hidden = true;
  showWeights.title = 'Show its weights, layer by layer, in the model panel';
  const metaLine = h('div', 'meta');
  metaLine.append(meta, showWeights);
  const legend = h('ul', 'legend');
  const help = h('div', 'help');
  const note = h('div', 'note');
  const valueTitle = h('span');
  const stored = checkbox('stored value');
  stored.label.hidden = true;
  stored.label.title = 'Show the value as the loss stores it, before its display';
  const value = h('div', 'chart-host');
  value.dataset.chart = 'value';
  const gradient = h('div', 'chart-host');
  gradient.dataset.chart = 'grad_norm';
  const logY = checkbox('log y');
  root.append(
    title, metaLine, legend, help, note,
    chartTitle(valueTitle, stored.label), value,
    chartTitle('gradient norm (mean over the epoch\'s steps)', logY.label), gradient,
  );
  return {
    root, meta, showWeights, legend, help, note, valueTitle, value, gradient, logY: logY.input,
    stored: stored.input, storedLabel: stored.label,
  };
}

/**
 * The legend of a card: per run, its colour, name, status badge and CSV
 * link; for a vector, its elements' shades, each named `[i]`.
 * @param {HTMLElement} host
 * @param {{run: string, color: string, status: string, severity: string, csv: string,
 *          elements: string[]}[]} rows `elements`: the elements' colours, in order
 */
export function legend(host, rows) {
  host.replaceChildren(...rows.map((row) => {
    const item = h('li');
    item.dataset.run = row.run;
    const link = /** @type {HTMLAnchorElement} */ (h('a', 'csv', 'CSV'));
    link.href = row.csv;
    link.download = '';
    link.title = `Download ${row.run}'s series as CSV`;
    item.append(swatch(row.color), h('span', 'run-name', row.run), badge(row.status, row.severity), link);
    if (row.elements.length > 1) item.append(elementKey(row.elements));
    return item;
  }));
}

/** The most elements a legend names one by one; more are named by their first and last. */
const NAMED_ELEMENTS = 16;

/**
 * The key of a vector's elements: a shade and `[i]` each, or for a long
 * vector its first and last, dark to light.
 * @param {string[]} colors
 * @return {HTMLElement}
 */
function elementKey(colors) {
  const key = h('span', 'elements');
  const named = colors.length <= NAMED_ELEMENTS ? colors.map((c, i) => [c, i]) :
      [[colors[0], 0], [colors[colors.length - 1], colors.length - 1]];
  named.forEach(([color, i], n) => {
    const element = h('span', 'element');
    element.dataset.element = String(i);
    element.append(swatch(color), `[${i}]`);
    if (colors.length > NAMED_ELEMENTS && n === 1) key.append(` … `);
    key.append(element);
  });
  return key;
}

/**
 * One line per status and cause worth a word (not a status of good
 * severity without a cause): what it means and the fix, the cause's own
 * where it has one.
 * @param {HTMLElement} host
 * @param {{status: string, cause: string}[]} diagnoses
 * @param {import('./model.js').Listing} texts
 * @param {string} path the card's variable, in place of a fix's `'<its path>'`
 *     (metadata.PATH_PLACEHOLDER), so that the line to copy names it
 */
export function help(host, diagnoses, texts, path) {
  const seen = new Set();
  const lines = [];
  for (const {status, cause} of diagnoses) {
    const text = (texts.causes || {})[cause] || texts.statuses[status];
    const severity = severityOf(texts.statuses, status);
    const key = `${status}/${cause}`;
    if (!text || seen.has(key) || (severity === 'good' && !cause)) continue;
    seen.add(key);
    const line = h('p');
    line.append(badge(status, severity), ` ${text.explanation}`);
    if (text.fix) line.append(h('span', 'fix', ` Fix: ${text.fix.replaceAll("'<its path>'", `'${path}'`)}`));
    lines.push(line);
  }
  host.replaceChildren(...lines);
}

/**
 * Marks `root` (data-sampled) and, where the drawn bodies are reductions
 * that left epochs out, says so in `note`: every epoch on its way, or too
 * many to load.
 * @param {HTMLElement} root
 * @param {HTMLElement} note
 * @param {import('./store.js').Coverage} coverage
 */
export function markSampled(root, note, coverage) {
  root.dataset.sampled = String(coverage.sampled);
  if (!coverage.sampled) return;
  note.textContent = coverage.more ?
    'Drawn from the extremes of each pixel column; loading every epoch for the tooltip…' :
    `Drawn from the extremes of each pixel column, exact at this width; the tooltip names the epochs ` +
    `drawn (every epoch, ${coverage.values.toLocaleString()} values, is more than the tab loads; the CSV has them).`;
}

/**
 * Marks `root` (data-error) and says in `note` why it could not be drawn.
 * @param {HTMLElement} root
 * @param {HTMLElement} note
 * @param {string} what
 * @param {Error} error
 */
export function failed(root, note, what, error) {
  root.dataset.error = 'true';
  note.textContent = `${what}: ${error.message}`;
  console.error(error);
}

/**
 * Sets a log toggle the user has not touched to what its chart suggests,
 * and returns its state: once the user ticks or unticks it, theirs wins.
 * @param {HTMLInputElement} toggle made by `checkbox`, which notes the user's touch
 * @param {boolean} suggested
 * @return {boolean}
 */
export function suggest(toggle, suggested) {
  if (toggle.dataset.chosen !== 'true') toggle.checked = suggested;
  return toggle.checked;
}

/**
 * The model-weights panel: a layer picker and three charts.
 * @param {HTMLElement} host
 * @return {{title: HTMLElement, layer: HTMLSelectElement, norm: HTMLElement, gradient: HTMLElement,
 *           ratio: HTMLElement, logGradient: HTMLInputElement, logRatio: HTMLInputElement, note: HTMLElement}}
 */
export function weightsPanel(host) {
  const layer = /** @type {HTMLSelectElement} */ (h('select'));
  layer.setAttribute('aria-label', 'Layer');
  const hosts = ['norm', 'grad_norm', 'update_ratio'].map((name) => {
    const node = h('div', 'chart-host');
    node.dataset.chart = name;
    return node;
  });
  const logGradient = checkbox('log y');
  const logRatio = checkbox('log y', true);
  const note = h('div', 'note');
  const title = h('h2', '', 'Model weights');
  host.replaceChildren(
    title, layer, note,
    h('h4', '', 'weight norm'), hosts[0],
    chartTitle('gradient norm', logGradient.label), hosts[1],
    chartTitle('update / weight ratio', logRatio.label), hosts[2],
  );
  return {
    title, layer, norm: hosts[0], gradient: hosts[1], ratio: hosts[2],
    logGradient: logGradient.input, logRatio: logRatio.input, note,
  };
}

/**
 * Sets the options of a <select>, some of them in groups, and chooses `value`
 * where it is among them (by default, keeps the current choice when it remains).
 * @typedef {{value: string, label: string}} Option
 * @param {HTMLSelectElement} select
 * @param {Array<Option|{group: string, options: Option[]}>} options
 * @param {string=} value
 */
export function options(select, options, value = select.value) {
  const option = (o) => {
    const node = /** @type {HTMLOptionElement} */ (h('option', '', o.label));
    node.value = o.value;
    return node;
  };
  select.replaceChildren(...options.map((o) => {
    if (!o.group) return option(o);
    const group = /** @type {HTMLOptGroupElement} */ (h('optgroup'));
    group.label = o.group;
    group.append(...o.options.map(option));
    return group;
  }));
  if (options.flatMap((o) => o.options || [o]).some((o) => o.value === value)) select.value = value;
}

/**
 * A chart's title with a control at its right.
 * @param {string|HTMLElement} text
 * @param {HTMLElement} control
 * @return {HTMLElement}
 */
function chartTitle(text, control) {
  const title = h('h4');
  title.append(text, control);
  return title;
}

/**
 * A labelled checkbox; `data-chosen` once the user has changed it (see suggest).
 * @param {string} text
 * @param {boolean=} checked
 * @return {{label: HTMLElement, input: HTMLInputElement}}
 */
function checkbox(text, checked = false) {
  const label = h('label', 'toggle');
  const input = /** @type {HTMLInputElement} */ (h('input'));
  input.type = 'checkbox';
  input.checked = checked;
  input.addEventListener('change', () => (input.dataset.chosen = 'true'));
  label.append(input, ` ${text}`);
  return {label, input};
}
