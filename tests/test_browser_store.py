"""store.js's Store in real Chromium: the order its requests go out in.

The page's `fetch` is replaced by one that records each request of the
test's variables and answers it only when the test says, so what is in flight
at each moment is read back exactly, with no timing involved. The tab's own
requests (its polling of `/runs`, say) still go to the server.
"""

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
