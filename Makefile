# privaflow — `make demo` runs the whole pipeline on a local stack, `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint media rtsp-server stack-up stack-down clean

$(STAMP): pyproject.toml stack/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e stack/
	touch $(STAMP)

## setup: create .venv, install privaflow with dev extras, fetch the stack's jars and the sample media
setup: $(STAMP)
	$(BIN)/privaflow stack fetch
	@if [ -x stack/fetch_media.sh ]; then stack/fetch_media.sh; fi
	@if [ -x k8s/install-tools.sh ]; then k8s/install-tools.sh; fi

## demo: start the local stack and run edge agents, a stream worker and the dashboard on sample footage
demo: setup
	$(BIN)/privaflow demo

## test: the whole suite against the real local stack (started and stopped by the suite)
test: setup
	$(BIN)/pytest

## test-fast: unit tests only, no broker
test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m privaflow_stack.typecheck

media: $(STAMP)
	stack/fetch_media.sh

## rtsp-server: build the RTSP server the RTSP capture test runs (mediamtx, from its Go module; needs Go)
rtsp-server: $(STAMP)
	$(BIN)/python -m privaflow_stack.rtsp

stack-up: setup
	$(BIN)/privaflow stack up

stack-down:
	$(BIN)/privaflow stack down

clean: stack-down
	rm -rf .privaflow $(VENV)
