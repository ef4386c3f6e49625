"""API keys: compared in constant time; without keys the API serves loopback clients only."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from fraudflow.config import Settings
from fraudflow.net import is_loopback


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(candidate: str, keys: list[str]) -> bool:
    # Compare against every key, always, so timing reveals neither a key nor which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate.encode(), key.encode())
    return matched


def authorize(request: Request, settings: Settings) -> None:
    keys = settings.api_key_list
    if not keys:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(403, "no API keys are configured: this API serves loopback clients only")
        return
    candidate = presented_key(request)
    if candidate is None or not key_matches(candidate, keys):
        raise HTTPException(
            401,
            "missing or invalid API key (X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
