"""The services as the `unbind` command sees them: their settings, schema migrations and demo data.

Everything here runs in the CLI's own process against each service's database, before (or
without) the services themselves running, which is why it reads each service's own settings class:
the CLI then resolves exactly the database URL and topic the service will use.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from shared.migrations import SERVICES, upgrade
from shared.settings import ServiceSettings
from tools.errors import InfraError
from tools.population import SyntheticCustomer
from tools.postgres import ensure_database

_T = TypeVar("_T")
# Every process `unbind up` runs: the services that own a database, then the dashboard (which
# has none: it projects the event stream).
APPS = (*SERVICES, "dashboard")


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class declared in `services/<service>/config.py`.

    Imported lazily so the library never imports the services at import time, and found by its
    `service_name` so a new service needs no entry here.
    """
    if service not in APPS:
        raise InfraError(f"Unknown service {service!r}; the services are {', '.join(APPS)}.")
    module = importlib.import_module(f"services.{service}.config")
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, ServiceSettings)
            and getattr(value, "service_name", None) == service
        ):
            return value
    raise InfraError(
        f"services/{service}/config.py declares no ServiceSettings subclass with service_name = {service!r}."
    )


def load_settings(service: str, var_dir: Path, database_server_url: str | None = None) -> ServiceSettings:
    """A service's settings from the environment, with the CLI's var dir and server URL on top.

    `UNBIND_<SERVICE>_DATABASE_URL` in the environment still wins over the server URL, exactly
    as it does inside the running service.
    """
    overrides: dict[str, object] = {"var_dir": var_dir}
    if database_server_url:
        overrides["database_server_url"] = database_server_url
    try:
        return settings_class(service)(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        # Only the messages: pydantic's own rendering repeats the input, secrets included.
        problems = "\n".join(
            f"  {'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}" for error in exc.errors()
        )
        raise InfraError(f"The settings of the {service} service are refused:\n{problems}") from None


def database_server_url(explicit: str | None) -> str | None:
    """The PostgreSQL server URL chosen by `--database-url`, else `UNBIND_DATABASE_SERVER_URL`."""
    url = explicit or os.environ.get("UNBIND_DATABASE_SERVER_URL") or None
    if url is None:
        return None
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError here
        raise InfraError(
            f"{url!r} is not a database URL ({exc}). Expected e.g. postgresql+asyncpg://postgres@127.0.0.1:55432"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise InfraError(
            f"The database server URL must be a PostgreSQL URL (postgresql+asyncpg://user@host:port), not "
            f"{parsed.render_as_string(hide_password=True)}."
        )
    if parsed.database:
        raise InfraError(
            f"The database server URL names a database ({parsed.database!r}); give the server only "
            f"(postgresql+asyncpg://user@host:port): each service then gets its own database "
            f"unbind_<service>."
        )
    return url


def display_url(url: str) -> str:
    """A database URL fit for the terminal: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class MigrationResult:
    service: str
    database_url: str
    created_database: bool


def migrate(
    var_dir: Path, server_url: str | None, services: Iterable[str] = SERVICES
) -> list[MigrationResult]:
    """Bring every service's database to the newest schema.

    With a server URL, each service's `unbind_<service>` database is created first (unless that
    service has its own `UNBIND_<SERVICE>_DATABASE_URL`, which names a database someone else owns).
    """
    results = []
    for service in services:
        settings = load_settings(service, var_dir, server_url)
        created = False
        if server_url and not os.environ.get(f"UNBIND_{service.upper()}_DATABASE_URL"):
            try:
                asyncio.run(ensure_database(server_url, f"unbind_{service}"))
            except Exception as exc:  # noqa: BLE001 - asyncpg and OSError subclasses alike: name the database
                raise InfraError(
                    f"Could not create database unbind_{service} on {display_url(server_url)}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            created = True
        try:
            upgrade(service, settings.database_url)
        except Exception as exc:  # noqa: BLE001 - Alembic/driver errors: say which database failed
            raise InfraError(
                f"Migrating the {service} database ({display_url(settings.database_url)}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        results.append(MigrationResult(service, settings.database_url, created))
    return results


async def _in_service(service: str, settings: ServiceSettings, write: Callable[[Any], Awaitable[_T]]) -> _T:
    """Run `write(uow)` in one unit of work on the service's database, the one the service uses
    (seeding emits no event: the CLI holds no service's key)."""
    from shared.db import create_engine, create_session_factory
    from shared.outbox import Outbox
    from shared.uow import UnitOfWork

    models = importlib.import_module(f"services.{service}.models")
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with UnitOfWork(
            create_session_factory(engine), Outbox(models.OutboxMessage, settings.topic, None)
        ) as uow:
            return await write(uow)
    finally:
        await engine.dispose()


def seed(var_dir: Path, server_url: str | None) -> dict[str, bool]:
    """Seed the demo data (tools/seeds.py) into every empty service database; {service: seeded now}."""
    from tools.seeds import DEMO  # imports every service: only the commands that seed pay for it

    outcome: dict[str, bool] = {}
    for service in (service for service in SERVICES if service in DEMO):
        settings = load_settings(service, var_dir, server_url)
        if settings.env != "development":
            # The demo device's key comes from a public seed: in production it would be a way in.
            raise InfraError(
                "`unbind seed` adds demo customers and a demo device with a public key; it runs in "
                "development only (UNBIND_ENV=development)."
            )
        try:
            outcome[service] = asyncio.run(_in_service(service, settings, DEMO[service]))
        except Exception as exc:  # noqa: BLE001 - a missing table means "run unbind migrate first"
            raise InfraError(
                f"Seeding the {service} database ({display_url(settings.database_url)}) failed: "
                f"{type(exc).__name__}: {exc}\n"
                "Run `unbind migrate` first if its tables do not exist yet."
            ) from None
    return outcome


async def seed_population(
    var_dir: Path, server_url: str | None, customers: Sequence[SyntheticCustomer], chunk: int = 1000
) -> None:
    """Write synthetic customers into every service that keeps something of them (tools/seeds.py)."""
    from tools.seeds import POPULATION

    for service, populate in POPULATION.items():
        settings = load_settings(service, var_dir, server_url)
        for start in range(0, len(customers), chunk):
            part = customers[start : start + chunk]
            await _in_service(service, settings, lambda uow, write=populate, part=part: write(uow, part))
