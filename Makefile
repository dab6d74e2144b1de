# DLFD study kit. Each target installs what it needs first, so on a fresh clone
#   make demo    runs every notebook with the quick (CPU) profile into runs/quick/
#   make test    runs the test suite (papermill smoke runs of every notebook included)
#   make lock    regenerates requirements/constraints.txt (the lock) from pyproject.toml
#   make book    builds the static HTML book from the executed notebooks of the last make demo
# Variables: PYTHON (interpreter that creates .venv, >= 3.10), TORCH_SPEC (the torch build
# installed when the venv has none), LOCK (the constraints file installs use; LOCK= for none),
# INSTALLER (uv, the default, or pip), PROFILE, DLFD_ARGS, TEST_TIMEOUT, PYTEST_ARGS.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON       ?= python3
VENV         ?= .venv
TORCH_SPEC   ?= torch==2.14.1 torchvision==0.29.1
PROFILE      ?= quick
DLFD_ARGS    ?=
TEST_TIMEOUT ?= 900
# pytest-xdist workers for `make test` (auto: one per core; 0: one process)
TEST_WORKERS ?= auto
PYTEST_ARGS  ?=
KERNEL_NAME  := dlfd-kit
# The lock: exact versions of every dependency but torch/torchvision, written by `make lock`
# (uv pip compile, universal markers for Python 3.10+). `make install LOCK=` resolves afresh.
LOCK         ?= requirements/constraints.txt
UV_VERSION   := 0.13.9

VPY   := $(VENV)/bin/python
UV    := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
PIP_LOCK := $(if $(LOCK),-c $(LOCK),)
# the installer: uv (default) or pip (`make install INSTALLER=pip`)
INSTALLER    ?= uv
PIP_INSTALL  := $(if $(filter uv,$(INSTALLER)),$(UV) pip install --python $(VPY),$(VPY) -m pip install)
# jupyter refuses to start as root unless told to (containers, CI)
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help venv install lock demo test test-threads lab book browser-check clean distclean

help:
	@echo "make demo       install if needed, then run every notebook (PROFILE=$(PROFILE))"
	@echo "make test       install if needed, then run the tests (pytest)"
	@echo "make test-threads  the tests twice, at 1 and at 2 torch threads (no test may depend on it)"
	@echo "make lab        install if needed, then open JupyterLab on notebooks/"
	@echo "make book       build the HTML book from runs/$(PROFILE)/ (the last make demo) into book/_build/html"
	@echo "make browser-check  run notebook 04 in JupyterLab and check the book in headless Chromium, save screenshots"
	@echo "make install    create $(VENV) and install the kit (locked versions), its deps and the '$(KERNEL_NAME)' kernel"
	@echo "make lock       regenerate $(LOCK) from pyproject.toml (newest versions its ranges allow)"
	@echo "make clean      remove runs/, results/ (but the committed verdict results/quick/), written figures and caches (keeps $(VENV), checkpoints)"
	@echo "make distclean  clean, plus checkpoints/, data caches and $(VENV)"

venv: $(VPY)

