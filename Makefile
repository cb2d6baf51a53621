# One way to do each thing: README, developers and .ci/run all use these targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data

.PHONY: run demo install test lint typecheck check bench kafka-up kafka-down clean

$(BIN)/cxpulse: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need Python 3.11 ($(PYTHON)) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/cxpulse

run: install
	$(BIN)/cxpulse run --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

demo: install  # in another terminal while `make run` goes; e.g. make demo ARGS="--incident checkout"
	$(BIN)/cxpulse demo --url http://$(HOST):$(PORT) $(ARGS)

test: install
	bash scripts/test.sh $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

bench: install
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.pulse

kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
