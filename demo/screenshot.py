"""Takes the README's picture: the "Loss Params" tab over the demo's runs, in headless Chromium.

    python -m demo --logdir logs
    python -m demo.screenshot --logdir logs --out demo/dashboard.png

Starts the real `tensorboard` on the log directory, opens the tab as a user
would, waits until every card and the model panel are drawn, and saves a PNG.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import tensorboard  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="logs")
    parser.add_argument("--out", default=os.path.join(ROOT, "demo", "dashboard.png"))
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tensorboard(args.logdir) as board, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1250})
        page.goto(board.url)
        page.get_by_text("Loss Params").first.click()
        frame = page.frame_locator("iframe").first
        runs = frame.locator(".runs input[type=checkbox]")
        runs.first.wait_for(timeout=60_000)
        count = runs.count()
        # Drawn: every card and the model panel hold a line for each run they show.
        frame.locator("body").evaluate(
            """(body, count) => new Promise((resolve) => {
                const done = () => {
                    const cards = [...body.querySelectorAll('article.card')];
                    const panel = body.querySelector('aside.weights [data-chart="norm"]');
                    return cards.length && cards.every((card) =>
                        card.querySelectorAll('[data-chart="value"] path[data-run]').length >=
                        card.querySelectorAll('.legend li').length) &&
                        panel && panel.querySelectorAll('path[data-run]').length >= count;
                };
                const wait = () => (done() ? resolve() : setTimeout(wait, 100));
                wait();
            })""",
            count,
        )
        page.wait_for_timeout(300)
        page.screenshot(path=args.out)
        browser.close()
    print(f"Saved {args.out}")


if __name__ == "__main__":
    main()
