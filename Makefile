# `make demo`, `make smoke` and `make test` work on a fresh Debian/Ubuntu machine: they install what
# is missing (system packages, a .venv with the project, offline WordNet for nltk), then run.
# ARGS="..." adds flags to the sweep (make demo ARGS="--dry-run"); PYTEST_ARGS="..." to pytest;
# SYSTEM_PACKAGES= skips the apt step on other systems (README: Other systems).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := libopencv-dev libturbojpeg0-dev pkg-config wordnet-base wordnet-sense-index
NLTK_WORDNET := $(VENV)/nltk_data/corpora/wordnet/lexnames
STAMP := $(VENV)/.installed

.PHONY: demo test bench install system-packages smoke clean-venv

demo: install
	$(PY) sweeps/data_quantity.py $(ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

smoke: install
	$(PY) sweeps/data_quantity.py --smoke $(ARGS)

# Side-by-side benchmarks (benchmarks/README.md); each prints its headline ratio last, and the
# headlines are printed again at the end. BENCH_ARGS=--quick checks that they run.
BENCHMARKS := benchmarks/loader_vs_torch.py benchmarks/pipeline_efficiency.py benchmarks/beton_write.py \
	benchmarks/gpu_loop.py benchmarks/analysis_scale.py benchmarks/tune_overhead.py benchmarks/sweep_scaling.py
bench: install
	@set -o pipefail; start=$$(date +%s); log=$$(mktemp); \
	for b in $(BENCHMARKS); do \
	  echo "== $$b"; \
	  $(PY) $$b $(BENCH_ARGS) 2>$$log.err | tee -a $$log || { tail -20 $$log.err >&2; exit 1; }; \
	done; \
	echo "== headlines"; grep -E '^[a-z_]+: [-0-9.inf]+ \(goal' $$log; \
	echo "make bench: $$(( $$(date +%s) - start )) s"; rm -f $$log $$log.err

install: system-packages $(STAMP) $(NLTK_WORDNET)

# FFCV compiles against OpenCV and libjpeg-turbo (found with pkg-config); WordNet 3.0 comes from Debian.
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "error: missing system packages:$$missing; apt-get is not available here: install the equivalents with your package manager (OpenCV and libjpeg-turbo headers, pkg-config; WordNet 3.0 with WORDNET_DIR=<its dict dir>), then run make SYSTEM_PACKAGES= $(MAKECMDGOALS) (README: Other systems)" >&2; exit 1; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "error: missing system packages:$$missing; run as root or install sudo, or run: apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing system packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# pip (not uv/poetry): torch 2.14.1 / torchvision 0.29.1 are taken from local disk here.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(NLTK_WORDNET): $(STAMP) datasets/hierarchy/__init__.py datasets/hierarchy/wordnet_setup.py
	$(PY) -m datasets.hierarchy install-wordnet --nltk-data $(VENV)/nltk_data

clean-venv:
	rm -rf $(VENV)
