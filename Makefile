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

fuzz: ## run each fuzz target for 20s (the API's requests for 60s)
	$(GO) test ./ledger -run '^$$' -fuzz FuzzParseDecimal -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzValidateAccountName -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzParseCursor -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzDecideLots -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzCanonicalFastPath -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzQuoteFastPath -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzAppendDecimal -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzDigitCounts -fuzztime 20s
	$(GO) test ./ledger -run '^$$' -fuzz FuzzSum -fuzztime 20s
	$(GO) test ./ledger/economy -run '^$$' -fuzz FuzzGranule -fuzztime 20s
	$(GO) test ./internal/loadgen -run '^$$' -fuzz FuzzDecodeAck -fuzztime 20s
	$(GO) test ./internal/cpuclock -run '^$$' -fuzz FuzzProcessFields -fuzztime 20s
	# These need no database: a URL that is never dialled keeps each fuzzing
	# worker from starting a PostgreSQL of its own.
	DATABASE_URL=postgres://fuzz.invalid/none $(GO) test ./ledger/postgres -run '^$$' -fuzz FuzzArrayEncoding -fuzztime 20s
	DATABASE_URL=postgres://fuzz.invalid/none $(GO) test ./ledger/postgres -run '^$$' -fuzz FuzzSmallNumeric -fuzztime 20s
	DATABASE_URL=postgres://fuzz.invalid/none $(GO) test ./api -run '^$$' -fuzz FuzzParseTokens -fuzztime 20s
	# Every RPC through a real server: each worker starts its own PostgreSQL,
	# and replaying the corpus takes the first ~20 s.
	$(GO) test ./api -run '^$$' -fuzz FuzzRequests -fuzztime 60s

bench: ## Go-API benchmarks on a durable PostgreSQL (see docs/benchmarks.md)
	$(GO) test -run '^$$' -bench 'Transfer$$|GiftShape' -benchtime 20000x -count 5 ./ledger/postgres/
	$(GO) test -run '^$$' -bench 'SendGift/gogc-(100|400)/linger-250' -benchtime 20000x -count 5 ./ledger/economy/

demo: ## the main job: a small economy through the gRPC server, on the embedded PostgreSQL
	$(GO) run ./cmd/coinledger demo
