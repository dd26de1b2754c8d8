#!/usr/bin/env python3
"""Publish a replication request to a replicator fleet on RabbitMQ, from Python.

The message is plain JSON matching proto/schemas/replication_request.json; the fleet treats
it exactly like `replicator submit`. Prints the run ID, which `replicator watch RUN_ID` and
`replicator status RUN_ID` take.

    pip install pika
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
        python3 submit_request.py --prefix replicator /data/lake/prod /mnt/dr/lake/prod

The `{prefix}.requests` queue is declared by the planner when it starts; publishing is
`mandatory` with publisher confirms, so a request that no queue takes is an error, not a
silent loss.
"""

import argparse
import datetime
import json
import os
import sys
import uuid

import pika


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source_root")
    p.add_argument("target_root")
    p.add_argument("--prefix", default="replicator", help="the fleet's bus.prefix")
    p.add_argument("--operation", default="all", choices=["replication", "reconciliation", "all"])
    p.add_argument("--include", action="append", default=None, help="table glob (repeatable)")
    p.add_argument("--exclude", action="append", default=[], help="table glob (repeatable)")
    args = p.parse_args()

    run_id = str(uuid.uuid4())
    request = {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "run_id": run_id,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "operation": args.operation,
        "source_root": args.source_root,
        "target_root": args.target_root,
        "tables": {"include": args.include or ["*"], "exclude": args.exclude},
        "requested_by": "submit_request.py",
    }

    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        channel.basic_publish(
            exchange="",
            routing_key=f"{args.prefix}.requests",
            body=json.dumps(request),
            properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        print(f"no queue {args.prefix}.requests: is a planner of this fleet running?", file=sys.stderr)
        return 1
    finally:
        connection.close()
    print(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
