"""POST /labels: what turned out to be true of transactions (chargebacks, most often), in batches, with an
admin key. Labels of event ids no stored transaction has are reported back, not stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import Services, admin_authorized, answer, services
from api.routes.predict import SECURED
from fraudflow.events import UtcTime
from fraudflow.labels import Label, LabelSource, NewLabel, record

router = APIRouter(dependencies=[Depends(admin_authorized)], tags=["labels"])


class LabelItem(BaseModel):
    event_id: uuid.UUID
    label: Literal["fraud", "legitimate"]
    known_at: UtcTime | None = Field(None, description="when it became known (default: now)")
    note: str | None = Field(None, max_length=1000)


class LabelBatch(BaseModel):
    labels: list[LabelItem] = Field(min_length=1, max_length=10_000)
    source: Literal["chargeback", "analyst", "import"] = "chargeback"
    author: str = Field(min_length=1, max_length=128, description="who sends them (a system or a person)")


@router.post(
    "/labels",
    openapi_extra=SECURED,
    summary="Record labels (chargebacks) for stored transactions; unknown event ids are reported",
)
async def post_labels(body: LabelBatch, services: Annotated[Services, Depends(services)]) -> Any:
    now = datetime.now(UTC)
    labels = [NewLabel(i.event_id, Label(i.label), i.known_at or now, i.note) for i in body.labels]

    async def work(conn: asyncpg.Connection) -> Any:
        recorded = await record(conn, labels, LabelSource(body.source), body.author)
        return {"stored": recorded.stored, "unknown_event_ids": recorded.unknown}

    return await answer(services, work)