$(VPY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' was not found; install Python >= 3.10 or run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "error: the kit needs Python >= 3.10, but '$(PYTHON)' is $$($(PYTHON) -c 'import platform; print(platform.python_version())'); run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }

install: $(STAMP)

# uv (a pinned release from PyPI, installed into the venv by pip) does the installs: one resolver
# pass, parallel downloads and unpacking, wheels reused from its cache (~/.cache/uv). INSTALLER=pip makes
# every install below go through plain pip instead (slower, same lock).
$(UV): | $(VPY)
	$(VPY) -m pip install -q 'uv==$(UV_VERSION)'

# Reinstalls whenever pyproject.toml or the lock changes. torch/torchvision are installed only if
# the venv cannot import them yet, so a CUDA build you installed yourself is kept; everything else
# gets the lock's exact versions.
$(STAMP): pyproject.toml $(LOCK) | $(VPY) $(if $(filter uv,$(INSTALLER)),$(UV),)
	@$(VPY) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	  echo "error: $(VENV) uses Python < 3.10; run 'make distclean' and 'make PYTHON=python3.11 install'" >&2; exit 1; }
	@if $(VPY) -c 'import torch, torchvision' >/dev/null 2>&1; then \
	  echo "torch already importable in $(VENV): keeping it"; \
	else \
	  echo "$(PIP_INSTALL) $(PIP_LOCK) $(TORCH_SPEC)"; \
	  $(PIP_INSTALL) $(PIP_LOCK) $(TORCH_SPEC); \
	fi
	$(PIP_INSTALL) $(PIP_LOCK) -e '.[dev,ray]'
	$(VPY) -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "Python ($(KERNEL_NAME))"
	@touch $@

# Newest versions that pyproject's ranges allow, for every extra, as exact pins with markers for
# each Python from 3.10 on. Review the diff, run `make install test`, commit the file.
lock: | $(UV)
	$(VPY) scripts/lock_input.py > $(VENV)/lock.in
	$(VENV)/bin/uv pip compile $(VENV)/lock.in --override requirements/lock-overrides.txt \
	  --universal --python-version 3.10 --no-header --no-annotate --quiet -o requirements/constraints.txt
	@sed -i '1i # The lock: exact versions of every dependency of the kit but torch/torchvision, all extras\n# included. Written by `make lock` (uv pip compile from pyproject.toml); used by `make install`.' requirements/constraints.txt
	@echo "wrote requirements/constraints.txt; now run 'make install test' and commit it"

demo: $(STAMP)
	$(VENV)/bin/dlfd run --profile $(PROFILE) $(DLFD_ARGS)

test: $(STAMP)
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)

# The suite at one and at two intra-op threads (tests/conftest.py reads DLFD_TEST_THREADS; the
# notebook kernels get it as OMP_NUM_THREADS): an assertion that holds for one rounding only fails.
test-threads: $(STAMP)
	DLFD_TEST_THREADS=1 $(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)
	DLFD_TEST_THREADS=2 $(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ROOT_FLAG) notebooks/

# The rendered book: installs the `book` extra (Sphinx + MyST-NB), then renders the executed
# notebooks of runs/$(PROFILE)/ (written by `make demo`; nothing is re-executed) into book/_build/html.
book: $(STAMP)
	$(PIP_INSTALL) $(PIP_LOCK) -e '.[dev,ray,book]'
	$(VPY) scripts/build_book.py --profile $(PROFILE)

# Opt-in: installs Debian's chromium (as root, if missing) and the `browser` extra, then runs the
# tests marked `browser` (scripts/browser_check.py: notebook 04 in JupyterLab; scripts/book_check.py:
# the rendered book, built first if needed); screenshots go to figures/browser_check/ and figures/book_check/.
browser-check: $(STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
	    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	  else \
	    echo "error: /usr/bin/chromium is missing; install Debian's chromium package (sudo apt-get install chromium)" >&2; exit 1; \
	  fi; \
	fi
	$(PIP_INSTALL) $(PIP_LOCK) -e '.[dev,ray,browser,book]'
	$(VPY) -m pytest -q -m browser --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache book/_build
	if [ -d results ]; then find results -mindepth 1 -maxdepth 1 ! -name quick -exec rm -rf {} +; fi
	if [ -d figures ]; then find figures -mindepth 1 ! -name README.md -exec rm -rf {} +; fi
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -type d \
	  \( -name __pycache__ -o -name .ipynb_checkpoints \) -prune -exec rm -rf {} +

distclean: clean
	if [ -d checkpoints ]; then find checkpoints -mindepth 1 ! -name README.md -exec rm -rf {} +; fi
	rm -rf .cache data_cache *.egg-info $(VENV)
