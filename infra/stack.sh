#!/usr/bin/env bash
# The local AWS stack: moto on loopback, with the queue (+DLQ) and table of local-resources.json.
#   infra/stack.sh up      start (if not running) and create the resources; prints the env file path
#   infra/stack.sh down    stop
#   infra/stack.sh status
# Port: PREVIEWD_LOCAL_AWS_PORT (default 4566). Environment for tools: .run/stack.env
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${PREVIEWD_LOCAL_AWS_PORT:-4566}"
endpoint="http://127.0.0.1:$port"
run=".run"
mkdir -p "$run"
pidfile="$run/moto.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
healthy() { curl -sf -m 2 "$endpoint/moto-api/" >/dev/null 2>&1; }

up() {
  [ -x .venv/bin/moto_server ] || infra/setup.sh run
  if ! running; then
    if healthy; then
      echo "stack: port $port already answers but was not started by this script" >&2
      exit 1
    fi
    # moto, with DynamoDB requests isolated from each other as DynamoDB does (infra/emulator.py).
    nohup .venv/bin/python infra/emulator.py -H 127.0.0.1 -p "$port" >"$run/moto.log" 2>&1 &
    echo $! >"$pidfile"
  fi
  for _ in $(seq 1 100); do
    healthy && break
    sleep 0.1
  done
  healthy || { echo "stack: moto did not start; see $run/moto.log" >&2; exit 1; }
  {
    echo "export AWS_ENDPOINT_URL=$endpoint"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export PREVIEWD_TEST_AWS_ENDPOINT=$endpoint"
    AWS_ENDPOINT_URL=$endpoint .venv/bin/python infra/create_resources.py --env
  } >"$run/stack.env"
  echo "stack: up at $endpoint (environment in $run/stack.env)"
}

down() {
  if running; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  echo "stack: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running && healthy; then echo "stack: up at $endpoint"; else echo "stack: down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
