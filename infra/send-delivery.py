#!/usr/bin/env python3
"""Send a signed GitHub delivery to a running webhook, then show what landed on the queue.

  send-delivery.py [--payload FILE] [--event pull_request] [--url URL] [--form] [--no-receive]

Secret: PREVIEWD_WEBHOOK_SECRET (the first of the list signs, as GitHub uses the current one).
Queue: PREVIEWD_QUEUE_URL with the local stack's AWS_* variables (see .run/stack.env).
"""
import argparse
import hashlib
import hmac
import json
import os
import pathlib
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payload", default=str(HERE / "samples/pull_request.opened.json"))
    parser.add_argument("--event", default="pull_request")
    parser.add_argument("--url", default="http://127.0.0.1:9000/lambda-url/webhook/")
    parser.add_argument("--delivery", default=str(uuid.uuid4()))
    parser.add_argument("--form", action="store_true", help="send as application/x-www-form-urlencoded")
    parser.add_argument("--no-receive", action="store_true", help="do not read the queue afterwards")
    parser.add_argument("--save", help="write the queue message that arrived to this file")
    parser.add_argument("--purge", action="store_true", help="empty the queue first (local demo queue only)")
    args = parser.parse_args()

    secret = os.environ.get("PREVIEWD_WEBHOOK_SECRET", "").split(",")[0].strip()
    if not secret:
        print("set PREVIEWD_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    payload = json.dumps(json.loads(pathlib.Path(args.payload).read_text()), separators=(",", ":"))
    if args.form:
        body = urllib.parse.urlencode({"payload": payload}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = payload.encode()
        content_type = "application/json"
    if args.purge:
        import boto3

        sqs = boto3.client(
            "sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION", "us-east-1")
        )
        try:
            sqs.purge_queue(QueueUrl=os.environ["PREVIEWD_QUEUE_URL"])
        except sqs.exceptions.PurgeQueueInProgress:
            pass  # purged less than 60 s ago (SQS allows one purge a minute): empty enough

    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        args.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "X-GitHub-Event": args.event,
            "X-GitHub-Delivery": args.delivery,
            "X-Hub-Signature-256": signature,
            "User-Agent": "GitHub-Hookshot/previewd-demo",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, answer = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, answer = err.code, err.read().decode()
    print(f"webhook answered {status}: {answer}")

    if args.no_receive or status != 202:
        return 0 if status < 500 else 1
    import boto3  # only needed for the queue read-back

    sqs = boto3.client(
        "sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION", "us-east-1")
    )
    queue_url = os.environ["PREVIEWD_QUEUE_URL"]
    out = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=5,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
    )
    received = out.get("Messages", [])
    ours = [m for m in received if json.loads(m["Body"]).get("delivery_id") == args.delivery]
    for message in ours:
        attrs = message.get("Attributes", {})
        print(f"\nmessage on {queue_url}")
        print(f"  MessageGroupId         {attrs.get('MessageGroupId')}")
        print(f"  MessageDeduplicationId {attrs.get('MessageDeduplicationId')}")
        print("  body:")
        print("  " + json.dumps(json.loads(message["Body"]), indent=2).replace("\n", "\n  "))
        if args.save:
            pathlib.Path(args.save).write_text(message["Body"])
    # Ours is consumed here (this script plays the reconciler); anything else read is made
    # visible again.
    for message in received:
        if message in ours:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        else:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    if not ours:
        print(f"delivery {args.delivery} not found among {len(received)} message(s) read from the queue", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
