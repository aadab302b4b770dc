"""A real `tensorboard` process on a free port, for the end-to-end tests and the benchmark."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


class TensorBoard:
    """A running `tensorboard --logdir ...`; `url` is its address."""

    def __init__(self, process, url, log):
        self.process, self.url, self._log = process, url, log

    def get(self, route, timeout=30, form=None):
        """Returns `(status, body bytes)` of a GET on `route` (e.g. `/data/plugins_listing`).

        With `form` (a list of `(name, value)`), a POST of that form instead.
        """
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            with urllib.request.urlopen(self.url + route, data=data, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get_json(self, route):
        status, body = self.get(route)
        assert status == 200, f"GET {route}: {status} {body[:300]!r}\n{self.output()}"
        return json.loads(body)

    def output(self):
        """What the process printed so far, for failure messages."""
        self._log.flush()
        with open(self._log.name, errors="replace") as f:
            return f.read()[-4000:]

    def wait_for(self, ready, timeout=90, interval=0.25):
        """Polls `ready()` until it returns a truthy value, which it returns."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tensorboard exited with {self.process.returncode}:\n{self.output()}")
            try:
                result = ready()
            except (OSError, AssertionError, ValueError):
                result = None
            if result:
                return result
            time.sleep(interval)
        raise TimeoutError(f"tensorboard was not ready after {timeout} s:\n{self.output()}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir, *flags):
    """Starts the `tensorboard` command of this environment and waits until it answers."""
    command = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    port = free_port()
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process = subprocess.Popen(
            [command, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        board = TensorBoard(process, f"http://127.0.0.1:{port}", log)
        try:
            board.wait_for(lambda: board.get("/data/plugins_listing", timeout=5)[0] == 200)
            yield board
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
