"""store.js's Store in real Chromium: the order its requests go out in.

The page's `fetch` is replaced by one that records each request of the
test's variables and answers it only when the test says, so what is in flight
at each moment is read back exactly, with no timing involved. The tab's own
requests (its polling of `/runs`, say) still go to the server.
"""

import numpy as np
import pytest

from tests.test_browser import browser  # noqa: F401 (a fixture)
from tests.test_browser_chart import board, tab_page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

# Requests six reductions (`columns`) and two reads of every epoch, then
# answers them in the order `steps` gives (a variable each), and returns,
# before any answer and after each, the variables whose requests went out.
ORDER = """async (steps) => {
    const {Store} = await import('./static/store.js');
    const started = [];
    const answers = new Map();
    const reductions = ['a', 'b', 'c', 'd', 'e', 'f'];
    const everyEpoch = ['x', 'y'];
    const ours = new Set([...reductions, ...everyEpoch]);
    const serverFetch = window.fetch;
    window.fetch = (url, ...rest) => {
        const variable = new URL(url, location.href).searchParams.get('variable');
        return ours.has(variable) ? held(variable) : serverFetch(url, ...rest);
    };
    const held = (variable) => new Promise((resolve) => {
        started.push(variable);
        answers.set(variable, () => resolve(new Response('{"runs": {}, "skipped": []}')));
    });
    const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
    const store = new Store();
    const bodies = [
        ...reductions.map((v) => store.series(['run'], v, 300)),
        ...everyEpoch.map((v) => store.series(['run'], v, 0)),
    ];
    await settle();
    const seen = [[...started]];
    for (const variable of steps) {
        answers.get(variable)();
        await settle();
        seen.push([...started]);
    }
    await Promise.all(bodies);
    return seen;
}"""


def test_reads_of_every_epoch_wait_until_no_reduction_runs(tab_page):  # noqa: F811 (the fixture)
    seen = tab_page.evaluate(ORDER, ["a", "b", "c", "d", "e", "f", "x", "y"])
    first_view = ["a", "b", "c", "d", "e"]
    assert seen[0] == first_view, "five at once: the first view's four cards and the model panel"
    assert seen[1] == first_view + ["f"], "a freed slot goes to the waiting reduction"
    # b..e answered: slots are free, but f still runs, so the reads wait.
    assert seen[2] == seen[3] == seen[4] == seen[5] == first_view + ["f"]
    assert sorted(seen[6][6:]) == ["x", "y"], "no reduction left: both reads at once"


# A body as a route writes it with floats=base64, decoded by model.js's decodeFloats.
DECODE = """async () => {
    const {decodeFloats} = await import('./static/model.js');
    const packed = (values) => btoa(String.fromCharCode(...new Uint8Array(new Float32Array(values).buffer)));
    const body = decodeFloats({
        steps: [0, 1, 2],
        value: [packed([0.1, NaN, Infinity]), packed([-Infinity, 0, 1e-30])],
        grad_norm: {mean: packed([1, 2, 3]), max: packed([4, 5, 6])},
        distribution: {basis: [0, 10000], values: [packed([7, 8, 9]), packed([10, 11, 12])]},
        shown: {value: [packed([1, 1, 1]), packed([2, 2, 2])]},
        norm: packed([0.5, 0.25, 0.125]),
    });
    const read = (array) => [array.constructor.name, ...Array.from(array, String)];
    return {
        steps: body.steps, basis: body.distribution.basis,
        value: body.value.map(read), gradNorm: [read(body.grad_norm.mean), read(body.grad_norm.max)],
        quantiles: body.distribution.values.map(read), shown: body.shown.value.map(read), norm: read(body.norm),
        tenth: Math.fround(0.1),
    };
}"""


def test_floats_sent_as_base64_are_read_as_their_float32_values(tab_page):  # noqa: F811 (the fixture)
    body = tab_page.evaluate(DECODE)
    tenth = str(body["tenth"])  # 0.1 as a float32, read as a double
    assert body["value"] == [["Float64Array", tenth, "NaN", "Infinity"],
                             ["Float64Array", "-Infinity", "0", str(np.float64(np.float32(1e-30)))]]
    assert body["gradNorm"] == [["Float64Array", "1", "2", "3"], ["Float64Array", "4", "5", "6"]]
    assert body["quantiles"] == [["Float64Array", "7", "8", "9"], ["Float64Array", "10", "11", "12"]]
    assert body["shown"] == [["Float64Array", "1", "1", "1"], ["Float64Array", "2", "2", "2"]]
    assert body["norm"] == ["Float64Array", "0.5", "0.25", "0.125"]
    assert (body["steps"], body["basis"]) == ([0, 1, 2], [0, 10000]), "the rest as sent"


# A Store handed the first listing's response (index.js asks for it before
# the tab's modules arrive) reads it once; every later listing is asked for
# afresh, also after a first response that failed.
FIRST_LISTING = """async () => {
    const {Store} = await import('./static/store.js');
    const early = {runs: [{name: 'asked early', last_step: 0, last_wall_time: 0, variables: []}]};
    const names = (result) => result.listing.runs.map((run) => run.name);
    const store = new Store(Promise.resolve(new Response(JSON.stringify(early))));
    const first = names(await store.runs());
    const second = names(await store.runs());
    const failing = new Store(Promise.reject(new Error('offline')));
    const error = await failing.runs().then(() => null, (e) => e.message);
    const after = names(await failing.runs());
    return {first, second, error, after};
}"""


def test_the_first_listing_asked_for_early_is_read_once(tab_page):  # noqa: F811 (the fixture)
    seen = tab_page.evaluate(FIRST_LISTING)
    assert seen["first"] == ["asked early"]
    assert seen["second"] and "asked early" not in seen["second"], "the server's listing"
    assert seen["error"] == "offline"
    assert seen["after"] == seen["second"], "a failed first response is not read again"
