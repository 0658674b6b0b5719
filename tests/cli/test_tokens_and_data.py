"""`unbind token`, `unbind migrate` and `unbind seed`, run as a user runs them."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import jwt
import pytest
from sqlalchemy import select

from services.binding.models import Binding
from services.notification.models import Contact
from shared.auth import decode_token
from shared.cli.main import main
from shared.db import create_engine, create_session_factory
from shared.settings import DEVELOPMENT_JWT_SECRET
from tests.cli.conftest import cli_env, run_unbind

DEMO_BINDINGS = {("b-zhangsan-mortgage", "u-zhangsan", "active"), ("b-lisi-mortgage", "u-lisi", "active")}
DEMO_CONTACTS = {("u-zhangsan", "+8613812345678"), ("u-lisi", "+8613987654321")}


def test_console_script_prints_a_customer_token_the_services_accept() -> None:
    result = run_unbind("token", "--user", "u-zhangsan")
    assert result.returncode == 0, result.stderr
    principal = decode_token(DEVELOPMENT_JWT_SECRET, result.stdout.strip())
    assert (principal.subject, principal.roles) == ("u-zhangsan", frozenset({"customer"}))


def test_ops_token_defaults_its_subject_and_ttl_is_honoured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--role", "ops", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    principal = decode_token(DEVELOPMENT_JWT_SECRET, token)
    assert (principal.subject, principal.roles) == ("ops-admin", frozenset({"ops"}))
    claims = jwt.decode(token, DEVELOPMENT_JWT_SECRET, algorithms=["HS256"], issuer="unbind")
    assert claims["exp"] - claims["iat"] == 120
    assert claims["exp"] > time.time()


def test_roles_can_be_combined(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "svc", "--role", "service", "--role", "ops"]) == 0
    assert decode_token(DEVELOPMENT_JWT_SECRET, capsys.readouterr().out.strip()).roles == frozenset({"service", "ops"})


def test_customer_token_needs_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token"]) == 1
    assert "--user" in capsys.readouterr().err


def test_production_mode_refuses_the_development_secret_and_uses_a_real_one() -> None:
    refused = run_unbind("token", "--user", "u-zhangsan", env=cli_env(UNBIND_ENV="production"))
    assert refused.returncode == 1
    assert "UNBIND_JWT_SECRET" in refused.stderr and not refused.stdout

    secret = "s" * 48
    accepted = run_unbind("token", "--user", "u-zhangsan", env=cli_env(UNBIND_ENV="production", UNBIND_JWT_SECRET=secret))
    assert accepted.returncode == 0, accepted.stderr
    assert decode_token(secret, accepted.stdout.strip()).subject == "u-zhangsan"


async def _demo_rows(binding_url: str, notification_url: str) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    engines = [create_engine(binding_url, pool_size=1), create_engine(notification_url, pool_size=1)]
    try:
        async with create_session_factory(engines[0])() as session:
            bindings = {(b.id, b.user_id, b.status) for b in await session.scalars(select(Binding))}
        async with create_session_factory(engines[1])() as session:
            contacts = {(c.user_id, c.phone) for c in await session.scalars(select(Contact))}
        return bindings, contacts
    finally:
        for engine in engines:
            await engine.dispose()


def test_migrate_and_seed_create_the_demo_data_once_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--var-dir", str(tmp_path), "migrate"]) == 0
    assert main(["--var-dir", str(tmp_path), "seed"]) == 0
    out = capsys.readouterr().out
    assert out.count("at head on sqlite") == 4
    assert "seed: binding: demo data added" in out and "seed: notification: demo data added" in out
    assert {path.name for path in tmp_path.glob("*.db")} == {"binding.db", "verification.db", "risk.db", "notification.db"}

    # Seeding again leaves the data alone; migrating again is a no-op.
    assert main(["seed", "--var-dir", str(tmp_path)]) == 0
    assert main(["migrate", "--var-dir", str(tmp_path)]) == 0
    assert "has data already" in capsys.readouterr().out
    urls = (f"sqlite+aiosqlite:///{tmp_path / 'binding.db'}", f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}")
    assert asyncio.run(_demo_rows(*urls)) == (DEMO_BINDINGS, DEMO_CONTACTS)


async def _drop_service_databases(server_url: str) -> None:
    connection = await asyncpg.connect(server_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        for service in ("binding", "verification", "risk", "notification"):
            await connection.execute(f'DROP DATABASE IF EXISTS "unbind_{service}" WITH (FORCE)')
    finally:
        await connection.close()


def test_migrate_and_seed_on_a_postgresql_server_create_one_database_per_service(postgres_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The database names are fixed (unbind_<service>), so start and end with none on the test server.
    asyncio.run(_drop_service_databases(postgres_server))
    try:
        assert main(["migrate", "--var-dir", str(tmp_path), "--database-url", postgres_server]) == 0
        # The server URL also comes from the environment, as `unbind up` passes it on.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("UNBIND_DATABASE_SERVER_URL", postgres_server)
            assert main(["seed", "--var-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert f"{postgres_server}/unbind_risk (database created if missing)" in out
        assert not list(tmp_path.glob("*.db")), "no SQLite file when a server URL is given"
        rows = asyncio.run(_demo_rows(f"{postgres_server}/unbind_binding", f"{postgres_server}/unbind_notification"))
        assert rows == (DEMO_BINDINGS, DEMO_CONTACTS)
    finally:
        asyncio.run(_drop_service_databases(postgres_server))


def test_a_server_url_naming_a_database_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", f"postgresql+asyncpg://postgres@127.0.0.1:1/db{uuid.uuid4().hex[:6]}"]) == 1
    assert "give the server only" in capsys.readouterr().err


def test_seed_refuses_production_where_the_demo_device_key_would_be_a_way_in(tmp_path: Path) -> None:
    secrets = {"UNBIND_JWT_SECRET": "j" * 48, "UNBIND_OTP_HMAC_KEY": "o" * 48, "UNBIND_INSTITUTION_WEBHOOK_SECRET": "w" * 48}
    env = cli_env(UNBIND_ENV="production", **secrets)
    assert run_unbind("--var-dir", str(tmp_path), "migrate", env=env).returncode == 0
    refused = run_unbind("--var-dir", str(tmp_path), "seed", env=env)
    assert refused.returncode == 1 and "development only" in refused.stderr
    urls = (f"sqlite+aiosqlite:///{tmp_path / 'binding.db'}", f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}")
    assert asyncio.run(_demo_rows(*urls)) == (set(), set())
