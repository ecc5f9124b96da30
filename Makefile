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
.PHONY: help setup pretrained lab data all run report test unit nbval check-sync sync bench real-data constraints references clean clean-all

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  PROFILE=$(PROFILE) (smoke | default | real | colab; see params/)"
	@echo "  VENV=$(VENV) (a folder, or none: install into PYTHON=$(PYTHON) itself, keeping its torch; none on Colab)"

$(STAMP): pyproject.toml scripts/install.sh $(wildcard constraints.txt)
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

# Interactive editing: JupyterLab (the lab extra) and the project's kernel, registered inside the environment
# (--sys-prefix: never in the user's home). `make test` installs it too, for its lab tests; `make all` does not.
LAB_STAMP := $(dir $(STAMP)).installed-lab
LAB_PORT ?= 8888
KERNEL_NAME := angular-margin-fairness
KERNEL_LABEL := angular-margin-fairness ($(if $(filter none,$(VENV)),$(notdir $(PY)),$(notdir $(VENV))))
TORCH_CONSTRAINTS := build/setup/installed-torch-constraints.txt
$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[lab]" $(if $(filter none,$(VENV)),$$(test -f $(TORCH_CONSTRAINTS) && echo -c $(TORCH_CONSTRAINTS)))
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "$(KERNEL_LABEL)"
	@touch $(LAB_STAMP)

lab: $(LAB_STAMP) ## Edit the notebooks: JupyterLab on 127.0.0.1:LAB_PORT (8888) in notebooks/, the project's kernel
	$(PY) -m lib.notebooks lab --port $(LAB_PORT)

run: $(STAMP) $(if $(filter real colab,$(PROFILE)),pretrained) ## Execute all notebooks under PROFILE into reports/PROFILE/ and render
	$(PY) -m lib.notebooks run --profile $(PROFILE)

report: $(STAMP) ## Re-render reports/PROFILE/*.html and the index from the executed notebooks
	$(PY) -m lib.notebooks render --profile $(PROFILE)

test: $(STAMP) $(LAB_STAMP) check-sync ## The whole test suite: unit tests + check-sync + nbval (smoke profile)
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

# The real data folder from the official archives (README, "Building the real data folder"): DOWNLOADS names the
# folder holding them; the folder is written to FACE_SHARED_DATA (default ../shared/data).
real-data: $(STAMP) ## Build the real data folder from the official archives in DOWNLOADS=<folder> (checksums checked)
	@test -n "$(DOWNLOADS)" || { echo "make real-data: say where the downloaded archives are: make real-data DOWNLOADS=<folder>" >&2; exit 1; }
	$(PY) -m lib.real_data --downloads "$(DOWNLOADS)"

constraints: $(STAMP) ## Rewrite constraints.txt (the versions make setup installs) from the packages in VENV
	$(PY) scripts/pin_versions.py --python $(PY)

references: $(STAMP) ## Rewrite README.md's References section from lib/references.py (the one list)
	$(PY) -m lib.references readme

clean: ## Remove generated reports/figures of non-committed profiles, caches and build files
	rm -rf build reports/smoke reports/default figures/smoke figures/default data/cache data/checkpoints/smoke data/checkpoints/default data/results/smoke data/results/default

clean-all: clean ## Also remove the synthetic data and the virtual environment
	rm -rf data/synthetic $(filter-out none,$(VENV))
