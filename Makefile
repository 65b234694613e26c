# Two entry points for a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test install install-dev system-tools clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned: the CPU wheel on local disk (a bare `torch` would pull a multi-GB CUDA build)
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml $(STAMP)
	$(PIP) install -q -e '.[dev]'
	# fastMRI's reference code as a test oracle (masks, metrics); --no-deps keeps its heavy pins out
	$(PIP) install -q --no-deps fastmri==0.3.0
	# piq as a feature-metric oracle; --no-deps: its torchvision pin would pull another torch (the test loads
	# piq's metric modules directly, without its torchvision-importing package __init__)
	$(PIP) install -q --no-deps piq==0.8.0
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)

# Debian tools the tests compare against (ISMRMRD's generator, BART) and Chromium (the headless test of
# recon report's page). Best effort: tests that need them skip with a message when they are absent.
system-tools:
	@command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null && command -v bart >/dev/null && command -v dcm2niix >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq ismrmrd-tools bart dcm2niix) >/dev/null 2>&1 || echo "note: could not install ismrmrd-tools/bart/dcm2niix"; \
	    else echo "note: run 'sudo apt-get install ismrmrd-tools bart dcm2niix' for the comparison tests"; fi; }
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "note: could not install chromium (the report page test skips)"; \
	    else echo "note: run 'sudo apt-get install chromium' for the report page test"; fi; }

demo: $(STAMP)
	$(VENV)/bin/recon demo

test: $(DEVSTAMP) system-tools
	$(PY) -m pytest -q --nbmake tests notebooks

clean:
	rm -rf $(VENV) out
