"""`unbind token`, `unbind migrate` and `unbind seed`, run as a user runs them."""

from __future__ import annotations

import asyncio
import stat
import time
import uuid
from pathlib import Path

import asyncpg
import jwt
import pytest
from sqlalchemy import select

from services.binding.models import Binding
from services.notification.models import Contact
from shared.auth import audience_of, decode_token
from shared.db import create_engine, create_session_factory
from shared.keys import KeySet
from shared.problems import Problem
from tests.cli.conftest import cli_env, run_unbind
from tools.keys import installation_keys
from tools.main import main

DEMO_BINDINGS = {("b-zhangsan-mortgage", "u-zhangsan", "active"), ("b-lisi-mortgage", "u-lisi", "active")}
DEMO_CONTACTS = {("u-zhangsan", "+8613812345678"), ("u-lisi", "+8613987654321")}


def installation(tmp_path: Path) -> KeySet:
    """A var dir with an installation's keys, as `unbind up` leaves it; the JWKS the services trust."""
    installation_keys(tmp_path).generate_missing()
    keys = KeySet(file=installation_keys(tmp_path).jwks_file)
    keys.load_now()
    return keys


async def test_console_script_prints_a_customer_token_the_services_accept(tmp_path: Path) -> None:
    keys = installation(tmp_path)
    result = run_unbind("--var-dir", str(tmp_path), "token", "--user", "u-zhangsan")
    assert result.returncode == 0, result.stderr
    principal = await decode_token(keys, result.stdout.strip(), audience=audience_of("binding"))
    assert (principal.subject, principal.roles) == ("u-zhangsan", frozenset({"customer"}))
    header = jwt.get_unverified_header(result.stdout.strip())
    assert header["alg"] == "EdDSA" and header["kid"].startswith("idp.")


