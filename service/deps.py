"""What a route handler needs, as typed dependencies: the per-app ``Service`` and the API-key check."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from service.config import Settings
from service.engine import Engine
from service.errors import ApiError, not_ready
from service.metrics import Metrics
from service.schemas import PredictRequestBase

log = logging.getLogger("service")


@dataclass
class Service:
    """Everything one app instance owns: settings, metrics, the request models for its limits, and the
    engine (None until the lifespan has one)."""

    settings: Settings
    predict_request: type[PredictRequestBase]
    explain_request: type[PredictRequestBase]
    metrics: Metrics = field(default_factory=Metrics)
    engine: Engine | None = None
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.ready and not self.draining

    def begin_draining(self) -> None:
        """Readiness goes 503 at once (SIGTERM); requests already accepted still get their answers."""
        self.draining = True
        log.info("readiness off: shutting down")
        if self.engine is not None:
            self.engine.begin_draining()

    def loaded_engine(self) -> Engine:
        """The engine once the model is loaded, warm or not (else a 503 the client may retry)."""
        if self.engine is None:
            raise not_ready(self.metrics)
        return self.engine

    def ready_engine(self) -> Engine:
        """The engine, once the model is warm (else a 503 the client may retry)."""
        if self.engine is None or not self.engine.warmed_up:
            raise not_ready(self.metrics)
        return self.engine


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _bearer(request: Request, key: SecretStr | None, refusal: str) -> None:
    """401 with ``refusal`` unless the request carries ``Authorization: Bearer <key>`` (constant-time compare;
    no key matches nothing)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if (
        key is None
        or scheme.lower() != "bearer"
        or not secrets.compare_digest(token.strip().encode(), key.get_secret_value().encode())
    ):
        raise ApiError(401, "unauthorized", refusal, headers={"WWW-Authenticate": "Bearer"})


def check_api_key(request: Request, service: Service) -> None:
    """401 unless the request carries ``Authorization: Bearer <SENTIMENT_API_KEY>`` (when a key is set)."""
    if service.settings.api_key is not None:
        _bearer(request, service.settings.api_key, "missing or invalid API key: send 'Authorization: Bearer <key>'")


def check_admin_key(request: Request, service: Service) -> None:
    """401 unless the request carries ``Authorization: Bearer <SENTIMENT_ADMIN_KEY>`` (the route exists only
    when one is set)."""
    refusal = "missing or invalid admin key: send 'Authorization: Bearer <admin key>'"
    _bearer(request, service.settings.admin_key, refusal)


def require_api_key(request: Request, service: Annotated[Service, Depends(get_service)]) -> None:
    check_api_key(request, service)


ServiceDep = Annotated[Service, Depends(get_service)]
Authorized = Depends(require_api_key)
