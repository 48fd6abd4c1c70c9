#!/usr/bin/env python3
"""Create the front's queue (+DLQ with redrive) and table in the local AWS emulator.

Reads infra/local-resources.json, the one description of these resources. Idempotent.
Usage: create_resources.py [--prefix P] [--env]   (--env prints shell exports)
"""
import argparse
import json
import os
import pathlib
import sys

import boto3

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", default="", help="prefix for resource names (isolated stacks)")
    parser.add_argument("--env", action="store_true", help="print export lines for the webhook")
    args = parser.parse_args()

    spec = json.loads((HERE / "local-resources.json").read_text())
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    region = os.environ.get("AWS_REGION", "us-east-1")
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=region,
    )
    sqs = session.client("sqs", endpoint_url=endpoint)
    ddb = session.client("dynamodb", endpoint_url=endpoint)

    dlq = spec["dead_letter_queue"]
    dlq_url = sqs.create_queue(QueueName=args.prefix + dlq["name"], Attributes=dlq["attributes"])["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    queue = spec["queue"]
    attributes = dict(queue["attributes"])
    attributes["RedrivePolicy"] = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(queue["max_receive_count"])}
    )
    queue_url = sqs.create_queue(QueueName=args.prefix + queue["name"], Attributes=attributes)["QueueUrl"]

    table = spec["table"]
    table_name = args.prefix + table["name"]
    existing = ddb.list_tables()["TableNames"]
    if table_name not in existing:
        ddb.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": table["partition_key"], "AttributeType": "S"}],
            KeySchema=[{"AttributeName": table["partition_key"], "KeyType": "HASH"}],
            BillingMode=table["billing_mode"],
        )
        ddb.get_waiter("table_exists").wait(TableName=table_name)
        ddb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table["ttl_attribute"]},
        )

    if args.env:
        print(f"export PREVIEWD_QUEUE_URL={queue_url}")
        print(f"export PREVIEWD_DLQ_URL={dlq_url}")
        print(f"export PREVIEWD_TABLE_NAME={table_name}")
    else:
        print(f"queue  {queue_url}\ndlq    {dlq_url}\ntable  {table_name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
