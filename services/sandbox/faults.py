"""Fault injection, for tests only: writes the emulator refuses although their dry run passed.

A real API server can accept an object's dry run and refuse its write: an
admission webhook that acts on real requests only, a quota used up between
plan and apply. Tests that need an apply to fail after a clean plan arm a
refusal here (`sandbox.faults.refuse_writes(...)`) and disarm it to let the
next try through. Nothing else in the emulator arms one; the demo never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.sandbox.errors import ApiError

WEBHOOK = "faults.sandbox.wake.dev"


@dataclass
class Faults:
    """Armed refusals by (kind, namespace, name), and how many writes they refused."""

    refusals: dict[tuple[str, str, str], str] = field(default_factory=dict)
    refused: int = 0

    def refuse_writes(
        self, kind: str, name: str, *, namespace: str = "", message: str = ""
    ) -> None:
        """Refuse every non-dry-run write (apply, update, patch) of this object."""
        self.refusals[kind, namespace, name] = message or "refused by the test"

    def clear(self) -> None:
        self.refusals.clear()

    def check(self, kind: str, namespace: str, name: str) -> None:
        """Raise the armed refusal for this object's write, if any (403, as a webhook's)."""
        message = self.refusals.get((kind, namespace, name))
        if message is None:
            return
        self.refused += 1
        raise ApiError(
            403,
            "Forbidden",
            f'admission webhook "{WEBHOOK}" denied the request: {message} '
            "(fault injected by a test into the Wake sandbox emulator)",
        )
