# Two commands do all the set-up on a fresh machine:
#   make run    installs inferecon (cost model and frontier only) and prints the default frontier
#               (Llama 3 70B on published H100 specs)
#   make test   installs the test and measurement tools (pytest, torch, the per-op database) and runs
#               the test suite
#
# Where no virtual environment is active, both make one in ./.venv and install into it: a
# stock Debian/Ubuntu Python refuses `pip install` into the system interpreter
# (externally-managed-environment). With a venv (or conda env) active, that one is used.
ifdef VIRTUAL_ENV
PYTHON ?= $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
PYTHON ?= $(CONDA_PREFIX)/bin/python
else
VENV := .venv
PYTHON := $(VENV)/bin/python
endif
# The interpreter a new .venv is made from.
BASE_PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch is pinned; where there is no GPU the CPU build is wanted, because an unpinned (or even a
# pinned) torch from the default index on Linux is the CUDA build plus ~20 CUDA packages. Pass
# the index that serves the CPU build where the default one does not, e.g.
#   make test TORCH_PIP_ARGS="--index-url <PyTorch's CPU wheel index>"
# (the README names it). On a GPU node the torch already installed (with CUDA) is kept.
TORCH := torch==2.13.0
TORCH_PIP_ARGS ?=
# Stamps, one set per interpreter: a second `make run` or `make test` skips pip unless
# pyproject.toml changed.
STAMP_DIR := .make/$(shell echo '$(abspath $(PYTHON))' | cksum | cut -d' ' -f1)
RUN_STAMP := $(STAMP_DIR)/run-deps
TEST_STAMP := $(STAMP_DIR)/test-deps

.PHONY: install install-test run test clean-venv

ifdef VENV
$(PYTHON):
	$(BASE_PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): install your Python's venv module (Debian/Ubuntu: apt install python3-venv)"; exit 1; }
endif

$(RUN_STAMP): pyproject.toml | $(PYTHON)
	$(PIP) install -q -e .
	@mkdir -p $(STAMP_DIR) && touch $@

$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	$(PIP) install -q -e '.[test,opdb]'
	@if ! $(PYTHON) -c 'import torch' 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1; then \
			echo "GPU node without torch in $(PYTHON): install a CUDA build of torch matching your driver"; exit 1; \
		else $(PIP) install -q $(TORCH_PIP_ARGS) $(TORCH); fi; \
	fi
	@mkdir -p $(STAMP_DIR) && touch $@

install: $(RUN_STAMP)
install-test: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(PYTHON) -m inferecon frontier --model llama-3-70b --gpu h100-sxm --out results/frontier-llama-3-70b-h100-sxm

test: $(TEST_STAMP)
	$(PYTHON) -m pytest -q

clean-venv:
	rm -rf .venv .make
