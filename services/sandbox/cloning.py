"""Copies of the emulator's objects, which are JSON values (what the API took in)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def clone(value: T) -> T:
    """A deep copy of the JSON value `value`.

    Through msgspec's JSON codec: a tenth of what copy.deepcopy costs, which was
    two fifths of the emulator's CPU in a 1000-app fan-out.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    copied: Any = _decoder.decode(_encoder.encode(value))
    return copied
