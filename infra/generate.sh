#!/usr/bin/env bash
# Regenerates what is generated from the Rust types and committed: the PreviewEnvironment CRD
# the chart installs, and the configuration's JSON Schema in the chart's values.schema.json.
# Tests fail when either drifts (reconciler/tests/chart.rs, crd.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo run -q -p previewd -- crd > charts/previewd/files/previewenvironments.preview.previewd.io.yaml
mkdir -p .run
cargo run -q -p previewd -- config schema > .run/config.schema.json
python3 - <<'PY'
import json
path = "charts/previewd/values.schema.json"
values = json.load(open(path))
values["properties"]["config"] = json.load(open(".run/config.schema.json"))
with open(path, "w") as f:
    json.dump(values, f, indent=2)
    f.write("\n")
PY
echo "generated: the CRD and the config schema in the chart"
