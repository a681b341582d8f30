"""GET /metrics: Prometheus's text format, off unless METRICS_TOKEN is set (then 404, as if absent), and only
with `Authorization: Bearer <METRICS_TOKEN>`: the counters tell who uses the kit how much.

What is measured: HTTP requests by route template, method and status class (prometheus-fastapi-instrumentator,
installed only when metrics are on), core.metrics (answers, retrieval, the model, ingestion), and
prometheus_client's process and Python collectors, all from this process: with several replicas, scrape each.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator

from widget.deps import bearer
from widget.settings import WebSettings


def install(app: FastAPI, settings: WebSettings) -> None:
    if settings.metrics_token is None:
        return
    token = settings.metrics_token.get_secret_value().encode()
    # Unmatched paths are grouped as "none": a scanner's random URLs must not each become a time series. The
    # HTTP metrics are this app's own (another app in the process, as in tests, would otherwise keep them).
    http = CollectorRegistry()
    Instrumentator(excluded_handlers=["/metrics"], should_group_untemplated=True, registry=http).instrument(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
        sent = bearer(authorization)
        if sent is None:
            raise HTTPException(
                401, "missing token: send `Authorization: Bearer <METRICS_TOKEN>`", {"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(sent.encode(), token):
            raise HTTPException(403, "wrong metrics token")
        return Response(generate_latest(REGISTRY) + generate_latest(http), media_type=CONTENT_TYPE_LATEST)
