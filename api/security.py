"""API keys: compared in constant time; without keys the API serves loopback clients only."""

from __future__ import annotations

import functools
import hashlib
import hmac

from fastapi import HTTPException, Request

from fraudflow.config import Settings
from fraudflow.net import is_loopback

LOOPBACK_CLIENT = "loopback"


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


def authorize(request: Request, settings: Settings) -> str:
    """Check the request's key; returns the API client it names (idempotency keys are scoped to it): a digest
    of the key, never the key, or `loopback` where no keys are configured."""
    keys = settings.api_key_list
    if not keys:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(403, "no API keys are configured: this API serves loopback clients only")
        return LOOPBACK_CLIENT
    candidate = presented_key(request)
    if candidate is None or not key_matches(candidate, keys):
        raise HTTPException(
            401,
            "missing or invalid API key (X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return client_of(candidate)


def authorize_admin(request: Request, settings: Settings) -> None:
    """Admin routes take admin keys only (FRAUDFLOW_ADMIN_KEYS), never a scoring client's; none configured:
    loopback clients only."""
    keys = settings.admin_key_list
    if not keys:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(403, "no admin keys are configured (FRAUDFLOW_ADMIN_KEYS): loopback clients only")
        return
    candidate = presented_key(request)
    if candidate is None or not key_matches(candidate, keys):
        raise HTTPException(401, "missing or invalid admin key", headers={"WWW-Authenticate": "Bearer"})


@functools.lru_cache(maxsize=64)
def client_of(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
