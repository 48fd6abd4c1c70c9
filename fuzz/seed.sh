#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora from GitHub's published example payloads and the contract's
# example messages (framing byte 0x10: JSON, pull_request, signed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/fuzz/corpus/webhook_delivery" "$root/fuzz/corpus/queue_message"
python3 - "$root" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
index = root / "infra/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
out = root / "fuzz/corpus/webhook_delivery"
n = 0
for entry in json.loads(index.read_text()):
    for i, example in enumerate(entry["examples"]):
        frame = b"\x10" if entry["name"] == "pull_request" else b"\x18"
        (out / f"{entry['name']}-{i}").write_bytes(frame + json.dumps(example).encode())
        n += 1
for path in (root / "docs/examples/events").glob("*.json"):
    (root / "fuzz/corpus/queue_message" / path.name).write_bytes(path.read_bytes())
print(f"seeded {n} webhook payloads and the example queue messages")
PY
