# keel's everyday commands. `make` alone lists them.
.DEFAULT_GOAL := help
.PHONY: help run rename test lint fmt fuzz clients test-rename test-guides bench docker-test clean

CARGO ?= cargo

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## Build and serve on 127.0.0.1:8080 with the embedded defaults
	$(CARGO) run --bin keel -- serve

rename: ## Make this clone your own service: make rename NAME=billing-service
	@test -n "$(NAME)" || { echo "usage: make rename NAME=your-service-name" >&2; exit 2; }
	python3 scripts/rename.py "$(NAME)"

test: ## Run every test: unit, HTTP, shutdown, operations, store conformance; says what it skipped
	@mkdir -p target && rm -f target/test-skips.txt
	TEST_SKIPS_FILE=$(CURDIR)/target/test-skips.txt $(CARGO) test --all-targets --locked
	@if [ -s target/test-skips.txt ]; then \
		echo "make test: SKIPPED $$(wc -l < target/test-skips.txt) test(s) (under CI=true they fail instead):"; \
		sort target/test-skips.txt | sed 's/^/  /'; \
	fi

lint: ## Check formatting, run clippy and rustdoc with warnings as errors, lint the GitHub workflow (actionlint), check the docs' links and the module graph
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked
	scripts/lint-workflows.sh
	python3 scripts/check-links.py
	python3 scripts/module-cycles.py

fmt: ## Format the code
	$(CARGO) fmt --all

fuzz: ## Fuzz a running keel against its OpenAPI document (schemathesis, installed into .venv)
	scripts/fuzz.sh

clients: ## Drive a live keel with real generic clients (azure-core's long-running-operation poller)
	scripts/clients.sh

test-rename: ## Rename a copy of this tree, then build it and run its tests
	scripts/test-rename.sh

test-guides: ## Run the commands of docs/guides/ and the README, and follow the guides' code (endpoint, kind, key, removal) on a copy, which must pass clippy and its tests
	scripts/test-guides.sh

docker-test: ## Build the Dockerfile and check the image: health, non-root, read-only, SIGTERM, size, lint, compose, manifests
	scripts/docker-test.sh

bench: ## Benchmark keel as production ships it against a standard axum stack and bare axum, and the Postgres store (updates docs/performance.md)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	test -x .venv-bench/bin/python || (python3 -m venv .venv-bench && .venv-bench/bin/pip install --quiet 'matplotlib>=3.8')
	.venv-bench/bin/python bench/bench.py
	.venv-bench/bin/python bench/auth.py

clean: ## Remove build output
	$(CARGO) clean
