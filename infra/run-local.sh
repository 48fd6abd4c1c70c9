#!/usr/bin/env bash
# The main job, locally: the local AWS stack, the webhook Lambda served over HTTP by
# cargo-lambda, a signed pull-request lifecycle through it onto the queue, and the reconciler
# working that queue off (`previewd consume`): into the cluster in KUBECONFIG if set, else
# rendered into .run/previews with a summary table. Keeps the webhook serving until Ctrl-C
# (PREVIEWD_DEMO_EXIT=1: stop after the demo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
port="${PREVIEWD_WEBHOOK_PORT:-9000}"

infra/setup.sh run
infra/stack.sh up
# shellcheck disable=SC1091
. .run/stack.env
export PREVIEWD_WEBHOOK_SECRET="${PREVIEWD_WEBHOOK_SECRET:-local-dev-secret}"

cat >.run/webhook.env <<ENV
PREVIEWD_WEBHOOK_SECRET=$PREVIEWD_WEBHOOK_SECRET
PREVIEWD_QUEUE_URL=$PREVIEWD_QUEUE_URL
PREVIEWD_TABLE_NAME=$PREVIEWD_TABLE_NAME
PREVIEWD_RATE_LIMIT_PER_MINUTE=${PREVIEWD_RATE_LIMIT_PER_MINUTE:-100}
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
ENV

echo "run: building the webhook"
cargo build --quiet -p previewd-webhook --bin webhook
# The watch log lives outside the crate: writing it inside would trigger endless rebuilds.
cargo lambda watch -p previewd-webhook --bin webhook --env-file .run/webhook.env \
  -A 127.0.0.1 -P "$port" --ignore-changes >.run/webhook.log 2>&1 &
watch_pid=$!
cleanup() { kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for _ in $(seq 1 300); do
  (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.2
done
url="http://127.0.0.1:$port/lambda-url/webhook/"
echo "run: webhook listening on $url (log: .run/webhook.log)"
echo "run: a signed pull-request lifecycle through the webhook (infra/lifecycle.py):"
.venv/bin/python infra/lifecycle.py --url "$url" --purge

echo
if [ -n "${KUBECONFIG:-}" ]; then
  echo "run: the reconciler works off the queue into the cluster in KUBECONFIG (previewd consume):"
else
  echo "run: the reconciler works off the queue (previewd consume; no cluster: rendered to .run/previews):"
  rm -rf .run/previews
fi
# The example configuration with its build gate switched on (PR #42 waits for `build-images`),
# the services a PR does not change taken from a baseline namespace, and synthetic data from
# the shop's migrations (infra/samples/shop stands in for the PRs' head commit).
sed -e 's/^    # buildGate: /    buildGate: /' \
  -e 's/^    # seed: /    seed: /' \
  -e 's/^    unchangedServices: omit .*/    unchangedServices: baseline\n    baselineNamespace: shop-staging/' \
  docs/examples/config.yaml >.run/demo-config.yaml
cargo run --quiet -p previewd -- consume --config .run/demo-config.yaml --out .run/previews --checkout infra/samples/shop
if [ -z "${KUBECONFIG:-}" ]; then
  for dir in .run/previews/*/; do
    [ -d "$dir" ] || continue
    echo "run: $dir: $(grep -c '^kind: ' "$dir/objects.yaml") objects in ${dir}objects.yaml"
    .venv/bin/python infra/seed-summary.py "$dir/objects.yaml"
  done
fi

if [ "${PREVIEWD_DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
cat <<TXT

The webhook keeps serving. Send more deliveries from another shell:
  . .run/stack.env && PREVIEWD_WEBHOOK_SECRET=$PREVIEWD_WEBHOOK_SECRET .venv/bin/python infra/send-delivery.py [--form] [--payload FILE]
Ctrl-C stops it; 'infra/stack.sh down' stops the AWS emulator.
TXT
wait "$watch_pid"
