"""Tests of tools.kafka against a real broker.

The broker under test runs from a temporary var dir on free ports (never 9092/9093),
so the shared development broker is never disturbed. It is started once per module.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tools import kafka
from tools.errors import InfraError
from tools.kafka_access import (
    ADMIN,
    CREDENTIALS_ENV,
    create_credentials,
    principals,
    read_credentials,
    service_principals,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports() -> tuple[int, int]:
    port = _free_port()
    controller = _free_port()
    while controller == port:
        controller = _free_port()
    return port, controller


@dataclass
class Broker:
    var: Path
    port: int
    controller_port: int
    cluster: kafka.Cluster

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap


@pytest.fixture(autouse=True)
def _no_external_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may point at a shared cluster; these tests need local mode.
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    var = tmp_path_factory.mktemp("kafka-var")
    port, controller_port = _free_ports()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        cluster = kafka.kafka_up(var, port=port, controller_port=controller_port)
    try:
        yield Broker(var, port, controller_port, cluster)
    finally:
        kafka.kafka_down(var)


async def _partitions(cluster: kafka.Cluster, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        meta = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in meta if t["error_code"] == 0}


def test_up_returns_bootstrap_and_status_reports_running(broker: Broker) -> None:
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    status = kafka.kafka_status(broker.var)
    assert status["running"] is True
    assert status["external"] is False
    assert status["bootstrap"] == broker.bootstrap
    assert status["version"] == kafka.KAFKA_VERSION
    pid = status["pid"]
    assert isinstance(pid, int)
    assert int((broker.var / "kafka" / "kafka.pid").read_text()) == pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"kafka.Kafka" in cmdline
    assert any(arg.startswith(b"-Xmx") for arg in cmdline), "heap must be bounded"
    # Logging through log4j-slf4j-impl really reaches the file.
    server_log = (broker.var / "kafka" / "logs" / "server.log").read_text()
    assert "Kafka Server started" in server_log or "started" in server_log


def test_up_twice_is_harmless_and_keeps_pid(broker: Broker) -> None:
    pid = kafka.kafka_status(broker.var)["pid"]
    t0 = time.monotonic()
    again = kafka.kafka_up(broker.var, port=broker.port, controller_port=broker.controller_port)
    assert again == broker.cluster
    assert kafka.kafka_status(broker.var)["pid"] == pid
    assert time.monotonic() - t0 < 15, "a second up must not start a broker"


def test_topics_exist_with_six_partitions(broker: Broker) -> None:
    names = kafka.DEFAULT_TOPICS.names
    assert asyncio.run(_partitions(broker.cluster, names)) == {n: 6 for n in names}


@pytest.mark.asyncio
async def test_async_variant_and_create_topics_idempotent(broker: Broker) -> None:
    got = await kafka.kafka_up_async(broker.var, port=broker.port, controller_port=broker.controller_port)
    assert got == broker.cluster
    await kafka.create_topics(broker.cluster, ["unbind.test.async"], partitions=3)
    await kafka.create_topics(broker.cluster, ["unbind.test.async"], partitions=3)
    assert await _partitions(broker.cluster, ["unbind.test.async"]) == {"unbind.test.async": 3}
    # The sync API also works from inside a running event loop (runs in a worker thread).
    assert (
        kafka.kafka_up(broker.var, port=broker.port, controller_port=broker.controller_port) == broker.cluster
    )


def test_every_principal_has_its_own_password_kept_private_to_the_var_dir(broker: Broker) -> None:
    credentials = broker.var / "kafka" / "credentials.json"
    passwords = json.loads(credentials.read_text())
    assert set(passwords) == set(principals())
    assert len(set(passwords.values())) == len(passwords) and min(map(len, passwords.values())) >= 40
    props = broker.var / "kafka" / "server.properties"
    for path in (credentials, props):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name} is readable by others"
    # The broker's own config holds the admin's and the controller's passwords, no service's.
    assert not [
        name
        for name, password in passwords.items()
        if password in props.read_text() and name not in (ADMIN, "controller")
    ]
    assert (
        "PLAINTEXT://" not in props.read_text()
        and "allow.everyone.if.no.acl.found=false" in props.read_text()
    )


def test_an_external_cluster_needs_credentials_and_refuses_wrong_ones(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", CREDENTIALS_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InfraError, match="KAFKA_SASL_USERNAME is not set"):
        kafka.kafka_up(tmp_path, topics=None)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", ADMIN)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "a-guess")
    with pytest.raises(
        InfraError,
        match=f"Kafka at {broker.bootstrap} refused the credentials of 'admin': .*invalid credentials",
    ):
        kafka.kafka_up(tmp_path, topics=None, timeout=30)
    monkeypatch.setenv(
        "KAFKA_SASL_PASSWORD", read_credentials(broker.var / "kafka" / "credentials.json")[ADMIN]
    )
    assert kafka.kafka_up(tmp_path, topics=None) == broker.cluster


def test_storage_formatted_before_authentication_is_recreated(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A var dir of an older checkout: formatted storage, no credentials. Its users cannot be
    added afterwards, so it is formatted again (development data only), with one line."""
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(
        "version=1\nnode.id=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n"
    )
    port, controller = _free_ports()
    try:
        cluster = kafka.kafka_up(tmp_path, port=port, controller_port=controller, topics=None)
        assert cluster.security.username == ADMIN
        assert read_credentials(tmp_path / "kafka" / "credentials.json")[ADMIN] == cluster.security.password
    finally:
        kafka.kafka_down(tmp_path)
    err = capfd.readouterr().err
    assert err.count("recreating it (it held development data only)") == 1, err


