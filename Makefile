# Entry points named in README.md. Each works on a fresh clone with Python 3.10+ on PATH.

PYTHON ?= python3
TOX_VENV := .venv-tox

.PHONY: test example lint docs messages screenshots

## Run the test gate: every environment of tox's env_list whose Python is installed here (found
## on PATH, in pyenv or the usual prefixes), two at a time; ends with a summary of what ran and
## each environment's tests passed, failed, skipped and rerun (docs/contributing.md).
## TEST_ARGS="-e py312-django52" runs a subset.
test:
	$(PYTHON) scripts/test_matrix.py $(TEST_ARGS)

$(TOX_VENV)/bin/tox:
	$(PYTHON) -m venv $(TOX_VENV)
	$(TOX_VENV)/bin/pip install --quiet --upgrade pip "tox>=4.2"

## Set up and serve the example shop against the built-in sandbox.
example:
	./example_project/run.sh

lint: $(TOX_VENV)/bin/tox
	$(TOX_VENV)/bin/tox run -e lint,type

## Build the documentation site into site/ (MkDocs; warnings are errors; every link and anchor
## is checked). For a live preview while writing: .tox/docs/bin/mkdocs serve
docs: $(TOX_VENV)/bin/tox
	$(TOX_VENV)/bin/tox run -e docs

## Update the translation catalogs (es, en) of the package and of the example shop from the
## source, then compile the .mo files that ship. Needs Django in $(PYTHON) and GNU gettext.
## New strings appear untranslated in the .po files: translate them, run this again, commit.
## tests/test_translations.py fails while a catalog is incomplete or a .mo file is stale.
MAKEMESSAGES = $(PYTHON) -m django makemessages -l es -l en --no-obsolete --no-location
messages:
	cd django_etpay && $(MAKEMESSAGES) && $(PYTHON) -m django compilemessages
	cd example_project/shop && $(MAKEMESSAGES) && $(PYTHON) -m django compilemessages

## Run the browser tests and save their screenshots into docs/img/ (Debian's chromium).
screenshots:
	ETPAY_SCREENSHOT_DIR=docs/img $(PYTHON) -m pytest -m heavy tests/browser -q
