"""Tests of tools.postgres against a real PostgreSQL server.

The cluster under test uses a temporary var dir and a free port, never the shared
development cluster on 55432. It is started once per module.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tools import postgres
from tools.errors import InfraError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    var: Path
    port: int
    url: str


def _cleanup(var: Path) -> None:
    postgres.postgres_down(var)
    data = postgres.postgres_data_dir(var)
    if str(data).startswith("/tmp/unbind-pg-"):  # the fallback location outside var
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    var = tmp_path_factory.mktemp("pg-var")
    port = _free_port()
    url = postgres.postgres_up(var, port=port)
    try:
        yield Cluster(var, port, url)
    finally:
        _cleanup(var)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def test_up_returns_base_url_and_is_idempotent(cluster: Cluster) -> None:
    assert cluster.url == f"postgresql+asyncpg://postgres@127.0.0.1:{cluster.port}"
    status = postgres.postgres_status(cluster.var)
    assert status["running"] is True and status["port"] == cluster.port
    assert postgres.postgres_up(cluster.var, port=cluster.port) == cluster.url
    assert postgres.postgres_status(cluster.var)["pid"] == status["pid"]


@pytest.mark.asyncio
async def test_ensure_database_and_server_settings(cluster: Cluster) -> None:
    db_url = await postgres.ensure_database(cluster.url, "unbind_infra_test")
    assert db_url == cluster.url + "/unbind_infra_test"
    assert await postgres.ensure_database(cluster.url, "unbind_infra_test") == db_url
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        assert await conn.fetchval("SELECT current_database()") == "unbind_infra_test"
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SHOW port") == str(cluster.port)
    finally:
        await conn.close()


def test_data_dir_location(tmp_path: Path) -> None:
    open_dir = Path("/tmp") / f"unbind-open-{os.getpid()}"
    open_dir.mkdir(mode=0o755, exist_ok=True)
    open_dir.chmod(0o755)
    try:
        # A var dir the postgres user can reach keeps its data inside var.
        expected = open_dir / "var" / "postgres" / "data"
        assert postgres.postgres_data_dir(open_dir / "var") == expected
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    hidden.chmod(0o700)
    data = postgres.postgres_data_dir(hidden / "var")
    if os.geteuid() == 0:
        # As root the server runs as `postgres`, which cannot enter a 0700 root dir.
        assert str(data).startswith("/tmp/unbind-pg-") and data.name == "data"
        assert data == postgres.postgres_data_dir(hidden / "var"), "must be stable"
    else:
        assert data == hidden / "var" / "postgres" / "data"


def test_other_port_while_running_is_refused(cluster: Cluster) -> None:
    with pytest.raises(InfraError, match=f"already runs on port {cluster.port}"):
        postgres.postgres_up(cluster.var, port=_free_port())


def test_port_taken_is_reported(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        try:
            with pytest.raises(InfraError) as info:
                postgres.postgres_up(tmp_path, port=taken)
        finally:
            _cleanup(tmp_path)
    message = str(info.value)
    assert f"127.0.0.1:{taken}" in message and "already in use" in message
    assert f"pid {os.getpid()}" in message


def test_not_installed_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "PG_BIN_GLOB", str(tmp_path / "nothing" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match="install-system-deps.sh.*apt-get install -y postgresql"):
        postgres.postgres_up(tmp_path / "var", port=_free_port())


def test_cli_status_and_usage(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert postgres.cli(["status"], cluster.var) == 0
    assert f"running at {cluster.url}" in capsys.readouterr().out
    assert postgres.cli(["up", "--port", str(cluster.port)], cluster.var) == 0
    assert "already running" in capsys.readouterr().out
    assert postgres.cli(["nope"], cluster.var) == 2


def test_down_last(cluster: Cluster) -> None:
    """Runs last in this module: stops the module's cluster."""
    assert postgres.postgres_down(cluster.var) is True
    assert postgres.postgres_status(cluster.var)["running"] is False
    assert postgres.postgres_down(cluster.var) is False
