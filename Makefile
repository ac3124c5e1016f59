# pressroom — one Makefile for the whole workspace.
# `make dev` runs the platform locally; `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES := $(shell sed -n 's|^\t\./||p' go.work)
STACK ?= staging
export GOFLAGS ?= -buildvcs=false
export GONOSUMDB := github.com/pulumi
# Tools built from the Go module proxy live here, keyed by version, so reruns are fast.
export PRESSROOM_CACHE ?= $(HOME)/.cache/pressroom
export PATH := $(PRESSROOM_CACHE)/bin:$(PATH)

.PHONY: help deps tools generate build test test-unit bench lint dev preview up manifests rollback

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install the system packages tests and `make dev` need (apt on Debian/Ubuntu)
	@tools/deps.sh

tools: ## build the pinned code generators and linters from the Go module proxy (cached)
	@tools/gotools.sh

generate: tools ## regenerate the Connect/protobuf code from proto/
	@cd proto && buf lint && buf generate

build: ## compile every module and service binary into bin/
	@mkdir -p bin
	@for m in $(MODULES); do (cd $$m && go build ./...) || exit 1; done
	@for s in auth article media notification web; do go build -o bin/$$s ./services/$$s || exit 1; done

test: deps ## every test tier: unit, datastores, Pulumi mocks, offline engine + API server, browser
	@tools/test.sh $(MODULES)

bench: deps ## benchmarks (performance targets live here, never in timed tests)
	@tools/bench.sh $(MODULES)

lint: tools ## go vet and staticcheck across the workspace
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && go vet ./... && staticcheck ./...) || exit 1; done

# Built, then exec'd, not `go run`: make passes SIGTERM to its child, and
# `go run` would not pass it on to the launcher.
dev: deps ## run the whole platform on this machine (no cloud account) at http://localhost:8080
	@go build -o $(PRESSROOM_CACHE)/bin/pressroom-dev ./tools/cmd/dev
	@exec $(PRESSROOM_CACHE)/bin/pressroom-dev

preview: ## pulumi preview of STACK (default staging)
	@tools/pulumi.sh preview --diff -s $(STACK)

up: ## pulumi up of STACK
	@tools/pulumi.sh up -s $(STACK)

manifests: ## render every Kubernetes object of STACK to YAML under .artifacts/manifests/STACK
	@tools/pulumi.sh manifests -s $(STACK)

rollback: ## bring STACK back to what update TO deployed: make rollback STACK=prod TO=12
	@tools/pulumi.sh rollback -s $(STACK) --to $(TO) $(if $(YES),--yes)
