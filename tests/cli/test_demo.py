"""`unbind demo` end to end: the real command, as subprocesses, against one real `unbind up` on the
test broker, playing the three paths in the order a presenter would: allow, step-up, review; then
the pause that `--pause` plays after an unbind.

The runs share the stack on purpose: each later one finds the seeded binding already unbound and
binds a fresh account, and risk remembers the earlier requests (requests_24h), which is part of
what decides the later paths.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.notification.templates import CODE_IN_SMS
from tests.cli.conftest import ZHANGSAN_PHONE, RunningUp, cli_env, free_port_offset, run_unbind, unbind_up
from tools.kafka import Cluster

EVENT_LINE = re.compile(r"^\s+\+\d+\.\d{3}s  (\w+)  (.*)$", re.MULTILINE)
COMPLETED_FLOW = ["UnbindRequested", "RiskAssessed", "VerificationRequested", "Verified", "UnbindCompleted"]


def demo(up: RunningUp, *args: str) -> subprocess.CompletedProcess[str]:
    offset = up.ports["binding"] - 8001
    result = run_unbind(
        "--var-dir", str(up.var_dir), "demo", "--port-offset", str(offset), *args, env=up.env, timeout=90
    )
    assert result.returncode == 0, f"unbind demo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def events(output: str) -> list[tuple[str, str]]:
    """(type, description) of each event line of the live view, in the order printed."""
    return EVENT_LINE.findall(output)


def described(output: str, event_type: str) -> str:
    return next(text for kind, text in events(output) if kind == event_type)


def night_in_shanghai() -> bool:
    # Risk adds night_request (+10) between 00:00 and 06:00 Shanghai time: the step-up request
    # (40 + 20) then scores 70, which is review. The demo follows that; so does this test.
    return datetime.now(ZoneInfo("Asia/Shanghai")).hour < 6


@pytest.mark.kafka
def test_demo_plays_allow_then_step_up_then_review_then_a_pause_on_one_stack(
    kafka_cluster: Cluster, tmp_path
) -> None:
    with unbind_up(kafka_cluster, tmp_path) as up:
        allow = demo(up)
        assert [kind for kind, _ in events(allow.stdout)] == COMPLETED_FLOW, allow.stdout
        assert re.match(
            r"score \d+ · allow · needs otp · .*instalment_due_soon\(\+10\)",
            described(allow.stdout, "RiskAssessed"),
        )
        assert (
            "blocker INSTALMENT_DUE_SOON (to acknowledge)" in allow.stdout
            and "acknowledged INSTALMENT_DUE_SOON" in allow.stdout
        )
        assert "credit limit 30000 -> 20300 CNY" in allow.stdout
        report = up.var_dir / "demo" / "report-b-zhangsan-mortgage.pdf"
        assert report.read_bytes().startswith(b"%PDF"), "the account report is saved as a PDF"
        assert "code from SMS to 138****5678: ••••" in allow.stdout
        assert "确认本期还款" in allow.stdout and "done: request -> completed in" in allow.stdout

        night = night_in_shanghai()
        step_up = demo(up, "--step-up", *(["--approve"] if night else []))
        assert (
            "b-zhangsan-mortgage is already unbound (an earlier demo): binding a fresh repayment account"
            in step_up.stdout
        )
        # Binding as the app does: pending, its own SMS code, then the lender's confirmation raises the limit.
        assert re.search(
            r"asked to bind b-[0-9a-f]{12}: Example Bank 6222 \*{4} \*{4} \d{4}, .*; pending until its SMS "
            r"code is confirmed",
            step_up.stdout,
        )
        assert (
            "the lender confirmed the auto-debit mandate" in step_up.stdout
            and "credit limit 20300 -> 32300 CNY" in step_up.stdout
        ), step_up.stdout
        kinds = [kind for kind, _ in events(step_up.stdout)]
        risk = described(step_up.stdout, "RiskAssessed")
        if night:
            assert "· review ·" in risk and "night_request(+10)" in risk, step_up.stdout
            assert "you asked for the step_up path; risk decided review: following risk" in step_up.stdout
        else:
            assert kinds == COMPLETED_FLOW, step_up.stdout
            assert re.match(
                r"score 60 · step_up · needs otp \+ biometric · device_unknown\(\+40\) requests_24h\(\+20\)$",
                risk,
            ), risk
        assert re.search(r"fingerprint on d-zhangsan-phone-[0-9a-f]{6}: challenge signed", step_up.stdout)
        assert described(step_up.stdout, "Verified") == "otp + biometric passed"

        review = demo(up, "--review", "--approve")
        assert [kind for kind, _ in events(review.stdout)] == [
            "UnbindRequested",
            "RiskAssessed",
            "ReviewDecided",
            "VerificationRequested",
            "Verified",
            "UnbindCompleted",
        ]
        risk = described(review.stdout, "RiskAssessed")
        assert (
            "· review · needs an ops review ·" in risk
            and "device_unknown(+40)" in risk
            and "phone_changed_recently(+25)" in risk
        ), risk
        # The third request within 24 h: the default rule decides before the score does.
        assert "decided by rule 'third request in a day'" in review.stdout
        assert "waiting in the ops review queue: review " in review.stdout
        assert described(review.stdout, "ReviewDecided").startswith("approve by ops-admin")
        assert described(review.stdout, "Verified") == "otp + biometric passed"
        assert re.search(
            r"binding b-[0-9a-f]{12} \(6222 \*\*\*\* \*\*\*\* \d{4}\): unbound, auto-debit off", review.stdout
        )

        # The gentler way after the unbind: another account, whose auto-debit he pauses instead. The
        # fourth and fifth requests within 24 h go to review (the default rule); --approve decides both.
        paused = demo(up, "--pause", "--approve")
        printed_events = events(paused.stdout)
        assert [kind for kind, _ in printed_events].count("UnbindRequested") == 2 and printed_events[-1][
            0
        ] == "AutoDebitPaused", paused.stdout
        asked = [text for kind, text in printed_events if kind == "UnbindRequested"]
        assert asked[0].startswith("unbind · fund_planning") and asked[1].startswith(
            "pause auto-debit 2 month(s) · fund_planning"
        ), asked
        assert re.match(
            r"mandate [0-9a-f-]{36} paused for 2 month\(s\) · resumes \d{4}-\d{2}-\d{2}$",
            printed_events[-1][1],
        )
        assert (
            "Pause auto-debit (available):" in paused.stdout
            and "Switch the repayment account (available):" in paused.stdout
        )
        assert re.search(
            r"auto-debit paused until \d{4}-\d{2}-\d{2} \(it resumes by itself\); credit limit still \d+ CNY",
            paused.stdout,
        ), paused.stdout
        assert "pause -> completed in" in paused.stdout

        printed = "\n".join(run.stdout + run.stderr for run in (allow, step_up, review, paused))
        sms = [json.loads(line) for line in (up.var_dir / "sms.jsonl").read_text().splitlines()]
        codes = [match.group(1) for message in sms if (match := CODE_IN_SMS.search(message["text"]))]
        assert len(codes) >= 3
        assert not [code for code in codes if code in printed], "a one-time code was printed"
        assert ZHANGSAN_PHONE not in printed and ZHANGSAN_PHONE.removeprefix("+86") not in printed
        assert "6222021234514821" not in printed and not re.search(r"62220299\d{8}", printed), (
            "a full account number was printed"
        )
        assert "\033[" not in printed, "no colour when stdout is not a terminal"


def test_demo_without_a_running_stack_says_so_in_one_line(tmp_path) -> None:
    offset = free_port_offset()
    result = run_unbind("--var-dir", str(tmp_path / "var"), "demo", "--port-offset", str(offset))
    assert result.returncode == 1
    assert result.stderr.startswith("unbind demo: error: No `unbind up` runs for"), result.stderr
    assert f"up --port-offset {offset}`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_demo_refuses_production(tmp_path) -> None:
    result = run_unbind("--var-dir", str(tmp_path / "var"), "demo", env=cli_env(UNBIND_ENV="production"))
    assert result.returncode == 1
    assert "`unbind demo` is for development only" in result.stderr, result.stderr
