# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both depend on `setup`, which is idempotent: a stamp file records that it finished.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/audit demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache
