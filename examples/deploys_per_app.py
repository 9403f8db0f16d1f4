"""Deploys per app: a consumer of Wake's event stream that needs nothing of Wake.

    python examples/deploys_per_app.py --nats-url nats://127.0.0.1:4222 [--durable NAME]
                                       [--from-seq N] [--follow] [--credentials FILE]

It attaches a durable pull consumer to WAKE_EVENTS filtered on ApplySucceeded,
prints one line per deploy, and acknowledges each message, so a second run with
the same --durable resumes after the last deploy it printed. Without --follow it
stops once it has caught up, printing the number of deploys per app it saw.
Only nats-py and the JSON of the events are used: see docs/events.md.
On Wake's NATS, which refuses unauthenticated clients, --credentials names a
JSON file of `nats.connect` keyword arguments: endpoints.json's `nats_admin`
(only the admin may create a durable consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import Counter

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "WAKE_EVENTS"
SUBJECT = "wake.evt.*.ApplySucceeded"


async def main(
    nats_url: str, durable: str, from_seq: int | None, follow: bool, credentials: dict
) -> None:
    nc = await nats.connect(nats_url, **credentials)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subject=SUBJECT,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if from_seq else DeliverPolicy.ALL,
        opt_start_seq=from_seq,
    )
    await js.add_consumer(STREAM, config)  # idempotent for an existing, identical consumer
    subscription = await js.pull_subscribe_bind(durable, stream=STREAM)
    deploys: Counter[str] = Counter()
    while True:
        try:
            messages = await subscription.fetch(100, timeout=2)
        except (NatsTimeout, TimeoutError):
            if follow:
                continue
            break
        for message in messages:
            event = json.loads(message.data)  # fields this script does not know are ignored
            payload = event["payload"]
            rollback = " (rollback)" if payload.get("rollback_of") else ""
            seq = message.metadata.sequence.stream
            print(
                f"{seq:>8}  {event['occurred_at']}  {event['app']:<20} "
                f"{payload['commit'][:7]}  {len(payload['inventory'])} resources{rollback}",
                flush=True,
            )
            deploys[event["app"]] += 1
            await message.ack()
    for app, count in sorted(deploys.items()):
        print(f"{app}: {count} deploys")
    # Acks are on their way: flush them, then close. (nc.drain() waits out its
    # whole timeout on a pull subscription whose last fetch timed out.)
    await nc.flush()
    await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nats-url", default=os.environ.get("WAKE_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument("--durable", default="deploys-per-app")
    parser.add_argument("--from-seq", type=int)
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--credentials", default=os.environ.get("WAKE_NATS_CREDENTIALS"))
    args = parser.parse_args()
    credentials = {}
    if args.credentials:
        with open(args.credentials) as file:
            credentials = json.load(file)
    asyncio.run(main(args.nats_url, args.durable, args.from_seq, args.follow, credentials))
