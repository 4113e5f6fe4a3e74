# Two set-up commands: `make demo` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LOCALES = nazaha/locales

.PHONY: demo test install catalogs bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/nazaha demo

test: install
	$(BIN)/python -m pytest -q

# Extract, merge and compile the gettext catalogs (commit the results).
catalogs: install
	$(BIN)/pybabel extract -F babel.cfg -k __ -k lazy_gettext -k ngettext:1,2 --no-location --sort-output -o $(LOCALES)/nazaha.pot .
	$(BIN)/pybabel update -D nazaha -i $(LOCALES)/nazaha.pot -d $(LOCALES) --no-fuzzy-matching --ignore-obsolete
	$(BIN)/python tools/fill_english_catalog.py $(LOCALES)/en/LC_MESSAGES/nazaha.po
	$(BIN)/pybabel compile -D nazaha -d $(LOCALES) --statistics

bench: install
	$(BIN)/python bench/report_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
