"""The console's reads of the projector's read models (PostgreSQL schema `wake`).

Read only: the API never writes a read model (the projector alone does). The
history's journeys are `services/projector/journeys.py`'s, as `wake history`
builds them, from the same rows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from services.catalog.plans import AWAITING_APPROVAL
from services.projector import store
from services.projector.journeys import Journey, journeys

SCHEMA = store.schema_name(store.LIVE_SCHEMA)

Row = dict[str, Any]

_APPS = f"""
SELECT a.app, a.sync_state, a.health, a.desired_commit, a.current_commit, a.current_plan_id,
       a.last_applied_commit, a.last_applied_at, a.last_apply_id, a.project, a.auto_sync,
       a.rolled_back, a.rolled_back_to, a.repo_url, a.path, a.ref, a.namespace, a.last_seq,
       a.updated_at, coalesce(p.pending, 0) AS pending
FROM {SCHEMA}.applications a
LEFT JOIN (
    SELECT app, count(*) AS pending FROM {SCHEMA}.plans
    WHERE status = '{AWAITING_APPROVAL}' GROUP BY app
) p USING (app)
WHERE NOT a.removed AND a.registered_at IS NOT NULL
"""


def app_json(row: Row) -> Row:
    """An app as the API shows it (`name`, `sync`, `health`, `revision`, `pending_approvals`)."""
    return {
        "name": row["app"],
        "sync": row["sync_state"],
        "health": row["health"],
        "revision": row["last_applied_commit"],
        "desired_revision": row["desired_commit"],
        "pending_approvals": row["pending"],
        "current_plan_id": row["current_plan_id"],
        "project": row["project"],
        "auto_sync": row["auto_sync"],
        "rolled_back_to": row["rolled_back_to"] if row["rolled_back"] else None,
        "repo_url": row["repo_url"],
        "path": row["path"],
        "ref": row["ref"],
        "namespace": row["namespace"],
        "last_applied_at": _time(row["last_applied_at"]),
        "updated_at": _time(row["updated_at"]),
        "seq": row["last_seq"],
    }


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def plan_json(row: Row, *, with_changes: bool = False) -> Row:
    plan = {
        "plan_id": row["plan_id"],
        "app": row["app"],
        "status": row["status"],
        "commit": row["commit"],
        "reason": row["reason"],
        "rollback_of": row["rollback_of"],
        "needs_approval": row["needs_approval"],
        "creates": row["creates"],
        "updates": row["updates"],
        "unchanged": row["unchanged"],
        "prunes": row["prunes"],
        "created_at": _time(row["created_at"]),
        "decided_at": _time(row["decided_at"]),
        "superseded_by": row["superseded_by"],
        "apply_id": row["apply_id"],
        "correlation_id": row["correlation_id"],
    }
    if with_changes:
        plan["changes"] = row["changes"]
        plan["prune"] = row["prune"]
    return plan


class Reads:
    """Every read of the console, over one connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str) -> Reads:
        async def setup(conn: asyncpg.Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=_json_text, decoder=_json_value, schema="pg_catalog"
            )

        # The console never writes a read model: every transaction of its connections
        # is read-only (a startup setting, so the pool's RESET ALL keeps it).
        pool = await asyncpg.create_pool(
            url,
            # No floor: while PostgreSQL is away the pool would keep reconnecting (and
            # logging each failure); connections are made as requests need them.
            min_size=0,
            max_size=8,
            init=setup,
            timeout=10,
            server_settings={
                "default_transaction_read_only": "on",
                "application_name": "wake-api",
            },
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def ready(self) -> tuple[bool, str]:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval(f"SELECT last_seq FROM {SCHEMA}.projection_position LIMIT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return False, f"read models not readable: {exc}"
        return True, "read models readable"

    async def position(self) -> int:
        async with self.pool.acquire() as conn:
            return await store.position(conn, SCHEMA)

    async def caught_up(self, seq: int, *, timeout: float = 2.0) -> bool:
        """Wait until the read models have folded sequence `seq` (read your own writes,
        or what an event stream just showed); False if they did not within `timeout`."""
        deadline = time.monotonic() + timeout
        while await self.position() < seq:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def token(self, digest: str) -> Row | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT name, role, apps, digest FROM {SCHEMA}.tokens "
                "WHERE digest = $1 AND NOT revoked",
                digest,
            )
        return dict(row) if row else None

    async def token_by_name(self, name: str) -> Row | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT name, role, apps, digest FROM {SCHEMA}.tokens "
                "WHERE name = $1 AND NOT revoked",
                name,
            )
        return dict(row) if row else None

    async def apps(self) -> list[Row]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_APPS + " ORDER BY a.app")
        return [app_json(dict(r)) for r in rows]

    async def app(self, name: str) -> Row | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_APPS + " AND a.app = $1", name)
            if row is None:
                return None
            resources = await conn.fetch(
                f"SELECT api_version, kind, namespace, name, apply_id, commit "
                f"FROM {SCHEMA}.resources WHERE app = $1 ORDER BY kind, namespace, name",
                name,
            )
        found = app_json(dict(row))
        found["resources"] = [dict(r) for r in resources]
        return found

    async def plans(self, app: str, *, limit: int = 50) -> list[Row]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM {SCHEMA}.plans WHERE app = $1 ORDER BY created_seq DESC LIMIT $2",
                app,
                limit,
            )
        return [plan_json(dict(r)) for r in rows]

    async def plan(self, plan_id: str) -> Row | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.plans WHERE plan_id = $1", plan_id)
            if row is None:
                return None
            approvals = await conn.fetch(
                f"SELECT decision, actor, via, comment, decided_at FROM {SCHEMA}.approvals "
                "WHERE plan_id = $1 ORDER BY seq",
                plan_id,
            )
        plan = plan_json(dict(row), with_changes=True)
        plan["decisions"] = [{**dict(a), "decided_at": _time(a["decided_at"])} for a in approvals]
        return plan

    async def history(self, app: str, *, limit: int = 50) -> list[Journey]:
        rows: dict[str, list[Row]] = {}
        async with self.pool.acquire() as conn:
            for table in ("revisions", "plans", "approvals", "applies"):
                rows[table] = [
                    dict(r)
                    for r in await conn.fetch(f"SELECT * FROM {SCHEMA}.{table} WHERE app = $1", app)
                ]
        return journeys(**rows)[:limit]

    async def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        app: str | None = None,
        event_type: str | None = None,
        correlation_id: str | None = None,
    ) -> list[Row]:
        """The events index after sequence `after`, oldest first, filtered."""
        where = ["seq > $1"]
        args: list[Any] = [after]
        for column, value in (
            ("app", app),
            ("type", event_type),
            ("correlation_id", correlation_id),
        ):
            if value:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(limit)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT seq, event_id, type, app, occurred_at, correlation_id, causation_id, "
                f"actor FROM {SCHEMA}.events WHERE {' AND '.join(where)} "
                f"ORDER BY seq LIMIT ${len(args)}",
                *args,
            )
        return [{**dict(r), "occurred_at": _time(r["occurred_at"])} for r in rows]


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value)


def _json_value(text: str) -> Any:
    import json

    return json.loads(text)
