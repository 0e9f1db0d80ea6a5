# The two commands of the README. Each creates .venv and installs everything on first use.
PORT ?= 8501

.PHONY: run test setup

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/python -m streamlit run app.py --server.port $(PORT) --server.headless true

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)
