"""The ops page in a real browser (Debian's headless Chromium, driven by Playwright) against the four
services and the dashboard on the real broker: it loads without a console error, an unbind started
through the API shows in the feed within 2 s, the funnel moves, and a review approved on the page
lets the flow go on to verification. A screenshot is saved with the test output."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from shared.login_links import write_login_link
from tests.conftest import TEST_VAR
from tests.dashboard.conftest import running_dashboard
from tests.dashboard.test_api import OPS, REVIEW_EVERYTHING, sqlite_urls
from tests.factories import customer_with_binding, enrolled_device, idempotency_key, pass_verification, save_rules, unbind_body
from tests.keys import token
from tests.stack import BusTopics, auth, running_stack, served

CHROMIUM = os.environ.get("UNBIND_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = TEST_VAR / "artifacts"

pytestmark = [pytest.mark.kafka, pytest.mark.browser]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: deploy/install-system-deps.sh installs Debian's chromium (or set UNBIND_CHROMIUM)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
        )
        yield browser
        await browser.close()


async def funnel_count(page: Page, state: str) -> int:
    return int(await page.locator(f'#funnel-bars g[data-state="{state}"] .count').text_content() or "0")


async def test_the_ops_page_follows_an_unbind_live_and_decides_its_review(browser: Browser, kafka_topics: BusTopics, tmp_path: Path) -> None:
    problems: list[str] = []
    async with (
        running_stack(kafka_topics, sqlite_urls(tmp_path), tmp_path) as stack,
        running_dashboard(kafka_topics, tmp_path, risk_app=stack.apps["risk"], push_interval_seconds=0.25) as (app, _),
        served(app) as url,
    ):
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                problems.append(f"console {message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}") if "/v1/stream" not in request.url else None)

        await page.goto(url)
        await expect(page.locator("#sign-in")).to_be_visible()
        # The one-time link `unbind up` prints: it signs in, then the address bar no longer holds it.
        code = write_login_link(app.state.settings.login_link_dir, token("ops-dev", "ops", "reviewer"), 60)
        await page.goto(f"{url}/login?code={code}")
        await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
        await expect(page.locator("#who")).to_have_text("ops-dev")
        assert page.url == f"{url}/"
        under_review_before = await funnel_count(page, "under_review")

        # Every request goes to a human, so the page has a case to decide.
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        customer = await customer_with_binding(stack, awake=True)
        device = await enrolled_device(stack, customer)
        response = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests", json=unbind_body(), headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
        )
        assert response.status_code == 202
        accepted = time.monotonic()
        request_id = response.json()["id"]

        await expect(page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="UnbindRequested"]')).to_have_count(1, timeout=2_000)
        feed_seconds = time.monotonic() - accepted
        assert feed_seconds < 2.0

        await expect(page.locator('#funnel-bars g[data-state="under_review"] .count')).to_have_text(str(under_review_before + 1), timeout=5_000)
        review_row = page.locator(f'#reviews tr[data-request-id="{request_id}"]')
        await expect(review_row).to_have_count(1, timeout=10_000)
        await expect(review_row.locator("td").nth(3)).to_have_text("unbind")
        await expect(page.locator("#review-count")).to_have_text("1")
        await review_row.locator("input.note").fill("called the customer back")
        await review_row.locator("input.customer-message").fill("谢谢您的耐心，请完成验证。")
        await page.screenshot(path=str(tmp_path / "before-approval.png"), full_page=True)
        # Only a person denies, and only with a reason from the list: the page asks for one first.
        await review_row.locator("button.deny").click()
        await expect(page.locator("#reviews-error")).to_contain_text("Choose the reason")
        await expect(review_row).to_have_count(1)
        await review_row.locator("button.approve").click()

        await expect(page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="ReviewDecided"]')).to_have_count(1, timeout=5_000)
        await expect(page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="VerificationRequested"]')).to_have_count(1, timeout=10_000)
        await expect(review_row).to_have_count(0, timeout=10_000)
        await expect(page.locator('#funnel-bars g[data-state="pending_verification"] .count')).not_to_have_text("0", timeout=5_000)
        body = await stack.wait_for_request(request_id, customer.user_id, lambda body: body.get("verification") is not None)
        assert body["status"] == "pending_verification" and sorted(body["verification"]["methods"]) == ["biometric", "otp"]
        audit = (await stack.client("binding").get(f"/v1/unbind-requests/{request_id}/audit", headers=OPS)).json()
        assert "ops-dev" in [entry["actor"] for entry in audit], audit  # the reviewer is the one signed in on the page
        notices = await stack.wait_for_notice(customer.user_id, request_id, "review_approved")
        assert notices["review_approved"].endswith("审核人员留言：谢谢您的耐心，请完成验证。"), "the reviewer's message goes with the outcome"

        # The customer passes both factors: the page shows the completion and its stage latencies.
        await pass_verification(stack, customer, request_id, body["verification"]["id"], device)
        await expect(page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="UnbindCompleted"]')).to_have_count(1, timeout=10_000)
        await expect(page.locator('#funnel-bars g[data-state="completed"] .count')).to_have_text("1", timeout=5_000)
        await expect(page.locator('#by-kind tr[data-kind="unbind"] td').nth(2)).to_have_text("1")  # asks to unbind: completed
        await expect(page.locator("#latency-table tbody tr").last).not_to_contain_text("–", timeout=5_000)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / "dashboard.png"
        await page.wait_for_timeout(500)
        await page.screenshot(path=str(screenshot), full_page=True)
        print(f"\ndashboard screenshot: {screenshot} (feed showed the request {feed_seconds * 1000:.0f} ms after the 202)")
        await context.close()
    assert not problems, problems
