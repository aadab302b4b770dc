# The README's two commands: `make demo` and `make test`. Each sets up what it
# needs on a fresh machine: a .venv with the package and its test extras, and
# for the browser tests Debian's chromium.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The oldest versions setup.cfg declares (tests/oldest.txt), for a short part of the suite.
OLDEST := .venv-oldest
OLDEST_INSTALLED := $(OLDEST)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test unit demo screenshot bench proto

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps tf_keras==2.21.0  # beside tensorflow-cpu: see setup.cfg
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

$(OLDEST_INSTALLED): setup.cfg pyproject.toml tests/oldest.txt
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q -c tests/oldest.txt -e ".[cpu,jax,torch]" "pytest>=8" "hypothesis>=6.100"
	$(OLDEST)/bin/python -m pip install -q --no-deps tf_keras==2.20.1
	touch $@

# Every test, then the compatibility and backend fits on the oldest declared versions.
test: $(INSTALLED) $(OLDEST_INSTALLED) $(CHROMIUM)
	$(PY) -m pytest
	$(OLDEST)/bin/python -m pytest -p no:cacheprovider tests/test_compat.py tests/test_backends.py

# The pure modules' unit tests, in seconds: the loop to run while changing them.
# (--noconftest: tests/conftest.py imports Keras and TensorFlow for the fits.)
unit: $(INSTALLED)
	$(PY) -m pytest -q --noconftest -m unit tests/unit

# Trains the demos into ./logs (about 90 s on 2 CPU cores), then serves the
# dashboard. The runs come in pairs: the loss as usually written (its
# parameters never train) and the same loss after make_trainable.
demo: $(INSTALLED)
	$(PY) -m demo --logdir logs
	@echo
	@echo "Dashboard: http://localhost:6006/#loss_params   (Ctrl-C stops TensorBoard)"
	$(VENV)/bin/tensorboard --logdir logs --port 6006

# The README's picture, from the demo's runs in ./logs.
screenshot: $(INSTALLED) $(CHROMIUM)
	test -d logs || $(PY) -m demo --logdir logs
	$(PY) -m demo.screenshot --logdir logs --out demo/dashboard.png

bench: $(INSTALLED)
	$(PY) bench/overhead.py

# Regenerates the summary format's protobuf code. grpcio-tools 1.74.x emits
# code for protobuf 6.31.1, which loads on every protobuf TensorFlow 2.21 takes.
proto: $(INSTALLED)
	$(PY) -m grpc_tools.protoc -I. --python_out=. tensorboard_plugin/loss_params/plugin_data.proto
