#!/usr/bin/env python3
"""Line coverage per crate from cargo-tarpaulin's JSON report (`make coverage`)."""
import collections
import json
import pathlib
import sys

report = json.loads(pathlib.Path(sys.argv[1]).read_text())
root = pathlib.Path(__file__).resolve().parent.parent
crates = collections.OrderedDict()
for f in report["files"]:
    path = pathlib.Path(*f["path"])
    try:
        rel = path.relative_to(root)
    except ValueError:
        continue
    parts = rel.parts
    if parts[0] == "target":  # generated code (e.g. a parser built by a test dependency)
        continue
    crate = parts[0] if parts[0] == "reconciler" else "/".join(parts[:2])
    covered, coverable = crates.setdefault(crate, [0, 0])
    crates[crate] = [covered + f["covered"], coverable + f["coverable"]]
total = [0, 0]
print("| crate | lines covered | coverage |")
print("|---|---|---|")
for crate, (covered, coverable) in sorted(crates.items()):
    print(f"| {crate} | {covered}/{coverable} | {100 * covered / max(coverable, 1):.1f}% |")
    total = [total[0] + covered, total[1] + coverable]
print(f"| workspace | {total[0]}/{total[1]} | {100 * total[0] / max(total[1], 1):.1f}% |")
