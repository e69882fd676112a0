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

.PHONY: all build test lint demo clean deps-build deps-test

all: build

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

build: deps-build
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/omerta ./appliance/cmd/omerta



test: deps-test build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: deps-build
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...

demo: build
	@scripts/install-deps.sh demo
	@scripts/demo.sh

clean:
	rm -rf bin demo .cache/tools

-include scripts/image.mk
