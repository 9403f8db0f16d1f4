"""Signed events on real JetStream: readers learn keys from the log, consumers refuse forgeries."""

from __future__ import annotations

import msgspec

from events import new_event
from events.payloads import EventRejected, KeyRevoked, SyncRequested
from events.signing import SigningKey
from services.wiring.consumers import ConsumerSettings
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.signing import KeySigner, Trust, revocation_event, seal_as
from tests.log.test_consumers import events_of, running
from tests.signing import ADMIN, key_of, register
from tests.waiting import eventually


def sync(reason: str) -> object:
    return new_event(SyncRequested(reason=reason), app="shop", actor="user:ana")


async def test_a_reader_learns_a_key_registered_after_it_first_looked(event_log: EventLog) -> None:
    # Given a reader that has already folded the keys of the log
    reader = EventLog(event_log.nc)
    reader.trust = Trust(ADMIN.public)
    first = await event_log.append(sync("first"))
    assert (await reader.last_event("shop", "SyncRequested")).seq == first.seq
    # When a key is registered later and signs an event
    bob = SigningKey.generate("user:bob", "operator")
    await register(event_log, bob)
    writer = EventLog(event_log.nc)
    writer.signer = KeySigner(bob)
    later = await writer.append(sync("by bob"))
    # Then the reader accepts it, its actor the key's identity
    stored = await reader.last_event("shop", "SyncRequested")
    assert stored is not None and stored.seq == later.seq
    assert (stored.event.actor, stored.event.signer) == ("user:bob", bob.key_id)


async def test_a_revoked_key_is_refused_from_its_revocation_on_by_a_reader_that_lagged(
    event_log: EventLog,
) -> None:
    ana = key_of("user:ana")
    before = await event_log.append(sync("before"))
    # A reader that looked at the keys before the revocation
    reader = EventLog(event_log.nc)
    reader.trust = Trust(ADMIN.public)
    assert (await reader.last_event("shop", "SyncRequested")).seq == before.seq
    # When Ana's key is revoked and then signs again
    ((_, revocation),) = seal_as(ADMIN, [revocation_event(ana.key_id, ana.identity, "left")])
    await event_log.js.publish("wake.evt._wake.KeyRevoked", revocation)
    ((_, data),) = seal_as(ana, [sync("after")])
    after = await event_log.js.publish("wake.evt.shop.SyncRequested", data)
    # Then the reader skips the new event, yet still reads the one signed before
    read = [s.seq async for s in reader.read(subjects=["wake.evt.shop.>"])]
    assert before.seq in read and after.seq not in read
    assert (await reader.last_event("shop", "SyncRequested")).seq == before.seq
    assert [s async for s in reader.read() if isinstance(s.event.payload, KeyRevoked)]


async def test_a_consumer_records_a_forgery_once_and_handles_the_next_signed_event(
    event_log: EventLog,
) -> None:
    handled: list[str] = []

    async def handler(stored: StoredEvent) -> None:
        handled.append(stored.event.payload.reason)

    # Given an approval-like command signed by the renderer, which may not append it,
    renderer = key_of("service:renderer")
    await register(event_log, renderer)
    ((_, forged),) = seal_as(renderer, [sync("forged")], actor=renderer.identity)
    forgery = await event_log.js.publish("wake.evt.shop.SyncRequested", forged)
    # and one whose actor claims someone other than its signer
    ana = key_of("user:ana")
    await register(event_log, ana)
    impostor = msgspec.structs.replace(sync("impostor"), actor="user:ceo")
    ((_, claimed),) = seal_as(ana, [impostor])
    claim = await event_log.js.publish("wake.evt.shop.SyncRequested", claimed)
    await event_log.append(sync("next"))
    settings = ConsumerSettings(name="forgery-test", subjects=["wake.evt.*.SyncRequested"])
    # When a consumer reads them
    async with running(event_log, settings, handler):
        await eventually(lambda: handled == ["next"], what="the next signed event handled")
    # Then each forgery is one EventRejected naming its sequence, signer and why
    rejected = {
        s.event.payload.stream_seq: s.event.payload
        for s in await events_of(event_log, "EventRejected")
    }
    assert set(rejected) == {forgery.seq, claim.seq}
    assert isinstance(rejected[forgery.seq], EventRejected)
    assert f"signed by {renderer.key_id}" in rejected[forgery.seq].error
    assert "may not append SyncRequested" in rejected[forgery.seq].error
    assert "its actor 'user:ceo' is not its signer 'user:ana'" in rejected[claim.seq].error
