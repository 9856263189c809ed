# Two commands on a fresh machine (see README): `make demo` (the embedded Fashion-MNIST benchmark) and `make test`.
PYTHON ?= python3
STAMP := .make/installed

.PHONY: install demo test test-slow lint docs dist
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }  # tests/test_docs.py
	$(PYTHON) -m pip install -q -e ".[dev]"
	@mkdir -p .make && touch $(STAMP)

demo: install
	art-adr benchmark --recipe-prefix fashion-mnist-ro --methods at,at-adr --seeds 0 --attacks pgd,apgd,aa --jobs 2 \
	  --n-examples 200 --out benchmarks-out/fashion-mnist-ro

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow

docs: install  # build the documentation site strictly, then serve it on http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve --no-livereload -a 127.0.0.1:8000

lint: install
	ruff check art_adr cli tests benchmarks scripts

dist: install  # the sdist and the wheel users install, in dist/, checked as PyPI checks them
	rm -rf dist && $(PYTHON) -m build --outdir dist . && $(PYTHON) -m twine check --strict dist/*
