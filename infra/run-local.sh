#!/usr/bin/env bash
# The main job, locally: the local AWS stack, the webhook Lambda served over HTTP by
# cargo-lambda, one signed sample pull_request delivery through it, the message that landed on
# the queue, and the objects the reconciler would build from it (`previewd render`). Keeps
# serving until Ctrl-C (PREVIEWD_DEMO_EXIT=1: stop after the demo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
port="${PREVIEWD_WEBHOOK_PORT:-9000}"

infra/setup.sh
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
echo "run: sending a signed sample pull_request delivery (infra/samples/pull_request.opened.json)"
.venv/bin/python infra/send-delivery.py --url "$url" --purge --save .run/last-event.json

echo
echo "run: what the reconciler would create for it (previewd render, docs/examples/config.yaml):"
cargo run --quiet -p previewd -- render --config docs/examples/config.yaml --event .run/last-event.json \
  | awk '
      function flush() { if (kind != "") printf "  %-22s %-28s %s\n", kind, name, ns; kind = name = ns = "" }
      /^---/ { flush(); next }
      /^[a-zA-Z]/ { section = $1 }
      /^kind: / { kind = $2 }
      section == "metadata:" && /^  name: / { name = $2 }
      section == "metadata:" && /^  namespace: / { ns = "(namespace " $2 ")" }
      section == "status:" && /^  url: / { url = $2 }
      section == "status:" && /^  expiresAt: / { expires = $2 }
      section == "status:" && /^    estimatedMonthlyCost: / { cost = $2 }
      section == "status:" && /^    hourlyUsd: / { hourly = $2 }
      END { flush(); printf "  URL %s  ·  cost $%s/hour, %s/month  ·  expires %s\n", url, hourly, cost, expires }'
echo "run: full YAML: cargo run -p previewd -- render --config docs/examples/config.yaml --event .run/last-event.json"

if [ "${PREVIEWD_DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
cat <<TXT

The webhook keeps serving. Send more deliveries from another shell:
  . .run/stack.env && PREVIEWD_WEBHOOK_SECRET=$PREVIEWD_WEBHOOK_SECRET .venv/bin/python infra/send-delivery.py [--form] [--payload FILE]
Ctrl-C stops it; 'infra/stack.sh down' stops the AWS emulator.
TXT
wait "$watch_pid"
