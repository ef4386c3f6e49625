"""Rules and lists in PostgreSQL: every change versioned, audited and announced on NOTIFY channel
`fraudflow_policy` in the same transaction, so API processes apply it when (and only when) it commits.

Notification payloads: `rules` (reload the rules), `list:NAME` (reload one list), `entry:NAME:VALUE` (one
entry of a list changed: an API process updates its index in place instead of reloading a large list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from fraudflow.decisions.conditions import compile_condition
from fraudflow.decisions.lists import (
    EntityKind,
    Entry,
    ListAction,
    ListError,
    ListIndex,
    ListInfo,
    check_name,
    normalise,
)
from fraudflow.decisions.policy import Rule, RuleAction

CHANNEL = "fraudflow_policy"
MAX_NOTIFY_VALUE = 7000  # PostgreSQL's payload limit is 8000 bytes; a longer value reloads its whole list


class PolicyError(ValueError):
    """A change that cannot be made (unknown rule or list, bad value); the message says why."""


class UnknownName(PolicyError):
    """No rule, list or entry of that name."""


class NameTaken(PolicyError):
    """A rule or list of that name exists."""


class BadEntry(PolicyError):
    """An entry that cannot be listed; `number` is its position (from 1) among those given."""

    def __init__(self, message: str, number: int) -> None:
        super().__init__(message)
        self.number = number


@dataclass(frozen=True)
class StoredRule:
    name: str
    expression: str
    action: RuleAction
    description: str
    enabled: bool
    version: int
    author: str
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "action": self.action.value,
            "description": self.description,
            "enabled": self.enabled,
            "version": self.version,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _stored(row: asyncpg.Record | None) -> StoredRule:
    assert row is not None  # INSERT and UPDATE ... RETURNING of a row known to exist
    return StoredRule(**{**dict(row), "action": RuleAction(row["action"])})


async def _audit(conn: asyncpg.Connection, author: str, obj: str, name: str, change: str, detail: Any) -> None:
    await conn.execute(
        "INSERT INTO policy_audit (author, object, name, change, detail) VALUES ($1, $2, $3, $4, $5::jsonb)",
        author,
        obj,
        name,
        change,
        orjson.dumps(detail).decode(),
    )


async def _notify(conn: asyncpg.Connection, payload: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ListError as error:
        raise PolicyError(str(error)) from None


def _author(author: str) -> str:
    author = author.strip()
    if not author:
        raise PolicyError("every change needs an author")
    return author[:128]


async def known_lists(conn: asyncpg.Connection) -> frozenset[str]:
    return frozenset(r["name"] for r in await conn.fetch("SELECT name FROM lists"))


# Rules -------------------------------------------------------------------------------------------------------


async def add_rule(
    conn: asyncpg.Connection, name: str, expression: str, action: str, description: str, author: str
) -> StoredRule:
    """A new rule, enabled; its condition is checked first (ConditionError names the problem)."""
    check = _name(name)
    try:
        verb = RuleAction(action)
    except ValueError:
        raise PolicyError(f"action {action!r}: one of decline, review, allow") from None
    async with conn.transaction():
        condition = compile_condition(expression, await known_lists(conn))
        try:
            row = await conn.fetchrow(
                "INSERT INTO rules (name, expression, action, description, author) VALUES ($1, $2, $3, $4, $5) "
                "RETURNING *",
                check,
                condition.text,
                verb.value,
                description.strip(),
                _author(author),
            )
        except asyncpg.UniqueViolationError:
            raise NameTaken(f"rule {name} exists; change it with `fraudflow rules update`") from None
        rule = _stored(row)
        await _audit(conn, rule.author, "rule", name, "created", rule.as_dict())
        await _notify(conn, "rules")
    return rule


async def update_rule(
    conn: asyncpg.Connection,
    name: str,
    author: str,
    *,
    expression: str | None = None,
    action: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> StoredRule:
    """A new version of a rule (its condition checked again); enabling or disabling keeps the version."""
    async with conn.transaction():
        current = await conn.fetchrow("SELECT * FROM rules WHERE name = $1 FOR UPDATE", name)
        if current is None:
            raise UnknownName(f"no rule named {name}")
        if action is not None and action not in RuleAction.__members__.values():
            raise PolicyError(f"action {action!r}: one of decline, review, allow")
        text = current["expression"]
        if expression is not None:
            text = compile_condition(expression, await known_lists(conn)).text
        content = (text, action or current["action"], current["description"] if description is None else description)
        changed = content != (current["expression"], current["action"], current["description"])
        row = await conn.fetchrow(
            "UPDATE rules SET expression = $2, action = $3, description = $4, enabled = $5, version = $6, "
            "author = $7, updated_at = now() WHERE name = $1 RETURNING *",
            name,
            *content,
            current["enabled"] if enabled is None else enabled,
            current["version"] + int(changed),
            _author(author),
        )
        rule = _stored(row)
        change = "updated" if changed else ("enabled" if rule.enabled else "disabled")
        await _audit(conn, rule.author, "rule", name, change, rule.as_dict())
        await _notify(conn, "rules")
    return rule


async def get_rules(conn: asyncpg.Connection, enabled_only: bool = False) -> list[StoredRule]:
    where = "WHERE enabled" if enabled_only else ""
    return [_stored(r) for r in await conn.fetch(f"SELECT * FROM rules {where} ORDER BY created_at, name")]


async def get_rule(conn: asyncpg.Connection, name: str) -> StoredRule:
    row = await conn.fetchrow("SELECT * FROM rules WHERE name = $1", name)
    if row is None:
        raise UnknownName(f"no rule named {name}")
    return _stored(row)


async def history(conn: asyncpg.Connection, obj: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT at, author, change, detail FROM policy_audit WHERE object = $1 AND name = $2 ORDER BY id DESC LIMIT $3",
        obj,
        name,
        limit,
    )
    return [
        {"at": r["at"].isoformat(), "author": r["author"], "change": r["change"], "detail": orjson.loads(r["detail"])}
        for r in rows
    ]


async def load_rules(conn: asyncpg.Connection) -> tuple[list[Rule], list[str]]:
    """The enabled rules, compiled, and what is wrong with any that no longer compile (left out: one broken
    rule must not keep the others from applying)."""
    lists = await known_lists(conn)
    rules, broken = [], []
    for stored in await get_rules(conn, enabled_only=True):
        try:
            condition = compile_condition(stored.expression, lists)
        except ValueError as error:
            broken.append(f"rule {stored.name}: {error}")
            continue
        rules.append(Rule(stored.name, stored.version, stored.action, condition, stored.description))
    return rules, broken


# Lists -------------------------------------------------------------------------------------------------------


def _info(row: asyncpg.Record) -> ListInfo:
    return ListInfo(row["name"], EntityKind(row["kind"]), ListAction(row["action"]), row["description"])


def _entry(row: asyncpg.Record) -> Entry:
    expires = row["expires_at"]
    return Entry(row["value"], row["reason"], row["author"], None if expires is None else expires.timestamp())


async def create_list(
    conn: asyncpg.Connection, name: str, kind: str, action: str, description: str, author: str
) -> ListInfo:
    _name(name)
    try:
        info = ListInfo(name, EntityKind(kind), ListAction(action), description.strip())
    except ValueError:
        raise PolicyError(
            f"a list holds one of {', '.join(k.value for k in EntityKind)} and acts as one of "
            f"{', '.join(a.value for a in ListAction)} (got {kind!r}, {action!r})"
        ) from None
    async with conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO lists (name, kind, action, description, author) VALUES ($1, $2, $3, $4, $5)",
                name,
                info.kind.value,
                info.action.value,
                info.description,
                _author(author),
            )
        except asyncpg.UniqueViolationError:
            raise NameTaken(f"list {name} exists") from None
        detail = {"kind": kind, "action": action, "description": description}
        await _audit(conn, author, "list", name, "created", detail)
        await _notify(conn, f"list:{name}")
    return info


async def list_info(conn: asyncpg.Connection, name: str) -> ListInfo:
    row = await conn.fetchrow("SELECT * FROM lists WHERE name = $1", name)
    if row is None:
        raise UnknownName(f"no list named {name}; create it with `fraudflow lists create`")
    return _info(row)


async def add_entries(
    conn: asyncpg.Connection,
    name: str,
    entries: Iterable[tuple[str, str | None, datetime | None]],
    author: str,
) -> int:
    """Add or replace entries (value, reason, expiry); all or none. Returns how many were written."""
    async with conn.transaction():
        info = await list_info(conn, name)
        who = _author(author)
        rows = []
        for number, (value, reason, expires) in enumerate(entries, start=1):
            try:
                rows.append((name, normalise(info.kind, value), reason, who, expires))
            except ListError as error:
                raise BadEntry(f"list {name}, entry {number}: {error}; nothing was added", number) from None
        if not rows:
            return 0
        # COPY into a temporary table, then one upsert: a million entries in seconds, not minutes.
        await conn.execute("CREATE TEMPORARY TABLE incoming (LIKE list_entries INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "incoming", records=rows, columns=["list_name", "value", "reason", "author", "expires_at"]
        )
        await conn.execute(
            "INSERT INTO list_entries (list_name, value, reason, author, expires_at) "
            "SELECT DISTINCT ON (value) list_name, value, reason, author, expires_at FROM incoming "
            "ON CONFLICT (list_name, value) DO UPDATE SET reason = excluded.reason, author = excluded.author, "
            "expires_at = excluded.expires_at, added_at = now()"
        )
        single = rows[0][1] if len(rows) == 1 and len(rows[0][1]) <= MAX_NOTIFY_VALUE else None
        detail: dict[str, Any] = {"added": len(rows)}
        if single is not None:
            detail |= {"value": single, "reason": rows[0][2], "expires_at": rows[0][4]}
        await _audit(conn, who, "list", name, "entries added", detail)
        await _notify(conn, f"entry:{name}:{single}" if single is not None else f"list:{name}")
    return len(rows)


async def remove_entry(conn: asyncpg.Connection, name: str, value: str, author: str) -> None:
    async with conn.transaction():
        info = await list_info(conn, name)
        try:
            value = normalise(info.kind, value)
        except ListError as error:
            raise PolicyError(str(error)) from None
        removed = await conn.fetchrow(
            "DELETE FROM list_entries WHERE list_name = $1 AND value = $2 RETURNING reason, author", name, value
        )
        if removed is None:
            raise UnknownName(f"{value} is not on list {name}")
        await _audit(conn, _author(author), "list", name, "entry removed", {"value": value, **dict(removed)})
        await _notify(conn, f"entry:{name}:{value}" if len(value) <= MAX_NOTIFY_VALUE else f"list:{name}")


async def get_lists(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT l.*, (SELECT count(*) FROM list_entries e WHERE e.list_name = l.name) AS entries "
        "FROM lists l ORDER BY l.name"
    )
    return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]


async def get_entries(conn: asyncpg.Connection, name: str, limit: int = 100) -> list[dict[str, Any]]:
    await list_info(conn, name)
    rows = await conn.fetch(
        "SELECT value, reason, author, added_at, expires_at FROM list_entries WHERE list_name = $1 "
        "ORDER BY added_at DESC, value LIMIT $2",
        name,
        limit,
    )
    return [{**dict(r), "added_at": r["added_at"], "expires_at": r["expires_at"]} for r in rows]


async def load_list(conn: asyncpg.Connection, name: str) -> ListIndex | None:
    """A list's live entries, indexed; None when the list no longer exists."""
    row = await conn.fetchrow("SELECT * FROM lists WHERE name = $1", name)
    if row is None:
        return None
    rows = await conn.fetch(
        "SELECT value, reason, author, expires_at FROM list_entries WHERE list_name = $1 "
        "AND (expires_at IS NULL OR expires_at > now())",
        name,
    )
    return ListIndex(_info(row), (_entry(r) for r in rows))


async def load_entry(conn: asyncpg.Connection, name: str, value: str) -> Entry | None:
    row = await conn.fetchrow(
        "SELECT value, reason, author, expires_at FROM list_entries WHERE list_name = $1 AND value = $2", name, value
    )
    return None if row is None else _entry(row)


async def load_lists(conn: asyncpg.Connection) -> list[ListIndex]:
    names: Sequence[asyncpg.Record] = await conn.fetch("SELECT name FROM lists ORDER BY name")
    loaded = [await load_list(conn, r["name"]) for r in names]
    return [index for index in loaded if index is not None]
