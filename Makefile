# Two entry points for a newcomer on a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit samples bench clean

$(STAMP): pyproject.toml
	sh scripts/ensure_system.sh python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Analyse the bundled sample capture and print the summary.
demo: $(STAMP)
	$(BIN)/sensor analyze pcaps/demo.pcap --config pcaps/demo.toml --alerts demo-alerts.jsonl --sessions demo-sessions.jsonl
	@echo "alerts (JSON lines, as a SIEM receives them): demo-alerts.jsonl; SMTP sessions: demo-sessions.jsonl"

## Install what the tests need (tshark, tcpdump when root and missing), lint, type-check, run the tests.
test: $(STAMP)
	sh scripts/ensure_system.sh test
	$(BIN)/ruff check sensor tests scripts
	$(BIN)/mypy
	$(BIN)/pytest

samples: $(STAMP)
	$(BIN)/python scripts/make_sample_pcaps.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_capture.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
