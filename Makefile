# The two commands of the README. Each creates .venv and installs everything on first use.
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: run test setup

setup:
	@bash scripts/setup.sh

run: setup
	@.venv/bin/python -m maskdet.core.access "$(ADDRESS)"
	.venv/bin/python -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)
