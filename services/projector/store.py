"""The read models' SQL: migrations, loading the rows a fold needs, writing what it changed.

Every function works inside one PostgreSQL schema, named by the caller: the
live read models (`LIVE_SCHEMA`) or a replay's fresh one. Position and rows
are written in one transaction (STYLE 9): `write_batch` is the only writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

import asyncpg
from opentelemetry.trace import SpanKind

from services.projector.folding import KEYED_TABLES, TABLES, EventRow, ReadModels
from services.wiring import telemetry

LIVE_SCHEMA = "wake"
PROJECTION = "read_models"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "postgres"
# A replay runs the migrations that create or change tables first, loads its
# rows, and only then the ones that only create (secondary) indexes: faster
# than maintaining the indexes row by row.

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_RE = re.compile(r"^(\d+)_[a-z0-9_]+\.sql$")

SchemaName = NewType("SchemaName", str)
"""A schema name `schema_name()` checked: safe to put in SQL unquoted."""

# Tables whose digest `wake replay --verify` compares: every read model.
READ_MODELS: tuple[str, ...] = tuple(TABLES)


class InvalidSchema(ValueError):
    pass


def schema_name(value: str) -> SchemaName:
    """`value` as a schema name, or InvalidSchema saying why not."""
    if not _SCHEMA_RE.match(value):
        raise InvalidSchema(
            f"invalid schema name {value!r}: use 1 to 63 lowercase letters, digits and '_', "
            "not starting with a digit"
        )
    return SchemaName(value)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The numbered .sql files of `directory`, in order; a misnamed file is an error."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_RE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNN_what_it_does.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{directory}: two migrations share a number: {versions}")
    return sorted(found, key=lambda m: m.version)


async def migrate(
    conn: asyncpg.Connection,
    schema: SchemaName,
    *,
    up_to: int | None = None,
    tables_only: bool = False,
) -> int:
    """Create `schema` if need be and apply the migrations it lacks (up to `up_to`).

    `tables_only`: all but the migrations that only create indexes (`index_statements`).

    Idempotent, and safe when several processes start at once: an advisory
    lock on the schema serializes them. Returns how many were applied.
    """
    applied = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"wake-migrate:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]
            for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
        }
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        for migration in migrations():
            if migration.version in done or (up_to is not None and migration.version > up_to):
                continue
            if tables_only and _index_statements(migration) is not None:
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise RuntimeError(
                    f"migration {MIGRATIONS_DIR / migration.name} failed in schema {schema}: {exc}"
                ) from exc
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied += 1
        await conn.execute(
            f"INSERT INTO {schema}.projection_position (projection, last_seq) VALUES ($1, 0) "
            "ON CONFLICT (projection) DO NOTHING",
            PROJECTION,
        )
    return applied


_CREATE_INDEX_RE = re.compile(r"^CREATE (UNIQUE )?INDEX \w+ ON (\w+) ", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class IndexStatement:
    version: int
    table: str
    sql: str


def _index_statements(migration: Migration) -> list[IndexStatement] | None:
    """The statements of `migration` if each is a CREATE INDEX; None if any is not."""
    body = "\n".join(
        line for line in migration.sql.splitlines() if not line.lstrip().startswith("--")
    )
    found = []
    for statement in (s.strip() for s in body.split(";")):
        if not statement:
            continue
        match = _CREATE_INDEX_RE.match(statement)
        if match is None:
            return None
        found.append(IndexStatement(migration.version, match.group(2), statement))
    return found


def index_statements() -> list[IndexStatement]:
    """The statements of the migrations that only create indexes, each a CREATE INDEX.

    A replay builds these concurrently, once its rows are loaded (`migrate`
    with `tables_only` ran every other migration before).
    """
    return [
        statement
        for migration in migrations()
        for statement in (_index_statements(migration) or [])
    ]


async def record_migrations(conn: asyncpg.Connection, schema: SchemaName) -> None:
    """Record every migration as applied (the index-only ones were run apart)."""
    await conn.executemany(
        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2) "
        "ON CONFLICT (version) DO NOTHING",
        [(m.version, m.name) for m in migrations()],
    )


async def schema_exists(conn: asyncpg.Connection, schema: SchemaName) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema
        )
    )


async def is_read_model_schema(conn: asyncpg.Connection, schema: SchemaName) -> bool:
    """True if `schema` holds Wake's read models (it has their schema_migrations)."""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 "
            "AND table_name = 'schema_migrations'",
            schema,
        )
    )


async def position(conn: asyncpg.Connection, schema: SchemaName) -> int:
    """The stream sequence the read models in `schema` have folded up to (0: none)."""
    value = await conn.fetchval(
        f"SELECT last_seq FROM {schema}.projection_position WHERE projection = $1", PROJECTION
    )
    return int(value or 0)


async def load(
    conn: asyncpg.Connection,
    schema: SchemaName,
    models: ReadModels,
    keys: Iterable[tuple[str, str]],
) -> None:
    """Load into `models` the rows named by `keys` that it does not hold yet."""
    wanted: dict[str, set[str]] = {name: set() for name in KEYED_TABLES}
    for table, key in keys:
        if key not in models.rows[table]:
            wanted[table].add(key)
    for table, table_keys in wanted.items():
        if not table_keys:
            continue
        spec = TABLES[table]
        key_column = spec.key[0]
        records = await conn.fetch(
            f"SELECT {', '.join(spec.columns)} FROM {schema}.{table} "
            f"WHERE {key_column} = ANY($1::text[])",
            list(table_keys),
        )
        for record in records:
            models.rows[table][record[key_column]] = dict(record)


