# Two commands do all the set-up on a fresh machine:
#   make run    installs inferecon and prints the default frontier (Llama 3 70B on published H100 specs)
#   make test   installs inferecon with its test tools and runs the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of torch is pinned where there is no GPU: an unpinned torch on Linux pulls a
# multi-GB CUDA build. On a GPU node, the torch already installed (with CUDA) is kept.
TORCH_CPU := torch==2.13.0

.PHONY: install run test

install:
	$(PIP) install -q -e '.[test]'
	@if ! $(PYTHON) -c 'import torch' 2>/dev/null; then \
		if command -v nvidia-smi >/dev/null 2>&1; then \
			echo "GPU node without torch: install a CUDA build of torch matching your driver"; exit 1; \
		else $(PIP) install -q $(TORCH_CPU); fi; \
	fi

run: install
	inferecon frontier --model llama-3-70b --gpu h100-sxm --out results/frontier-llama-3-70b-h100-sxm

test: install
	$(PYTHON) -m pytest -q
