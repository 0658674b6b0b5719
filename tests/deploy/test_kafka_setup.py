"""deploy/k8s/setup/kafka-setup.sh, the script Kubernetes' setup Job and compose's kafka-setup run:
executed here with Kafka's command-line tools replaced by stubs that record their arguments, and
held against tools/kafka_access.py, which grants the local broker's ACLs. Both deployments
then give each service exactly the access `unbind up` gives it, and nothing more."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tools.kafka_access import EventTopics, service_acls, service_principals

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "k8s" / "setup" / "kafka-setup.sh"
STUB = """#!/bin/bash
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$(basename "$0")" "$@" >>"{log}"
if [ "$(basename "$0")" = kafka-topics.sh ] && [[ " $* " == *" --describe "* ]]; then
  echo "Topic: x PartitionCount: 6 ReplicationFactor: 1"
fi
"""


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    """Every Kafka tool the script ran, with its arguments (the tool's name first)."""
    tmp = tmp_path_factory.mktemp("kafka-setup")
    bin_dir, log = tmp / "bin", tmp / "calls.jsonl"
    bin_dir.mkdir()
    for tool in ("kafka-topics.sh", "kafka-configs.sh", "kafka-acls.sh"):
        (bin_dir / tool).write_text(STUB.format(log=log))
        (bin_dir / tool).chmod(0o755)
    script = tmp / "kafka-setup.sh"
    script.write_text(
        SCRIPT.read_text()
        .replace("/opt/kafka/bin", str(bin_dir))
        .replace("/tmp/admin.properties", str(tmp / "admin.properties"))
    )
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:19092",
        "KAFKA_SASL_USERNAME": "admin",
        "KAFKA_SASL_PASSWORD": "admin-password",
        "KAFKA_SSL_CAFILE": "/run/secrets/kafka-ca",
        "UNBIND_TOPIC": "unbind.events",
        "UNBIND_DLQ_TOPIC": "unbind.events.dlq",
        "PARTITIONS": "6",
        "REPLICATION_FACTOR": "1",
        "MIN_INSYNC_REPLICAS": "1",
        **{f"KAFKA_PASSWORD_{service.upper()}": f"{service}-password" for service in service_principals()},
    }
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "password" not in result.stdout + result.stderr, "the script printed a password"
    admin = (tmp / "admin.properties").read_text()
    assert (
        "security.protocol=SASL_SSL" in admin
        and f'username="admin" password="{env["KAFKA_SASL_PASSWORD"]}"' in admin
    )
    assert "ssl.truststore.location=/run/secrets/kafka-ca" in admin
    assert (tmp / "admin.properties").stat().st_mode & 0o077 == 0, (
        "the admin's password is readable by others"
    )
    return [json.loads(line) for line in log.read_text().splitlines()]


def _option(args: list[str], name: str) -> list[str]:
    return [args[index + 1] for index, arg in enumerate(args) if arg == name]


def test_every_call_is_made_as_the_admin_to_the_cluster(calls: list[list[str]]) -> None:
    assert calls
    for call in calls:
        assert (
            _option(call, "--bootstrap-server") == ["kafka:19092"]
            and len(_option(call, "--command-config")) == 1
        ), call


def test_the_topics_are_created_with_the_partitions(calls: list[list[str]]) -> None:
    created = [call for call in calls if call[0] == "kafka-topics.sh" and "--create" in call]
    assert [_option(call, "--topic") for call in created] == [["unbind.events"], ["unbind.events.dlq"]]
    assert all(_option(call, "--partitions") == ["6"] and "--if-not-exists" in call for call in created)


def test_each_service_gets_its_own_scram_user_with_its_password(calls: list[list[str]]) -> None:
    users = {
        _option(call, "--entity-name")[0]: _option(call, "--add-config")[0]
        for call in calls
        if call[0] == "kafka-configs.sh"
    }
    assert users == {
        service: f"SCRAM-SHA-512=[iterations=8192,password={service}-password]"
        for service in service_principals()
    }


def test_the_acls_are_exactly_those_the_local_broker_grants(calls: list[list[str]]) -> None:
    granted = set()
    for call in (call for call in calls if call[0] == "kafka-acls.sh"):
        assert "--add" in call and "--deny-principal" not in call
        (operation,) = _option(call, "--operation")
        pattern = "PREFIXED" if _option(call, "--resource-pattern-type") == ["prefixed"] else "LITERAL"
        resources = [("TOPIC", name) for name in _option(call, "--topic")] + [
            ("GROUP", name) for name in _option(call, "--group")
        ]
        for principal in _option(call, "--allow-principal"):
            granted |= {
                (principal.removeprefix("User:"), operation.upper(), kind, name, pattern)
                for kind, name in resources
            }
    expected = {
        (acl.principal, acl.operation.name, acl.resource.name, acl.name, acl.pattern.name)
        for acl in service_acls(EventTopics())
    }
    assert granted == expected
