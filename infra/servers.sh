#!/usr/bin/env bash
# The real servers some tests start on loopback ports of their own (never as system services):
# PostgreSQL (synthetic data loads into it) and Prometheus with promtool (right-sizing reads
# it), and NATS with JetStream (the in-cluster front's queue and ledger). Installed from the distribution's packages when missing; timed, so CI shows the cost.
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "servers: install ${missing[*]} (the tests start them; no apt-get here)" >&2
  exit 1
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
started=$(date +%s)
"${sudo[@]}" apt-get update -qq
# Without recommends: Prometheus would bring node-exporter collectors the tests do not need.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "servers: installed ${missing[*]} in $(( $(date +%s) - started )) s"
