# One entry point for people and CI. See README.md.
SHELL := /bin/bash
.PHONY: setup run test bench stack-up stack-down clean

setup:  ## install the local stand-ins (moto, cargo-lambda, GitHub example payloads)
	infra/setup.sh

run:    ## the main job locally: AWS stack + webhook + a signed sample delivery -> queue
	infra/run-local.sh

test:   ## fmt, clippy and every test against the local stack
	infra/test.sh

bench:  ## benchmarks (the webhook latency one needs the local stack: make stack-up first)
	set -a; [ -f .run/stack.env ] && . .run/stack.env; set +a; cargo bench -p previewd-webhook && cargo bench -p previewd --bench scale

stack-up:
	infra/stack.sh up

stack-down:
	infra/stack.sh down

clean:
	infra/stack.sh down; rm -rf .run