def test_up_with_other_ports_on_running_var_dir_is_refused(broker: Broker) -> None:
    other, other_controller = _free_ports()
    with pytest.raises(InfraError, match=f"already runs with ports {broker.port}"):
        kafka.kafka_up(broker.var, port=other, controller_port=other_controller)


def test_external_cluster_starts_nothing(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv(CREDENTIALS_ENV, str(broker.var / "kafka" / "credentials.json"))
    topics = kafka.EventTopics("unbind.test.external", "unbind.test.external.dlq")
    got = kafka.kafka_up(tmp_path, topics=topics)
    assert got == broker.cluster
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
    assert asyncio.run(_partitions(broker.cluster, topics.names)) == dict.fromkeys(topics.names, 6)
    status = kafka.kafka_status(tmp_path)
    assert status["external"] is True and status["running"] is True and status["pid"] is None


def test_port_taken_is_reported_with_owner(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(InfraError) as info:
            kafka.kafka_up(tmp_path, port=taken, controller_port=_free_port(), timeout=10)
    message = str(info.value)
    assert f"127.0.0.1:{taken}" in message and "already in use" in message
    assert f"pid {os.getpid()}" in message  # names who holds it
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_missing_java_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    port, controller = _free_ports()
    with pytest.raises(InfraError, match="Java was not found"):
        kafka.kafka_up(tmp_path / "var", port=port, controller_port=controller)

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(InfraError, match="JAVA_HOME=.*no-such-jdk has no executable bin/java"):
        kafka.kafka_up(tmp_path / "var", port=port, controller_port=controller)


def test_old_java_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jdk = tmp_path / "jdk11"
    (jdk / "bin").mkdir(parents=True)
    fake = jdk / "bin" / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(jdk))
    port, controller = _free_ports()
    with pytest.raises(InfraError, match="is Java 11, too old.*Java 17"):
        kafka.kafka_up(tmp_path / "var", port=port, controller_port=controller)


def test_broker_dying_at_startup_shows_its_log(tmp_path: Path) -> None:
    # A meta.properties for another node id makes the storage "formatted" (so the
    # format step is skipped) but unusable: the broker must exit at startup.
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    create_credentials(tmp_path / "kafka" / "credentials.json")  # else the storage is recreated
    (data / "meta.properties").write_text(
        "version=1\nnode.id=42\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n"
    )
    port, controller = _free_ports()
    try:
        with pytest.raises(InfraError) as info:
            kafka.kafka_up(tmp_path, port=port, controller_port=controller, timeout=60)
        message = str(info.value)
        assert "exited during startup" in message
        assert "server.log" in message and "Stored node id 42" in message
    finally:
        kafka.kafka_down(tmp_path)


def test_down_never_touches_foreign_processes(broker: Broker, tmp_path: Path) -> None:
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "kafka").mkdir()
        # A pid file naming an unrelated process (e.g. a recycled pid)...
        (tmp_path / "kafka" / "kafka.pid").write_text(f"{foreign.pid}\n")
        assert kafka.kafka_down(tmp_path, timeout=5) is False
        assert foreign.poll() is None
        # ...or naming a broker started from another var dir: left alone as well.
        broker_pid = kafka.kafka_status(broker.var)["pid"]
        (tmp_path / "kafka" / "kafka.pid").write_text(f"{broker_pid}\n")
        assert kafka.kafka_down(tmp_path, timeout=5) is False
        assert kafka.kafka_status(broker.var)["running"] is True
    finally:
        foreign.kill()
        foreign.wait()


