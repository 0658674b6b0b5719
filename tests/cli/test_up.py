"""`unbind up` end to end: a real supervisor process, four uvicorn services and the dashboard, the test
broker.

Each test runs the stack from its own var dir, on unique topics and on service ports shifted by a
free offset, so it never meets a developer's `unbind up` or another test's events.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest

from services.notification.templates import CODE_IN_SMS
from tests.cli.conftest import (
    ZHANGSAN_PHONE,
    RunningUp,
    cli_env,
    eventually,
    free_port_offset,
    run_unbind,
    unbind_up,
)
from tools import pii
from tools.errors import process_cmdline
from tools.kafka import Cluster, read_topic
from tools.stack import pid_alive, restart_delay, service_ports


def _environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in entries if b"=" in entry)


def _latest_code(sms_sink: Path) -> str | None:
    if not sms_sink.exists():
        return None
    # The newest code message: other SMS (the unbind notice) may come after it.
    texts = [
        message["text"]
        for message in map(json.loads, sms_sink.read_text().splitlines())
        if message["to"] == ZHANGSAN_PHONE
    ]
    codes = [match.group(1) for text in texts if (match := CODE_IN_SMS.search(text))]
    return codes[-1] if codes else None


def _unbind_zhangsan(up: RunningUp) -> str:
    """Zhang San's unbind through the running stack, from the request to the completion notice in
    his inbox; returns the request's id."""
    token = run_unbind(
        "--var-dir", str(up.var_dir), "token", "--user", "u-zhangsan", env=up.env
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=10, trust_env=False) as client:
        bindings = client.get(f"{up.url('binding')}/v1/bindings").json()["items"]
        assert [(b["id"], b["status"]) for b in bindings] == [("b-zhangsan-mortgage", "active")]

        # The demo instalment is due in two days under auto-debit: a blocker to acknowledge.
        impact = client.get(f"{up.url('binding')}/v1/bindings/b-zhangsan-mortgage/impact").json()
        assert [blocker["code"] for blocker in impact["blockers"]] == ["INSTALMENT_DUE_SOON"]
        accepted = client.post(
            f"{up.url('binding')}/v1/bindings/b-zhangsan-mortgage/unbind-requests",
            json={"reason": "fund_planning", "acknowledged": ["INSTALMENT_DUE_SOON"]},
            headers={"Idempotency-Key": f"cli-test-{uuid.uuid4()}"},
        )
        assert accepted.status_code == 202, accepted.text
        request_url = f"{up.url('binding')}/v1/unbind-requests/{accepted.json()['id']}"

        issued = eventually(
            lambda: client.get(request_url).json()["verification"], 30, "no verification was issued"
        )
        code = eventually(lambda: _latest_code(up.var_dir / "sms.jsonl"), 10, "no SMS code in var/sms.jsonl")
        verified = client.post(
            f"{up.url('verification')}/v1/verifications/{issued['id']}/otp", json={"code": code}
        )
        assert verified.status_code == 200, verified.text

        eventually(
            lambda: client.get(request_url).json()["status"] == "completed",
            30,
            "the request never completed",
        )
        eventually(
            lambda: [
                n
                for n in client.get(f"{up.url('notification')}/v1/notifications").json()["items"]
                if n["kind"] == "unbind_completed"
            ],
            15,
            "no completion notice in the inbox",
        )

    return accepted.json()["id"]


