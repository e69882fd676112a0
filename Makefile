# OMERTAOS: build, test, lint, demo, image.
SHELL := /bin/bash
GO    ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/omertaos/omertaos/appliance/version.Version=$(VERSION) \
           -X github.com/omertaos/omertaos/appliance/version.Commit=$(COMMIT)

.PHONY: build
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/omerta ./appliance/cmd/omerta
