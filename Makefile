# One entry point for people and CI. See README.md.
SHELL := /bin/bash
.PHONY: setup run test check bench load fuzz coverage generated stack-up stack-down clean

setup:  ## install the local stand-ins (moto, cargo-lambda, GitHub example payloads)
	infra/setup.sh

run:    ## the main job locally: AWS stack + webhook + a signed sample delivery -> queue
	infra/run-local.sh

test:   ## fmt, clippy and every test against the local stack
	infra/test.sh

check:  ## the quick loop: fmt, clippy -D warnings, unit tests (no emulator, no tools to install)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked --lib --bins

bench:  ## benchmarks (the webhook latency one needs the local stack: make stack-up first)
	set -a; [ -f .run/stack.env ] && . .run/stack.env; set +a; cargo bench -p previewd-webhook && cargo bench -p previewd --bench scale --bench controller

load:   ## deliveries/s and p50/p99 of the webhook over HTTP at a rising rate (docs/performance.md)
	infra/load.sh

fuzz:   ## coverage-guided fuzzing (cargo-fuzz, nightly): FUZZ_RUNS inputs per target (default 1,000,000)
	infra/setup.sh && fuzz/seed.sh
	cd fuzz && for t in webhook_delivery queue_message; do \
	  cargo +nightly fuzz run -s none $$t corpus/$$t -- -runs=$${FUZZ_RUNS:-1000000} -max_len=65536 -timeout=10 || exit 1; done

coverage: ## line coverage per file and crate (cargo-tarpaulin, llvm engine; needs the local stack: make stack-up first)
	set -a; [ -f .run/stack.env ] && . .run/stack.env; set +a; PATH="$$PWD/.venv/bin:$$PATH" cargo tarpaulin --workspace \
	  --engine llvm --exclude previewd-e2e --exclude previewd-testkit --exclude-files 'crates/testkit/* --exclude-files 'crates/kube-memory/*'' \
	  --exclude-files '*/tests/*' --exclude-files '*/benches/*' --exclude-files '*/examples/*' --exclude-files 'fuzz/*' \
	  --exclude-files 'tests/*' --exclude-files 'target/*' --out Json --out Stdout --output-dir .run/coverage --timeout 900
	python3 infra/coverage-by-crate.py .run/coverage/tarpaulin-report.json

generated: ## regenerate the chart's CRD and config schema from the Rust types (tests check they match)
	infra/generate.sh

stack-up:
	infra/stack.sh up

stack-down:
	infra/stack.sh down

clean:
	infra/stack.sh down; rm -rf .run
