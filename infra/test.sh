#!/usr/bin/env bash
# Every check, as CI runs it: the SAM template's linters, formatting, clippy (-D warnings), all
# tests with the local AWS emulator, cargo-lambda and GitHub's example payloads in place, and a
# real `sam build` (incremental after the first: it shares target/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$root/.tools/cargo/bin:$PATH"

infra/setup.sh
infra/servers.sh
started_stack=0
if ! infra/stack.sh status >/dev/null 2>&1; then
  infra/stack.sh up
  started_stack=1
fi
cleanup() { if [ "$started_stack" = 1 ]; then infra/stack.sh down >/dev/null; fi; }
trap cleanup EXIT
# shellcheck disable=SC1091
. .run/stack.env

echo "== sam-template.yaml: cfn-lint, sam validate --lint"
cfn-lint sam-template.yaml
SAM_CLI_TELEMETRY=0 sam validate --lint -t sam-template.yaml --region us-east-1
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny (licenses, bans, sources, advisories)"
cargo deny --log-level error check licenses bans sources
# The RustSec database is a git repository on github.com; say so when it cannot be reached.
if timeout 20 git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "cargo deny advisories: NOT CHECKED - the RustSec advisory database (github.com) is unreachable from here"
fi
echo "== cargo test"
mkdir -p .run
# Unit, integration and binary tests (the crates have no doc tests).
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee .run/test.log

echo "== the main job (make run), to its end, without a cluster"
KUBECONFIG="" PREVIEWD_DEMO_EXIT=1 infra/run-local.sh 2>&1 | tee .run/main-job.log
expect() {
  if ! grep -Eq "$1" .run/main-job.log; then
    echo "main job: expected a line matching /$1/ ($2); see .run/main-job.log" >&2
    exit 1
  fi
}
expect 'PR #42 opened +webhook answered 202' "the first delivery is accepted"
expect 'redelivers it\) +webhook answered 200: .*duplicate' "a redelivery is not enqueued twice"
expect '^acme/shop#42 +opened .*created: 8 objects; [0-9a-f]{7} waits for its build, nothing deployed yet +https://shop-pr-42\.preview\.example\.com +\$[0-9.]+ ' "PR 42 rendered with URL and cost, waiting for its build"
expect '^acme/shop@[0-9a-f]{7} +check_run build-images: success .*deploys [0-9a-f]{7}' "a passed build deploys its commit"
expect '^acme/shop#42 +synchronize .*waits for its build, [0-9a-f]{7} keeps serving' "a push waits while the last good commit serves"
expect '^acme/shop#42 +/preview services web,api .*worker from baseline shop-staging' "unchanged services come from the baseline"
expect '^acme/shop#42 +synchronize .*seed: 140 rows in 7 tables \(previewd-seed-' "the schema's synthetic data is loaded"
expect '^run:   loader Job previewd-seed-[0-9a-f]{12}: docker.io/library/postgres:16-alpine' "the loader Job is rendered"
expect '^acme/shop#42 +labeled .*updated' "the label updates PR 42's preview"
expect '^acme/shop#43 +closed .*removed: merged' "merging PR 43 removes its preview"
test -f .run/previews/preview-shop-pr-42/objects.yaml || { echo "main job: PR 42's objects missing" >&2; exit 1; }
test ! -e .run/previews/preview-shop-pr-43 || { echo "main job: PR 43's preview left behind" >&2; exit 1; }

echo "== end-to-end suite (a real cluster)"
if [ -n "${PREVIEWD_E2E_KUBECONFIG:-}" ]; then
  cargo build --locked -p previewd --bin previewd
  cargo test --locked -p previewd-e2e -- --ignored 2>&1 | tee -a .run/test.log
else
  echo "e2e: SKIPPED - set PREVIEWD_E2E_KUBECONFIG to a cluster's kubeconfig to run it (docs/e2e.md)"
fi

echo "== sam build (arm64 bootstraps of both functions)"
infra/sam-build.sh

# One closing line over all test binaries.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' .run/test.log
