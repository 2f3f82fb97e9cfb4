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
# Each run writes its raw results to .bench/*.json; bench.report puts the tables into
# docs/performance.md (between the bench:<db> markers) with the machine, date and commands.
BENCH_API := bench.api_load --duration 15 --json .bench/api.json
BENCH_DAY := bench.settlement_scale --postings 1000000 --postings 10000000 --no-explain \
  --no-whatif --json .bench/settlement.json
BENCH_STATEMENTS := bench.settlement_scale --postings 200000 --members 100000 --partners 1000 \
  --no-explain --no-whatif --json .bench/statements.json
bench: $(STAMP)
	mkdir -p .bench
	$(BIN)/python -m $(BENCH_API)
	$(BIN)/python -m $(BENCH_DAY)
	$(BIN)/python -m $(BENCH_STATEMENTS)
	$(BIN)/python -m bench.report --db postgres --api .bench/api.json \
	  --settlement .bench/settlement.json --settlement .bench/statements.json \
	  --command "python -m $(BENCH_API)" --command "python -m $(BENCH_DAY)" \
	  --command "python -m $(BENCH_STATEMENTS)"

# The settlement investigation: per-query EXPLAIN ANALYZE and the what-if timings of fixes.
bench-settlement: $(STAMP)
	$(BIN)/python -m bench.settlement_scale --postings 1000000 --postings 10000000 --json .bench/settlement-explain.json

# The same two benchmarks on SQLite, the embedded default (needs Redis only). SQLite is for
# development, demos and small deployments, so the sizes are a generous small deployment:
# 100k members, and a business day of 200k postings (1/5 of `bench`'s) on 100 partners. That
# keeps the target at about 5-10 minutes on a 2-core box: the API run (1 worker, 16 and 64
# clients x 20 s, then the bare-endpoint and raw aiosqlite ceilings) is most of it; loading and
# settling the 200k-posting day takes about a minute.
BENCH_SQLITE_API := bench.api_load --db sqlite --members 100000 --json .bench/api-sqlite.json
BENCH_SQLITE_DAY := bench.settlement_scale --db sqlite --postings 200000 --members 100000 \
  --partners 100 --json .bench/settlement-sqlite.json
bench-sqlite: $(STAMP)
	mkdir -p .bench
	$(BIN)/python -m $(BENCH_SQLITE_API)
	$(BIN)/python -m $(BENCH_SQLITE_DAY)
	$(BIN)/python -m bench.report --db sqlite --api .bench/api-sqlite.json \
	  --settlement .bench/settlement-sqlite.json \
	  --command "python -m $(BENCH_SQLITE_API)" --command "python -m $(BENCH_SQLITE_DAY)"

run: $(STAMP)
	$(BIN)/coalition up $(RUN_ARGS)

clean:
	rm -rf $(VENV) .coalition .pytest_cache .mypy_cache .ruff_cache
