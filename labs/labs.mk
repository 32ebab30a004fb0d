# Labs: one socket pitfall each (labs/NAME/lab.cpp + README.md, or a
# labs/NAME/run.sh that drives the steps), each measured by tests/labs.
# Included at the end of the top-level Makefile; the list comes from the
# tree, nothing here names a lab.
#
#   make labs          the labs and their one-line claims
#   make lab-NAME      build it, run it: what the kernel did, with the numbers
#   make test-labs     tests/labs (part of make test)
#   make lab-outputs   every lab's output rewritten into its README (root: the namespace labs)

LAB_PROGRAMS := $(patsubst labs/%/lab.cpp,%,$(wildcard labs/*/lab.cpp))
# A lab without a lab.cpp is a script, labs/NAME/run.sh, that drives the step
# binaries themselves (faults): its claim is run.sh's "# Lab NAME — " line.
LAB_SCRIPTS := $(filter-out $(LAB_PROGRAMS),$(patsubst labs/%/run.sh,%,$(wildcard labs/*/run.sh)))
LABS := $(sort $(LAB_PROGRAMS) $(LAB_SCRIPTS))
LABS_PYTEST_ARGS ?=
# The build directory: build/ (the release preset), or another one of yours.
LABS_BUILD ?= build
LABS_CONFIGURE := $(if $(filter build,$(LABS_BUILD)),cmake --preset release,\
                  cmake -S . -B $(LABS_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)

.PHONY: labs test-labs lab-outputs $(addprefix lab-,$(LABS))

# The claim is the lab's header line: "// Lab NAME — <claim>".
labs:
	@echo "Labs — one socket pitfall each, measured on this machine:"
	@for l in $(LABS); do \
	  printf '  make lab-%-22s %s\n' "$$l" "$$(sed -n 's|^// Lab [^ ]* — ||p;s|^# Lab [^ ]* — ||p' \
	    $$(ls labs/$$l/lab.cpp labs/$$l/run.sh 2>/dev/null) | head -1)"; \
	done
	@echo "Each prints what the kernel did; labs/NAME/README.md says why. make test-labs checks them all."

# Only the lab is built, not the whole tree. A lab with a run.sh (one that
# needs network namespaces) is started by it.
$(addprefix lab-,$(LAB_PROGRAMS)): lab-%: deps
	@$(LABS_CONFIGURE) >/dev/null
	@cmake --build $(LABS_BUILD) --target lab-$*
	@echo
	@if [ -x labs/$*/run.sh ]; then labs/$*/run.sh $(LABS_BUILD)/bin/lab-$*; \
	 else $(LABS_BUILD)/bin/lab-$*; fi
	@echo
	@echo "Why it happens, and what to try next: labs/$*/README.md"

# A script lab runs the steps (and loadgen): their binaries are what it
# builds. Its flags: make lab-c100k LAB_ARGS='--connections 250000'
LAB_ARGS ?=
$(addprefix lab-,$(LAB_SCRIPTS)): lab-%: deps $(PY)
	@$(LABS_CONFIGURE) >/dev/null
	@cmake --build $(LABS_BUILD) --target $(addprefix step-,$(NUMBERS)) loadgen
	@echo
	@labs/$*/run.sh $(LABS_BUILD)/bin $(LAB_ARGS)
	@echo
	@echo "Why it happens, and what to try next: labs/$*/README.md"

test-labs: deps $(PY)
	@$(LABS_CONFIGURE) >/dev/null
	@cmake --build $(LABS_BUILD) --target labs $(if $(LAB_SCRIPTS),$(addprefix step-,$(NUMBERS)) loadgen)
	@LADDER_BIN=$(LABS_BUILD)/bin $(PY) -m pytest tests/labs $(LABS_PYTEST_ARGS)

# What each README shows under "What you see" is that lab's output, run here
# by tools/docs/labs_output.py (c100k's, from its committed CSV): a figure a
# learner reads is never typed by hand. Without root the namespace labs'
# blocks are left as they are. --check: tools/docs/labs_output.py --check.
lab-outputs: deps $(PY)
	@$(LABS_CONFIGURE) >/dev/null
	@cmake --build $(LABS_BUILD) --target labs $(addprefix step-,$(NUMBERS)) loadgen
	@$(PY) tools/docs/labs_output.py --bin $(LABS_BUILD)/bin

test: test-labs
