# Two commands a new user needs: `make search` (the main job, issue #5) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Inductor's compile cache stays inside the project, never the shared default location.
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor

.PHONY: setup search test test-all check bench clean

setup: $(STAMP)

# torch is pinned in the install step (a CPU wheel is on disk here; an unpinned torch would pull
# several GB of CUDA packages).  pyproject declares a looser range for users elsewhere.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[dev]"
	touch $(STAMP)

# The main job: a small but real search on embedded Ray (swish space, regularized evolution,
# mnist1d-mlp, 2 seeds, 48 candidates in populations of 8), then the top table and an HTML report.
SEARCH_RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
SEARCH_ARGS ?= --space swish --strategy evolution --tasks mnist1d-mlp --budget 48 --seeds 2 --batch 8

search: setup
	$(VENV)/bin/actsearch search $(SEARCH_ARGS) --run-dir $(SEARCH_RUN)
	$(VENV)/bin/actsearch report $(SEARCH_RUN)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

check: setup
	$(VENV)/bin/actsearch check "x*sigmoid(x)"

bench: setup
	$(VENV)/bin/actsearch bench formula

clean:
	rm -rf $(VENV) .cache .pytest_cache *.egg-info
