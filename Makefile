# The README's two commands: `make demo` and `make test`. Each sets up what it
# needs on a fresh machine: a .venv with the package and its test extras, and
# for the browser tests Debian's chromium.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo bench proto

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test: $(INSTALLED) $(CHROMIUM)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) bench/overhead.py

# Regenerates the summary format's protobuf code. grpcio-tools 1.74.x emits
# code for protobuf 6.31.1, which loads on every protobuf TensorFlow 2.21 takes.
proto: $(INSTALLED)
	$(PY) -m grpc_tools.protoc -I. --python_out=. tensorboard_plugin/loss_params/plugin_data.proto
