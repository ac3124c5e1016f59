# pressroom — one Makefile for the whole workspace.
# `make dev` runs the platform locally; `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES := $(shell sed -n 's|^\t\./||p' go.work)
# A service is a directory under services/ with a Dockerfile.
SERVICES := $(patsubst services/%/Dockerfile,%,$(wildcard services/*/Dockerfile))
STACK ?= staging
export GOFLAGS ?= -buildvcs=false
export GONOSUMDB := github.com/pulumi
# Tools built from the Go module proxy live here, keyed by version, so reruns are fast.
export PRESSROOM_CACHE ?= $(HOME)/.cache/pressroom
export PATH := $(PRESSROOM_CACHE)/bin:$(PATH)

# make cluster's node keeps its data here (FRESH=1 starts it empty).
CLUSTER_DIR ?= $(HOME)/.local/state/pressroom/cluster
# STACK=local goes through tools/cmd/localstack: images built here, onto make cluster's node.
LOCALSTACK = go build -o $(PRESSROOM_CACHE)/bin/pressroom-localstack ./tools/cmd/localstack && $(PRESSROOM_CACHE)/bin/pressroom-localstack -cluster $(CLUSTER_DIR)
PULUMI_SH = $(if $(filter local,$(STACK)),$(LOCALSTACK),tools/pulumi.sh)

.PHONY: help deps tools check fmt tidy clean toolchains generate build test bench dev cluster preview up destroy manifests rollback

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
	@for s in $(SERVICES); do go build -o bin/$$s ./services/$$s || exit 1; done

check: ## the fast tier, nothing started: gofmt, go vet, staticcheck, go test -short (CI runs it first)
	@tools/gotools.sh staticcheck
	@tools/check.sh $(MODULES)

fmt: ## gofmt -w every module (make check refuses unformatted files)
	@gofmt -l -w $(MODULES)

tidy: ## go mod tidy in every module (needs the Go module proxy)
	@for m in $(MODULES); do echo "tidy $$m"; (cd $$m && go mod tidy) || exit 1; done

clean: ## remove build and test outputs (bin/, .artifacts/); keeps make dev's data (.dev/) and the tool cache ($(PRESSROOM_CACHE))
	@rm -rf bin .artifacts
	@find $(MODULES) -name '*.test' -type f -delete

toolchains: deps ## build (or find cached) Pulumi, Kubernetes and the node's parts from the Go module proxy
	@tools/toolchains.sh

test: deps toolchains ## every tier: unit, datastores, Pulumi mocks, offline engine, live node, browser
	@tools/test.sh $(MODULES)

bench: deps ## benchmarks (performance targets live here, never in timed tests)
	@tools/bench.sh $(MODULES)

# Built, then exec'd, not `go run`: make passes SIGTERM to its child, and
# `go run` would not pass it on to the launcher.
dev: deps ## run the whole platform on this machine (no cloud account) at http://localhost:8080
	@go build -o $(PRESSROOM_CACHE)/bin/pressroom-dev ./tools/cmd/dev
	@exec $(PRESSROOM_CACHE)/bin/pressroom-dev

# Built, then exec'd: Ctrl-C and SIGTERM reach it, and it cleans up.
cluster: deps ## a K3s-equivalent node on this machine (root): prints export KUBECONFIG=...; Ctrl-C stops it
	@go build -o $(PRESSROOM_CACHE)/bin/pressroom-cluster ./tools/cmd/localkube
	@exec $(PRESSROOM_CACHE)/bin/pressroom-cluster -node -dir $(CLUSTER_DIR) $(if $(FRESH),-fresh)

preview: ## pulumi preview of STACK (default staging; STACK=local: onto make cluster's node)
	@$(PULUMI_SH) preview --diff -s $(STACK)

up: ## pulumi up of STACK (YES=1 skips the question; STACK=local: images built here, onto make cluster's node)
	@$(PULUMI_SH) up -s $(STACK) $(if $(YES),--yes)

destroy: ## pulumi destroy of STACK (asks before it deletes)
	@$(PULUMI_SH) destroy -s $(STACK) $(if $(YES),--yes)

manifests: ## render every Kubernetes object of STACK to YAML under .artifacts/manifests/STACK
	@tools/pulumi.sh manifests -s $(STACK)

rollback: ## bring STACK back to what update TO deployed: make rollback STACK=prod TO=12
	@$(PULUMI_SH) rollback -s $(STACK) --to $(TO) $(if $(YES),--yes)
