# Two commands do everything on a fresh machine with python3 and the package index:
#   make run    the demo on embedded defaults
#   make test   install what the tests need, then run them all
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The browser tests drive Debian's chromium (never a browser downloaded by a test tool).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The page ships Noto Sans Thai, Lao, Khmer and Myanmar, built from Debian's fonts-noto-core
# into office_node/web/fonts/ (office_node/fonts.py).
NOTO  := /usr/share/fonts/truetype/noto/NotoSansThai-Regular.ttf
FONTS := office_node/web/fonts/.built
# axe-core, the accessibility checks the browser tests inject, from the npm registry (package.json).
AXE   := node_modules/axe-core/axe.min.js

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,embedded,fast,exchange,fonts]"
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

$(NOTO):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fonts-noto-core

$(FONTS): office_node/fonts.py $(STAMP) | $(NOTO)
	$(BIN)/python -m office_node.fonts
	touch $@

$(AXE): package.json
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	npm install --no-audit --no-fund --silent
	touch $@

run: $(STAMP) $(FONTS)
	$(BIN)/blo demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) $(CHROMIUM) $(FONTS) $(AXE)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis node_modules office_node/web/fonts
