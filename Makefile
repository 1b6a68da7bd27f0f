# Targets for coinledger; `make help` lists them.
GO ?= go

.PHONY: help test test-short lint bench demo build fuzz generate proto-tools lint-proto

# Code generators, pinned: regenerating must reproduce the committed code.
# protoc is Debian's protobuf-compiler (3.21.12).
GOBIN ?= $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO      = google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC = google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
BUF                = github.com/bufbuild/buf/cmd/buf@v1.50.0

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

build: ## build the coinledger binary
	$(GO) build -o coinledger ./cmd/coinledger

test: ## all tests, with the race detector, against throwaway PostgreSQL clusters
	$(GO) test -race -count=1 ./...

test-short: ## tests without the embedded-binary round trip
	$(GO) test -race -short ./...

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

proto-tools: ## install the pinned protoc plugins and buf
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	$(GO) install $(BUF)

generate: ## regenerate proto/coinledger/v1's Go code
	PATH="$(GOBIN):$$PATH" protoc -I proto -I /usr/include \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/coinledger/v1/*.proto

lint-proto: ## buf lint
	cd proto && $(GOBIN)/buf lint

# A bare deadline failure as -fuzztime ends is Go 1.26's coordinator race,
# run once more (docs/scripts/fuzz.sh).
FUZZ = GO=$(GO) docs/scripts/fuzz.sh

fuzz: ## run each fuzz target for 20s (the API's requests for 60s)
	$(FUZZ) ./ledger FuzzParseDecimal 20s
	$(FUZZ) ./ledger FuzzValidateAccountName 20s
	$(FUZZ) ./ledger FuzzParseCursor 20s
	$(FUZZ) ./ledger '^FuzzDecide$$' 20s
	$(FUZZ) ./ledger FuzzDecideLots 20s
	$(FUZZ) ./ledger FuzzCanonicalFastPath 20s
	$(FUZZ) ./ledger FuzzQuoteFastPath 20s
	$(FUZZ) ./ledger FuzzAppendDecimal 20s
	$(FUZZ) ./ledger FuzzDigitCounts 20s
	$(FUZZ) ./ledger FuzzSum 20s
	$(FUZZ) ./ledger/economy FuzzGranule 20s
	$(FUZZ) ./ledger/economy FuzzSplitTakeBack 20s
	$(FUZZ) ./internal/loadgen FuzzDecodeAck 20s
	$(FUZZ) ./internal/cpuclock FuzzProcessFields 20s
	# These need no database: a URL that is never dialled keeps each fuzzing
	# worker from starting a PostgreSQL of its own.
	DATABASE_URL=postgres://fuzz.invalid/none $(FUZZ) ./ledger/postgres FuzzArrayEncoding 20s
	DATABASE_URL=postgres://fuzz.invalid/none $(FUZZ) ./ledger/postgres FuzzSmallNumeric 20s
	DATABASE_URL=postgres://fuzz.invalid/none $(FUZZ) ./api FuzzParseTokens 20s
	# Every RPC through a real server: each worker starts its own PostgreSQL,
	# and replaying the corpus takes the first ~20 s.
	$(FUZZ) ./api FuzzRequests 60s

bench: ## Go-API benchmarks on a durable PostgreSQL (see docs/benchmarks.md)
	$(GO) test -run '^$$' -bench 'Transfer$$|GiftShape' -benchtime 20000x -count 5 ./ledger/postgres/
	$(GO) test -run '^$$' -bench 'SendGift/gogc-(100|400)/linger-250' -benchtime 20000x -count 5 ./ledger/economy/

demo: ## the main job: a small economy through the gRPC server, on the embedded PostgreSQL
	$(GO) run ./cmd/coinledger demo
