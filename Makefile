# edgenode. `make run` starts a node with embedded defaults; `make test` runs
# the test suite CI runs.

GO      ?= go
TAGS    := hashicorpmetrics
GOFLAGS_BUILD := -tags $(TAGS) -trimpath
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: run build test test-race vet lint fuzz bench perf soak soak-faults clean

run:
	$(GO) build $(GOFLAGS_BUILD) -ldflags '-X main.version=$(VERSION)' -o bin/edgenode ./cmd/edgenode
	exec bin/edgenode

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o bin/edgenode ./cmd/edgenode
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o bin/edgeload ./cmd/edgeload

vet:
	$(GO) vet -tags $(TAGS) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Static checks: go vet and staticcheck (its default checks, U1000 unused
# code included; a check that is noisy for a good reason is turned off in a
# staticcheck.conf that says why, not by ignores in the code). staticcheck is
# a pinned release installed into bin/tools/ (like gobind once was) rather
# than a go.mod tool: as a tool it would be built against the module's
# golang.org/x/tools (gobind's), not the one its release was tested with, and
# its requirements would join the server's module graph. ~15 s (the first
# run installs staticcheck: ~10 s more).
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/staticcheck
.PHONY: lint
lint:
	$(GO) vet -tags $(TAGS) ./...
	@have=$$(test -x $(STATICCHECK) && $(GO) version -m $(STATICCHECK) | awk '$$1 == "mod" && $$2 == "honnef.co/go/tools" { print $$3 }'); \
	if [ "$$have" != "$(STATICCHECK_VERSION)" ]; then \
		echo "lint: installing staticcheck@$(STATICCHECK_VERSION) into bin/tools"; \
		GOFLAGS= GOBIN=$(CURDIR)/bin/tools $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi
	$(STATICCHECK) -tags $(TAGS) ./...

# The mobile bindings of the SDK (scripts/bindings.sh): gobind's Java and
# Objective-C for edgechat name the handle Client and bind the calls the apps
# use; every item gobind skips is listed, and a Client method that does not
# bind fails unless edgechat/doc.go calls it Go-only; javac compiles the Java;
# the SDK compiles for android/arm64 and ios/arm64, and the generated cgo side
# for android (stubbed NDK). No Android SDK/NDK or Xcode needed; ~20 s warm.
.PHONY: bindings
bindings:
	GO=$(GO) scripts/bindings.sh

# The default test run: the bindings, then every package, real raft on bolt
# files, real sockets.
test: vet bindings
	$(GO) test -tags $(TAGS) -count=1 -timeout 15m ./...

test-race:
	$(GO) test -tags $(TAGS) -race -count=1 -timeout 20m ./...

# Short fuzz runs of every decoder that parses network bytes.
fuzz:
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzDecodeNewMessageRequest -fuzztime 30s ./wire
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzDecodeClientFrame -fuzztime 30s ./wire
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzDecodeEntry -fuzztime 30s ./relaylog
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzVerify -fuzztime 30s ./auth
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzReadNodeFrameKinds -fuzztime 30s ./wire
	$(GO) test -tags $(TAGS) -run XXX -fuzz FuzzCheck -fuzztime 30s ./jsonstrict

# A short version of docs/PERFORMANCE.md's table (scripts/perf.sh short:
# one node, three nodes, idle sockets, connect storm) and the Go benchmarks
# of the per-message hot paths; under two minutes. `make perf` runs the full
# table.
bench:
	$(GO) test -tags $(TAGS) -run XXX -bench . -benchmem -benchtime 100ms ./wire ./relaylog ./auth
	GO=$(GO) scripts/perf.sh short

perf:
	GO=$(GO) scripts/perf.sh

clean:
	rm -rf bin data

# Multi-process and Docker end-to-end tests of the real binary (e2e/): three
# and five nodes under load, SIGKILL, SIGSTOP, SIGTERM, restart, and a
# Docker network partition (skipped when Docker is not usable; E2E_DOCKER=0
# skips it too). `make test` runs the short form of the same tests;
# `soak-faults` keeps the load running 2 minutes after every fault. A failed
# test keeps its nodes' whole logs in $TMPDIR/edgenode-e2e-<test>-<time>/;
# E2E_KEEP_LOGS=1 keeps the Docker test's also when it passes.
.PHONY: test-cluster
test-cluster:
	$(GO) test -tags $(TAGS) -count=1 -timeout 20m -v ./e2e/

soak-faults:
	E2E_SOAK=1 $(GO) test -tags $(TAGS) -count=1 -timeout 60m -v ./e2e/

# Is every node's state bounded by its users? scripts/soak.sh: one node at
# 2,000 sends/s for SOAK_MINUTES (60), then three nodes at 1,000/s for
# SOAK3_MINUTES (30) after a 15-minute prefill at 2,000/s (SOAK3_PREFILL),
# 10,000 users sending and acknowledging; every node is
# sampled each SOAK_INTERVAL (60s) into docs/soak/{one-node,three-nodes}.csv
# (SOAK_OUT) and plotted as .svg. SOAK_ONLY=one|three runs one of them; a
# smoke run: SOAK_MINUTES=2 SOAK3_MINUTES=2 SOAK_INTERVAL=20s make soak.
soak:
	GO=$(GO) scripts/soak.sh

# The container image: the static binary FROM scratch, built on this host so
# that no registry is needed (deploy/docker/Dockerfile.prebuilt).
IMAGE ?= edgenode:local
.PHONY: image deploy-test
image:
	GO=$(GO) VERSION=$(VERSION) deploy/docker/build-image.sh $(IMAGE)

# deploy/ for real: builds the image, brings up the three-region compose
# cluster (deploy/compose), sends across regions, kills a region, restarts
# every node under load, checks nothing acknowledged is lost, tears down.
# Also checks the systemd unit, the Kubernetes manifests, the alert rules and
# the dashboard. Needs Docker and docker-compose.
deploy-test:
	EDGENODE_DEPLOY_TEST=1 $(GO) test -tags $(TAGS) -count=1 -timeout 15m -v ./deploy/
