# Server Ladder — what users type. `make help` lists it all.
#
# Steps are discovered from steps/NN-name/: nothing here names a step.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY      := .venv/bin/python
STEPS   := $(sort $(notdir $(wildcard steps/[0-9][0-9]-*)))
NUMBERS := $(foreach s,$(STEPS),$(firstword $(subst -, ,$(s))))
PORT    ?= 8080
PYTEST_ARGS ?=

.PHONY: help deps build build-asan build-tsan test test-unit test-steps test-asan test-tsan \
        clean $(addprefix serve-,$(NUMBERS)) $(addprefix step-,$(NUMBERS))

help:
	@echo "Server Ladder — one small server, built nine ways on Linux."
	@echo
	@echo "  make step-NN      guided demo of step NN (about a minute): $(NUMBERS)"
	@echo "  make serve-NN     run step NN in the foreground on port $(PORT) (PORT=...)"
	@echo "  make test         build, then unit tests (ctest) and the step suite (pytest)"
	@echo "  make test-asan    the same under AddressSanitizer + UBSan (build-asan/)"
	@echo "  make test-tsan    the same under ThreadSanitizer (build-tsan/)"
	@echo "  make build        build every step into build/bin/"
	@echo "  make deps         install the Debian packages the above need (as root)"
	@echo "  make clean        remove build directories and the venv"
	@echo
	@echo "  Steps: $(STEPS)"
	@echo "  Narrow the suite: make test-steps PYTEST_ARGS='-k \"01 and waits\"'"
	@echo "                    make test-steps LADDER_STEPS=05,06"

deps:
	@tools/deps.sh test

# Python comes from Debian (pytest, matplotlib…): PyPI is not assumed.
# --system-site-packages lets the venv see them.
$(PY): | deps
	@/usr/bin/python3 -m venv --system-site-packages .venv

build: deps
	@cmake --preset release >/dev/null
	@cmake --build build

build-asan: deps
	@cmake --preset asan-ubsan >/dev/null
	@cmake --build build-asan

build-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build build-tsan

test: test-unit test-steps

test-unit: build
	@ctest --test-dir build --output-on-failure -j2

# pytest exits 5 when a selection matches no test: say so instead of a bare failure.
PYTEST = $(PY) -m pytest tests/steps $(PYTEST_ARGS) || { rc=$$?; \
  [ $$rc -ne 5 ] || echo "pytest selected no tests: check PYTEST_ARGS / LADDER_STEPS" >&2; exit $$rc; }

test-steps: build $(PY)
	@LADDER_BIN=build/bin $(PYTEST)

test-asan: build-asan $(PY)
	@ctest --test-dir build-asan --output-on-failure -j2
	@LADDER_BIN=build-asan/bin LADDER_SANITIZER=asan $(PYTEST)

test-tsan: build-tsan $(PY)
	@ctest --test-dir build-tsan --output-on-failure -j2
	@LADDER_BIN=build-tsan/bin LADDER_SANITIZER=tsan $(PYTEST)

$(addprefix serve-,$(NUMBERS)): serve-%: build
	@test -x build/bin/step-$* || { echo "no step $* (have: $(NUMBERS))" >&2; exit 2; }
	@echo "step $*, foreground; Ctrl-C stops it and prints its stats. In another terminal:"
	@echo "  curl -v http://127.0.0.1:$(PORT)/hello"
	@echo "  curl http://127.0.0.1:$(PORT)/stats"
	@echo "  curl --data-binary @README.md http://127.0.0.1:$(PORT)/echo"
	@echo "  nc -C 127.0.0.1 $(PORT)       (type GET /hello HTTP/1.0, then Enter twice; -C sends CRLF)"
	@echo "  echo mode: build/bin/step-$* --mode echo --port $(PORT), then nc 127.0.0.1 $(PORT) and type"
	@exec build/bin/step-$* --port $(PORT)

$(addprefix step-,$(NUMBERS)): step-%: build $(PY)
	@$(PY) tools/demo/demo.py $*

clean:
	rm -rf build build-debug build-asan build-tsan .venv .pytest_cache
