# Angular-margin losses and fairness: one-command build of the report series.
#   make all            venv + synthetic data + execute every notebook (PROFILE=default) + render HTML
#   make test           unit tests + notebook pairing check + nbval on every notebook (smoke profile)
# Other profiles: make all PROFILE=real  (needs the real data folder, FACE_SHARED_DATA)  |  PROFILE=colab (GPU + internet)
# Installation: a virtual environment in VENV (default .venv), or VENV=none to install into PYTHON itself,
# keeping the torch already installed there (the default on Google Colab, where COLAB_RELEASE_TAG is set).

PROFILE ?= default
PYTHON ?= python3
VENV ?= $(if $(COLAB_RELEASE_TAG),none,.venv)
EXTRAS ?= dev
ifeq ($(VENV),none)
PY := $(PYTHON)
STAMP := build/setup/installed
else
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
endif
NBVAL_DIR := build/nbval/smoke
export FACE_PROGRESS ?= plain

.DEFAULT_GOAL := help
.PHONY: help setup pretrained data all run report test unit nbval check-sync sync bench clean clean-all

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  PROFILE=$(PROFILE) (smoke | default | real | colab; see params/)"
	@echo "  VENV=$(VENV) (a folder, or none: install into PYTHON=$(PYTHON) itself, keeping its torch; none on Colab)"

$(STAMP): pyproject.toml scripts/install.sh
	@PYTHON="$(PYTHON)" VENV="$(VENV)" EXTRAS="$(EXTRAS)" STAMP="$(STAMP)" sh scripts/install.sh

setup: $(STAMP) ## Install the project with its dev extras into VENV (default .venv; VENV=none: into PYTHON itself)

data: $(STAMP) ## Generate the embedded synthetic dataset (reused when present)
	$(PY) -m lib.synthetic --preset default
	$(PY) -m lib.synthetic --preset smoke

all: setup run ## Everything: setup, data, execute all notebooks under PROFILE, render the report

# The real and colab profiles use the pretrained face encoder (dlib): it is installed on their first run (where
# dlib is already installed, as on Colab, only its model files). Elsewhere the notebooks skip those sections
# with a message saying how to install it.
PRETRAINED_STAMP := $(dir $(STAMP)).installed-pretrained
pretrained: $(PRETRAINED_STAMP) ## Install the pretrained face encoder (dlib + its model files; keeps an installed dlib)
$(PRETRAINED_STAMP): $(STAMP) scripts/install_pretrained.sh
	@PY="$(PY)" STAMP="$(PRETRAINED_STAMP)" sh scripts/install_pretrained.sh

run: $(STAMP) $(if $(filter real colab,$(PROFILE)),pretrained) ## Execute all notebooks under PROFILE into reports/PROFILE/ and render
	$(PY) -m lib.notebooks run --profile $(PROFILE)

report: $(STAMP) ## Re-render reports/PROFILE/*.html and the index from the executed notebooks
	$(PY) -m lib.notebooks render --profile $(PROFILE)

test: $(STAMP) check-sync ## The whole test suite: unit tests + check-sync + nbval (smoke profile)
	rm -rf $(NBVAL_DIR)
	$(PY) -m lib.notebooks prepare --profile smoke --out $(NBVAL_DIR)
	$(PY) -m pytest tests $(NBVAL_DIR) --nbval-lax -p no:cacheprovider

unit: $(STAMP) ## Unit tests only (fast)
	$(PY) -m pytest tests

nbval: $(STAMP) ## nbval (lax) on every notebook prepared with the smoke profile
	rm -rf $(NBVAL_DIR)
	$(PY) -m lib.notebooks prepare --profile smoke --out $(NBVAL_DIR)
	$(PY) -m pytest $(NBVAL_DIR) --nbval-lax -p no:cacheprovider

check-sync: $(STAMP) ## Check that every notebooks/*.py and its paired .ipynb have the same content
	$(PY) -m lib.notebooks check-sync

sync: $(STAMP) ## Rewrite notebooks/*.ipynb from the jupytext sources notebooks/*.py
	$(PY) -m lib.notebooks sync

bench: $(STAMP) ## Throughput: input pipeline (float32, bf16; ResNet-18 224 px on CUDA if present), cache reads from disk, pretrained encoder, all-vs-all scoring
	$(PY) scripts/bench_pipeline.py
	$(PY) scripts/bench_cache_reads.py
	$(PY) scripts/bench_pipeline.py --amp bf16
	$(PY) scripts/bench_pipeline.py --device cuda --model resnet18 --size 224 --batch-size 64 --amp auto
	$(PY) scripts/bench_pretrained.py

clean: ## Remove generated reports/figures of non-committed profiles, caches and build files
	rm -rf build reports/smoke reports/default figures/smoke figures/default data/cache data/checkpoints/smoke data/checkpoints/default data/results/smoke data/results/default

clean-all: clean ## Also remove the synthetic data and the virtual environment
	rm -rf data/synthetic $(filter-out none,$(VENV))
