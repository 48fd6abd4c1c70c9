#!/usr/bin/env bash
# `sam build` of sam-template.yaml, offline: cargo-lambda cross-compiles both functions for
# arm64 (provided.al2023) with zig. Prints the time taken and each bootstrap's size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
infra/setup.sh >/dev/null
started=$(date +%s)
SAM_CLI_TELEMETRY=0 sam build -t sam-template.yaml --build-dir .aws-sam/build
echo "sam build: $(( $(date +%s) - started )) s"
for function in WebhookFunction RedeliverFunction; do
  bootstrap=".aws-sam/build/$function/bootstrap"
  [ -f "$bootstrap" ] || { echo "missing $bootstrap" >&2; exit 1; }
  file "$bootstrap" 2>/dev/null | grep -q 'ARM aarch64' || { echo "$bootstrap is not an arm64 binary" >&2; exit 1; }
  echo "$function: $(du -h "$bootstrap" | cut -f1) arm64 bootstrap"
done
