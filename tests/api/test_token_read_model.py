"""The projector's fold of API tokens (pure): only a hash, revocation, names reused."""

from __future__ import annotations

from events import names, new_event
from events.payloads import TokenCreated, TokenRevoked
from services.api import access
from services.projector.folding import ReadModels, fold_all, keys_needed


def _created(name: str, token: str, *, app: str = names.SYSTEM_APP):
    payload = TokenCreated(name=name, role="approver", apps="shop-*", digest=access.digest(token))
    return new_event(payload, app=app, actor="user:ana")


def test_tokens_are_folded_by_name_with_their_digest_and_revocation():
    first, second = access.new_token(), access.new_token()
    created = _created("ci", first)
    assert ("tokens", "ci") in keys_needed(created)
    models = fold_all(
        ReadModels(),
        enumerate(
            [
                created,
                new_event(TokenRevoked(name="ci"), app=names.SYSTEM_APP, actor="user:ana"),
                _created("ci", second),
                # filed under an app, not Wake's own: not a token
                _created("other", access.new_token(), app="shop"),
            ],
            start=1,
        ),
    )
    rows = models.rows["tokens"]
    assert set(rows) == {"ci"}
    row = rows["ci"]
    assert row["digest"] == access.digest(second) and not row["revoked"]
    assert row["role"] == "approver" and row["apps"] == "shop-*"
    assert row["created_by"] == "user:ana" and row["last_seq"] == 3
    assert first not in str(rows) and second not in str(rows)