async def test_ops_token_defaults_its_subject_and_ttl_and_audience_are_honoured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = installation(tmp_path)
    assert (
        main(
            [
                "--var-dir",
                str(tmp_path),
                "token",
                "--role",
                "ops",
                "--ttl",
                "120",
                "--audience",
                "unbind-risk",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    principal = await decode_token(keys, token, audience=audience_of("risk"))
    assert (principal.subject, principal.roles) == ("ops-admin", frozenset({"ops"}))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (
        claims["exp"] - claims["iat"] == 120
        and claims["exp"] > time.time()
        and claims["aud"] == ["unbind-risk"]
    )
    with pytest.raises(Problem):
        await decode_token(keys, token, audience=audience_of("binding"))


async def test_a_service_token_is_signed_with_that_service_s_own_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = installation(tmp_path)
    assert main(["--var-dir", str(tmp_path), "token", "--user", "verification", "--role", "service"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["kid"].startswith("svc.verification.")
    assert (await decode_token(keys, token, audience=audience_of("notification"))).roles == frozenset(
        {"service"}
    )
    assert (
        main(
            [
                "--var-dir",
                str(tmp_path),
                "token",
                "--user",
                "verification",
                "--role",
                "service",
                "--role",
                "ops",
            ]
        )
        == 1
    )
    assert "service role alone" in capsys.readouterr().err
    assert main(["--var-dir", str(tmp_path), "token", "--user", "mallory", "--role", "service"]) == 1
    assert "No key of 'mallory'" in capsys.readouterr().err


def test_customer_token_needs_a_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    installation(tmp_path)
    assert main(["--var-dir", str(tmp_path), "token"]) == 1
    assert "--user" in capsys.readouterr().err


def test_without_an_installation_s_keys_no_token_is_printed(tmp_path: Path) -> None:
    refused = run_unbind("--var-dir", str(tmp_path), "token", "--user", "u-zhangsan")
    assert refused.returncode == 1 and not refused.stdout
    assert "No issuer key" in refused.stderr and "identity provider" in refused.stderr


def test_keys_generate_writes_a_deployment_s_own_keys_and_secrets_private(tmp_path: Path) -> None:
    out = tmp_path / "secrets"
    assert run_unbind("keys", "generate", "--out", str(out)).returncode == 0
    files = {path.name: path for path in out.iterdir()}
    assert {
        "jwks.json",
        "issuer.jwk",
        "binding.jwk",
        "verification.jwk",
        "risk.jwk",
        "customer-system.jwk",
        "secrets.env",
    } <= set(files)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and all(
        stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files.values()
    )
    env = dict(line.split("=", 1) for line in files["secrets.env"].read_text().splitlines())
    secrets = {
        "UNBIND_OTP_HMAC_KEY",
        "UNBIND_INSTITUTION_WEBHOOK_SECRET",
        "UNBIND_LENDER_SECRET_EXAMPLE_BANK",
        "UNBIND_LENDER_SECRET_HARBOUR_BANK",
    }
    assert set(env) == secrets and all(len(value) >= 32 for value in env.values())
    assert len(set(env.values())) == len(env), "every lender its own secret"
    assert '"d"' not in files["jwks.json"].read_text(), "the JWKS holds public keys only"
    before = files["binding.jwk"].read_text()
    assert run_unbind("keys", "generate", "--out", str(out)).returncode == 0
    assert files["binding.jwk"].read_text() == before, "keys already there are kept"
    other = tmp_path / "other"
    assert run_unbind("keys", "generate", "--out", str(other)).returncode == 0
    assert (other / "binding.jwk").read_text() != before and (other / "secrets.env").read_text() != files[
        "secrets.env"
    ].read_text(), "each installation its own"


def test_keys_generate_for_compose_opens_the_files_the_services_read_and_nothing_else(tmp_path: Path) -> None:
    """Compose bind-mounts secret files with their host mode into containers running as uid 10001: the
    files a service reads are 0644 in the 0700 folder; the issuer's and the customer system's keys, and
    secrets.env, stay 0600. The mode follows the option of the last run."""
    out = tmp_path / "keys"
    mounted = {
        "jwks.json",
        "binding.jwk",
        "verification.jwk",
        "risk.jwk",
        "notification.jwk",
        "otp_hmac_key.secret",
        "institution_webhook_secret.secret",
    }
    mounted |= {"lender_secret_example_bank.secret", "lender_secret_harbour_bank.secret"}
    assert run_unbind("keys", "generate", "--out", str(out), "--compose").returncode == 0
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert {name for name, mode in modes.items() if mode == 0o644} == mounted
    assert all(mode == 0o600 for name, mode in modes.items() if name not in mounted) and {
        "issuer.jwk",
        "customer-system.jwk",
        "secrets.env",
    } <= set(modes)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert run_unbind("keys", "generate", "--out", str(out)).returncode == 0
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in out.iterdir()), (
        "without --compose, every file is private again"
    )


async def _demo_rows(
    binding_url: str, notification_url: str
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
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


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo data is seeded into a development installation only (the default is production)."""
    monkeypatch.setenv("UNBIND_ENV", "development")


@pytest.mark.usefixtures("development")
def test_migrate_and_seed_create_the_demo_data_once_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--var-dir", str(tmp_path), "migrate"]) == 0
    assert main(["--var-dir", str(tmp_path), "seed"]) == 0
    out = capsys.readouterr().out
    assert out.count("at head on sqlite") == 4
    assert "seed: binding: demo data added" in out and "seed: notification: demo data added" in out
    assert {path.name for path in tmp_path.glob("*.db")} == {
        "binding.db",
        "verification.db",
        "risk.db",
        "notification.db",
    }

    # Seeding again leaves the data alone; migrating again is a no-op.
    assert main(["seed", "--var-dir", str(tmp_path)]) == 0
    assert main(["migrate", "--var-dir", str(tmp_path)]) == 0
    assert "has data already" in capsys.readouterr().out
    urls = (
        f"sqlite+aiosqlite:///{tmp_path / 'binding.db'}",
        f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}",
    )
    assert asyncio.run(_demo_rows(*urls)) == (DEMO_BINDINGS, DEMO_CONTACTS)


async def _drop_service_databases(server_url: str) -> None:
    connection = await asyncpg.connect(
        server_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    )
    try:
        for service in ("binding", "verification", "risk", "notification"):
            await connection.execute(f'DROP DATABASE IF EXISTS "unbind_{service}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.mark.usefixtures("development")
def test_migrate_and_seed_on_a_postgresql_server_create_one_database_per_service(
    postgres_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        rows = asyncio.run(
            _demo_rows(f"{postgres_server}/unbind_binding", f"{postgres_server}/unbind_notification")
        )
        assert rows == (DEMO_BINDINGS, DEMO_CONTACTS)
    finally:
        asyncio.run(_drop_service_databases(postgres_server))


def test_a_server_url_naming_a_database_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "migrate",
                "--database-url",
                f"postgresql+asyncpg://postgres@127.0.0.1:1/db{uuid.uuid4().hex[:6]}",
            ]
        )
        == 1
    )
    assert "give the server only" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["production", None], ids=["production", "the-default"])
def test_seed_refuses_production_where_the_demo_device_key_would_be_a_way_in(
    tmp_path: Path, mode: str | None
) -> None:
    env = (
        cli_env(UNBIND_ENV=mode)
        if mode
        else {name: value for name, value in cli_env().items() if name != "UNBIND_ENV"}
    )
    assert run_unbind("--var-dir", str(tmp_path), "migrate", env=env).returncode == 0
    refused = run_unbind("--var-dir", str(tmp_path), "seed", env=env)
    assert refused.returncode == 1 and "development only" in refused.stderr
    urls = (
        f"sqlite+aiosqlite:///{tmp_path / 'binding.db'}",
        f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}",
    )
    assert asyncio.run(_demo_rows(*urls)) == (set(), set())
