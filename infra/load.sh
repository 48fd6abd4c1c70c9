#!/usr/bin/env bash
# `make load`: the webhook (release build) behind cargo-lambda on the local AWS emulator, no
# rate limit, driven by functions/webhook/examples/load.rs at a rising rate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
port="${PREVIEWD_LOAD_PORT:-9100}"

infra/setup.sh run
infra/stack.sh up
# shellcheck disable=SC1091
. .run/stack.env
export PREVIEWD_WEBHOOK_SECRET=load-test-secret
cat >.run/load.env <<ENV
PREVIEWD_WEBHOOK_SECRET=$PREVIEWD_WEBHOOK_SECRET
PREVIEWD_QUEUE_URL=$PREVIEWD_QUEUE_URL
PREVIEWD_TABLE_NAME=$PREVIEWD_TABLE_NAME
PREVIEWD_RATE_LIMIT_PER_MINUTE=0
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
RUST_LOG=warn
ENV
echo "load: building the webhook and the generator (release)"
cargo build --quiet --release -p previewd-webhook --bin webhook --example load
cargo lambda watch --release -p previewd-webhook --bin webhook --env-file .run/load.env \
  -A 127.0.0.1 -P "$port" --ignore-changes >.run/load-webhook.log 2>&1 &
watch_pid=$!
trap 'kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 300); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.2
done
# One request first, so the function's cold start (and cargo-lambda's first build) is not
# counted in the first stage.
LOAD_URL="http://127.0.0.1:$port/lambda-url/webhook/" LOAD_RATES=1 LOAD_SECONDS=2 \
  target/release/examples/load >/dev/null
LOAD_URL="http://127.0.0.1:$port/lambda-url/webhook/" target/release/examples/load
