"""/admin/rules and /admin/lists: the decisions a fraud team runs, changed over HTTP with an admin key.

Every change is written to PostgreSQL with its author and audited; every API process (this one included)
applies it on the NOTIFY that its commit sends (api/policy.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import Services, admin_authorized, answer, services
from api.routes.predict import SECURED
from fraudflow.decisions import store
from fraudflow.decisions.backtest import backtest
from fraudflow.events import UtcTime

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_authorized)], tags=["decisions"])
Author = Annotated[str, Field(min_length=1, max_length=128, description="who makes the change (audit trail)")]
Action = Literal["decline", "review", "allow"]


class NewRule(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    when: str = Field(min_length=1, max_length=2000, description="a CEL condition (docs/decisions.md)")
    action: Action
    description: str = Field("", max_length=1000)
    author: Author


class RuleChange(BaseModel):
    when: str | None = Field(None, min_length=1, max_length=2000)
    action: Action | None = None
    description: str | None = Field(None, max_length=1000)
    enabled: bool | None = None
    author: Author


class NewList(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    kind: Literal["user", "device", "ip", "country"]
    action: Literal["allow", "deny", "none"]
    description: str = Field("", max_length=1000)
    author: Author


class NewEntry(BaseModel):
    value: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(None, max_length=1000)
    expires_at: UtcTime | None = None


class NewEntries(BaseModel):
    entries: list[NewEntry] = Field(min_length=1, max_length=100_000)
    author: Author


class Backtest(BaseModel):
    when: str = Field(min_length=1, max_length=2000)
    action: Action = "review"
    since: UtcTime
    until: UtcTime


Svc = Annotated[Services, Depends(services)]


@router.get("/rules", openapi_extra=SECURED, summary="Every rule")
async def list_rules(services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        return [rule.as_dict() for rule in await store.get_rules(conn)]

    return await answer(services, work)


@router.post("/rules", openapi_extra=SECURED, status_code=201, summary="Add a rule (checked first), enabled")
async def add_rule(body: NewRule, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        rule = await store.add_rule(conn, body.name, body.when, body.action, body.description, body.author)
        return rule.as_dict()

    return await answer(services, work, status=201)


@router.get("/rules/{name}", openapi_extra=SECURED, summary="A rule and its audit trail")
async def show_rule(name: str, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        return {**(await store.get_rule(conn, name)).as_dict(), "history": await store.history(conn, "rule", name)}

    return await answer(services, work)


@router.patch("/rules/{name}", openapi_extra=SECURED, summary="Change, enable or disable a rule")
async def change_rule(name: str, body: RuleChange, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        rule = await store.update_rule(
            conn,
            name,
            body.author,
            expression=body.when,
            action=body.action,
            description=body.description,
            enabled=body.enabled,
        )
        return rule.as_dict()

    return await answer(services, work)


@router.post("/rules/backtest", openapi_extra=SECURED, summary="Run a candidate rule over stored transactions")
async def backtest_rule(body: Backtest, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        return await backtest(conn, body.when, body.action, body.since, body.until)

    return await answer(services, work)


@router.get("/lists", openapi_extra=SECURED, summary="Every list with its size")
async def list_lists(services: Svc) -> Any:
    return await answer(services, store.get_lists)


@router.post("/lists", openapi_extra=SECURED, status_code=201, summary="Create a list")
async def create_list(body: NewList, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        info = await store.create_list(conn, body.name, body.kind, body.action, body.description, body.author)
        return {"name": info.name, "kind": info.kind.value, "action": info.action.value}

    return await answer(services, work, status=201)


@router.get("/lists/{name}", openapi_extra=SECURED, summary="A list's newest entries and its audit trail")
async def show_list(name: str, services: Svc, limit: int = 100) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        entries = await store.get_entries(conn, name, min(max(limit, 1), 10_000))
        return {"entries": entries, "history": await store.history(conn, "list", name)}

    return await answer(services, work)


@router.post("/lists/{name}/entries", openapi_extra=SECURED, summary="Add or replace entries, all or none")
async def add_entries(name: str, body: NewEntries, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        rows = [(e.value, e.reason, e.expires_at) for e in body.entries]
        return {"added": await store.add_entries(conn, name, rows, body.author)}

    return await answer(services, work)


@router.delete("/lists/{name}/entries/{value:path}", openapi_extra=SECURED, summary="Remove an entry")
async def remove_entry(name: str, value: str, author: str, services: Svc) -> Any:
    async def work(conn: asyncpg.Connection) -> Any:
        await store.remove_entry(conn, name, value, author)
        return {"removed": value}

    return await answer(services, work)
