"""What each identity may do on the bus, as NATS server permissions. Pure: no I/O.

Built from `events/ownership.py`. The rules, by JetStream API subject
(https://docs.nats.io/reference/reference-protocols/nats_api_reference):

- **append**: publish on `wake.evt.*.<Type>` for the types the identity owns;
- **read the log** (every identity: history reads, `last_event`, the
  projector's and `wake events tail`'s followers): stream info, message get
  (`STREAM.MSG.GET`, `DIRECT.GET`), and *named* ephemeral consumers
  (`CONSUMER.CREATE.WAKE_EVENTS.<name>[.<filter>]`) with their flow control and
  deletion. The unnamed create subject (`CONSUMER.CREATE.WAKE_EVENTS`) is not
  allowed: its body may name an existing consumer and the server then updates
  that consumer -- a reader could retarget a service's durable consumer. The
  named forms are denied for every durable consumer's name, so they too can
  only make and remove ephemeral readers;
- **its own durable consumers**: info, pull (`CONSUMER.MSG.NEXT`) and
  acknowledge (`$JS.ACK.WAKE_EVENTS.<name>.>`, which also carries nak,
  in-progress and term) -- never another's;
- **bundles**: the renderer writes (`$O.WAKE_BUNDLES.C/M.>`), the planner, the
  applier and the operator read (an ordered consumer on OBJ_WAKE_BUNDLES);
  nobody else sees a bundle;
- **replies** come only to the identity's own inbox prefix (`_INBOX_<identity>`,
  given to nats-py as `inbox_prefix`), so no identity can listen to another's
  replies (pulled messages, bundle chunks);
- **spans** (`spanstore.py`): every identity publishes its own finished spans on
  `wake.spans.<identity>.*`, nobody else's; the operator (`wake trace`) reads
  them back with direct gets;
- **streams and durable consumers** (create, update, delete, purge, pause,
  list) belong to the admin alone, who may do anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from events import names, ownership

API = "$JS.API"
BUNDLE_STREAM = f"OBJ_{names.BUNDLES}"
LEASE_BUCKET = "WAKE_LEASES"
"""The key-value bucket of replicas' leases (services/wiring/leases.py); the admin makes it."""


def inbox_prefix(identity: str) -> str:
    """The reply subject prefix of `identity`'s connections: only it may subscribe there."""
    return f"_INBOX_{identity}"


def partition_names(consumer: str, partitions: int) -> list[str]:
    """A durable consumer's names when split in `partitions` (the replicas' naming rule)."""
    if partitions <= 1:
        return [consumer]
    return [f"{consumer}-p{i}-of-{partitions}" for i in range(partitions)]


@dataclass(frozen=True, slots=True)
class Permissions:
    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...]
    subscribe_allow: tuple[str, ...]

    def as_config(self) -> dict[str, object]:
        publish: dict[str, object] = {"allow": list(self.publish_allow)}
        if self.publish_deny:
            publish["deny"] = list(self.publish_deny)
        return {"publish": publish, "subscribe": {"allow": list(self.subscribe_allow)}}


def _log_reader(protected: Sequence[str]) -> tuple[list[str], list[str]]:
    stream = names.STREAM
    allow = [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}.*",
        f"{API}.CONSUMER.CREATE.{stream}.*.>",
        f"{API}.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]
    deny = []
    for durable in protected:
        deny += [
            f"{API}.CONSUMER.CREATE.{stream}.{durable}",
            f"{API}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{API}.CONSUMER.DELETE.{stream}.{durable}",
        ]
    return allow, deny


def _bundles(identity: str) -> list[str]:
    stream = BUNDLE_STREAM
    # Every service checks at start that the log, bundle store included, was
    # provisioned; the stream's info shows sizes and settings, never a bundle.
    allow = [f"{API}.STREAM.INFO.{stream}"]
    if identity in ownership.BUNDLE_WRITERS | ownership.BUNDLE_READERS:
        allow += [
            f"{API}.STREAM.MSG.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>",
        ]
    if identity in ownership.BUNDLE_WRITERS:
        allow += [f"$O.{names.BUNDLES}.C.>", f"$O.{names.BUNDLES}.M.>"]
    if identity in ownership.BUNDLE_READERS:
        # nats-py reads an object through an unnamed ordered consumer, found by
        # subject. No durable consumer lives on this stream, and a reader that
        # retargeted another's ephemeral one would only make its digest check fail.
        allow += [
            f"{API}.STREAM.NAMES",
            f"{API}.CONSUMER.CREATE.{stream}",
            f"{API}.CONSUMER.CREATE.{stream}.>",
            f"$JS.FC.{stream}.>",
        ]
    return allow


def _leases(identity: str) -> list[str]:
    """Replicas' leases: its own keys of the bucket only (a lease is a create/update of
    `$KV.<bucket>.<key>` expecting a revision; reading one is a direct get)."""
    if identity not in ownership.SERVICES:
        return []
    stream = f"KV_{LEASE_BUCKET}"
    keys = [f"slot.{identity}", *ownership.LEASES.get(identity, ())]
    allow = [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.MSG.GET.{stream}"]
    for key in keys:
        allow += [
            f"$KV.{LEASE_BUCKET}.{key}.>",
            f"{API}.DIRECT.GET.{stream}.$KV.{LEASE_BUCKET}.{key}.>",
        ]
    return allow


def _spans(identity: str) -> list[str]:
    allow = [f"{names.SPANS_PREFIX}.{identity}.*"]
    if identity in ownership.SPAN_READERS:
        stream = names.SPANS_STREAM
        allow += [
            f"{API}.STREAM.INFO.{stream}",
            f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>",
        ]
    return allow


def permissions(identity: str, *, partitions: int = 1) -> Permissions:
    """The server permissions of `identity`; `partitions`: of every service's consumers."""
    if identity == ownership.ADMIN:
        return Permissions(publish_allow=(">",), publish_deny=(), subscribe_allow=(">",))
    if identity not in ownership.PUBLISHES:
        raise ValueError(f"unknown identity {identity!r}: one of {', '.join(ownership.IDENTITIES)}")
    protected = [
        name for base in ownership.durable_consumers() for name in partition_names(base, partitions)
    ]
    allow = [names.type_subjects(t) for t in sorted(ownership.PUBLISHES[identity])]
    read_allow, deny = _log_reader(protected)
    allow += read_allow
    for base in ownership.CONSUMERS[identity]:
        for name in partition_names(base, partitions):
            allow += [
                f"{API}.CONSUMER.INFO.{names.STREAM}.{name}",
                f"{API}.CONSUMER.MSG.NEXT.{names.STREAM}.{name}",
                f"$JS.ACK.{names.STREAM}.{name}.>",
            ]
    allow += _bundles(identity)
    allow += _leases(identity)
    allow += _spans(identity)
    return Permissions(
        publish_allow=tuple(allow),
        publish_deny=tuple(deny),
        subscribe_allow=(f"{inbox_prefix(identity)}.>",),
    )


def authorization_block(
    passwords: Mapping[str, str],
    *,
    partitions: int = 1,
    identities: Iterable[str] = ownership.IDENTITIES,
) -> str:
    """The `authorization { users: [...] }` section of nats-server.conf.

    JSON is valid NATS configuration, and quoting every string keeps `$JS...`
    subjects from being read as variable references.
    """
    users = [
        {
            "user": identity,
            "password": passwords[identity],
            "permissions": permissions(identity, partitions=partitions).as_config(),
        }
        for identity in identities
    ]
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"
