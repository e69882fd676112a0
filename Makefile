# OMERTAOS: build, test, lint, demo, image.
#   make demo   run omertad with state under ./demo and show what it serves
#   make test   the whole test suite, integration tests included (root: CI)
#   make lint   gofmt, go vet, staticcheck
SHELL   := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/omertaos/omertaos/appliance/version.Version=$(VERSION) \
           -X github.com/omertaos/omertaos/appliance/version.Commit=$(COMMIT)
STATICCHECK_VERSION := v0.8.2
TOOLS   := $(CURDIR)/.cache/tools
TEST_TIMEOUT ?= 30m

.PHONY: all build test fuzz lint openapi-lint browser-test console-load demo clean deps-build deps-test

all: build

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

# bin/omerta: omertad, first boot and the CLI; bin/omerta-console: the web
# console, a binary of its own so that the network-facing process links
# no containerd client, SQLite or NVML (appliance/deps checks it).
build: deps-build
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/omerta ./appliance/cmd/omerta
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/omerta-console ./appliance/cmd/omerta-console



# The appliance packages (the daemon, its store and API, the domains it
# serves) and the console run under the race detector; first boot, hardening and the scripts
# run without it, since their tests re-exec children and mostly wait on them.
# Then the site-configuration fuzz target gets FUZZTIME of fresh inputs: the
# path an administrator's ESP file takes must stay bounded in time and memory.
# ui/browsertest and ui/loadtest have their own targets (below).
RACE_PKGS  = ./appliance/... $(shell $(GO) list ./ui/... | grep -v -e /browsertest -e /loadtest)
PLAIN_PKGS := ./firstboot/... ./hardening/... ./scripts/... ./image/...
FUZZTIME   ?= 30s
# The agents' crash-consistency test SIGKILLs the service this many times
# mid deploy, patch and delete (about 75 s for 50 here).
export OMERTA_AGENTS_CRASH_RUNS ?= 50

test: deps-test build agents
	@scripts/install-deps.sh browser
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PLAIN_PKGS)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./appliance/config/
	$(BROWSER_TEST)

# The console in a real browser: Debian's chromium driven by playwright-core
# (pinned in ui/browsertest/package-lock.json, installed under .cache/npm)
# through setup, deploy, logs, a task, disable, the audit log and an
# auditor's read-only view, on omertad, containerd and the console as they
# run. Part of `make test` (about a minute), and on its own here. CI=true
# makes a missing chromium or node fail the test instead of skipping it.
BROWSER_TEST = OMERTA_BIN=$(CURDIR)/bin/omerta CI=$${CI:-true} $(GO) test -count=1 -timeout 15m ./ui/browsertest/
browser-test: deps-test build agents
	@scripts/install-deps.sh browser
	$(BROWSER_TEST) -v

# The console under 50 authenticated clients over HTTPS for 60 s, beside a
# bare Fiber handler serving a page of the same size (a benchmark, never in
# make test; results in out/console-load.txt).
console-load: build
	@scripts/console-load.sh

# Every fuzz target in the module for FUZZTIME each (make fuzz FUZZTIME=5m).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	  done; done

lint: deps-build
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...
	@scripts/openapi-lint.sh

# omertad's OpenAPI document, linted by Redocly CLI (pinned, installed from
# npm under .cache/npm on first use).
openapi-lint:
	@scripts/openapi-lint.sh

demo: build agents
	@scripts/install-deps.sh demo
	@scripts/demo.sh

clean:
	rm -rf bin demo .cache/tools

-include scripts/image.mk
include scripts/agents.mk
