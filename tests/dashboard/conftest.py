"""The dashboard beside the in-process services: its own app on the test's bus and topics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.dashboard.config import DashboardSettings
from services.dashboard.main import create_app
from shared.db import utcnow
from tests.keys import key_settings
from tests.stack import BusTopics


def dashboard_settings(topics: BusTopics, var_dir: Path, **overrides: Any) -> DashboardSettings:
    settings: dict[str, Any] = {
        **key_settings("dashboard", DashboardSettings),
        **topics.settings_for("dashboard"),
        "topic": topics.topic,
        "dlq_topic": topics.dlq_topic,
        "var_dir": var_dir,
        "consumer_group": f"unbind-dashboard-{topics.topic}",
        "login_link_dir": var_dir / "login-links",
        # As under `unbind up`: served over plain HTTP, so the session cookie cannot be Secure.
        "env": "development",
    }
    return DashboardSettings(**(settings | overrides))


@asynccontextmanager
async def running_dashboard(
    topics: BusTopics,
    var_dir: Path,
    *,
    risk_app: FastAPI | None = None,
    service_apps: Mapping[str, FastAPI] | None = None,
    clock: Callable[[], datetime] = utcnow,
    **overrides: Any,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The dashboard app, started, with an in-process client; its risk calls go to `risk_app`, and
    its calls to each service of `service_apps` (a stack's apps) to that app."""
    apps = {**({"risk": risk_app} if risk_app is not None else {}), **(service_apps or {})}
    transports = {service: httpx.ASGITransport(app=app) for service, app in apps.items()}
    app = create_app(
        dashboard_settings(topics, var_dir, **overrides),
        bus=topics.app_bus,
        clock=clock,
        transports=transports,
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dashboard"
        ) as client:
            yield app, client
