# The two front-door commands: `make demo` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: install demo test lint down clean

install: $(VENV)/.installed

# uv installs the stack in ~30 s where pip takes ~2.5 min (pyspark is a 456 MB sdist).
$(VENV)/.installed: setup.py pyproject.toml deploy/checks/checkov.txt
	python3 -m pip install --quiet --disable-pip-version-check uv || true
	if command -v uv >/dev/null 2>&1; then \
	  uv venv --allow-existing --python python3 $(VENV) && uv pip install --python $(PY) -e '.[all]' && \
	  uv venv --allow-existing --python python3 $(VENV)/checkov && \
	  uv pip install --python $(VENV)/checkov/bin/python -r deploy/checks/checkov.txt; \
	else \
	  python3 -m venv $(VENV) && $(PY) -m pip install -e '.[all]' && \
	  python3 -m venv $(VENV)/checkov && $(VENV)/checkov/bin/python -m pip install -r deploy/checks/checkov.txt; \
	fi
	touch $@

demo: install
	$(VENV)/bin/streamsim demo $(DEMO_ARGS)

down:
	$(VENV)/bin/streamsim down

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff comes with the dev extra; the configuration is in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf build *.egg-info serving/*.c serving/*.so
