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


def _check(request: Request, keys: list[str], nobody: str, invalid: str) -> str | None:
    """The key presented when it is one of `keys`; None for a loopback client when no keys are configured."""
    if not keys:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(403, nobody)
        return None
    candidate = presented_key(request)
    if candidate is None or not key_matches(candidate, keys):
        raise HTTPException(401, invalid, headers={"WWW-Authenticate": "Bearer"})
    return candidate


def authorize(request: Request, settings: Settings) -> str:
    """Check the request's key; returns the API client it names (idempotency keys are scoped to it): a digest
    of the key, never the key, or `loopback` where no keys are configured."""
    key = _check(
        request,
        settings.api_key_list,
        "no API keys are configured: this API serves loopback clients only",
        "missing or invalid API key (X-API-Key or Authorization: Bearer)",
    )
    return LOOPBACK_CLIENT if key is None else client_of(key)


def authorize_admin(request: Request, settings: Settings) -> None:
    """Admin routes take admin keys only (FRAUDFLOW_ADMIN_KEYS), never a scoring client's; none configured:
    loopback clients only."""
    _check(
        request,
        settings.admin_key_list,
        "no admin keys are configured (FRAUDFLOW_ADMIN_KEYS): loopback clients only",
        "missing or invalid admin key",
    )


def authorize_operator(request: Request, settings: Settings) -> None:
    """Operator paths not listed in FRAUDFLOW_API_OPEN_PATHS take a client or an admin key."""
    _check(
        request,
        settings.api_key_list + settings.admin_key_list,
        "no API keys are configured: this path serves loopback clients only",
        "missing or invalid API key: this path is not open (FRAUDFLOW_API_OPEN_PATHS)",
    )


@functools.lru_cache(maxsize=64)
def client_of(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