class PositionMoved(Exception):
    """Another projector wrote the read models since this one read their position."""


async def write_batch(
    conn: asyncpg.Connection, schema: SchemaName, models: ReadModels, *, expected_position: int
) -> None:
    """Write every row `models` changed and the position it reached, in one transaction.

    The caller commits nothing else: if this raises or the process dies
    inside it, neither rows nor position are written, and the events are
    folded again from the old position.

    Conditional on the stored position still being `expected_position`, else
    PositionMoved: the position's row is updated first, so a second projector
    on the same schema waits on its lock, then finds it moved and writes nothing.
    """
    with telemetry.child_span(
        "write read models",
        {
            "db.system.name": "postgresql",
            "db.operation.name": "TRANSACTION",
            "db.namespace": schema,
            "wake.projector.last_seq": models.last_seq,
        },
        kind=SpanKind.CLIENT,
    ):
        await _write(conn, schema, models, expected_position)


async def _write(
    conn: asyncpg.Connection, schema: SchemaName, models: ReadModels, expected_position: int
) -> None:
    async with conn.transaction():
        moved = await conn.execute(
            f"UPDATE {schema}.projection_position SET last_seq = $2, updated_at = now() "
            "WHERE projection = $1 AND last_seq = $3",
            PROJECTION,
            models.last_seq,
            expected_position,
        )
        if moved != "UPDATE 1":
            raise PositionMoved(
                f"the read models in schema {schema} moved past sequence {expected_position} "
                "while this projector folded a batch: another projector is writing them"
            )
        for table in KEYED_TABLES:
            rows = models.changed_rows(table)
            if rows:
                await conn.executemany(
                    _upsert_sql(schema, table), [_values(table, r) for r in rows]
                )
        changed = models.changed_resources()
        if changed:
            await conn.execute(
                f"DELETE FROM {schema}.resources WHERE app = ANY($1::text[])", list(changed)
            )
            rows = [_values("resources", r) for rs in changed.values() for r in rs]
            if rows:
                await conn.copy_records_to_table(
                    "resources",
                    schema_name=schema,
                    records=rows,
                    columns=TABLES["resources"].columns,
                )
        if models.events:
            await copy_events(conn, schema, models.events)
    models.take_changes()


async def copy_events(
    conn: asyncpg.Connection, schema: SchemaName, rows: Sequence[EventRow]
) -> None:
    await conn.copy_records_to_table(
        "events", schema_name=schema, records=rows, columns=TABLES["events"].columns
    )


async def write_all(conn: asyncpg.Connection, schema: SchemaName, models: ReadModels) -> None:
    """Write every row `models` holds into empty tables (a replay's), by COPY, with the position.

    `models.events` must have been written already (see `copy_events`).
    """
    async with conn.transaction():
        for table in KEYED_TABLES:
            rows = [_values(table, r) for r in models.rows[table].values()]
            if rows:
                await conn.copy_records_to_table(
                    table, schema_name=schema, records=rows, columns=TABLES[table].columns
                )
        rows = [_values("resources", r) for rs in models.resources.values() for r in rs]
        if rows:
            await conn.copy_records_to_table(
                "resources", schema_name=schema, records=rows, columns=TABLES["resources"].columns
            )
        await conn.execute(
            f"UPDATE {schema}.projection_position SET last_seq = $2, updated_at = now() "
            "WHERE projection = $1",
            PROJECTION,
            models.last_seq,
        )


@dataclass(frozen=True, slots=True)
class Digest:
    """A read model's digest: its row count and a hash of its rows in key order."""

    table: str
    rows: int
    sha: str


async def digests(conn: asyncpg.Connection, schema: SchemaName) -> dict[str, Digest]:
    """The digest of every read model in `schema`.

    Each row is encoded as PostgreSQL's text form of the record (every column,
    in table order; jsonb in its normalized form) and hashed; the hashes are
    concatenated in primary-key order and hashed again. Equal rows, equal
    digests, whatever order they were written in.
    """
    result = {}
    for table in READ_MODELS:
        spec = TABLES[table]
        record = await conn.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(md5(t::text), '' "
            f"ORDER BY {', '.join(spec.key)}), '')) AS sha FROM {schema}.{table} t"
        )
        result[table] = Digest(table, record["n"], record["sha"])
    return result


async def drop_schema(conn: asyncpg.Connection, schema: SchemaName) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _values(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[column] for column in TABLES[table].columns)


_upserts: dict[tuple[str, str], str] = {}


def _upsert_sql(schema: SchemaName, table: str) -> str:
    sql = _upserts.get((schema, table))
    if sql is None:
        spec = TABLES[table]
        placeholders = ", ".join(f"${i}" for i in range(1, len(spec.columns) + 1))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in spec.columns if c not in spec.key)
        sql = (
            f"INSERT INTO {schema}.{table} ({', '.join(spec.columns)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates}"
        )
        _upserts[(schema, table)] = sql
    return sql
