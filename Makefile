# crabpot — the two set-up commands are `make run` and `make test` (see README.md).

SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= data
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
CRABPOT := $(TARGET_DIR)/debug/crabpot

.PHONY: build image image-toolbox run test test-deps check-docker fmt clippy bench
.PHONY: fuzz fuzz-smoke crash-test

build:
	$(CARGO) build --workspace

# The agent image, built offline: FROM scratch + static agent-runner + busybox.
image:
	bash container/build.sh

# The toolbox image `crabpot-agent-toolbox`, built offline: a Debian root filesystem made by
# mmdebstrap from Debian's packages (git, Python, Node.js, curl, ripgrep, Chromium), cached in
# /var/tmp/crabpot-toolbox, plus the same static agent-runner. A group picks it with
# `crabpot groups update G --image toolbox`.
image-toolbox:
	bash container/toolbox/build.sh

# Builds everything, starts the host with the defaults, prints the web address and a one-time
# login link (for web:$USER, made an owner), and opens a terminal chat with `main`.
# Leaving the chat (Ctrl-D or /quit) stops the host and its containers.
run: build image
	@mkdir -p $(DATA_DIR)/logs
	@echo "crabpot: host log in $(DATA_DIR)/logs/host.log"
	@$(CRABPOT) --data-dir $(DATA_DIR) serve --stop-containers-on-exit >>$(DATA_DIR)/logs/host.log 2>&1 & \
	host=$$!; \
	for i in $$(seq 1 100); do [ -S $(DATA_DIR)/cli.sock ] && break; \
	  kill -0 $$host 2>/dev/null || { echo "crabpot serve exited; see $(DATA_DIR)/logs/host.log"; tail -n 20 $(DATA_DIR)/logs/host.log; exit 1; }; \
	  sleep 0.1; done; \
	if [ -s $(DATA_DIR)/web.url ]; then \
	  who=$${USER:-operator}; \
	  $(CRABPOT) --data-dir $(DATA_DIR) users create web:$$who >/dev/null 2>&1 || true; \
	  $(CRABPOT) --data-dir $(DATA_DIR) roles grant web:$$who owner >/dev/null 2>&1 || true; \
	  echo "crabpot: web chat and dashboard at $$(cat $(DATA_DIR)/web.url)"; \
	  echo "crabpot: one-time login link for web:$$who (15 min): $$($(CRABPOT) --data-dir $(DATA_DIR) web login-link --user $$who)"; \
	fi; \
	$(CRABPOT) --data-dir $(DATA_DIR) chat; \
	kill -TERM $$host; wait $$host

check-docker:
	@if [ "$${CRABPOT_SKIP_DOCKER:-}" = "1" ]; then \
	  echo "WARNING: CRABPOT_SKIP_DOCKER=1: the Docker end-to-end tests will be SKIPPED"; \
	elif ! docker info >/dev/null 2>&1; then \
	  echo "make test: Docker is not reachable (docker info failed). Start the Docker engine, or set CRABPOT_SKIP_DOCKER=1 to skip the Docker tests." >&2; \
	  exit 1; \
	fi

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Measures the loop against the targets of DESIGN §9 and a polling baseline, on the release
# build with real containers and the fake model; prints a markdown table and writes
# data/bench/latest.json. `make bench SCALE=quick` is a look in about a minute.
SCALE ?= full
bench:
	@docker info >/dev/null 2>&1 || { echo "make bench: Docker is not reachable (docker info failed); the benchmark runs real containers. Start the Docker engine and try again." >&2; exit 1; }
	@$(MAKE) --no-print-directory image
	$(CARGO) build --release -p host -p tests
	CRABPOT_BIN=$(TARGET_DIR)/release/crabpot $(TARGET_DIR)/release/bench --scale $(SCALE)

# Fuzzes the host's edge with cargo-fuzz (nightly, address sanitizer, own target dir): each
# target of fuzz/ for its set time (FUZZ_SECONDS=<n> for all; see fuzz/run.sh), then a table
# of the executions each reached without a crash. A crash fails with its reproducer under
# fuzz/artifacts/. Installs cargo-fuzz if needed.
FUZZ_SECONDS ?=
fuzz:
	$(if $(FUZZ_SECONDS),FUZZ_SECONDS=$(FUZZ_SECONDS)) bash fuzz/run.sh

# CI's short run of every fuzz target.
fuzz-smoke:
	FUZZ_SECONDS=10 bash fuzz/run.sh

# SIGKILLs the release host CRASH_KILLS times at random points around a stream of messages
# over CRASH_SESSIONS chats and counts what was lost or duplicated, at the client and in the
# session files (tests/src/crash). CRASH_SEED=<n> replays a run.
CRASH_KILLS ?= 50
CRASH_SESSIONS ?= 4
CRASH_SEED ?=
crash-test:
	@docker info >/dev/null 2>&1 || { echo "make crash-test: Docker is not reachable (docker info failed); the crash test runs real containers. Start the Docker engine and try again." >&2; exit 1; }
	@$(MAKE) --no-print-directory image
	$(CARGO) build --release -p host -p tests
	CRABPOT_BIN=$(TARGET_DIR)/release/crabpot $(TARGET_DIR)/release/crash_test --kills $(CRASH_KILLS) --sessions $(CRASH_SESSIONS) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

# The one test command: format, lints, and every test including the Docker end-to-end ones.
# Installs the tests' Debian packages and Python venv where missing (tests/deps/install.sh).
test-deps:
	bash tests/deps/install.sh

test: test-deps check-docker fmt clippy
	$(CARGO) build --workspace
	@if [ "$${CRABPOT_SKIP_DOCKER:-}" != "1" ]; then $(MAKE) --no-print-directory image image-toolbox; fi
	$(CARGO) test --workspace --no-fail-fast