@pytest.mark.kafka
def test_up_serves_the_happy_path_restarts_a_killed_service_and_stops_on_sigterm(
    kafka_cluster: Cluster, tmp_path: Path
) -> None:
    with unbind_up(kafka_cluster, tmp_path) as up:
        output = up.output()
        for service, port in up.ports.items():
            assert f"http://127.0.0.1:{port}" in output, f"{service}'s URL is not in the summary"
        assert re.search(r"all 5 services and the development lender ready in \d+\.\d s", output)
        assert (up.var_dir / "logs" / "binding.log").read_text().startswith("{"), (
            "service logs are JSON lines in var/logs"
        )

        # This installation's own keys, generated on its first start: private, and each service holds only its
        # own.
        keys = up.var_dir / "keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in keys.iterdir()), (
            "every key and secret is mode 0600"
        )
        assert {
            "jwks.json",
            "issuer.jwk",
            "binding.jwk",
            "verification.jwk",
            "risk.jwk",
            "otp_hmac_key.secret",
        } <= {path.name for path in keys.iterdir()}
        environments = {name: _environ(pid) for name, pid in up.service_pids().items()}
        assert environments["binding"]["UNBIND_SIGNING_KEY_FILE"].endswith("/keys/binding.jwk")
        assert (
            "UNBIND_OTP_HMAC_KEY" in environments["verification"]
            and "UNBIND_OTP_HMAC_KEY" not in environments["binding"]
        )
        assert "UNBIND_SIGNING_KEY_FILE" not in environments["dashboard"] and environments["notification"][
            "UNBIND_SIGNING_KEY_FILE"
        ].endswith("/keys/notification.jwk")
        assert not any("issuer.jwk" in value for env in environments.values() for value in env.values()), (
            "no service holds the issuer's key"
        )
        # Binding checks every lender's callbacks; the development lender signs them, and takes notification's
        # webhook.
        lender_secrets = {"UNBIND_LENDER_SECRET_EXAMPLE_BANK", "UNBIND_LENDER_SECRET_HARBOUR_BANK"}
        assert (
            lender_secrets <= environments["binding"].keys()
            and lender_secrets <= environments["lender"].keys()
        )
        assert (
            not lender_secrets & environments["notification"].keys()
            and "UNBIND_SIGNING_KEY_FILE" not in environments["lender"]
        )
        assert environments["notification"]["UNBIND_INSTITUTION_WEBHOOK_URL"] == f"{up.url('lender')}/webhook"

        # The one-time sign-in link the summary prints opens an ops session once.
        link = re.search(r"(http://127\.0\.0\.1:\d+/login\?code=[A-Za-z0-9_-]+)", output)
        assert link, output
        with httpx.Client(trust_env=False) as browser:
            signed = browser.get(link.group(1))
            assert signed.status_code == 303 and "unbind_ops_session" in signed.headers["set-cookie"]
            assert browser.get(link.group(1)).status_code == 401, "a link works once"

        request_id = _unbind_zhangsan(up)

        # The dashboard process follows the same topic: the whole flow is in its feed.
        ops_token = run_unbind(
            "--var-dir", str(up.var_dir), "token", "--role", "ops", env=up.env
        ).stdout.strip()
        ops = {"Authorization": f"Bearer {ops_token}"}
        feed_url = f"{up.url('dashboard')}/v1/events?request_id={request_id}"
        eventually(
            lambda: (
                "UnbindCompleted"
                in [
                    item["type"] for item in httpx.get(feed_url, headers=ops, trust_env=False).json()["items"]
                ]
            ),
            10,
            "the completion never reached the dashboard",
        )

        # The PII scan: no code (from the SMS sink), full phone or account number in any event
        # on the topic or any line of any service's log.
        secrets = pii.Secrets()
        secrets.add_phone(ZHANGSAN_PHONE)
        secrets.add_account_number("6222021234514821")
        secrets.add_codes_from_sms_sink(up.var_dir / "sms.jsonl")
        assert secrets.codes, "the scan knows the codes that were sent"
        records = asyncio.run(read_topic(kafka_cluster, up.env["UNBIND_TOPIC"]))
        lines = [*pii.record_lines(up.env["UNBIND_TOPIC"], records), *pii.log_lines(up.var_dir / "logs")]
        assert len(records) >= 5 and len(lines) > len(records), (
            "the scan saw the flow's events and the services' logs"
        )
        assert not pii.scan(lines, secrets)

        # Supervision: a killed service comes back on its port within 2 s.
        killed = up.service_pids()["risk"]
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        eventually(lambda: up.service_pids()["risk"] != killed, 5, "risk was not restarted")
        assert time.monotonic() - killed_at < 2.0, "a dead service is restarted within 2 s"
        eventually(lambda: up.ready("risk"), 15, "the restarted risk service never became ready")
        assert f"risk (pid {killed}) exited with signal SIGKILL" in up.output()
        eventually(
            lambda: "risk is ready again" in up.output(),
            5,
            "the supervisor did not notice the restarted risk was ready",
        )

        children = list(up.service_pids().values())
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(30) == 0, up.output()
        assert not [pid for pid in children if pid_alive(pid)], "a service outlived its supervisor"
        assert not (up.var_dir / "unbind-up.pid").exists()
        assert f"the external cluster {kafka_cluster.bootstrap} is left alone" in up.output()


@pytest.mark.kafka
def test_status_and_down_from_another_terminal(kafka_cluster: Cluster, tmp_path: Path) -> None:
    with unbind_up(kafka_cluster, tmp_path) as up:
        status = run_unbind("--var-dir", str(up.var_dir), "status", env=up.env)
        assert status.returncode == 0, status.stderr
        assert f"up: running (supervisor pid {up.proc.pid}" in status.stdout
        assert status.stdout.count("ready (kafka connected)") == 5, status.stdout
        assert f"kafka: external cluster {kafka_cluster.bootstrap} is reachable" in status.stdout

        children = list(up.service_pids().values())
        down = run_unbind("--var-dir", str(up.var_dir), "down", env=up.env)
        assert down.returncode == 0, down.stderr
        assert up.proc.wait(5) == 0
        assert not [pid for pid in children if pid_alive(pid)]
        assert "up: not running" in run_unbind("--var-dir", str(up.var_dir), "status", env=up.env).stdout


