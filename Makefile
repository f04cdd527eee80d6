# chainraft: `make run` is the main job, `make test` what CI runs (.ci/run).

# Go from the usual install places even when the shell's PATH lacks them;
# protoc plugins live in $(HOME)/go/bin.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

GO       ?= go
BIN      := bin/chainraft
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# One explicit limit for the whole suite, far above what it needs, so that a
# hung test fails the build with every goroutine's stack instead of hanging CI.
TEST_TIMEOUT ?= 20m
# `make bench`: which benchmarks, where. The checker's table in the README:
#   make bench BENCH='CheckFile|CheckAppends|PlainPorcupineAppends|StreamRecorder' BENCH_PKGS=./histories/
# (the workload's shape, 100k ops/10 keys and 1M ops/100 keys, fixed seeds,
# chainraft's checker from the file and from memory next to plain Porcupine).
BENCH    ?= .
BENCH_PKGS ?= ./...

.PHONY: all deps build test lint run proto bench clean

all: build

# deps installs what the project needs (scripts/deps.sh: Java and the
# ZooKeeper jars, idempotent) and the Go modules.
deps:
	@if [ -x scripts/deps.sh ]; then scripts/deps.sh; fi
	$(GO) mod download

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/chainraft

test: deps
	GOTRACEBACK=all $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

lint:
	@out="$$(find . -name '*.go' -not -path './.git/*' -not -path './.cache/*' -not -path './runs/*' -exec gofmt -l {} +)"; if [ -n "$$out" ]; then echo "gofmt -l reports:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# run is the main job (about 2.5 minutes): raft, then chain, 35 s each under
# the same blows: each store's most critical role (raft's leader, the
# chain's head: the first role each driver lists) killed, paused and cut
# off once each, 5 s apart, the raft schedule replayed on chain with roles
# mapped by job. Prints the table (healthy throughput and unavailable
# seconds first), the role table, and the path of compare.html.
# COMPARE_ARGS=... adds or overrides flags.
run: deps build
	$(BIN) compare --time-limit 35s --nemesis critical --nemesis-interval 5s $(COMPARE_ARGS)

# proto regenerates the stores' protobuf code from their //go:generate lines.
proto:
	@pkgs=""; for d in raftkv chain; do [ -d $$d ] && pkgs="$$pkgs ./$$d/..."; done; \
	if [ -n "$$pkgs" ]; then echo "$(GO) generate$$pkgs"; $(GO) generate $$pkgs; fi

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -timeout 60m $(BENCH_PKGS)

clean:
	rm -rf bin

# nightly runs the nightly matrix for NIGHTLY_BUDGET (default 10m): both
# stores × fault mixes × seeds plus the seeded bugs; keeps every run under
# runs/nightly-<date>/, appends the night to runs/nightly/trend.jsonl,
# redraws runs/nightly/trend.html and the README's "What it catches" table.
# SHARD=i/N runs shard i of N only (one runner each); nightly-merge then sums
# up the night from every shard's runs copied into runs/nightly-<date>/.
.PHONY: nightly nightly-merge
nightly: deps
	SHARD="$(SHARD)" scripts/nightly.sh

nightly-merge:
	scripts/nightly.sh merge
