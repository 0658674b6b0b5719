"""Schema migrations: one Alembic history per service, in `services/<name>/migrations/versions`.

All services share this environment (`env.py` and the revision template beside this file); the
config names the service, whose `models.Base.metadata` is the target and whose own
`alembic_version` table records where its database stands.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import is_sqlite

SERVICES = ("binding", "verification", "risk", "notification")
_HERE = Path(__file__).resolve().parent
_SERVICES_DIR = _HERE.parent.parent / "services"


def alembic_config(service: str, database_url: str) -> Config:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(_SERVICES_DIR / service / "migrations" / "versions"))
    config.set_main_option("service", service)
    config.attributes["database_url"] = database_url
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Bring one service's database to `revision` (blocking; see `upgrade_async`)."""
    if is_sqlite(database_url):
        from sqlalchemy.engine import make_url

        database = make_url(database_url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(service, database_url), revision)


async def upgrade_async(service: str, database_url: str, revision: str = "head") -> None:
    # Alembic's async environment runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, service, database_url, revision)


def run_environment(context: Any) -> None:
    """The body of env.py: run the migrations online against the configured database."""
    config = context.config
    service = config.get_main_option("service")
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    url = config.attributes["database_url"]

    def migrate(connection: Any) -> None:
        context.configure(
            connection=connection, target_metadata=metadata, render_as_batch=is_sqlite(url), compare_type=True
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())