@pytest.mark.kafka
def test_instances_share_each_service_port_and_are_supervised_one_by_one(
    kafka_cluster: Cluster, tmp_path: Path
) -> None:
    with unbind_up(kafka_cluster, tmp_path, "--instances", "2") as up:
        assert "all 5 services (2 instances of each of the four)" in up.output()
        state = up.state()["services"]
        for service in ("binding", "verification", "risk", "notification"):
            first, second = state[service], state[f"{service}#2"]
            assert first["pid"] != second["pid"] and first["url"] == second["url"] == up.url(service)
            assert first["probe_url"] != second["probe_url"], "each instance answers its own probe"
        assert "dashboard#2" not in state, "the dashboard runs once"
        status = run_unbind("--var-dir", str(up.var_dir), "status", env=up.env)
        assert status.stdout.count("ready (kafka connected)") == 9, status.stdout

        _unbind_zhangsan(up)

        # One instance dead: the other serves the port meanwhile, and the dead one is restarted
        # and asked whether it is ready on its own probe socket, not the shared port.
        killed = up.service_pids()["binding"]
        os.kill(killed, signal.SIGKILL)
        eventually(lambda: f"binding (pid {killed}) exited" in up.output(), 5, "the kill went unnoticed")
        for _ in range(20):
            assert up.ready("binding"), "the surviving instance did not serve the port"
        eventually(lambda: "binding is ready again" in up.output(), 20, "binding was not restarted")
        assert up.service_pids()["binding#2"] == state["binding#2"]["pid"], "the other instance kept running"

        children = list(up.service_pids().values())
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(30) == 0, up.output()
        assert not [pid for pid in children if pid_alive(pid)], "an instance outlived its supervisor"


def test_instances_beyond_the_partitions_are_refused(tmp_path: Path) -> None:
    refused = run_unbind("--var-dir", str(tmp_path / "var"), "up", "--instances", "7", "--no-kafka")
    assert refused.returncode != 0
    assert "--instances 7: give 1 to 6" in refused.stderr
    assert not (tmp_path / "var" / "unbind-up.pid").exists()


def test_a_taken_service_port_is_named_with_the_way_out(tmp_path: Path) -> None:
    offset = free_port_offset()
    port = service_ports(offset)["verification"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_unbind("--var-dir", str(tmp_path), "up", "--no-kafka", "--port-offset", str(offset))
    assert result.returncode == 1
    assert (
        f"127.0.0.1:{port} (the verification service port) is already in use by pid {os.getpid()}"
        in result.stderr
    )
    assert "--port-offset" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is started or written when a port is taken"


def test_a_service_that_dies_at_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    offset = free_port_offset()
    # An invalid log level passes the CLI's settings but makes uvicorn exit at once.
    result = run_unbind(
        "--var-dir",
        str(tmp_path),
        "up",
        "--no-kafka",
        "--port-offset",
        str(offset),
        env=cli_env(UNBIND_LOG_LEVEL="bogus"),
    )
    assert result.returncode == 1
    assert re.search(r"The \w+ service exited during startup \(exit code 2\)", result.stderr), result.stderr
    assert "--- last lines of" in result.stderr and "bogus" in result.stderr
    assert not (tmp_path / "unbind-up.pid").exists()
    assert not any(
        f"--port {port}" in process_cmdline(pid)
        for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        for port in service_ports(offset).values()
    )


def test_a_service_without_kafka_credentials_is_reported_with_its_one_line(tmp_path: Path) -> None:
    """`--no-kafka` and no KAFKA_SASL_PASSWORD anywhere: no service falls back to an unauthenticated
    connection; the first to start exits, and its one line is what `unbind up` shows."""
    offset = free_port_offset()
    env = {name: value for name, value in cli_env().items() if not name.startswith("KAFKA_")}
    result = run_unbind("--var-dir", str(tmp_path), "up", "--no-kafka", "--port-offset", str(offset), env=env)
    assert result.returncode == 1
    assert re.search(r"The \w+ service exited during startup \(exit code 1\)", result.stderr), result.stderr
    assert re.search(
        r"unbind \w+: refusing to start: KAFKA_SASL_PASSWORD is not set: no authenticating to Kafka without "
        r"it",
        result.stderr,
    )
    assert "Traceback" not in result.stderr


def test_restart_backoff_is_immediate_after_a_stable_run_and_capped_in_a_crash_loop() -> None:
    assert restart_delay(0) == 0.5
    assert [restart_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
