"""The local AWS emulator: moto's server, with DynamoDB's transaction isolation.

moto serves each request on its own thread without locking its backends, and its
TransactWriteItems deep-copies every table it names and restores the copy when the transaction
is cancelled. Beside concurrent writes that loses them (or fails with a 500 while a table is
copied mid-write), and the copy costs time in proportion to the table: ~120 ms per
transaction at 2,000 items. DynamoDB isolates a transaction from every other request and costs
the same whatever the table holds. Here:

- DynamoDB requests are served one at a time (other services stay concurrent: an SQS long poll
  must not hold anything up);
- a transaction snapshots only the items it names, and puts exactly those back when cancelled.

Usage: python infra/emulator.py -H 127.0.0.1 -p 4566   (moto_server's arguments)
"""
import copy
import threading
import types

from moto import server
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_dynamodb = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _isolated(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # The response body is built inside the call; drain it under the lock too.
            return list(_dispatch(self, environ, start_response))
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _isolated

# moto's transaction copies whole tables through `copy.deepcopy`; tables pass through
# unchanged here (its restore of them becomes a no-op), every other copy is a real one.
dynamodb_models.copy = types.SimpleNamespace(
    deepcopy=lambda value, memo=None: value if isinstance(value, Table) else copy.deepcopy(value, memo),
    copy=copy.copy,
)
_transact = DynamoDBBackend.transact_write_items


def _keys(backend, transact_items):
    """(table, hash, range) of every item the transaction names."""
    keys = []
    for entry in transact_items:
        kind, op = next(iter(entry.items()))
        table = backend.get_table(op["TableName"])
        key = op["Item"] if kind == "Put" else op["Key"]
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        keys.append((table, hash_value, range_value))
    return keys


def _transact_isolated(self, transact_items):
    try:
        keys = _keys(self, transact_items)
    except Exception:  # malformed: let moto answer it
        return _transact(self, transact_items)
    saved = [(t, h, r, copy.deepcopy(t.get_item(h, r))) for t, h, r in keys]
    try:
        return _transact(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in saved:
            if range_value is None:
                if item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            elif item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        raise


DynamoDBBackend.transact_write_items = _transact_isolated

if __name__ == "__main__":
    server.main()
