"""What part of a service's database its events determine, and comparing two copies of it.

A consuming service declares a `Projection` next to its SQL (`store.PROJECTION`):

- `compared`: the tables its handlers derive from events, with the columns a replay of the same
  events must reproduce. Generated ids, wall-clock times and columns that background work (a
  dispatcher) changes are left out: a rebuild cannot reproduce them.
- `copied`: tables the service's API owns that its handlers read (contacts, a roster). A
  rebuild copies them from the live schema before replaying events, so handlers decide as the
  live ones did; masked columns (contact details) are replaced by a placeholder on the way.

`compare` reports, per compared table, the rows only the live schema has (missing from the
rebuild), the rows only the rebuild has (extra) and the rows whose compared columns differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from carebridge_shared.db import Connection, check_schema_name

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MASK = "masked"


@dataclass(frozen=True)
class Compared:
    """One event-derived table: rows matched on `key`, compared on `columns` and `expressions`.

    `expressions` are (name, SQL over the row) pairs, e.g. ``("ended", "ended_at IS NOT NULL")``
    where only a fact, not its wall-clock time, follows from the events. `where` limits both
    sides to the rows events create. `owned_by_api` is a condition on live rows the API wrote
    over (a psychiatrist's referral beats what visits said): their keys are left out on both
    sides, because events alone cannot reproduce them.
    """

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...] = ()
    expressions: tuple[tuple[str, str], ...] = ()
    where: str | None = None
    owned_by_api: str | None = None

    def __post_init__(self) -> None:
        for name in (self.table, *self.key, *self.columns, *(n for n, _ in self.expressions)):
            _check_identifier(name)
        if not self.key:
            raise ValueError(f"{self.table}: a compared table needs a key")

    @property
    def value_names(self) -> tuple[str, ...]:
        return (*self.columns, *(name for name, _ in self.expressions))


@dataclass(frozen=True)
class Copied:
    """A table the API owns that handlers read; copied into a rebuild before the replay."""

    table: str
    where: str | None = None
    masked: tuple[str, ...] = ()  # text columns replaced by 'masked' when not null

    def __post_init__(self) -> None:
        for name in (self.table, *self.masked):
            _check_identifier(name)


@dataclass(frozen=True)
class Projection:
    """The event-derived, comparable part of one service's schema (see the module docstring)."""

    compared: tuple[Compared, ...]
    copied: tuple[Copied, ...] = ()


@dataclass(frozen=True)
class RowDifference:
    """One sample row: its key, and the compared values on each side (None: no such row)."""

    key: dict[str, Any]
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


@dataclass(frozen=True)
class TableDifference:
    table: str
    live_rows: int
    rebuilt_rows: int
    missing: int  # in live, not rebuilt
    extra: int  # rebuilt, not in live
    differing: int  # same key, other values
    samples: tuple[RowDifference, ...] = ()

    @property
    def equal(self) -> bool:
        return self.missing == self.extra == self.differing == 0


@dataclass(frozen=True)
class ProjectionDifference:
    tables: tuple[TableDifference, ...]

    @property
    def equal(self) -> bool:
        return all(table.equal for table in self.tables)


async def copy_inputs(
    conn: Connection, projection: Projection, *, live_schema: str, scratch_schema: str
) -> dict[str, int]:
    """Copy the `copied` tables from the live schema into the scratch one; rows per table."""
    copied: dict[str, int] = {}
    for table in projection.copied:
        columns: list[str] = [
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position",
                check_schema_name(live_schema),
                table.table,
            )
        ]
        if not columns:
            raise LookupError(f"{live_schema}.{table.table} does not exist")
        unknown = set(table.masked) - set(columns)
        if unknown:
            raise LookupError(f"{live_schema}.{table.table} has no column {sorted(unknown)}")
        values = [
            f"CASE WHEN {_q(c)} IS NULL THEN NULL ELSE '{MASK}' END" if c in table.masked else _q(c)
            for c in columns
        ]
        status = await conn.execute(
            f"INSERT INTO {_q(check_schema_name(scratch_schema))}.{_q(table.table)}"
            f" ({', '.join(map(_q, columns))})"
            f" SELECT {', '.join(values)} FROM {_q(live_schema)}.{_q(table.table)}"
            f" WHERE {table.where or 'true'}"
        )
        copied[table.table] = int(status.split()[-1])
    return copied


