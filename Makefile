# Two entry points for a newcomer on a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NATIVE := $(VENV)/.native
# Sources mypyc compiles (setup.py NATIVE_MODULES): a change rebuilds their C extensions, so a
# stale extension never shadows an edited module.
NATIVE_SRC := setup.py sensor/capture/fast.py sensor/decode/packet.py sensor/decode/_batch.c sensor/_build.c sensor/pipeline.py \
              $(wildcard sensor/tcp/*.py sensor/smtp/*.py sensor/smtp/*.c sensor/features/*.py sensor/features/*.c sensor/detect/*.py)

.PHONY: demo test lint typecheck unit samples bench clean

$(STAMP): pyproject.toml
	sh scripts/ensure_system.sh python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q 'setuptools>=65' wheel 'mypy==2.4.1' 'numpy>=1.26' 'orjson>=3.9'
	$(BIN)/pip install -q --no-build-isolation -e '.[dev]'
	touch $(STAMP) $(NATIVE)

# On a fresh clone make has already decided to run this when $(STAMP)'s install builds the
# extensions: rebuild only if a source is still newer than what that install left.
$(NATIVE): $(STAMP) $(NATIVE_SRC)
	@if [ ! -f $(NATIVE) ] || [ -n "$$(find $(NATIVE_SRC) -newer $(NATIVE))" ]; then \
		echo "$(BIN)/pip install -q --no-build-isolation --no-deps -e ."; \
		$(BIN)/pip install -q --no-build-isolation --no-deps -e .; \
	fi
	touch $(NATIVE)

## Analyse the bundled sample capture and print the summary.
demo: $(NATIVE)
	$(BIN)/sensor analyze pcaps/demo.pcap --config pcaps/demo.toml --alerts demo-alerts.jsonl --sessions demo-sessions.jsonl --host-scores demo-scores.jsonl
	@echo "alerts (JSON lines, as a SIEM receives them): demo-alerts.jsonl; SMTP sessions: demo-sessions.jsonl; model scores per host: demo-scores.jsonl"

## Install what the tests need (tshark, tcpdump, iproute2 when root and missing), lint, type-check, run the tests.
test: $(NATIVE)
	sh scripts/ensure_system.sh test
	$(BIN)/ruff check sensor tests scripts
	$(BIN)/mypy
	$(BIN)/pytest

samples: $(STAMP)
	$(BIN)/python scripts/make_sample_pcaps.py

bench: $(NATIVE)
	$(BIN)/python scripts/bench_capture.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
	find . -path ./.venv -prune -o -name '*.so' -print -exec rm -f {} +
