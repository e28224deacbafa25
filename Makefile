# Two commands: `make run` starts the server on its embedded defaults, `make test` passes the tests.
# Both set up what they need: Debian packages when missing, Python packages into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_TOOLS := ffmpeg ffprobe redis-server
APT_PACKAGES := ffmpeg redis-server

.PHONY: run test setup system-deps browser-deps vendor lint bench-smoke clean

run: setup vendor
	$(VENV)/bin/mediaserver serve

# The ingest hot path has compiled twins (Cython, built by `make setup`); the whole
# suite runs on them, then the tests of that path run again on the pure-Python
# reference with the extensions switched off.
PURE_PATH_TESTS := tests/unit/test_chunk.py tests/unit/test_connection.py \
	tests/unit/test_connection_obs.py tests/unit/test_connection_batch.py tests/unit/test_flv.py \
	tests/unit/test_fuzz.py tests/unit/test_compiled_twins.py tests/unit/test_readers.py \
	tests/component/test_publisher.py tests/component/test_hub.py \
	tests/component/test_same_media_packets.py tests/component/test_hls_fmp4.py \
	tests/component/test_hls_segmenter_ll.py tests/integration/test_rtmp_session.py \
	tests/integration/test_read_pacing.py tests/integration/test_live_path.py

test: setup system-deps browser-deps vendor
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	MEDIASERVER_NO_EXTENSIONS=1 $(PY) -m pytest -q $(PURE_PATH_TESTS)

setup: $(STAMP)

# setup.py and the .pyx sources too: a changed hot path must be compiled again.
$(STAMP): pyproject.toml setup.py $(wildcard rtmp/*.pyx mediaserver/*.pyx hls/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(APT_PACKAGES); \
	fi

# The dashboard's player: hls.js from the npm registry (version pinned in web/), copied to
# where the server serves it. Never committed: see .gitignore.
HLSJS := mediaserver/static/vendor/hls.min.js

vendor: $(HLSJS)

$(HLSJS): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q npm; }
	cd web && npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p $(@D)
	cp web/node_modules/hls.js/dist/hls.min.js $@.tmp
	cp web/node_modules/hls.js/LICENSE $(@D)/hls.js.LICENSE
	mv $@.tmp $@

# Headless Chromium and its driver for the browser tests (tests/e2e).
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
		echo "installing Debian packages: chromium chromium-driver"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

bench-smoke: setup
	$(PY) -m benchmarks smoke

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache web/node_modules mediaserver/static/vendor rtmp/*.c rtmp/*.so mediaserver/*.c mediaserver/*.so build
