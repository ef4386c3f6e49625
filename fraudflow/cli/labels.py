"""`fraudflow labels import`: chargebacks and other labels from a CSV file."""

from __future__ import annotations

import csv
import getpass
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from fraudflow.cli.runner import fail, with_database
from fraudflow.labels import Label, LabelSource, NewLabel, Recorded, record

app = typer.Typer(help="Labels: what turned out to be true of transactions (docs/decisions.md).", no_args_is_help=True)


def _read(path: Path) -> list[NewLabel]:
    """Every row of the file, or a one-line error naming the first bad line."""
    now = datetime.now(UTC)
    labels = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        names = [f.strip().lower() for f in reader.fieldnames or []]
        if "event_id" not in names or "label" not in names:
            fail(f"{path}: a CSV with a header naming event_id and label (and optionally known_at, note)")
        for row in reader:
            fields = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not any(fields.values()):
                continue
            where = f"{path}:{reader.line_num}"
            try:
                event_id = uuid.UUID(fields["event_id"])
            except ValueError:
                fail(f"{where}: event_id {fields['event_id']!r} is not an event id")
            if fields["label"].lower() not in Label.__members__.values():
                fail(f"{where}: label {fields['label']!r} is not fraud or legitimate")
            known = now
            if fields.get("known_at"):
                try:
                    known = datetime.fromisoformat(fields["known_at"])
                except ValueError:
                    fail(f"{where}: known_at {fields['known_at']!r} is not an ISO time")
                known = known if known.tzinfo else known.replace(tzinfo=UTC)
            labels.append(NewLabel(event_id, Label(fields["label"].lower()), known, fields.get("note") or None))
    return labels


@app.command("import")
def import_labels(
    path: Annotated[Path, typer.Argument(help="CSV with columns event_id,label[,known_at][,note]")],
    source: Annotated[LabelSource, typer.Option(help="Where they come from")] = LabelSource.CHARGEBACK,
    author: Annotated[str | None, typer.Option(help="Who records them; default: login name")] = None,
) -> None:
    """Record labels for stored transactions, all in one transaction; ids of no stored transaction are
    listed, not stored."""
    if not path.is_file():
        fail(f"{path}: no such file", code=2)
    try:
        labels = _read(path)
    except (UnicodeDecodeError, csv.Error) as error:
        fail(f"{path}: not a UTF-8 CSV file ({error})")

    async def work(conn: asyncpg.Connection) -> Recorded:
        async with conn.transaction():
            return await record(conn, labels, source, author or getpass.getuser())

    recorded = with_database(work)
    typer.echo(f"{recorded.stored:,} labels recorded")
    if recorded.unknown:
        shown = ", ".join(recorded.unknown[:10]) + (" ..." if len(recorded.unknown) > 10 else "")
        typer.secho(f"{len(recorded.unknown):,} event ids match no stored transaction: {shown}", fg="yellow", err=True)
