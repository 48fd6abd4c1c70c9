#!/usr/bin/env python3
"""Send a signed pull-request lifecycle through the running webhook (the main job's input).

PR #42 is opened and waits for its build (the `build-images` check run), which passes; it gets
a new commit, which waits for its own build while the first keeps serving, then the
`do-not-expire` label, a `/preview extend 2d` comment and `/preview services web,api`
(`worker` then comes from the baseline namespace); PR #43 is opened, then merged. The
commit delivery is sent twice, as GitHub's redelivery would, to show the dedupe.
The messages stay on the queue for the reconciler (`previewd consume`).

  lifecycle.py --url URL      (PREVIEWD_WEBHOOK_SECRET and the stack's environment set)
"""
import argparse
import copy
import datetime
import json
import pathlib
import subprocess
import sys
import uuid

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def stamp(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:9000/lambda-url/webhook/")
    parser.add_argument("--out", default=str(ROOT / ".run/lifecycle"))
    parser.add_argument("--purge", action="store_true", help="empty the queue first (local demo queue only)")
    args = parser.parse_args()
    sample = json.loads((HERE / "samples/pull_request.opened.json").read_text())
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def step(number: int, action: str, minutes: int, change=None) -> dict:
        p = copy.deepcopy(sample)
        p["action"] = action
        p["number"] = number
        pr = p["pull_request"]
        pr["number"] = number
        pr["html_url"] = f"https://github.com/acme/shop/pull/{number}"
        pr["head"]["ref"] = f"feature/pr-{number}"
        pr["updated_at"] = stamp(t0 + datetime.timedelta(minutes=minutes))
        if change:
            change(p)
        return p

    def new_commit(p):
        p["pull_request"]["head"]["sha"] = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"

    def label(p):
        p["pull_request"]["head"]["sha"] = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
        p["pull_request"]["labels"].append({"name": "do-not-expire"})
        p["label"] = {"name": "do-not-expire"}

    def merge(p):
        pr = p["pull_request"]
        pr["state"], pr["merged"] = "closed", True
        pr["closed_at"] = pr["merged_at"] = pr["updated_at"]

    def check(sha: str, minutes: int) -> dict:
        return {"action": "completed", "repository": sample["repository"], "installation": sample["installation"],
                "check_run": {"head_sha": sha, "name": "build-images", "status": "completed", "conclusion": "success",
                              "completed_at": stamp(t0 + datetime.timedelta(minutes=minutes)),
                              "pull_requests": [{"number": 42}]}}

    def command(text: str, minutes: int) -> dict:
        return {"action": "created", "repository": sample["repository"], "installation": sample["installation"],
                "issue": {"number": 42, "pull_request": {"url": "https://api.github.com/repos/acme/shop/pulls/42"}},
                "comment": {"id": 4242 + minutes + len(text), "body": text, "user": {"login": "octocat"},
                            "created_at": stamp(t0 + datetime.timedelta(minutes=minutes))}}

    first, second = sample["pull_request"]["head"]["sha"], "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
    commit_delivery = str(uuid.uuid4())
    steps = [
        ("PR #42 opened", step(42, "opened", 0), str(uuid.uuid4())),
        ("PR #42 build-images passed", check(first, 0), str(uuid.uuid4())),
        ("PR #42 new commit", step(42, "synchronize", 1, new_commit), commit_delivery),
        ("PR #42 new commit (GitHub redelivers it)", step(42, "synchronize", 1, new_commit), commit_delivery),
        ("PR #42 labelled do-not-expire", step(42, "labeled", 2, label), str(uuid.uuid4())),
        ("PR #42 build-images passed", check(second, 2), str(uuid.uuid4())),
        ("PR #42 comment: /preview extend 2d", command("/preview extend 2d", 2), str(uuid.uuid4())),
        ("PR #42 comment: /preview services web,api", command("/preview services web,api", 2), str(uuid.uuid4())),
        ("PR #43 opened", step(43, "opened", 3), str(uuid.uuid4())),
        ("PR #43 merged", step(43, "closed", 4, merge), str(uuid.uuid4())),
    ]
    for i, (title, payload, delivery) in enumerate(steps):
        event = "check_run" if "check_run" in payload else "issue_comment" if "comment" in payload else "pull_request"
        path = out / f"{i + 1}-{event}-{payload['action']}.json"
        path.write_text(json.dumps(payload, indent=2))
        print(f"  {title:<42} ", end="", flush=True)
        command = [sys.executable, str(HERE / "send-delivery.py"), "--url", args.url, "--payload", str(path),
                   "--event", event, "--delivery", delivery, "--no-receive"]
        if args.purge and i == 0:
            command.append("--purge")  # send-delivery.py empties the queue before the first one
        result = subprocess.run(command, capture_output=True, text=True)
        print(result.stdout.strip() or result.stderr.strip())
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
