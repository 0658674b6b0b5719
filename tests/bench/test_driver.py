"""The bench's customer types a code the way a customer does: the newest SMS, and again from a newer
SMS when verification replaced the code it typed (notification's answer to the first send was lost)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tools.bench import driver
from tools.bench.driver import Customers, WorkflowFailed
from tools.running import RunningStack

PHONE = "+8613800138000"
PATH = "/v1/verifications/v-1/otp"


def send_code(sms_sink: Path, code: str) -> None:
    line = {"to": PHONE, "text": f"To unbind Example Bank 1234, your verification code is {code}.", "at": ""}
    with sms_sink.open("a") as file:
        file.write(json.dumps(line) + "\n")


def customers(tmp_path: Path, answer: httpx.MockTransport) -> Customers:
    stack = RunningStack({"verification": "http://verification"}, "", "", tmp_path / "sms.jsonl")
    client = httpx.AsyncClient(transport=answer)
    return Customers(stack, client, watcher=None, tokens=None, timeout=5)  # type: ignore[arg-type]


async def test_a_code_replaced_after_it_was_read_is_typed_again_from_the_newer_sms(tmp_path: Path) -> None:
    typed: list[str] = []

    def verification(request: httpx.Request) -> httpx.Response:
        typed.append(code := json.loads(request.content)["code"])
        if code == "111111":
            send_code(tmp_path / "sms.jsonl", "222222")  # the automatic re-send, just after it was read
            return httpx.Response(422, json={"title": "wrong code"})
        return httpx.Response(200, json={})

    players = customers(tmp_path, httpx.MockTransport(verification))
    send_code(tmp_path / "sms.jsonl", "111111")
    await players._type_code(PATH, PHONE, after=0, headers={})
    assert typed == ["111111", "222222"] and players.codes_replaced == 1


async def test_a_refused_code_with_no_newer_sms_fails_the_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "REPLACED_CODE_WAIT", 0.2)
    players = customers(tmp_path, httpx.MockTransport(lambda _: httpx.Response(422, json={})))
    send_code(tmp_path / "sms.jsonl", "111111")
    with pytest.raises(WorkflowFailed, match="422"):
        await players._type_code(PATH, PHONE, after=0, headers={})
    assert players.codes_replaced == 0