def test_cli_status_up_and_usage(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    assert kafka.cli(["status"], broker.var) == 0
    assert f"running at {broker.bootstrap}" in capsys.readouterr().out
    argv = ["up", "--port", str(broker.port), "--controller-port", str(broker.controller_port)]
    assert kafka.cli(argv, broker.var) == 0
    out = capsys.readouterr().out
    assert "already running" in out and "one principal per service" in out
    assert not [
        password
        for password in read_credentials(broker.var / "kafka" / "credentials.json").values()
        if password in out
    ]
    assert kafka.cli(["frobnicate"], broker.var) == 2


def test_cli_reports_errors_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    port, controller = _free_ports()
    monkeypatch.setenv("KAFKA_PORT", str(port))
    monkeypatch.setenv("KAFKA_CONTROLLER_PORT", str(controller))
    assert kafka.cli(["up"], tmp_path / "var") == 1
    assert "Java was not found" in capsys.readouterr().err


def test_down_stops_only_our_broker_last(broker: Broker) -> None:
    """Runs last in this module: stops the module's broker."""
    pid = kafka.kafka_status(broker.var)["pid"]
    assert kafka.kafka_down(broker.var) is True
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert kafka.kafka_status(broker.var) == {
        "running": False,
        "pid": None,
        "bootstrap": broker.bootstrap,
        "external": False,
        "version": kafka.KAFKA_VERSION,
    }
    assert kafka.kafka_down(broker.var) is False


def _fake_mvn(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(0o755)


def test_ensure_jars_reuses_complete_cache_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = tmp_path / "cache" / f"kafka-{kafka.KAFKA_VERSION}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("done\n")
    _fake_mvn(tmp_path / "bin", "echo mvn must not run >&2; exit 99\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert kafka.ensure_jars(tmp_path / "cache") == libs


def test_ensure_jars_reports_unreachable_maven_central(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_mvn(
        tmp_path / "bin",
        "echo '[ERROR] Failed to execute goal on project unbind-kafka-runtime: Could not "
        "resolve dependencies: Could not transfer artifact org.apache.kafka:kafka_2.13:pom'\n"
        "exit 1\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with pytest.raises(InfraError) as info:
        kafka.ensure_jars(tmp_path / "cache")
    message = str(info.value)
    assert "could not reach Maven Central" in message
    assert "Could not transfer artifact" in message  # last lines of Maven's output
    assert not (tmp_path / "cache" / f"kafka-{kafka.KAFKA_VERSION}" / "libs").exists()


def test_ensure_jars_reports_missing_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match=r"Maven \(`mvn`\) was not found"):
        kafka.ensure_jars(tmp_path / "cache")


def test_cli_secrets_writes_once_and_prints_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, k8s = tmp_path / "kafka", tmp_path / "kafka.env"
    assert kafka.cli(["secrets", "--out", str(out), "--host", "kafka.example.internal"], tmp_path) == 0
    assert kafka.cli(["secrets", "--k8s", "--out", str(k8s)], tmp_path) == 0
    printed = capsys.readouterr().out
    written = [
        value
        for path in [*out.glob("*.env"), k8s]
        for key, value in (line.split("=", 1) for line in path.read_text().splitlines())
        if key != "KAFKA_SASL_USERNAME"
    ]
    assert written and not [value for value in written if value in printed]
    assert {line.split("=", 1)[0] for line in k8s.read_text().splitlines()} == {ADMIN, *service_principals()}
    certificate = (out / "broker.pem").read_text().split("-----END PRIVATE KEY-----\n")[1]
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=certificate,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:kafka.example.internal" in names and "DNS:kafka" in names and "IP Address:127.0.0.1" in names
    before = {path: path.read_bytes() for path in out.iterdir()}
    assert kafka.cli(["secrets", "--out", str(out)], tmp_path) == 1
    assert "nothing was overwritten" in capsys.readouterr().err
    assert before == {path: path.read_bytes() for path in out.iterdir()}
