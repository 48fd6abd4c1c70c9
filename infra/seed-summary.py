"""Prints a rendered preview's seed loader (make run): the Job, as it would run, and the data
set's summary, rows per table as the generated INSERTs hold them."""
import re
import sys

import yaml


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    job = next((d for d in documents if d.get("kind") == "Job"), None)
    if job is None:
        return
    name = job["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = ", ".join(f"{e['name']}={e.get('value', '')}" for e in container.get("env") or [])
    print(f"run:   loader Job {name}: {container['image']} `{' '.join(container['command'])}`"
          f" as uid {pod['securityContext']['runAsUser']}" + (f" ({env})" if env else ""))
    data = next((d for d in documents if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name), None)
    if data is None:
        return
    sql = data["data"]["data.sql"]
    tables = []
    for match in re.finditer(r'^INSERT INTO "([^"]+)" \([^)]*\) OVERRIDING SYSTEM VALUE VALUES\n(.*?);$', sql, re.M | re.S):
        rows = sum(1 for line in match.group(2).splitlines() if line.startswith("  ("))
        tables.append(f"{match.group(1)} {rows}")
    print(f"run:   data set ({len(sql)} bytes of SQL, ConfigMap {name}): {', '.join(tables)}")
    first = next((line for line in sql.splitlines() if line.startswith("  (")), "")
    print(f"run:   first row: {first.strip()[:150]}")


if __name__ == "__main__":
    main(sys.argv[1])
