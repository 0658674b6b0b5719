"""Each service's migration history builds exactly the schema its models declare, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command

from shared.migrations import SERVICES, alembic_config, upgrade_async


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(service: str, database_urls: dict[str, str]) -> None:
    await upgrade_async(service, database_urls[service])
    await upgrade_async(service, database_urls[service])  # a second run is a no-op
    # `check` autogenerates a diff between the migrated database and the models; any drift raises.
    await asyncio.to_thread(command.check, alembic_config(service, database_urls[service]))
