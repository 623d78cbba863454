"""Who may call what: the API key for the model routes, the admin key for the model swap."""

from __future__ import annotations

import hashlib
import secrets

from pydantic import SecretStr
from starlette.datastructures import Headers

from service.config import Settings
from service.errors import ApiError


def _bearer(headers: Headers, key: SecretStr | None, refusal: str) -> None:
    """401 with ``refusal`` unless the request carries ``Authorization: Bearer <key>`` (constant-time compare;
    no key matches nothing)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if (
        key is None
        or scheme.lower() != "bearer"
        or not secrets.compare_digest(token.strip().encode(), key.get_secret_value().encode())
    ):
        raise ApiError(401, "unauthorized", refusal, headers={"WWW-Authenticate": "Bearer"})


def check_api_key(headers: Headers, settings: Settings) -> str:
    """The caller, as its jobs' owner: a digest of the API key it sent ("" when the service has no keys);
    401 unless the request carries ``Authorization: Bearer <key>`` with one of SENTIMENT_API_KEY and
    SENTIMENT_API_KEYS (when any is set)."""
    keys = settings.keys()
    if not keys:
        return ""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    matched = [k for k in keys if secrets.compare_digest(token.encode(), k.encode())]  # every key compared
    if scheme.lower() != "bearer" or not matched:
        refusal = "missing or invalid API key: send 'Authorization: Bearer <key>'"
        raise ApiError(401, "unauthorized", refusal, headers={"WWW-Authenticate": "Bearer"})
    return hashlib.sha256(matched[0].encode()).hexdigest()[:32]


def check_admin_key(headers: Headers, settings: Settings) -> None:
    """401 unless the request carries ``Authorization: Bearer <SENTIMENT_ADMIN_KEY>`` (the route exists only
    when one is set)."""
    _bearer(headers, settings.admin_key, "missing or invalid admin key: send 'Authorization: Bearer <admin key>'")
