"""docs/events.md, generated from the contracts so the reference is never written twice.

`wake events docs` prints it; a test fails when the committed file is stale.
"""

from __future__ import annotations

import json
from typing import Any

from events import names
from events.payloads import PAYLOAD_TYPES
from events.schema import json_schema

_ENVELOPE_FIELDS = {
    "event_id": "UUIDv7 of the event; also its `Nats-Msg-Id`. Derived events have a "
    "deterministic uuid5 of their cause's id and their type.",
    "type": "The payload's type; also the last token of the subject.",
    "schema_version": "Version of the payload's shape; readers accept any version.",
    "app": "The application (a DNS label), or `_wake` for events about no single app.",
    "occurred_at": "When the event happened (RFC 3339, UTC).",
    "correlation_id": "The journey: the id of the event that started it (a RevisionDetected, a "
    "command). Every event of one commit's journey shares it.",
    "causation_id": "The id of the event this one was derived from; null for a journey's first.",
    "actor": "Who: the identity of the key that signed it (`user:<name>`, `service:<name>`, "
    "`admin`); a reader refuses an event whose actor is not its signer's. (Events of older "
    "Wakes also say `policy` or `consumer:<name>`.)",
    "traceparent": "W3C trace context of the span that appended it: one trace per journey.",
    "instance": "The process that appended it (`<service>-<host>-<pid>`, or `WAKE_INSTANCE`): "
    "which replica of a service did what. Empty in events written before it existed.",
    "signer": "The id of the Ed25519 key that signed it (16 hex digits of the sha256 of the "
    "public key), registered by a `KeyRegistered` event; see **Signatures** below.",
    "payload": "The type's fields, below.",
}

