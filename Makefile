# Set-up lives here so `make demo` and `make test` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	# a real browser for the live page's test: Debian's Chromium (tools' own browser downloads are not reachable)
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	python3 -m venv $(VENV)
	# torch first, pinned: the CPU build (a bare torch resolves to a multi-GB CUDA build)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,pose]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/movenet demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

# Speed benchmarks, each printing JSON (a few minutes in all; the 10-minute-video memory run takes most).
bench: $(STAMP)
	$(PY) benchmarks/bench_prepare.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_generate.py
	$(PY) -m movenet bench --live
	$(PY) benchmarks/bench_live_browser.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
