"""The signature scheme of events (events/signing.py), pure: no server needed."""

from __future__ import annotations

import base64

import msgspec
import pytest

from events import names, ownership
from events.envelope import Envelope, encode, new_event
from events.payloads import (
    ApplicationRegistered,
    AppSpec,
    KeyRegistered,
    KeyRevoked,
    ManifestsRendered,
    PlanApproved,
)
from events.samples import sample_payloads
from events.signing import (
    KeyDirectory,
    SigningKey,
    UnverifiedEvent,
    Verifier,
    sign_batch,
    split_signature,
)

ADMIN = SigningKey.generate("admin", ownership.ADMIN)
ANA = SigningKey.generate("user:ana", ownership.OPERATOR)
RENDERER = SigningKey.generate("service:renderer", "renderer")


def signed(key: SigningKey, *events: Envelope) -> list[bytes]:
    stamped = [msgspec.structs.replace(e, signer=key.key_id, actor=key.identity) for e in events]
    return sign_batch(key, [encode(e) for e in stamped])


def approval(plan: str = "p1") -> Envelope:
    return new_event(PlanApproved(plan_id=plan, via="cli"), app="shop", actor="user:ana")


def subject_of(data: bytes) -> str:
    event = msgspec.json.decode(data)
    return names.subject(event["app"], event["type"])


@pytest.fixture
def verifier() -> Verifier:
    """A reader that knows Ana's key (operator) and the renderer's, registered at seqs 1, 2."""
    directory = KeyDirectory(ADMIN.public)
    registrations = [
        new_event(key.registration(), app=names.SYSTEM_APP, actor="admin")
        for key in (ANA, RENDERER)
    ]
    check = Verifier(directory)
    for seq, data in enumerate(signed(ADMIN, *registrations), start=1):
        directory.fold(seq, check.verify(data, seq=seq, subject=subject_of(data)))
    return check


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 1000])
def test_every_event_of_a_batch_verifies_alone_and_in_order(verifier: Verifier, size: int) -> None:
    samples = [p for p in sample_payloads() if type(p).__name__ in ownership.PUBLISHES["renderer"]]
    events = [
        new_event(samples[i % len(samples)], app=f"app-{i % 7}", actor="x") for i in range(size)
    ]
    stored = signed(RENDERER, *events)
    known = verifier.directory.keys[RENDERER.key_id]
    # Each alone, by a reader that has seen nothing of its batch
    for index, data in enumerate(stored):
        known.nodes.clear()
        assert verifier.verify(data, seq=100 + index).event_id == events[index].event_id
    # In order: one Ed25519 verification for the whole batch
    known.nodes.clear()
    before = verifier.signatures
    opened = [verifier.verify(data, seq=100 + i) for i, data in enumerate(stored)]
    assert [e.event_id for e in opened] == [e.event_id for e in events]
    assert verifier.signatures - before == 1


def test_the_signed_bytes_are_the_stored_bytes_less_the_sig_member() -> None:
    event = msgspec.structs.replace(approval(), signer=ANA.key_id, actor=ANA.identity)
    (stored,) = sign_batch(ANA, [encode(event)])
    parts = split_signature(stored)
    assert parts is not None and parts[0] == encode(event)
    assert stored.startswith(encode(event)[:-1] + b',"sig":"') and stored.endswith(b'"}')
    # and the whole stored object is still one JSON object every reader decodes
    assert msgspec.json.decode(stored)["sig"]


def test_an_unsigned_event_is_refused(verifier: Verifier) -> None:
    data = encode(approval())
    with pytest.raises(UnverifiedEvent, match=r"stream sequence 9 .*: event .* refused: it is not"):
        verifier.verify(data, seq=9, subject=subject_of(data))


def test_an_event_tampered_after_signing_is_refused(verifier: Verifier) -> None:
    (data,) = signed(ANA, approval("p1"))
    tampered = data.replace(b'"plan_id":"p1"', b'"plan_id":"p2"')
    with pytest.raises(UnverifiedEvent, match="its signature does not verify") as refused:
        verifier.verify(tampered, seq=9)
    assert refused.value.signer == ANA.key_id and refused.value.seq == 9


def test_a_key_nobody_registered_is_refused(verifier: Verifier) -> None:
    mallory = SigningKey.generate("user:ana", ownership.OPERATOR)
    (data,) = signed(mallory, approval())
    with pytest.raises(UnverifiedEvent, match=f"its key {mallory.key_id} is not registered"):
        verifier.verify(data, seq=9)


def test_a_signer_not_entitled_to_the_type_is_refused(verifier: Verifier) -> None:
    (data,) = signed(RENDERER, approval())
    with pytest.raises(
        UnverifiedEvent, match=r"service:renderer \(role renderer\) may not append PlanApproved"
    ):
        verifier.verify(data, seq=9)
    # and an operator may not register keys
    (key_event,) = signed(ANA, new_event(RENDERER.registration(), app="_wake", actor="x"))
    with pytest.raises(UnverifiedEvent, match="may not append KeyRegistered"):
        verifier.verify(key_event, seq=9)


def test_an_actor_other_than_the_signer_is_refused(verifier: Verifier) -> None:
    event = msgspec.structs.replace(approval(), signer=ANA.key_id, actor="user:bob")
    (data,) = sign_batch(ANA, [encode(event)])
    with pytest.raises(UnverifiedEvent, match="its actor 'user:bob' is not its signer 'user:ana'"):
        verifier.verify(data, seq=9)


def test_a_signed_event_copied_to_another_subject_is_refused(verifier: Verifier) -> None:
    (data,) = signed(ANA, approval())
    with pytest.raises(UnverifiedEvent, match="moved here"):
        verifier.verify(data, seq=9, subject="wake.evt.billing.PlanApproved")