_CONSUMING = f"""\
## Reading the stream

Every event is one message on the JetStream stream `{names.STREAM}`, subject
`{names.SUBJECT_PREFIX}.<app>.<type>`, body the JSON envelope. The stream is append-only
(`deny_delete`, `deny_purge`, no age limit): its sequence number is the global order,
and sequence N means the same event forever.

Wake's NATS refuses unauthenticated clients. `endpoints.json` names files of keyword
arguments for nats-py: `nats.connect(url, **json.load(open(endpoints["nats_operator"])))`
reads the log (stream info, message get, named ephemeral consumers); creating a durable
consumer takes the admin's (`nats_admin`), and pulling from it the admin's too, or an
identity you add to the server's configuration (see docs/security.md).

Attach a **durable consumer** to follow the log and resume where you left off after a
restart. With the `nats` CLI:

```sh
nats consumer add {names.STREAM} deploys --pull --ack explicit --deliver all \\
  --filter '{names.SUBJECT_PREFIX}.*.ApplySucceeded' --max-deliver 5 --defaults
nats consumer next {names.STREAM} deploys --count 10
```

With nats-py (the runnable version is `examples/deploys_per_app.py`):

```python
js = nc.jetstream()
await js.add_consumer("{names.STREAM}", durable_name="deploys", ack_policy="explicit",
                      filter_subject="{names.SUBJECT_PREFIX}.*.ApplySucceeded")
subscription = await js.pull_subscribe_bind("deploys", stream="{names.STREAM}")
for message in await subscription.fetch(100):
    event = json.loads(message.data)      # ignore fields you do not know
    ...
    await message.ack()                   # the server remembers the position
```

To start from a **position** instead, create the consumer with
`deliver_policy=by_start_sequence, opt_start_seq=N` (or `by_start_time`); a message's
sequence is in its metadata (`message.metadata.sequence.stream`). An ephemeral ordered
consumer (`js.subscribe(..., ordered_consumer=True)`) reads the whole log in order without
keeping a position on the server.

## Signatures

Every event is signed by the identity that appended it. The stored message is the
envelope exactly as its writer encoded it, `signer` included, followed by one last member:
`...,"sig":"<n>.<i>.<root signature>.<proof>"}}`. To verify one, take the bytes up to
`,"sig":"` and close them with `}}`: these are the signed bytes, unchanged (never re-encode
an event to verify it). Events appended together are signed once: `n` events, this one
at index `i`; its leaf is the first 16 bytes of `sha256(signed bytes)`, each level pairs nodes as
the first 16 bytes of `sha256(0x01 | left | right)` (a last odd node goes up unchanged),
`proof` is the base64 of the sibling nodes from the leaf up, and `root signature` is the
base64 Ed25519 signature of `b"wake-batch-v1" | n (4 bytes, big-endian) | root` by the key
`signer`.

Keys are registered and revoked by `KeyRegistered` / `KeyRevoked` events on the app
`{names.SYSTEM_APP}`, signed by the admin key, whose public key (the trust anchor) is
`admin_public_key` in endpoints.json. Accept an event only if its key was registered
before it (lower sequence) and not revoked before it, its role may append its type
(events/ownership.py) and its `actor` is the key's identity. Wake's own readers do exactly
this (events/signing.py) and skip whatever fails, as it skips what does not decode.

## Compatibility rules

- A new field always has a default; a field's type never changes; a removed field is only
  ever ignored: **readers must ignore fields they do not know**, and events of types they
  do not know.
- Every type ever written stays decodable by every later Wake: the log is never migrated.
- `schema_version` rises when a payload's shape changes; the JSON Schema of all types is
  printed by `wake events schema`.
- Headers: `Nats-Msg-Id` (= `event_id`), and `traceparent` (with `tracestate` when
  set): the W3C context of the PRODUCER span that appended the message, the parent
  of a consumer's CONSUMER span (the envelope's `traceparent` is the span of the
  handler that made the event, in the same trace). Batch appends also carry
  JetStream's `Nats-Batch-*` headers. Consumers should not depend on other headers.
"""


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[1]}](#{schema['$ref'].rsplit('/', 1)[1].lower()})"
    if "anyOf" in schema:
        return " \\| ".join(_type_of(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map of {_type_of(schema['additionalProperties'])}"
    if kind == "string" and schema.get("format") == "date-time":
        return "timestamp"
    if kind == "string" and "pattern" in schema:
        return "string (pattern)"
    return str(kind)


def _table(definition: dict[str, Any], notes: dict[str, str] | None = None) -> list[str]:
    rows = ["| field | type | required | default / meaning |", "|---|---|---|---|"]
    required = set(definition.get("required", []))
    for field, schema in definition.get("properties", {}).items():
        meaning = (notes or {}).get(field, "")
        if "default" in schema and field not in required:
            default = f"`{json.dumps(schema['default'])}`"
            meaning = f"{default}. {meaning}".strip() if meaning else default
        rows.append(
            f"| `{field}` | {_type_of(schema)} | {'yes' if field in required else ''} | {meaning} |"
        )
    return rows


def _envelope_definition(defs: dict[str, Any]) -> dict[str, Any]:
    """The envelope's properties, as any one event variant has them, `type` left general."""
    variant = defs["ApplicationRegisteredEvent"]
    properties = dict(variant["properties"], type={"type": "string"}, payload={"type": "object"})
    return {"properties": properties, "required": variant["required"]}


def events_reference() -> str:
    """The whole of docs/events.md."""
    schema = json_schema()
    defs = schema["$defs"]
    lines = [
        "# Wake events",
        "",
        "<!-- Generated by `wake events docs` from events/; do not edit by hand. -->",
        "",
        "Every step Wake takes is an event on one append-only log. This page lists the "
        "subjects, the envelope, every event type and how to consume them.",
        "",
        "## Subjects",
        "",
        f"- stream `{names.STREAM}`, subjects `{names.SUBJECT_PREFIX}.<app>.<type>`",
        f"- one app: `{names.SUBJECT_PREFIX}.<app>.>`; one type for every app: "
        f"`{names.SUBJECT_PREFIX}.*.<type>`",
        f"- rendered manifests: object store `{names.BUNDLES}`, object name = sha256 of the "
        "bundle's canonical JSON",
        "",
        "## The envelope",
        "",
        *_table(_envelope_definition(defs), _ENVELOPE_FIELDS),
        "",
        "## Event types",
        "",
    ]
    for cls in PAYLOAD_TYPES:
        name = cls.event_type
        lines += [f"### {name}", ""]
        doc = (cls.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += [f"Subject `{names.SUBJECT_PREFIX}.<app>.{name}`.", ""]
        lines += _table(defs[name]) if defs[name].get("properties") else ["No fields."]
        lines.append("")
    parts = sorted(
        n
        for n in defs
        if not n.endswith("Event") and n not in {c.event_type for c in PAYLOAD_TYPES}
    )
    lines += ["## Parts", ""]
    for name in parts:
        lines += [f"### {name}", ""]
        doc = defs[name].get("description", "")
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += [*_table(defs[name]), ""]
    return "\n".join(lines) + "\n" + _CONSUMING
