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
        notebooks notebooks-serve slides slides-check slides-deps \
        clean $(addprefix serve-,$(NUMBERS)) $(addprefix step-,$(NUMBERS))

help:
	@echo "Server Ladder — one small server, built step by step on Linux: $(words $(STEPS)) steps."
	@echo
	@echo "  make step-NN      guided demo of step NN (about a minute): $(NUMBERS)"
	@echo "  make serve-NN     run step NN in the foreground on port $(PORT) (PORT=...)"
	@echo "  make test         build, then unit tests (ctest) and the step suite (pytest)"
	@echo "  make test-asan    the same under AddressSanitizer + UBSan (build-asan/)"
	@echo "  make test-tsan    the same under ThreadSanitizer (build-tsan/)"
	@echo "  make fuzz         libFuzzer on the parser and the session, FUZZ_SECONDS=60 each (clang)"
	@echo "  make fuzz-smoke   the same for 10 s each: the seeds, every past finding among them"
	@echo "  make build        build every step into build/bin/"
	@echo "  make bench        every step under the same loads (~5 min): a table, results/*.csv, plots"
	@echo "  make bench-full   every scenario, variant and reference server, 5 runs each (longer)"
	@echo "  make bench-targets the performance targets only: their cells, 5 runs of 1 s (~4 min)"
	@echo "  make hotpath      instructions and system calls per request (the hotpath steps of step.toml, the floor)"
	@echo "  make soak         every step in turn under good and bad clients, RSS and fds watched (SOAK_SECONDS=600)"
	@echo "  make exercises    the exercises: a hole in a step's code to fill, or a bug to find"
	@echo "  make exercise NAME=06-drain   your copy to edit; make check NAME=06-drain tests it"
	@echo "  make labs         the labs: one socket pitfall each, measured (make lab-NAME runs one)"
	@echo "  make notebooks    run notebooks/*.ipynb headless on results/*.csv; figures: results/figures/"
	@echo "  make notebooks-serve  open the notebooks in Jupyter in your browser (JUPYTER_PORT=8888)"
	@echo "  make slides       the deck: build/slides/ladder.html (+ .pdf when Chromium is installed)"
	@echo "  make slides-check every slide in headless Chromium at 1280x720: build/slides/png/"
	@echo "  make deps         install the Debian packages the above need (as root)"
	@echo "  make clean        remove build directories and the venv"
	@echo
	@echo "  Steps: $(STEPS)"
	@echo "  Narrow the suite: make test-steps PYTEST_ARGS='-k \"01 and waits\"'"
	@echo "                    make test-steps LADDER_STEPS=05,06"
	@echo "  Narrow the bench: make bench BENCH_ARGS='--steps 04,05 --scenarios idle-5k' (--list: the plan)"

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

# The bench (tools/bench/README.md): every step under the same loads, server
# and load generator pinned apart, servers alternated, disturbed runs redone.
# Writes results/<date>-<machine>.csv (+ -runs.csv), results/*.png and
# results/README.md. wrk and nginx add reference rows when installed.
BENCH_ARGS ?=

.PHONY: bench bench-full bench-targets
bench: build $(PY)
	@tools/deps.sh bench
	@MPLBACKEND=Agg $(PY) tools/bench/bench.py $(BENCH_ARGS)

bench-full: build $(PY)
	@tools/deps.sh bench
	@MPLBACKEND=Agg $(PY) tools/bench/bench.py --full $(BENCH_ARGS)

bench-targets: build $(PY)
	@tools/deps.sh bench
	@MPLBACKEND=Agg $(PY) tools/bench/bench.py --set targets $(BENCH_ARGS)

# What one request costs, in figures that do not move with the machine's
# noise: callgrind instructions and syscall counts (tools/profile/hotpath.py).
HOTPATH_ARGS ?=
.PHONY: hotpath
hotpath: build $(PY)
	@tools/deps.sh hotpath
	@$(PY) tools/profile/hotpath.py $(HOTPATH_ARGS)

