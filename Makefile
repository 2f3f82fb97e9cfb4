# One entry point for people and CI. Everything installs into .venv from the project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-sqlite test-postgres reliability lint typecheck run bench bench-settlement \
  bench-sqlite clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The README's test command: the whole suite on the embedded default (SQLite), then the
# database tests again on PostgreSQL when a server is reachable.
test: $(STAMP)
	$(BIN)/pytest -q
	@if $(BIN)/python -m tests.pg_available; then \
	  COALITION_TEST_DB=postgres $(BIN)/pytest -q tests/integration; \
	else \
	  echo "*** PostgreSQL not reachable: the PostgreSQL run was SKIPPED (set COALITION_TEST_PG_DSN) ***"; \
	  test -z "$$COALITION_TEST_REQUIRE_PG"; \
	fi

test-sqlite: $(STAMP)
	$(BIN)/pytest -q

test-postgres: $(STAMP)
	COALITION_TEST_DB=postgres $(BIN)/pytest -q tests/integration

# The reliability suite (docs/reliability.md): the served API under concurrency, faults and bad
# input, on PostgreSQL, then S1, S2 and S5 on SQLite. RELIABILITY_ARGS=--long for a soak run.
reliability: $(STAMP)
	COALITION_TEST_DB=postgres $(BIN)/pytest -q tests/reliability $(RELIABILITY_ARGS)
	COALITION_TEST_DB=sqlite $(BIN)/pytest -q tests/reliability $(RELIABILITY_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks: measured, never asserted in tests. Needs PostgreSQL and Redis (docs/performance.md).
bench: $(STAMP)
	$(BIN)/python -m bench.api_load --json .bench/api.json
	$(BIN)/python -m bench.settlement_scale --postings 1000000 --json .bench/settlement.json

bench-settlement: $(STAMP)
	$(BIN)/python -m bench.settlement_scale --postings 1000000 --postings 10000000 --json .bench/settlement.json

# The same two benchmarks on SQLite, the embedded default (needs Redis only). SQLite is for
# development, demos and small deployments, so the sizes are a generous small deployment:
# 100k members, and a business day of 200k postings (1/5 of `bench`'s) on 100 partners. That
# keeps the target at about 5-10 minutes on a 2-core box: the API run (1 worker, 16 and 64
# clients x 20 s, then the bare-endpoint and raw aiosqlite ceilings) is most of it; loading and
# settling the 200k-posting day takes about a minute.
bench-sqlite: $(STAMP)
	mkdir -p .bench
	$(BIN)/python -m bench.api_load --db sqlite --members 100000 --json .bench/api-sqlite.json
	$(BIN)/python -m bench.settlement_scale --db sqlite --postings 200000 --members 100000 \
	  --partners 100 --json .bench/settlement-sqlite.json

run: $(STAMP)
	$(BIN)/coalition up $(RUN_ARGS)

clean:
	rm -rf $(VENV) .coalition .pytest_cache .mypy_cache .ruff_cache
