// Entry point of the "Loss Params" tab. TensorBoard imports this module in
// the plugin's iframe and calls render(). What the first view waits for
// starts here, before the tab's modules have arrived: the run listing, the
// stylesheet, and every module at once (a module's own imports would
// otherwise be fetched only once it has arrived). page.js builds the tab.

const MODULES = ['./page.js', './cards.js', './chart.js', './store.js', './views.js', './weights.js',
  './model.js', './numeric.js'];

const runs = fetch('./runs');
runs.catch(() => {});  // the page reports a failure when it reads the listing
const styled = new Promise((resolve) => {
  const style = document.createElement('link');
  style.rel = 'stylesheet';
  style.href = './static/style.css';
  style.onload = style.onerror = resolve;
  document.head.append(style);
});
const modules = Promise.all(MODULES.map((name) => import(name)));

/** Builds the tab and keeps it current while training writes. */
export async function render() {
  const [page] = await modules;
  await page.start({runs, styled});
}