# Every step in turn under a mix of good and bad clients and an EMFILE burst,
# its RSS and descriptors sampled (tools/soak/soak.py): a table, and
# build/soak/soak.png, samples.csv, summary.json.
SOAK_SECONDS ?= 600

.PHONY: soak
soak: build $(PY)
	@tools/deps.sh bench
	@MPLBACKEND=Agg $(PY) tools/soak/soak.py --seconds $(SOAK_SECONDS)

# The learner's material. The notebooks read results/*.csv and never start a
# server; the slides take code from snippet tags and docs/diffs/, and plots
# from the notebooks' figures. Marp CLI comes from npm, pinned by the lock file.
NPM_STAMP := slides/node_modules/.package-lock.json

notebooks: $(PY)
	@tools/deps.sh notebooks
	@$(PY) notebooks/run.py

# Jupyter (Debian's jupyter-notebook) on the notebooks, for a learner to edit
# and re-run them; loopback only, the URL with its token is printed.
JUPYTER_PORT ?= 8888
notebooks-serve: $(PY)
	@tools/deps.sh jupyter
	@cd notebooks && exec ../$(PY) -m notebook --ip=127.0.0.1 --port=$(JUPYTER_PORT) \
	  --notebook-dir=. $(if $(DISPLAY),,--no-browser) $(if $(filter 0,$(shell id -u)),--allow-root)

$(NPM_STAMP): slides/package.json slides/package-lock.json | deps
	@tools/deps.sh slides
	@cd slides && npm ci --no-audit --no-fund --loglevel=error

slides-deps: $(NPM_STAMP)

slides: notebooks $(NPM_STAMP)
	@$(PY) slides/build.py

slides-check: slides
	@$(PY) slides/check.py

# The suite renders the deck, so Marp CLI is installed before it runs.
test-steps: $(NPM_STAMP)

# Fuzzing with clang's libFuzzer (tests/fuzz/): each target for FUZZ_SECONDS,
# from the seeds in tests/fuzz/corpus/ plus what earlier runs found
# (build-fuzz/corpus/). A failure leaves its input in build-fuzz/artifacts/:
# add it to tests/fuzz/corpus/<target>/ and make it a unit test.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.cpp,%,$(wildcard tests/fuzz/fuzz_*.cpp))
FUZZ_FLAGS := -max_len=4096 -timeout=10 -dict=tests/fuzz/http.dict -print_final_stats=1 \
              -artifact_prefix=build-fuzz/artifacts/

.PHONY: build-fuzz fuzz fuzz-smoke
build-fuzz: deps
	@tests/fuzz/toolchain.sh
	@cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DLADDER_FUZZ=ON \
	  -DLADDER_TESTS=OFF >/dev/null
	@cmake --build build-fuzz --target $(addprefix fuzz_,$(FUZZ_TARGETS))

fuzz: build-fuzz
	@mkdir -p build-fuzz/artifacts
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  printf 'fuzz_%-12s %3s s ... ' $$t $(FUZZ_SECONDS); \
	  if build-fuzz/bin/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) \
	       build-fuzz/corpus/$$t tests/fuzz/corpus/$$t >build-fuzz/fuzz_$$t.log 2>&1; then \
	    echo "ok: $$(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz_$$t.log) runs"; \
	  else \
	    echo FAILED; grep -m1 -A40 -E '^(fuzz_|==[0-9]+==|SUMMARY)' build-fuzz/fuzz_$$t.log; \
	    echo "log: build-fuzz/fuzz_$$t.log; the input: build-fuzz/artifacts/" >&2; exit 1; \
	  fi; \
	done

# CI's short pass.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

clean:
	rm -rf build build-debug build-asan build-tsan build-fuzz .venv .pytest_cache slides/node_modules
include labs/labs.mk
include exercises/exercises.mk