async def compare(
    conn: Connection,
    projection: Projection,
    *,
    live_schema: str,
    rebuilt_schema: str,
    samples: int = 5,
) -> ProjectionDifference:
    """Compare every `compared` table of two schemas (live and rebuilt)."""
    check_schema_name(live_schema)
    check_schema_name(rebuilt_schema)
    return ProjectionDifference(
        tuple(
            [
                await _compare_table(conn, table, live_schema, rebuilt_schema, samples)
                for table in projection.compared
            ]
        )
    )


async def _compare_table(
    conn: Connection, table: Compared, live: str, rebuilt: str, samples: int
) -> TableDifference:
    def side(schema: str) -> str:
        selected = [
            *(f"x.{_q(c)}" for c in (*table.key, *table.columns)),
            *(f"({expr}) AS {_q(name)}" for name, expr in table.expressions),
        ]
        owned = ""
        if table.owned_by_api:
            # Unqualified names inside the subquery resolve to `o`, the live row.
            owned = (
                f" AND NOT EXISTS (SELECT 1 FROM {_q(live)}.{_q(table.table)} o"
                f" WHERE {_row('o', table.key)} = {_row('x', table.key)}"
                f" AND ({table.owned_by_api}))"
            )
        return (
            f"SELECT {', '.join(selected)} FROM {_q(schema)}.{_q(table.table)} x"
            f" WHERE ({table.where or 'true'}){owned}"
        )

    sides = f"WITH a AS ({side(live)}), b AS ({side(rebuilt)})"
    same_key = f"{_row('a', table.key)} = {_row('b', table.key)}"
    only_live = f"FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE {same_key})"
    only_rebuilt = f"FROM b WHERE NOT EXISTS (SELECT 1 FROM a WHERE {same_key})"
    values = table.value_names
    differing = (
        f"FROM a JOIN b ON {same_key}"
        f" WHERE {_row('a', values)} IS DISTINCT FROM {_row('b', values)}"
        if values
        else "FROM a JOIN b ON false"
    )
    counts = await conn.fetchrow(
        f"{sides} SELECT (SELECT count(*) FROM a) AS live_rows,"
        f" (SELECT count(*) FROM b) AS rebuilt_rows,"
        f" (SELECT count(*) {only_live}) AS missing,"
        f" (SELECT count(*) {only_rebuilt}) AS extra,"
        f" (SELECT count(*) {differing}) AS differing"
    )
    assert counts is not None  # a SELECT without FROM returns one row
    found: list[RowDifference] = []
    if samples > 0:
        keys = ", ".join(f"a.{_q(k)}" for k in table.key)
        for row in await conn.fetch(f"{sides} SELECT a.* {only_live} LIMIT {samples}"):
            found.append(_sample(table, dict(row), None))
        for row in await conn.fetch(f"{sides} SELECT b.* {only_rebuilt} LIMIT {samples}"):
            found.append(_sample(table, None, dict(row)))
        if values:
            pairs = ", ".join(
                f"a.{_q(v)} AS {_q('live__' + v)}, b.{_q(v)} AS {_q('rebuilt__' + v)}"
                for v in values
            )
            for row in await conn.fetch(
                f"{sides} SELECT {keys}, {pairs} {differing} LIMIT {samples}"
            ):
                found.append(_differing(table, dict(row)))
    return TableDifference(
        table=table.table,
        live_rows=counts["live_rows"],
        rebuilt_rows=counts["rebuilt_rows"],
        missing=counts["missing"],
        extra=counts["extra"],
        differing=counts["differing"],
        samples=tuple(found),
    )


def _sample(
    table: Compared, live: dict[str, Any] | None, rebuilt: dict[str, Any] | None
) -> RowDifference:
    row = live if live is not None else rebuilt
    assert row is not None
    key = {k: row[k] for k in table.key}

    def values(side: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if side is None else {v: side[v] for v in table.value_names}

    return RowDifference(key, values(live), values(rebuilt))


def _differing(table: Compared, row: dict[str, Any]) -> RowDifference:
    key = {k: row[k] for k in table.key}
    changed = [v for v in table.value_names if row[f"live__{v}"] != row[f"rebuilt__{v}"]]
    return RowDifference(
        key,
        {v: row[f"live__{v}"] for v in changed},
        {v: row[f"rebuilt__{v}"] for v in changed},
    )


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")


def _q(name: str) -> str:
    return f'"{name}"'


def _row(alias: str, names: tuple[str, ...]) -> str:
    return f"ROW({', '.join(f'{alias}.{_q(n)}' for n in names)})"
