# Two set-up commands: `make demo` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LOCALES = nazaha/locales

.PHONY: demo test install catalogs bench clean

# Says what it is doing: the first install takes a minute or two and pip is quiet.
$(BIN)/.installed: pyproject.toml
	@echo "==> Creating a Python environment in $(VENV)/ (first run only)"
	@$(PYTHON) -m venv $(VENV)
	@echo "==> Updating pip"
	@$(BIN)/pip install --quiet --upgrade pip
	@echo "==> Installing Nazaha and its dependencies (about two minutes on the first run)..."
	@$(BIN)/pip install --quiet -e '.[test]'
	@touch $@
	@echo "==> Installed."

install: $(BIN)/.installed

demo: install
	@echo "==> Starting the demo: sandbox Telegram, bot and console (first start sets up keys)..."
	@$(BIN)/nazaha demo

test: install
	$(BIN)/python -m pytest -q

# Extract, merge and compile the gettext catalogs (commit the results).
catalogs: install
	$(BIN)/pybabel extract -F babel.cfg -k __ -k lazy_gettext -k ngettext:1,2 -k pgettext:1c,2 --no-location --sort-output -o $(LOCALES)/nazaha.pot .
	$(BIN)/pybabel update -D nazaha -i $(LOCALES)/nazaha.pot -d $(LOCALES) --no-fuzzy-matching --ignore-obsolete
	$(BIN)/python tools/fill_english_catalog.py $(LOCALES)/en/LC_MESSAGES/nazaha.po
	$(BIN)/pybabel compile -D nazaha -d $(LOCALES) --statistics

bench: install
	$(BIN)/python bench/report_throughput.py
	$(BIN)/python bench/key_rotation.py
	$(BIN)/python bench/broadcast.py

clean:
	rm -rf $(VENV) build *.egg-info
