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
	# timm is a test reference only (EvoNorm-B0/S0).  --no-deps: its torchvision requirement would
	# replace the pinned CPU torch with a CUDA build; tests/timm_reference.py loads the modules it needs.
	$(PY) -m pip install --disable-pip-version-check -q --no-deps "timm==1.0.31"
	# transformers is a test reference only (tests/test_hf_dropin.py: a GPT-2 from a small config, nothing
	# downloaded).  It does not depend on torch, and torch is pinned in the same command so that no resolver
	# step can replace it; with its dependencies (huggingface_hub, safetensors, tokenizers, regex), which
	# nothing else here installs -- with --no-deps the test would be skipped on a fresh machine.
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" "transformers==5.23.0"
	touch $(STAMP)

# The main job: a small but real search on embedded Ray (swish space, regularized evolution,
# mnist1d-mlp, 48 candidates in populations of 8, staged: 2 seeds, the top third 3, the top ninth 5),
# then the top 5 validated on 3 fresh seeds of mnist1d-mlp and two held-out tasks (digits-cnn, and
# mnist1d-mlp-deep, a larger model), the top table, the validation table and an HTML report.
# (`actsearch validate RUN_DIR` re-validates with the full defaults: 5 seeds, every held-out task.)
SEARCH_RUN ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
SEARCH_ARGS ?= --space swish --strategy evolution --tasks mnist1d-mlp --budget 48 --seeds 2 --batch 8 \
	--validate-top 5 --validate-seeds 3 --validate-tasks mnist1d-mlp,digits-cnn,mnist1d-mlp-deep

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
