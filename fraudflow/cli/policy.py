"""`fraudflow rules` and `fraudflow lists`: the decisions a fraud team runs, changed in PostgreSQL (every API
process applies a change when it commits) and audited under the author's name."""

from __future__ import annotations

import csv
import getpass
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
import typer

from fraudflow.cli.runner import CommandError, fail, with_database
from fraudflow.decisions import store
from fraudflow.decisions.backtest import backtest as run_backtest
from fraudflow.decisions.backtest import stored_facts
from fraudflow.decisions.conditions import ConditionError, compile_condition
from fraudflow.decisions.fields import FIELDS, Kind

T = TypeVar("T")

rules_app = typer.Typer(
    help="Rules: CEL conditions that decline, review or allow (docs/decisions.md).", no_args_is_help=True
)
lists_app = typer.Typer(help="Allow, deny and named lists of users, devices, IPs and countries.", no_args_is_help=True)

Author = Annotated[str, typer.Option("--author", help="Who makes the change (the audit trail); default: login name")]


def _who(author: str | None) -> str:
    return author or getpass.getuser()


def _with_db(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work(conn)`; a refused change is a one-line message."""

    async def refused_in_words(conn: asyncpg.Connection) -> T:
        try:
            return await work(conn)
        except (store.PolicyError, ConditionError) as error:
            raise CommandError(str(error)) from None

    return with_database(refused_in_words)


def _echo_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


def _show(rule: store.StoredRule) -> None:
    state = "enabled" if rule.enabled else "disabled"
    typer.echo(f"{rule.name} v{rule.version} {rule.action.value} ({state}, by {rule.author}): {rule.expression}")


# Rules -------------------------------------------------------------------------------------------------------


@rules_app.command("add")
def rules_add(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits and _")],
    when: Annotated[str, typer.Option("--when", help='the CEL condition, e.g. "user_count_1h >= 10 && amount < 2.0"')],
    action: Annotated[str, typer.Option("--action", help="decline, review or allow")],
    description: Annotated[str, typer.Option("--description", help="why the rule exists, in words")] = "",
    author: Author = "",
) -> None:
    """Add a rule, enabled. Its condition is checked first: a bad one is refused with its problem."""
    _show(_with_db(lambda conn: store.add_rule(conn, name, when, action, description, _who(author))))


@rules_app.command("update")
def rules_update(
    name: str,
    when: Annotated[str | None, typer.Option("--when", help="a new condition")] = None,
    action: Annotated[str | None, typer.Option("--action", help="decline, review or allow")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    author: Author = "",
) -> None:
    """Change a rule: a new version, audited."""
    _show(
        _with_db(
            lambda conn: store.update_rule(
                conn, name, _who(author), expression=when, action=action, description=description
            )
        )
    )


@rules_app.command("enable")
def rules_enable(name: str, author: Author = "") -> None:
    """Enable a rule."""
    _show(_with_db(lambda conn: store.update_rule(conn, name, _who(author), enabled=True)))


@rules_app.command("disable")
def rules_disable(name: str, author: Author = "") -> None:
    """Disable a rule (kept, with its history)."""
    _show(_with_db(lambda conn: store.update_rule(conn, name, _who(author), enabled=False)))


@rules_app.command("list")
def rules_list() -> None:
    """Every rule, enabled or not, in the order they apply within an action."""
    for rule in _with_db(store.get_rules):
        _show(rule)


@rules_app.command("show")
def rules_show(name: str) -> None:
    """A rule and its audit trail (newest first)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        rule = await store.get_rule(conn, name)
        return {**rule.as_dict(), "history": await store.history(conn, "rule", name)}

    _echo_json(_with_db(work))


@rules_app.command("fields")
def rules_fields() -> None:
    """What a condition can read."""
    for field in FIELDS.values():
        typer.echo(f"{field.name:<28} {field.kind.value:<14} {field.description}")


def _assignment(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or name not in FIELDS:
        raise CommandError(f"--set {text!r}: expected FIELD=VALUE with a field of `fraudflow rules fields`")
    kind = FIELDS[name].kind
    if raw == "null":
        return name, None
    if kind is Kind.NUMBER:
        try:
            return name, float(raw)
        except ValueError:
            raise CommandError(f"--set {name}: {raw!r} is not a number") from None
    return name, raw.split(",") if kind is Kind.NAMES else raw


@rules_app.command("test")
def rules_test(
    when: Annotated[str, typer.Argument(help="a CEL condition")],
    event: Annotated[str | None, typer.Option("--event", help="a stored transaction's event id")] = None,
    assign: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE (repeatable); over --event")] = None,
) -> None:
    """Check a condition and evaluate it on a stored transaction and/or given values: prints true or false."""

    async def work(conn: asyncpg.Connection) -> tuple[bool | None, dict[str, Any]]:
        condition = compile_condition(when, await store.known_lists(conn))
        values: dict[str, Any] = {name: None for name in FIELDS}
        values["lists"] = []
        if event is not None:
            values |= await stored_facts(conn, event)
        for text in assign or []:
            name, value = _assignment(text)
            values[name] = value
        return condition.matches(values), {f: values[f] for f in condition.fields}

    matched, used = _with_db(work)
    typer.echo(f"{'unknown (a field it reads is null)' if matched is None else str(matched).lower()}  {used}")


@rules_app.command("backtest")
def rules_backtest(
    when: Annotated[str, typer.Option("--when", help="the candidate CEL condition")],
    since: Annotated[datetime, typer.Option("--since", help="from this time (UTC unless an offset is given)")],
    until: Annotated[datetime | None, typer.Option("--until", help="to this time; default: now")] = None,
    action: Annotated[
        str, typer.Option("--action", help="what the rule would do: decline, review or allow")
    ] = "review",
) -> None:
    """Run a candidate rule over stored transactions with the features they were scored with: matches by day
    and the decisions it would have changed."""
    start = since if since.tzinfo else since.replace(tzinfo=UTC)
    end = until or datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    _echo_json(_with_db(lambda conn: run_backtest(conn, when, action, start, end)))


# Lists -------------------------------------------------------------------------------------------------------


@lists_app.command("create")
def lists_create(
    name: str,
    kind: Annotated[str, typer.Option("--kind", help="user, device, ip or country")],
    action: Annotated[str, typer.Option("--action", help='allow, deny, or none (for rules: "NAME" in lists)')],
    description: Annotated[str, typer.Option("--description")] = "",
    author: Author = "",
) -> None:
    """Create a list."""
    info = _with_db(lambda conn: store.create_list(conn, name, kind, action, description, _who(author)))
    typer.echo(f"list {info.name}: {info.kind.value}s, {info.action.value}")


def _expiry(expires: datetime | None) -> datetime | None:
    return None if expires is None else expires if expires.tzinfo else expires.replace(tzinfo=UTC)


@lists_app.command("add")
def lists_add(
    name: str,
    value: Annotated[str, typer.Argument(help="a user id, device id, IP address or CIDR range, or country code")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    expires: Annotated[datetime | None, typer.Option("--expires", help="when the entry stops applying (UTC)")] = None,
    author: Author = "",
) -> None:
    """Add (or replace) an entry."""
    _with_db(lambda conn: store.add_entries(conn, name, [(value, reason, _expiry(expires))], _who(author)))
    typer.echo(f"{value} added to {name}")


@lists_app.command("remove")
def lists_remove(name: str, value: str, author: Author = "") -> None:
    """Remove an entry."""
    _with_db(lambda conn: store.remove_entry(conn, name, value, _who(author)))
    typer.echo(f"{value} removed from {name}")


@lists_app.command("show")
def lists_show(
    name: Annotated[str | None, typer.Argument(help="a list; none: every list")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
) -> None:
    """Every list with its size, or one list's newest entries and its audit trail."""

    async def work(conn: asyncpg.Connection) -> Any:
        if name is None:
            return await store.get_lists(conn)
        return {
            "entries": await store.get_entries(conn, name, limit),
            "history": await store.history(conn, "list", name),
        }

    _echo_json(_with_db(work))


def _rows(path: Path) -> Iterator[tuple[int, tuple[str, str | None, datetime | None]]]:
    """(line, entry) for each row with a value; a blank line or one without a value is skipped."""
    with sys.stdin if str(path) == "-" else path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "value" not in [f.strip().lower() for f in reader.fieldnames]:
            raise CommandError(f"{path}: a CSV with a header naming `value` (and optionally `reason`, `expires_at`)")
        for row in reader:
            line = reader.line_num
            fields = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            expires = None
            if fields.get("expires_at"):
                try:
                    expires = _expiry(datetime.fromisoformat(fields["expires_at"]))
                except ValueError:
                    raise CommandError(
                        f"{path}:{line}: expires_at {fields['expires_at']!r} is not an ISO time"
                    ) from None
            if fields.get("value"):
                yield line, (fields["value"], fields.get("reason") or None, expires)


@lists_app.command("import")
def lists_import(
    name: str,
    path: Annotated[Path, typer.Argument(help="CSV with columns value[,reason][,expires_at]; - for stdin")],
    author: Author = "",
) -> None:
    """Add every entry of a CSV file, all or none (a bad value names its line)."""
    if str(path) != "-" and not path.is_file():
        fail(f"{path}: no such file", code=2)
    try:
        rows = list(_rows(path))
    except (CommandError, UnicodeDecodeError, csv.Error) as error:
        fail(str(error) if isinstance(error, CommandError) else f"{path}: not a UTF-8 CSV file ({error})")
    lines = [line for line, _ in rows]

    async def work(conn: asyncpg.Connection) -> int:
        try:
            return await store.add_entries(conn, name, [entry for _, entry in rows], _who(author))
        except store.BadEntry as error:
            raise store.PolicyError(f"{path}:{lines[error.number - 1]}: {error}") from None

    count = _with_db(work)
    typer.echo(f"{count:,} entries imported into {name}")