def test_a_member_smuggled_into_the_signature_is_refused(verifier: Verifier) -> None:
    (data,) = signed(ANA, approval())
    # A second `actor` after the signature would win in a lax decoder: the cut refuses it.
    smuggled = data[:-2] + b'","actor":"user:bob"}'
    with pytest.raises(UnverifiedEvent):
        verifier.verify(smuggled, seq=9)


def test_a_revoked_key_signs_nothing_after_its_revocation_and_keeps_what_it_signed_before(
    verifier: Verifier,
) -> None:
    old, new = signed(ANA, approval("before"), approval("after"))
    revocation = new_event(KeyRevoked(key_id=ANA.key_id, reason="rotated"), app="_wake", actor="x")
    (revoked,) = signed(ADMIN, revocation)
    verifier.directory.fold(50, verifier.verify(revoked, seq=50))
    assert verifier.verify(old, seq=49).payload.plan_id == "before"
    with pytest.raises(UnverifiedEvent, match="its key was revoked at stream sequence 50"):
        verifier.verify(new, seq=51)


def test_a_key_signs_nothing_stored_before_its_registration(verifier: Verifier) -> None:
    late = SigningKey.generate("user:late", ownership.OPERATOR)
    (registration,) = signed(ADMIN, new_event(late.registration(), app="_wake", actor="x"))
    verifier.directory.fold(60, verifier.verify(registration, seq=60))
    (data,) = signed(late, approval())
    with pytest.raises(UnverifiedEvent, match="only registered later, at stream sequence 60"):
        verifier.verify(data, seq=59)
    assert verifier.verify(data, seq=61).actor == "user:late"


def test_a_registration_whose_key_id_lies_is_not_folded() -> None:
    directory = KeyDirectory(ADMIN.public)
    lying = msgspec.structs.replace(ANA.registration(), key_id=RENDERER.key_id)
    (data,) = signed(ADMIN, new_event(lying, app="_wake", actor="x"))
    why = directory.fold(3, Verifier(directory).verify(data, seq=3))
    assert why is not None and "is not the id of its public key" in why
    assert RENDERER.key_id not in directory.keys


def test_a_batch_proof_cannot_be_lent_to_another_key(verifier: Verifier) -> None:
    # Ana's signed batch, re-labelled as the renderer's: the root does not verify with its key.
    spec = AppSpec(repo_url="https://git.example.com/x.git")
    event = new_event(ApplicationRegistered(spec=spec), app="shop", actor="x")
    (data,) = signed(ANA, event)
    relabelled = data.replace(ANA.key_id.encode(), RENDERER.key_id.encode()).replace(
        b'"user:ana"', b'"service:renderer"'
    )
    with pytest.raises(UnverifiedEvent):
        verifier.verify(relabelled, seq=9)


def test_the_sig_value_is_plain_base64_fields() -> None:
    events = [new_event(p, app="shop", actor="x") for p in sample_payloads()[:5]]
    for data in signed(ADMIN, *events):
        parts = split_signature(data)
        assert parts is not None
        size, index, signature, proof = parts[1].split(b".")
        assert int(size) == 5 and 0 <= int(index) < 5
        assert len(base64.b64decode(signature)) == 64 and len(base64.b64decode(proof)) % 16 == 0


def test_only_the_admin_may_append_key_events() -> None:
    for event_type in ("KeyRegistered", "KeyRevoked"):
        assert ownership.owners(event_type) == frozenset()
        assert ownership.entitled(ownership.ADMIN, event_type)
    assert ManifestsRendered.event_type in ownership.PUBLISHES["renderer"]


def test_a_gateway_key_signs_for_the_people_of_its_namespace_only() -> None:
    # Given a chat gateway's key that vouches for Matrix users, registered by the admin
    gateway = SigningKey.generate("service:chat", ownership.OPERATOR, vouches_for=("matrix",))
    directory = KeyDirectory(ADMIN.public)
    check = Verifier(directory)
    registration = new_event(gateway.registration(), app=names.SYSTEM_APP, actor="admin")
    (data,) = signed(ADMIN, registration)
    directory.fold(1, check.verify(data, seq=1, subject=subject_of(data)))

    def as_actor(actor: str) -> bytes:
        event = msgspec.structs.replace(approval(), signer=gateway.key_id, actor=actor)
        return sign_batch(gateway, [encode(event)])[0]

    # Then an approval by a Matrix user, or by the gateway itself, verifies with its actor
    for actor in ("matrix:@ana:example.org", "service:chat"):
        assert check.verify(as_actor(actor), seq=2).actor == actor
    # and one it speaks for outside its namespace (or for nobody, or a person with a key) does not
    for actor in ("slack:U123", "matrix:", "user:ana", "service:planner", "admin"):
        with pytest.raises(UnverifiedEvent, match="nor one it vouches for"):
            check.verify(as_actor(actor), seq=3)


def test_a_registration_vouching_for_identities_with_keys_is_not_folded() -> None:
    # A key may not speak for `user:` or `service:` people: they sign for themselves
    forged = KeyRegistered(
        key_id=ANA.key_id,
        identity="service:chat",
        role=ownership.OPERATOR,
        public_key=ANA.registration().public_key,
        vouches_for=("user",),
    )
    directory = KeyDirectory(ADMIN.public)
    event = new_event(forged, app=names.SYSTEM_APP, actor="admin")
    assert "may not vouch for ['user']" in (directory.fold(1, event) or "")
    assert ANA.key_id not in directory.keys
