"""The JSON Schema of every event, for consumers outside Wake.

Generated from the Structs themselves, so the contract is written once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.envelope import Envelope
from events.payloads import PAYLOAD_TYPES

SCHEMA_ID = "https://wake.dev/schemas/events.json"


def json_schema() -> dict[str, Any]:
    """One JSON Schema document: an event is one of the envelope variants, by `type`."""
    (envelope_ref, *payload_refs), components = msgspec.json.schema_components(
        [Envelope, *PAYLOAD_TYPES], ref_template="#/$defs/{name}"
    )
    envelope = components.pop(envelope_ref["$ref"].rsplit("/", 1)[1])
    variants = []
    for cls, ref in zip(PAYLOAD_TYPES, payload_refs, strict=True):
        properties = dict(envelope["properties"])
        properties["type"] = {"const": cls.event_type}
        properties["schema_version"] = {"type": "integer", "minimum": 1}
        properties["payload"] = ref
        variant_name = f"{cls.event_type}Event"
        components[variant_name] = {
            "title": variant_name,
            "type": "object",
            "properties": properties,
            "required": envelope["required"],
            "description": (cls.__doc__ or "").strip() or f"A {cls.event_type} event.",
        }
        variants.append({"$ref": f"#/$defs/{variant_name}"})
    components.pop("Payload", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Wake event",
        "description": (
            "An event on the WAKE_EVENTS stream, subject wake.evt.<app>.<type>. "
            "Readers must ignore fields they do not know."
        ),
        "oneOf": variants,
        "discriminator": {"propertyName": "type"},
        "$defs": components,
    }
