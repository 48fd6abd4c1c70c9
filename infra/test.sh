#!/usr/bin/env bash
# Every check, as CI runs it: formatting, clippy (-D warnings), and all tests with the local
# AWS emulator, cargo-lambda and GitHub's example payloads in place.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

infra/setup.sh
started_stack=0
if ! infra/stack.sh status >/dev/null 2>&1; then
  infra/stack.sh up
  started_stack=1
fi
cleanup() { if [ "$started_stack" = 1 ]; then infra/stack.sh down >/dev/null; fi; }
trap cleanup EXIT
# shellcheck disable=SC1091
. .run/stack.env

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
mkdir -p .run
# Unit, integration and binary tests (the crates have no doc tests).
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee .run/test.log
# One closing line over all test binaries.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' .run/test.log
